"""Integrated loudness per ITU-R BS.1770-4 (K-weighting, 400 ms blocks, -70 LUFS absolute and -10 LU relative gates)."""
from __future__ import annotations

import math

import numpy as np

from metrics.base import ClipContext, MetricError, MetricInfo

ABSOLUTE_GATE_LUFS = -70.0


def integrated_lufs(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness of [channels, n] audio in LUFS (pyloudnorm's BS.1770-4 meter); -inf when every block
    falls under the absolute gate. Raises ValueError for audio shorter than one 0.4 s block."""
    import pyloudnorm

    if audio.shape[-1] < 0.4 * sample_rate:
        raise ValueError(f"audio lasts {audio.shape[-1] / sample_rate:.3f} s, shorter than one 0.4 s block")
    with np.errstate(divide="ignore"):
        return float(pyloudnorm.Meter(sample_rate).integrated_loudness(audio.T.astype(np.float64)))


class IntegratedLoudness:
    """Integrated loudness of the generated audio in LUFS (pyloudnorm's BS.1770-4 meter, native rate).

    Audio whose every block falls under the absolute gate (silence) has no defined loudness; it is reported at
    the gate, -70 LUFS, so silent outputs still count in the mean and are visible as such (the clip record also
    carries a `silent` flag). Audio shorter than one 400 ms block cannot be measured (MetricError).
    """

    info = MetricInfo(
        name="loudness-lufs", version=1, units="LUFS", higher_is_better=None,
        description="integrated loudness, ITU-R BS.1770-4 (pyloudnorm), floored at the -70 LUFS absolute gate",
        params={"standard": "BS.1770-4", "block_s": 0.4, "floor_lufs": ABSOLUTE_GATE_LUFS},
    )

    def score(self, audio: np.ndarray, sample_rate: int, ctx: ClipContext) -> float:
        try:
            value = integrated_lufs(audio, sample_rate)
        except ValueError as e:
            raise MetricError(str(e)) from None
        if not math.isfinite(value) or value < ABSOLUTE_GATE_LUFS:
            return ABSOLUTE_GATE_LUFS
        return float(value)
