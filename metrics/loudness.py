"""Integrated loudness per ITU-R BS.1770-4 (K-weighting, 400 ms blocks, -70 LUFS absolute and -10 LU relative gates).

Channel layouts (by channel count, in the channel order of WAV/SMPTE files) and their BS.1770-4 weights G_i in
the weighted sum of channel mean squares (Annex 1, Table 3: front channels 1.0, surround channels between 60 and
120 degrees azimuth 1.41, i.e. +1.5 dB; the LFE channel is not included in the measurement):

    1: mono                          G = 1.0
    2: L, R                          G = 1.0, 1.0
    3: L, R, C                       G = 1.0, 1.0, 1.0
    5: L, R, C, Ls, Rs               G = 1.0, 1.0, 1.0, 1.41, 1.41
    6: L, R, C, LFE, Ls, Rs  (5.1)   LFE dropped, the other five as above

Other counts raise ValueError naming the count: 4 channels is quad (L, R, Ls, Rs) in WAV order but L, R, C, S
elsewhere, and for 7.1 the weight of the back pair depends on where its loudspeakers stand (Table 3 gives 1.41
only between 60 and 120 degrees; 7.1 backs are commonly at 135-150 degrees), so no single answer follows from the
channel count alone.
"""
from __future__ import annotations

import math

import numpy as np

from metrics.base import ClipContext, MetricError, MetricInfo

ABSOLUTE_GATE_LUFS = -70.0
#: Channel count -> channel names, in file order; see the module docstring for the weights.
LAYOUTS: dict[int, tuple[str, ...]] = {
    1: ("M",), 2: ("L", "R"), 3: ("L", "R", "C"), 5: ("L", "R", "C", "Ls", "Rs"),
    6: ("L", "R", "C", "LFE", "Ls", "Rs"),
}
LFE_CHANNEL = 3  # index of the LFE channel in 6-channel (5.1) audio


def measured_channels(audio: np.ndarray) -> np.ndarray:
    """The channels of [channels, n] (or 1-D mono) audio that BS.1770-4 measures: all of them, except the LFE of
    5.1, which is dropped. The result's channel order is pyloudnorm's, whose meter weights up to five channels
    positionally as L, R, C, Ls, Rs with G = 1.0, 1.0, 1.0, 1.41, 1.41. Raises ValueError for a channel count
    without a layout in :data:`LAYOUTS`."""
    x = np.asarray(audio)
    if x.ndim == 1:
        return x
    n = x.shape[0]
    if n not in LAYOUTS:
        raise ValueError(f"BS.1770-4 loudness of {n}-channel audio is not supported: the channel count does not "
                         "determine the layout and weights (supported: 1, 2, 3, 5, and 6 = 5.1 as L, R, C, LFE, "
                         "Ls, Rs)")
    if n == 6:
        return np.delete(x, LFE_CHANNEL, axis=0)
    return x


def integrated_lufs(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness of [channels, n] (or 1-D mono) audio in LUFS, BS.1770-4 (pyloudnorm's meter), with the
    channel layouts and weights of the module docstring; -inf when every block falls under the absolute gate.
    Raises ValueError for audio shorter than one 0.4 s block and for an unsupported channel count."""
    import pyloudnorm

    x = measured_channels(audio)
    if x.shape[-1] < 0.4 * sample_rate:
        raise ValueError(f"audio lasts {x.shape[-1] / sample_rate:.3f} s, shorter than one 0.4 s block")
    with np.errstate(divide="ignore"):
        return float(pyloudnorm.Meter(sample_rate).integrated_loudness(x.T.astype(np.float64)))


class IntegratedLoudness:
    """Integrated loudness of the generated audio in LUFS (pyloudnorm's BS.1770-4 meter, native rate; 5.1 without
    its LFE channel, see the module docstring).

    Audio whose every block falls under the absolute gate (silence) has no defined loudness; it is reported at
    the gate, -70 LUFS, so silent outputs still count in the mean and are visible as such (the clip record also
    carries a `silent` flag). Audio shorter than one 400 ms block cannot be measured (MetricError).
    """

    info = MetricInfo(
        name="loudness-lufs", version=1, units="LUFS", higher_is_better=None,
        description="integrated loudness, ITU-R BS.1770-4 (pyloudnorm; 5.1 without LFE), floored at the -70 LUFS gate",
        params={"standard": "BS.1770-4", "block_s": 0.4, "floor_lufs": ABSOLUTE_GATE_LUFS},
        reference_impl="pyloudnorm Meter.integrated_loudness (ITU-R BS.1770-4)",
        null_value="descriptive: no better direction; silence reads as the -70 LUFS floor",
        caveats=("descriptive only: never ranked; compare with the reference music's loudness, not between systems",),
    )

    def score(self, audio: np.ndarray, sample_rate: int, ctx: ClipContext) -> float:
        try:
            value = integrated_lufs(audio, sample_rate)
        except ValueError as e:
            raise MetricError(str(e)) from None
        if not math.isfinite(value) or value < ABSOLUTE_GATE_LUFS:
            return ABSOLUTE_GATE_LUFS
        return float(value)
