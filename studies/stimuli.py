"""Stimulus preparation: loudness normalisation with a true-peak ceiling, and muxing music onto a clip's video.

Loudness follows ITU-R BS.1770-4: integrated loudness (K-weighting, 400 ms blocks, -70 LUFS absolute and -10 LU
relative gates; pyloudnorm's meter) is brought to the target (default -23 LUFS, EBU R 128) by one gain. True peak
follows BS.1770-4 Annex 2: the signal is upsampled 4x with a polyphase FIR interpolator (scipy's resample_poly with
a 193-tap Kaiser-windowed low-pass, cut-off at the original Nyquist frequency) and the largest absolute sample of
the upsampled signal is the true peak, in dBTP. When the loudness gain would put the true peak above the ceiling
(default -1 dBTP) the gain is lowered until the true peak equals the ceiling, so peaky material ends up *quieter*
than the target; :class:`LoudnessRecord` keeps both achieved values (output LUFS and dBTP) so this is visible.

Blinding: every stimulus has one format (:data:`FORMAT`), whatever system made its music: resampled to 48 kHz
(polyphase, :func:`vm_eval.media.resample`), mono duplicated and surround folded (ITU-R BS.775) to stereo, and
encoded as constant-bitrate Opus (libopus with VBR off, 128 kb/s, 20 ms frames: every packet has the same size,
so the file size and the stream's bitrate follow from the duration alone) in an MP4 beside the clip's picture
stream, copied unchanged. Both sides of a trial share the clip's video, and the music is fitted to the video's
duration (cropped, or padded with silence, at the end) at 48 kHz, so both sides have the same number of samples
and byte-identical sizes and headers. Measuring happens after these steps, so the loudness is that of what raters
hear; the lossy encoding changes the waveform slightly, and the ceiling leaves 1 dB of headroom for that (the
reason EBU R 128 sets -1 dBTP).
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vm_eval.fsutil import atomic_target, atomic_write_json, file_sha256
from vm_eval.media import Audio, MediaError, probe_video, resample
from vm_eval.media.video import encode_audio
from vm_eval.errors import UserError

OVERSAMPLE = 4
_FIR_TAPS = 193  # 48 taps per phase; BS.1770-4 Annex 2's example interpolator has 12 per phase
_FIR_WINDOW = ("kaiser", 8.0)
TRUE_PEAK_METHOD = f"BS.1770-4 Annex 2: resample_poly x{OVERSAMPLE}, firwin({_FIR_TAPS}, 1/{OVERSAMPLE}, {_FIR_WINDOW})"
STIMULUS_VERSION = 3  # bump when the processing changes, so cached stimuli are rebuilt (2: surround downmix,
#                       3: one format for all, FORMAT)


@dataclass(frozen=True)
class StimulusFormat:
    """The one audio format of every stimulus (see the module docstring): container, codec, rate, layout, CBR."""

    container: str = "mp4"
    codec: str = "libopus"
    sample_rate: int = 48_000  # Hz (Opus' own rate)
    channels: int = 2
    bit_rate: int = 128_000  # bits per second, constant (VBR off)
    frame_samples: int = 960  # 20 ms per packet


FORMAT = StimulusFormat()


class StimulusError(UserError, ValueError):
    """Audio cannot be made into a stimulus (silent, too short to measure)."""


@dataclass(frozen=True)
class LoudnessRecord:
    """What normalisation did: measured input, applied gain, and the achieved output loudness and true peak."""

    input_lufs: float
    input_true_peak_dbtp: float
    gain_db: float
    output_lufs: float
    output_true_peak_dbtp: float
    target_lufs: float
    ceiling_dbtp: float
    peak_limited: bool  # True when the ceiling lowered the gain (output_lufs < target_lufs)


def _fir() -> np.ndarray:
    from scipy.signal import firwin

    return firwin(_FIR_TAPS, 1.0 / OVERSAMPLE, window=_FIR_WINDOW)


def true_peak_dbtp(audio: Audio) -> float:
    """Maximum absolute value over channels of the 4x oversampled signal, in dB relative to full scale (dBTP).

    BS.1770-4 Annex 2 (its 12.04 dB pre-attenuation only protects fixed-point arithmetic; not needed in floats).
    Silence gives -inf.
    """
    from scipy.signal import resample_poly

    x = np.asarray(audio.samples, dtype=np.float64)
    if x.size == 0:
        return -math.inf
    up = resample_poly(x, OVERSAMPLE, 1, axis=1, window=_fir())
    peak = max(float(np.max(np.abs(up))), float(np.max(np.abs(x))))
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf


def integrated_loudness(audio: Audio) -> float:
    """Integrated loudness in LUFS (BS.1770-4 via pyloudnorm, native rate; channel layouts and weights as in
    :mod:`metrics.loudness`, 5.1 without its LFE); -inf when every block is gated out."""
    from metrics.loudness import integrated_lufs

    try:
        return integrated_lufs(audio.samples, audio.sample_rate)
    except ValueError as e:
        raise StimulusError(f"loudness: {e}") from None


def stereo_downmix(audio: Audio) -> Audio:
    """Mono and stereo unchanged; 3.0, 5.0 and 5.1 (channel orders of :data:`metrics.loudness.LAYOUTS`) folded to
    stereo by ITU-R BS.775's downward mixing (3/2 and 3/0 to 2/0): Lo = L + 0.7071 C + 0.7071 Ls,
    Ro = R + 0.7071 C + 0.7071 Rs; the LFE is omitted.

    Stimuli carry one stereo (or mono) track, so this is what raters hear, and it is what gets measured.
    Raises :class:`StimulusError` for a channel count without a known layout."""
    from metrics.loudness import LAYOUTS

    if audio.channels <= 2:
        return audio
    names = LAYOUTS.get(audio.channels)
    if names is None:
        raise StimulusError(f"cannot fold {audio.channels}-channel audio to stereo: the channel count does not "
                            "determine the layout (supported: 1, 2, 3, 5, 6 = 5.1)")
    x = {n: audio.samples[i].astype(np.float64) for i, n in enumerate(names)}
    k = math.sqrt(0.5)  # BS.775's -3 dB: the centre, fed to both sides, keeps its power
    zero = np.zeros(audio.num_samples)
    left = x["L"] + k * x["C"] + k * x.get("Ls", zero)
    right = x["R"] + k * x["C"] + k * x.get("Rs", zero)
    return Audio(np.stack([left, right]), audio.sample_rate)


def normalize_loudness(
    audio: Audio, target_lufs: float = -23.0, ceiling_dbtp: float = -1.0
) -> tuple[Audio, LoudnessRecord]:
    """Gain `audio` to `target_lufs` integrated loudness, lowered if needed so the true peak is <= `ceiling_dbtp`.

    Raises :class:`StimulusError` for silent audio (loudness undefined: every block under the -70 LUFS gate).
    """
    x = np.asarray(audio.samples, dtype=np.float64)
    if audio.num_samples == 0 or not np.any(x):
        raise StimulusError("audio is silent (all samples zero); its loudness is undefined")
    if not np.all(np.isfinite(x)):
        raise StimulusError("audio holds NaN or infinite samples")
    lufs_in = integrated_loudness(audio)
    if not math.isfinite(lufs_in):
        raise StimulusError("audio is silent (every 400 ms block is below the -70 LUFS gate); loudness is undefined")
    tp_in = true_peak_dbtp(audio)
    gain_db = target_lufs - lufs_in
    limited = tp_in + gain_db > ceiling_dbtp
    if limited:
        gain_db = ceiling_dbtp - tp_in
    out = Audio((x * 10.0 ** (gain_db / 20.0)).astype(np.float32), audio.sample_rate)
    record = LoudnessRecord(
        input_lufs=lufs_in, input_true_peak_dbtp=tp_in, gain_db=gain_db, output_lufs=integrated_loudness(out),
        output_true_peak_dbtp=true_peak_dbtp(out), target_lufs=target_lufs, ceiling_dbtp=ceiling_dbtp,
        peak_limited=bool(limited),
    )
    return out, record


@dataclass(frozen=True)
class StimulusRecord:
    """A prepared stimulus: the muxed file, its cache key, its duration and the loudness record."""

    path: str
    key: str
    duration_s: float
    sample_rate: int
    loudness: LoudnessRecord
    cached: bool  # True when an earlier identical stimulus was reused


def audio_sha256(audio: Audio) -> str:
    h = hashlib.sha256(f"{audio.sample_rate}|{audio.channels}|{audio.num_samples}|".encode())
    h.update(np.ascontiguousarray(audio.samples, dtype=np.float32).tobytes())
    return h.hexdigest()


def stimulus_key(video_path: str | Path, audio: Audio, target_lufs: float = -23.0, ceiling_dbtp: float = -1.0) -> str:
    """Content hash of (video bytes, audio samples, settings): equal keys mean identical stimuli. Use it as the
    file name so stimulus URLs reveal nothing about the system."""
    if not Path(video_path).is_file():
        raise MediaError(video_path, "file not found")
    settings = json.dumps({"target_lufs": float(target_lufs), "ceiling_dbtp": float(ceiling_dbtp),
                           "true_peak": TRUE_PEAK_METHOD, "version": STIMULUS_VERSION, "format": asdict(FORMAT)},
                          sort_keys=True)
    parts = f"{file_sha256(video_path)}|{audio_sha256(audio)}|{settings}"
    return hashlib.sha256(parts.encode()).hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _read_sidecar(path: Path, key: str) -> StimulusRecord | None:
    side = _sidecar(path)
    if not (path.is_file() and side.is_file()):
        return None
    try:
        data = json.loads(side.read_text())
        if data.get("key") != key:
            return None
        data["loudness"] = LoudnessRecord(**data["loudness"])
        return StimulusRecord(**data)
    except (ValueError, TypeError, KeyError):
        return None


def make_stimulus(
    video_path: str | Path,
    audio: Audio,
    out_path: str | Path,
    *,
    target_lufs: float = -23.0,
    ceiling_dbtp: float = -1.0,
    cache_dir: str | Path | None = None,
) -> StimulusRecord:
    """Normalise `audio` and mux it as the only soundtrack of `video_path`'s picture (original audio dropped).

    The music is brought to :data:`FORMAT` and the video's length first (:func:`to_stimulus_audio`). Cached by
    :func:`stimulus_key`: if `out_path` already holds the stimulus of this key (recorded in ``out_path + '.json'``),
    or `cache_dir` holds ``<key>.mp4``, nothing is re-encoded. Raises :class:`~vm_eval.media.MediaError` for an
    unreadable video, :class:`StimulusError` for silent audio or a channel count without a known layout.
    """
    video_path, out_path = Path(video_path), Path(out_path)
    key = stimulus_key(video_path, audio, target_lufs, ceiling_dbtp)
    hit = _read_sidecar(out_path, key)
    if hit is not None:
        return StimulusRecord(**{**asdict(hit), "loudness": hit.loudness, "path": str(out_path), "cached": True})
    cached = _read_sidecar(Path(cache_dir) / f"{key}.mp4", key) if cache_dir is not None else None
    if cached is not None:
        with atomic_target(out_path) as tmp:
            shutil.copyfile(cached.path, tmp)
        record = StimulusRecord(str(out_path), key, cached.duration_s, cached.sample_rate, cached.loudness, True)
    else:
        info = probe_video(video_path)
        if info.duration_s <= 0:
            raise MediaError(video_path, "video has zero duration")
        try:
            fitted = to_stimulus_audio(audio, info.duration_s)
            normalised, loudness = normalize_loudness(fitted, target_lufs, ceiling_dbtp)
        except StimulusError as e:
            raise StimulusError(f"music for {video_path.name}: {e}") from None
        mux_stimulus(video_path, normalised, out_path)
        record = StimulusRecord(str(out_path), key, info.duration_s, normalised.sample_rate, loudness, False)
        if cache_dir is not None:
            dst = Path(cache_dir) / f"{key}.mp4"
            with atomic_target(dst) as tmp:
                shutil.copyfile(out_path, tmp)
            atomic_write_json(_sidecar(dst), {**asdict(record), "path": str(dst), "cached": False})
    atomic_write_json(_sidecar(out_path), {**asdict(record), "cached": False})
    return record


def to_stimulus_audio(audio: Audio, duration_s: float) -> Audio:
    """`audio` as every stimulus carries it: stereo (mono duplicated, surround folded by :func:`stereo_downmix`),
    at :data:`FORMAT`'s sample rate, and exactly ``round(duration_s * rate)`` samples long (cropped at the end, or
    padded with silence at the end), so both sides of a trial (one clip, one duration) get equal lengths."""
    x = stereo_downmix(audio)
    if x.channels == 1:
        x = Audio(np.concatenate([x.samples, x.samples]), x.sample_rate)
    # crop at the native rate first (no need to resample music beyond the clip), then fit exactly at 48 kHz
    return resample(x.fit_length(duration_s), FORMAT.sample_rate).fit_length(duration_s)


def mux_stimulus(video: str | Path, audio: Audio, dst: str | Path) -> Path:
    """Copy `video`'s picture stream (no re-encode) and add `audio` (already :func:`to_stimulus_audio`) as its only
    soundtrack, encoded in :data:`FORMAT`. The output carries no timestamp or title (``bitexact``), so equal inputs
    give equal bytes."""
    import av

    if audio.sample_rate != FORMAT.sample_rate or audio.channels != FORMAT.channels:
        raise ValueError(f"mux_stimulus needs {FORMAT.channels}-channel {FORMAT.sample_rate} Hz audio")
    with atomic_target(dst) as tmp:
        with av.open(str(video)) as src, av.open(str(tmp), "w", format=FORMAT.container,
                                                   options={"fflags": "+bitexact"}) as out:
            vin = src.streams.video[0]
            vout = out.add_stream_from_template(vin)
            ast = out.add_stream(FORMAT.codec, rate=FORMAT.sample_rate, layout="stereo")
            ast.bit_rate = FORMAT.bit_rate
            ast.codec_context.options = {"vbr": "off"}  # hard CBR: packet sizes independent of the content
            ast.codec_context.thread_count = 1
            for pkt in src.demux(vin):
                if pkt.dts is None:
                    continue
                pkt.stream = vout
                out.mux(pkt)
            encode_audio(out, ast, audio, chunk=FORMAT.frame_samples)
    return Path(dst)
