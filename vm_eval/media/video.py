"""Video through PyAV (bundled FFmpeg): probe, decode frames at a fixed rate, encode, cut, mux a soundtrack.

Times in seconds, rates in frames per second, frames uint8 RGB shaped [T, H, W, 3]. Encoding uses libx264 with
one thread so the same frames always give the same bytes (x264's output depends on its thread count).
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from vm_eval.fsutil import atomic_target
from vm_eval.media.audio import Audio
from vm_eval.media.errors import MediaError


@dataclass(frozen=True)
class VideoInfo:
    path: str
    duration_s: float
    fps: float
    width: int
    height: int
    has_audio: bool
    audio_sample_rate: int | None = None
    audio_channels: int | None = None


@dataclass(frozen=True)
class DecodedExtent:
    """How far a video's picture stream really decodes: `frames` frames, the last one shown until `end_s`
    seconds (its time plus one frame at `fps`); `error` is the decoder error that stopped it early, if any."""

    end_s: float
    frames: int
    fps: float
    error: str | None = None


@contextmanager
def _open(path: str | Path):
    import av

    p = Path(path)
    if not p.is_file():
        raise MediaError(p, "file not found")
    if p.stat().st_size == 0:
        raise MediaError(p, "file is empty (0 bytes)")
    try:
        container = av.open(str(p))
    except Exception as e:
        raise MediaError(p, f"cannot open as media ({type(e).__name__}: {e})") from e
    try:
        yield container
    finally:
        container.close()


def probe_video(path: str | Path) -> VideoInfo:
    """Duration, rate, size and audio facts of a video; raises :class:`MediaError` if it has no video stream."""
    with _open(path) as c:
        if not c.streams.video:
            raise MediaError(path, "has no video stream")
        v = c.streams.video[0]
        fps = _fps(v)
        if v.duration is not None and v.time_base is not None:
            duration = float(v.duration * v.time_base)
        elif c.duration is not None:
            duration = c.duration / 1_000_000
        elif v.frames:
            duration = v.frames / fps
        else:
            duration = 0.0
        a = c.streams.audio[0] if c.streams.audio else None
        return VideoInfo(
            path=str(path), duration_s=duration, fps=fps, width=v.width, height=v.height, has_audio=a is not None,
            audio_sample_rate=a.rate if a else None, audio_channels=a.channels if a else None,
        )


def _fps(stream) -> float:
    return float(stream.average_rate or stream.guessed_rate or 0) or 25.0


def probe_decodable(path: str | Path) -> DecodedExtent:
    """Decode every frame of the picture stream (no pixel conversion) to find where decoding really ends.

    The header cannot tell: a faststart mp4 cut short keeps its whole header, so it declares the full duration
    while its frames stop early. Raises :class:`MediaError` when no frame decodes.
    """
    with _open(path) as c:
        if not c.streams.video:
            raise MediaError(path, "has no video stream")
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        frames, last, error = 0, 0.0, None
        try:
            for frame in c.decode(stream):
                frames += 1
                last = max(last, frame.time or 0.0)
        except Exception as e:  # where decoding stops is the answer being sought, not a failure
            error = f"{type(e).__name__}: {e}"
        fps = _fps(stream)
    if not frames:
        raise MediaError(path, "video stream holds no decodable frames" + (f" ({error})" if error else ""))
    # frames / fps stands in where frames carry no timestamps (some raw streams)
    return DecodedExtent(end_s=max(last + 1.0 / fps, frames / fps), frames=frames, fps=fps, error=error)


def decode_frames(
    path: str | Path,
    fps: float,
    size: tuple[int, int] | None = None,
    start_s: float = 0.0,
    end_s: float | None = None,
) -> np.ndarray:
    """Frames shown at times start_s + k / fps (sample and hold), resized to `size` = (width, height).

    Returns uint8 [T, H, W, 3] with T = floor((end_s - start_s) * fps) (end_s defaults to the video's end).
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    info = probe_video(path)
    end = info.duration_s if end_s is None else min(end_s, info.duration_s)
    n = int(math.floor((end - start_s) * fps + 1e-6))
    if n <= 0:
        raise MediaError(path, f"no frames in the span {start_s:.3f}-{end:.3f} s (video lasts {info.duration_s:.3f} s)")
    targets = start_s + np.arange(n) / fps
    kwargs = {"format": "rgb24"}
    if size is not None:
        kwargs.update(width=int(size[0]), height=int(size[1]))
    out: list[np.ndarray] = []
    with _open(path) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        prev, prev_arr, k = None, None, 0
        try:
            if start_s > 0:
                c.seek(int(start_s / stream.time_base), stream=stream, backward=True, any_frame=False)
            for frame in c.decode(stream):
                t = frame.time if frame.time is not None else 0.0
                while k < n and targets[k] < t - 1e-6:
                    src = prev if prev is not None else frame
                    if prev_arr is None or src is not prev:
                        prev_arr = src.to_ndarray(**kwargs)
                    out.append(prev_arr)
                    k += 1
                if k >= n:
                    break
                prev, prev_arr = frame, None
        except Exception as e:
            raise MediaError(path, f"video decoding failed after {len(out)} frames ({type(e).__name__}: {e})") from e
        if prev is None:
            raise MediaError(path, "video stream holds no decodable frames")
        last = prev.to_ndarray(**kwargs)
        out.extend([last] * (n - k))
    return np.stack(out)


def _iter_frames(path: str | Path, start_s: float, end_s: float | None) -> Iterator[np.ndarray]:
    with _open(path) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in c.decode(stream):
            t = frame.time or 0.0
            if t < start_s - 1e-6:
                continue
            if end_s is not None and t >= end_s - 1e-6:
                break
            yield frame.to_ndarray(format="rgb24")


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float,
    audio: Audio | None = None,
    crf: int = 20,
) -> Path:
    """Encode RGB frames (H.264, yuv420p) with an optional AAC soundtrack, atomically.

    The soundtrack is trimmed or padded with silence to the video's length.
    """
    import av

    rate = Fraction(fps).limit_denominator(1001)
    n_frames = 0
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise ValueError("write_video got no frames")
    with atomic_target(path) as tmp:
        with av.open(tmp, "w", format="mp4") as c:
            h, w = first.shape[:2]
            vs = c.add_stream("libx264", rate=rate)
            vs.width, vs.height, vs.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
            vs.options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
            vs.codec_context.thread_count = 1
            ast = _add_audio_stream(c, audio) if audio is not None else None  # all streams before the first mux
            for arr in itertools.chain([first], it):
                arr = np.ascontiguousarray(arr[: vs.height, : vs.width], dtype=np.uint8)
                for pkt in vs.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                    c.mux(pkt)
                n_frames += 1
            for pkt in vs.encode(None):
                c.mux(pkt)
            if audio is not None:
                encode_audio(c, ast, audio.fit_length(n_frames / float(rate)))
    return Path(path)


def _add_audio_stream(container, audio: Audio):
    layout = "mono" if audio.channels == 1 else "stereo"
    st = container.add_stream("aac", rate=audio.sample_rate, layout=layout)
    st.codec_context.thread_count = 1
    return st


def encode_audio(container, st, audio: Audio, chunk: int = 1024) -> None:
    """Encode `audio` into stream `st` of `container` in frames of `chunk` samples (pts in samples), then flush.
    Codecs with a fixed frame size (Opus: 960 at 48 kHz) need `chunk` equal to it."""
    import av

    layout = st.layout.name
    samples = audio.samples[:2] if layout == "stereo" else audio.mono().samples
    for i in range(0, samples.shape[1], chunk):
        block = np.ascontiguousarray(samples[:, i : i + chunk], dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=layout)
        frame.sample_rate = audio.sample_rate
        frame.pts = i
        for pkt in st.encode(frame):
            container.mux(pkt)
    for pkt in st.encode(None):
        container.mux(pkt)


def cut_video(src: str | Path, dst: str | Path, start_s: float = 0.0, end_s: float | None = None) -> Path:
    """Re-encode the span [start_s, end_s) of `src` to `dst` with no audio track (what models receive)."""
    info = probe_video(src)
    try:
        return write_video(dst, _iter_frames(src, start_s, end_s), info.fps)
    except ValueError as e:
        raise MediaError(src, f"no frames in the span {start_s:.3f}-{end_s} s") from e


def mux_audio(video: str | Path, audio: Audio, dst: str | Path) -> Path:
    """Copy `video`'s picture stream (no re-encode) and add `audio` as its only soundtrack, fitted to its length."""
    import av

    info = probe_video(video)
    with atomic_target(dst) as tmp:
        with _open(video) as src, av.open(tmp, "w", format="mp4") as out:
            vin = src.streams.video[0]
            vout = out.add_stream_from_template(vin)
            ast = _add_audio_stream(out, audio)
            for pkt in src.demux(vin):
                if pkt.dts is None:
                    continue
                pkt.stream = vout
                out.mux(pkt)
            encode_audio(out, ast, audio.fit_length(info.duration_s))
    return Path(dst)
