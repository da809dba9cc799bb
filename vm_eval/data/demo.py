"""The bundled demo dataset, synthesised by code (no binary blobs in the repo), deterministically, in seconds.

26 clips of 6-26 s, 128x128 px at 25 fps, split train/val/test, every visual event known exactly: hard cuts
(new background texture, colours and shape layout), flashes (1-2 near-white frames), bursts of fast jittering
motion (0.5-1.5 s) and calm stretches (slow drift). Real clips carry synthesised reference music (kick on
every beat, hat on the off-beats, a bass note and a chord per 4-beat bar in a per-clip key), muxed into the
video as its soundtrack and also written as a 44.1 kHz stereo WAV. Beat periods and phases are whole frames,
so every cut, which happens at a frame boundary, lies exactly on a beat. AI-generated clips have the visual
events but no music at all (no audio track).

Layout of `out_dir`: manifest.jsonl, ground_truth.json (clip id -> :class:`ClipTruth` fields), videos/*.mp4,
music/*.wav (16-bit) and the stamp `.complete` (holding DEMO_VERSION), written last. Times are seconds on the
clip's timeline, tempos BPM, rates Hz or frames per second.
"""
from __future__ import annotations

import colorsys
import json
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vm_eval.data.manifest import CATEGORIES, Clip, save_manifest
from vm_eval.fsutil import atomic_write_json, atomic_write_text
from vm_eval.media.audio import Audio
from vm_eval.media.video import write_video

DEMO_VERSION = 1  # bump whenever the generated content changes
FPS = 25  # frames per second
SIZE = 128  # frame width and height, px
SAMPLE_RATE = 44100  # Hz
SPLITS = ("test",) * 10 + ("val",) * 6 + ("train",) * 10  # split of clip i; its category is CATEGORIES[i % 4]
AI_CLIPS = frozenset({3, 6, 9, 12, 18, 23})  # ai-generated clips: no reference music, no audio track
STAMP = ".complete"
_SPF = SAMPLE_RATE // FPS  # audio samples per video frame (1764)
# Beat periods in frames, so beats fall on frame boundaries: 75, 100, 125, 150, 93.75, 83.3, 166.7, 107.1 BPM.
_PERIODS = (20, 15, 12, 10, 16, 18, 9, 14)
_MARGIN = 3  # frames kept free of other events around cuts, flashes and bursts
_MIN_CALM = 12  # frames (0.48 s): shortest calm span recorded
_OWN_ENTRIES = {"manifest.jsonl", "ground_truth.json", "videos", "music", STAMP}
_NOTES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_SUBJECTS = {
    "promo": ("a sports car", "a music festival", "a fitness app", "a new sneaker"),
    "commercial": ("a coffee brand", "a smartphone", "a family SUV", "a travel agency"),
    "compilation": ("skateboarding tricks", "city timelapses", "travel highlights", "goal highlights"),
    "other": ("a cooking tutorial", "a nature documentary", "a product unboxing", "an animated short"),
}
_PHRASE = {"promo": "promo for", "commercial": "commercial for", "compilation": "compilation of",
           "other": "soundtrack for"}


@dataclass(frozen=True)
class ClipTruth:
    """Known events of one demo clip; times in seconds on the clip (= video) timeline, `fps` frames/s.

    `tempo_bpm`, `beat_phase_s` (time of the first beat) and `key` are None and `beat_times` is empty when the
    clip has no reference music. `flash_times` are the first frames of the flashes; spans are (start, end)
    seconds, end exclusive.
    """

    duration_s: float
    tempo_bpm: float | None
    beat_times: list[float]
    beat_phase_s: float | None
    cut_times: list[float]
    flash_times: list[float]
    motion_bursts: list[tuple[float, float]]
    calm_spans: list[tuple[float, float]]
    fps: float
    key: str | None = None


@dataclass
class _Shot:
    """One shot: frames [start, end), a static background, shapes with per-frame centre positions."""

    start: int
    end: int
    background: np.ndarray  # uint8 [SIZE, SIZE, 3]
    shapes: list[tuple[bool, int, np.ndarray]]  # (is_circle, radius px, RGB uint8)
    positions: np.ndarray  # float [end - start, n_shapes, 2]: (x, y) px


@dataclass
class _Plan:
    """Everything about clip `index`; frame numbers at FPS, spans [start, end) in frames."""

    index: int
    n_frames: int
    period: int | None  # beat period, frames (None: no music)
    phase: int | None  # frame of the first beat
    root: int  # pitch class of the key, 0 = C
    minor: bool
    cuts: list[int]
    flashes: list[tuple[int, int]]  # (first frame, length in frames)
    bursts: list[tuple[int, int]]
    calm: list[tuple[int, int]]
    shots: list[_Shot]

    @property
    def beats(self) -> list[int]:
        return [] if self.period is None else list(range(self.phase, self.n_frames, self.period))


def _pick(rng: np.random.Generator, lo: int, hi: int, beats: list[int]) -> int | None:
    """A frame in [lo, hi], on a beat when one fits there; None when the range is empty."""
    if hi < lo:
        return None
    on_beat = [b for b in beats if lo <= b <= hi]
    return int(rng.choice(on_beat)) if on_beat else int(rng.integers(lo, hi + 1))


def _cut_frames(rng: np.random.Generator, n: int, beats: list[int], fast: bool) -> list[int]:
    """Cut frames: shots of 1.4-2.4 s if `fast` else 1.8-4 s (then on the next beat when the clip has
    music); the last shot is at least as long as the shortest."""
    shortest, longest = (36, 60) if fast else (45, 100)  # frames
    cuts, pos = [], 0
    while True:
        target = pos + int(rng.integers(shortest, longest))
        if beats:
            target = next((b for b in beats if b >= target), n)
        if target > n - shortest:
            return cuts
        cuts.append(target)
        pos = target


def _shot_events(rng: np.random.Generator, bounds: list[int], beats: list[int]):
    """Alternate a burst (12-37 frames) and a flash (1-2 frames) across shots, on beats where possible;
    calm spans are what stays event-free (with margins) for at least _MIN_CALM frames."""
    bursts, flashes, calm = [], [], []
    first = int(rng.integers(2))
    for j, (s, e) in enumerate(zip(bounds[:-1], bounds[1:])):
        lo, hi = s + _MARGIN, e - _MARGIN
        busy = []
        if (j + first) % 2 == 0:
            length = min(int(rng.integers(12, 38)), (hi - lo) // 2)
            start = _pick(rng, lo + _MIN_CALM, hi - length, beats) if length >= 12 else None
            if start is not None:
                bursts.append((start, start + length))
                busy.append((start, start + length))
        else:
            length = int(rng.integers(1, 3))
            f = _pick(rng, lo + _MIN_CALM, hi - _MIN_CALM - length, beats)
            if f is not None:
                flashes.append((f, length))
                busy.append((f, f + length))
        edges = [lo] + [x for a, b in busy for x in (a - _MARGIN, b + _MARGIN)] + [hi]
        calm += [(a, b) for a, b in zip(edges[::2], edges[1::2]) if b - a >= _MIN_CALM]
    return bursts, flashes, calm


def _colour(h: float, s: float, v: float) -> np.ndarray:
    return np.array([round(255 * c) for c in colorsys.hsv_to_rgb(h % 1.0, s, v)], dtype=np.uint8)


def _background(rng: np.random.Generator, hue: float, kind: int) -> np.ndarray:
    """A dark-to-mid background (so flashes stand out): solid, stripes, checker, rings or gradient."""
    c1 = _colour(hue, rng.uniform(0.5, 0.9), rng.uniform(0.4, 0.65)).astype(np.float32)
    c2 = c1 * rng.uniform(0.35, 0.6)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    w = int(rng.integers(6, 17))  # texture period, px
    pattern = [np.zeros_like(xx), (xx // w) % 2, (yy // w) % 2, (xx // w + yy // w) % 2,
               (np.hypot(xx - SIZE / 2, yy - SIZE / 2) // w) % 2, (xx + yy) / (2.0 * SIZE)][kind]
    return (c1 + (c2 - c1) * pattern[..., None]).round().astype(np.uint8)


def _trajectories(rng: np.random.Generator, length: int, n_shapes: int, fast: np.ndarray) -> np.ndarray:
    """Centres [length, n_shapes, 2] px: slow drift (<= 0.4 px/frame), jitter of ~7 px/frame where `fast`."""
    steps = np.broadcast_to(rng.uniform(-0.4, 0.4, (1, n_shapes, 2)), (length, n_shapes, 2)).copy()
    steps[0] = 0.0
    steps[fast] = rng.normal(0.0, 7.0, (int(fast.sum()), n_shapes, 2))
    pos = rng.uniform(24, SIZE - 24, (1, n_shapes, 2)) + np.cumsum(steps, axis=0)
    lo, width = 16.0, SIZE - 32.0  # fold (reflect) into [16, SIZE - 16]
    return lo + width - np.abs(np.mod(pos - lo, 2 * width) - width)


def _shots(rng: np.random.Generator, bounds: list[int], bursts: list[tuple[int, int]]) -> list[_Shot]:
    """Looks of consecutive shots differ completely: hue turned by 0.3-0.7, another texture, new shapes."""
    shots, hue, kind, prev = [], rng.uniform(), -1, None
    for s, e in zip(bounds[:-1], bounds[1:]):
        while True:
            hue = (hue + rng.uniform(0.3, 0.7)) % 1.0
            kind = (kind + int(rng.integers(1, 6))) % 6
            bg = _background(rng, hue, kind)
            if prev is None or np.abs(bg.astype(np.int16) - prev).mean() > 35:
                break
        n_shapes = int(rng.integers(2, 5))
        shapes = [(bool(rng.integers(2)), int(rng.integers(7, 17)),
                   _colour(hue + 0.5 + rng.uniform(-0.1, 0.1), 0.5, 0.97)) for _ in range(n_shapes)]
        fast = np.zeros(e - s, dtype=bool)
        for a, b in bursts:
            fast[max(a, s) - s : max(min(b, e) - s, 0)] = True
        shots.append(_Shot(s, e, bg, shapes, _trajectories(rng, e - s, n_shapes, fast)))
        prev = bg
    return shots


def _plan(index: int) -> _Plan:
    """The deterministic plan of clip `index` (its own RNG seeded with [DEMO_VERSION, index])."""
    rng = np.random.default_rng([DEMO_VERSION, index])
    n = int(FPS * (rng.uniform(18, 26) if index % 9 == 4 else rng.uniform(6, 12)))
    period = None if index in AI_CLIPS else _PERIODS[index % len(_PERIODS)]
    phase = None if period is None else int(rng.integers(period))
    beats = [] if period is None else list(range(phase, n, period))
    fast_cuts = bool(rng.random() < 0.4)
    for _ in range(100):  # redraw until the clip has a cut, a burst, a flash and a calm span
        cuts = _cut_frames(rng, n, beats, fast_cuts)
        bounds = [0, *cuts, n]
        bursts, flashes, calm = _shot_events(rng, bounds, beats)
        if cuts and bursts and flashes and calm:
            break
    else:
        raise RuntimeError(f"demo clip {index}: no event plan found")
    return _Plan(index, n, period, phase, int(rng.integers(12)), bool(rng.integers(2)), cuts, flashes, bursts,
                 calm, _shots(rng, bounds, bursts))


def _frames(plan: _Plan) -> Iterator[np.ndarray]:
    """Render the clip frame by frame (uint8 [SIZE, SIZE, 3]); flashes are near-white (240-255)."""
    flash = {f + i for f, length in plan.flashes for i in range(length)}
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    for shot in plan.shots:
        for k in range(shot.start, shot.end):
            img = shot.background.copy()
            for (circle, r, rgb), (x, y) in zip(shot.shapes, shot.positions[k - shot.start]):
                cx, cy = int(round(x)), int(round(y))
                if circle:
                    img[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = rgb
                else:
                    img[max(cy - r, 0) : cy + r, max(cx - r, 0) : cx + r] = rgb
            yield (240 + img // 17).astype(np.uint8) if k in flash else img


def _add(track: np.ndarray, sound: np.ndarray, at: int) -> None:
    """Mix `sound` into `track` (both [..., samples]) from sample `at`, cut at the track's end."""
    m = min(sound.shape[-1], track.shape[-1] - at)
    if m > 0:
        track[..., at : at + m] += sound[..., :m]


def _bar_sound(hz: float, minor: bool, spb: int) -> np.ndarray:
    """One 4-beat bar [2, 4 * spb samples]: bass note at `hz` Hz (decaying) and a soft triad 2 octaves up
    (80 ms attack, 20 ms release; the right channel detuned by 0.7 Hz for width)."""
    tb = np.arange(4 * spb) / SAMPLE_RATE
    bass = 0.4 * (np.sin(2 * np.pi * hz * tb) + 0.3 * np.sin(4 * np.pi * hz * tb))
    bass *= np.minimum(1, tb / 0.005) * np.exp(-tb / (2.5 * spb / SAMPLE_RATE))
    env = 0.05 * np.minimum(1, tb / 0.08) * np.minimum(1, (4 * spb - np.arange(4 * spb)) / 882)
    chord = (0, 3, 7) if minor else (0, 4, 7)
    pad = [env * sum(np.sin(2 * np.pi * (hz * 4 * 2 ** (c / 12) + detune) * tb) for c in chord)
           for detune in (0.0, 0.7)]
    return np.stack([bass + pad[0], bass + pad[1]])


def _music(plan: _Plan) -> Audio:
    """Stereo reference music at SAMPLE_RATE on the clip's beat grid, peak-normalised to 0.8 full scale."""
    rng = np.random.default_rng([DEMO_VERSION, plan.index, 1])
    n, spb = plan.n_frames * _SPF, plan.period * _SPF  # samples in all, samples per beat
    t = np.arange(int(0.35 * SAMPLE_RATE)) / SAMPLE_RATE
    kick = np.sin(2 * np.pi * np.cumsum(45 + 80 * np.exp(-t / 0.025)) / SAMPLE_RATE) * np.exp(-t / 0.1)
    kick += 0.5 * np.sin(2 * np.pi * 1800 * t) * np.exp(-t / 0.003)  # beater click: a crisp onset
    th = t[: int(0.06 * SAMPLE_RATE)]
    hat = 0.15 * np.diff(rng.standard_normal(len(th) + 1)) * np.exp(-th / 0.012)
    mix = np.zeros((2, n))
    for b in plan.beats:
        _add(mix, kick, b * _SPF)
        _add(mix, np.stack([0.7 * hat, 0.45 * hat]), b * _SPF + spb // 2)  # off-beat hat, panned left
    progression = (0, 8, 3, 10) if plan.minor else (0, 9, 5, 7)  # i-VI-III-VII / I-vi-IV-V, in semitones
    bars: dict[int, np.ndarray] = {}  # a bar's sound depends only on its step in the progression
    for bar, start in enumerate(plan.beats[::4]):
        if bar % 4 not in bars:
            note = 36 + plan.root + progression[bar % 4]  # MIDI, octave 2
            bars[bar % 4] = _bar_sound(440.0 * 2 ** ((note - 69) / 12), plan.minor, spb)
        _add(mix, bars[bar % 4], start * _SPF)
    mix = np.round(0.8 * 32767 * mix / np.abs(mix).max()) / 32767  # on the 16-bit grid: the WAV is exact
    return Audio(mix.astype(np.float32), SAMPLE_RATE)


def _caption(plan: _Plan, category: str) -> str:
    """Short text prompt, e.g. 'upbeat promo for a sports car with fast cuts'."""
    fast = plan.n_frames / (len(plan.cuts) + 1) / FPS < 2.5  # mean shot length, s
    if plan.period is None:
        mood = "punchy" if fast else "dreamy"
    else:
        bpm = 60 * FPS / plan.period
        mood = "energetic" if bpm >= 140 else "upbeat" if bpm >= 110 else "steady" if bpm >= 90 else "calm"
    subject = _SUBJECTS[category][plan.index // 4 % 4]
    return f"{mood} {_PHRASE[category]} {subject} with {'fast' if fast else 'slow'} cuts"


def _truth(plan: _Plan) -> dict:
    """The ground-truth record of a clip (JSON-ready :class:`ClipTruth` fields)."""
    sec = lambda f: f / FPS  # noqa: E731 - frames to seconds
    music = plan.period is not None
    return {
        "duration_s": sec(plan.n_frames), "fps": float(FPS),
        "tempo_bpm": 60 * FPS / plan.period if music else None,
        "beat_phase_s": sec(plan.phase) if music else None,
        "beat_times": [sec(b) for b in plan.beats],
        "key": f"{_NOTES[plan.root]} {'minor' if plan.minor else 'major'}" if music else None,
        "cut_times": [sec(c) for c in plan.cuts],
        "flash_times": [sec(f) for f, _ in plan.flashes],
        "motion_bursts": [[sec(a), sec(b)] for a, b in plan.bursts],
        "calm_spans": [[sec(a), sec(b)] for a, b in plan.calm],
    }


def _write_pcm16(path: Path, audio: Audio) -> None:
    """16-bit PCM WAV. Not `write_wav`: libsndfile stamps float WAVs with the wall-clock time (PEAK
    chunk), so files would differ from run to run; 16-bit WAVs carry no such chunk (and are half the size)."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio.samples.T, audio.sample_rate, subtype="PCM_16", format="WAV")


def _make_clip(root: Path, i: int) -> tuple[Clip, dict]:
    """Write clip i's video (and music) under `root`; return its manifest row and ground-truth record."""
    plan, cid, category = _plan(i), f"demo-{i:03d}", CATEGORIES[i % 4]
    music = _music(plan) if plan.period is not None else None
    write_video(root / "videos" / f"{cid}.mp4", _frames(plan), FPS, audio=music)
    if music is not None:
        _write_pcm16(root / "music" / f"{cid}.wav", music)
    clip = Clip(
        id=cid, video=f"videos/{cid}.mp4", reference=f"music/{cid}.wav" if music is not None else None,
        start=0.0, end=plan.n_frames / FPS, split=SPLITS[i], category=category,
        source="real" if music is not None else "ai-generated",
        caption=_caption(plan, category) if i % 3 != 2 else None,
    )
    return clip, _truth(plan)


def _generate(root: Path, progress: Callable[[int, int], None] | None) -> None:
    """Write every clip (a few in parallel: each file is independent, so its bytes do not depend on the
    order), then the manifest, the ground truth and last the stamp."""
    clips, truth = [], {}
    pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1))  # PyAV encodes without the GIL
    try:
        for done, (clip, record) in enumerate(pool.map(lambda i: _make_clip(root, i), range(len(SPLITS))), 1):
            clips.append(clip)
            truth[clip.id] = record
            if progress is not None:
                progress(done, len(SPLITS))
    finally:
        pool.shutdown(cancel_futures=True)
    save_manifest(root / "manifest.jsonl", clips)
    atomic_write_json(root / "ground_truth.json", truth)
    atomic_write_text(root / STAMP, f"{DEMO_VERSION}\n")  # last: its presence means the dataset is complete


def is_complete(root: str | Path) -> bool:
    """True when `root` holds a finished demo dataset of the current DEMO_VERSION."""
    stamp = Path(root) / STAMP
    try:
        return stamp.read_text().strip() == str(DEMO_VERSION) and (Path(root) / "manifest.jsonl").is_file()
    except OSError:
        return False


def make_demo(
    out_dir: str | Path, force: bool = False, progress: Callable[[int, int], None] | None = None
) -> Path:
    """Materialise the demo dataset under `out_dir` and return its manifest path (out_dir/manifest.jsonl).

    Idempotent: returns at once when `out_dir` already holds a complete dataset of DEMO_VERSION, unless
    `force`. The dataset is built in a hidden sibling folder and renamed into place, so an interrupted run
    never leaves a dataset that looks complete. An existing `out_dir` is replaced only if it holds nothing but
    demo files (else FileExistsError). `progress(done, total)` is called after each clip.
    """
    out = Path(out_dir)
    if not force and is_complete(out):
        return out / "manifest.jsonl"
    if out.exists() and not (out.is_dir() and {p.name for p in out.iterdir()} <= _OWN_ENTRIES):
        raise FileExistsError(f"{out}: exists and is not a demo dataset; refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = (out.parent / f".{out.name}.{tag}-{os.getpid()}" for tag in ("partial", "old"))
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _generate(tmp, progress)
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return out / "manifest.jsonl"


def load_ground_truth(root: str | Path) -> dict[str, ClipTruth]:
    """Read root/ground_truth.json into {clip id: ClipTruth}."""
    raw = json.loads((Path(root) / "ground_truth.json").read_text())
    return {
        cid: ClipTruth(**{**r, "motion_bursts": [tuple(s) for s in r["motion_bursts"]],
                          "calm_spans": [tuple(s) for s in r["calm_spans"]]})
        for cid, r in raw.items()
    }
