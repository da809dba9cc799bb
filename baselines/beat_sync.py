"""`beat-sync`: a procedural, rhythm-only lower bound that needs no weights (numpy + OpenCV, ~1 s per clip).

It knows nothing about a video's content, only when its picture changes, and puts a drum groove on those
changes. What a learned system should beat on every semantic and quality metric while matching it on rhythm.

Algorithm, per clip (times in seconds from the clip's start, tempos in beats per minute):

1. Change detection (:meth:`BeatSync.changes`): the clip's frames at ``fps`` (25 frames/s) and ``size``
   (64 x 64 px), through :class:`metrics.visual_change.FrameDiffChanges` (cuts and flash onsets;
   ``detector="framediff"``, default) or :class:`metrics.visual_change.SceneCuts` (``detector="cuts"``).
2. Tempo and phase (:func:`choose_grid`, pure): with fewer than 2 changes, ``default_bpm`` (120) with a beat
   on the only change (or at 0 s). Otherwise candidate beat periods are the median inter-change interval and
   every single interval, each folded by octaves (x2, /2) into [min_bpm, max_bpm] (70-160 BPM); each is
   given the phase that puts the most changes within ``tol_s`` (0.07 s) of a beat, and the candidate with
   the most changes on its grid wins (ties: nearest to the folded median). Period and phase are then refined
   by least squares on the changes that lie on the grid. The beat nearest the first change is a downbeat.
3. Score (:func:`make_score`): 4/4 bars; kick on beats 1 and 3, snare on 2 and 4, hats on eighth notes, a
   bass note per beat and a sustained chord per bar from a progression and key drawn with the clip's seed
   (``clip.rng()``); at every change, on the grid or not, an accent: kick + crash + chord stab.
4. Synthesis (:func:`render`): numpy oscillators and seeded noise, stereo float32 at 32000 Hz, exactly
   round(duration_s * 32000) samples, peak-normalised to -1 dBFS. Same clip seed, same samples.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from vm_eval.errors import BadArgument

SAMPLE_RATE = 32000  # Hz
PEAK_DBFS = -1.0  # output peak level
# Chord progressions, one chord per bar: (root in semitones above the key's tonic, "maj" | "min").
PROGRESSIONS: tuple[tuple[tuple[int, str], ...], ...] = (
    ((0, "maj"), (7, "maj"), (9, "min"), (5, "maj")),  # I V vi IV
    ((9, "min"), (5, "maj"), (0, "maj"), (7, "maj")),  # vi IV I V
    ((0, "maj"), (9, "min"), (5, "maj"), (7, "maj")),  # I vi IV V
    ((2, "min"), (7, "maj"), (0, "maj"), (0, "maj")),  # ii V I I
    ((0, "min"), (8, "maj"), (3, "maj"), (10, "maj")),  # i VI III VII
    ((0, "min"), (5, "min"), (8, "maj"), (7, "maj")),  # i iv VI V
)
_TRIADS = {"maj": (0, 4, 7, 12), "min": (0, 3, 7, 12)}
_PAN = {"hat": 0.3, "crash": -0.25}  # -1 left .. +1 right; everything else in the centre


@dataclass(frozen=True)
class Grid:
    """A beat grid: beats at phase_s + k * period_s (k >= 0, phase_s in [0, period_s)); beat `downbeat` (0-3)
    is the first beat of a bar."""

    bpm: float
    phase_s: float
    downbeat: int = 0

    @property
    def period_s(self) -> float:
        return 60.0 / self.bpm

    def beats(self, duration_s: float) -> np.ndarray:
        return np.arange(self.phase_s, duration_s, self.period_s)


@dataclass(frozen=True)
class Note:
    """One sound of the score: `kind` in kick, snare, hat, crash, bass, pad, stab; `freqs` in Hz (tonal
    kinds); `gain` linear amplitude; `length_s` for tonal kinds."""

    time_s: float
    kind: str
    gain: float
    length_s: float = 0.0
    freqs: tuple[float, ...] = ()


def fold_period(period_s: float, min_bpm: float, max_bpm: float) -> float:
    """`period_s` doubled or halved until its tempo lies in [min_bpm, max_bpm] (max_bpm >= 2 min_bpm)."""
    p = float(period_s)
    while 60.0 / p < min_bpm:
        p /= 2.0
    while 60.0 / p > max_bpm:
        p *= 2.0
    return p


def _circ(x: np.ndarray, period: float) -> np.ndarray:
    """Signed distance of x to the nearest multiple of `period`."""
    return x - period * np.round(x / period)


def _best_phase(changes: np.ndarray, period: float, tol_s: float) -> tuple[float, np.ndarray]:
    """(phase in [0, period), inlier mask): the phase of one change that puts the most changes within tol_s of
    the grid (ties: the earliest change), refined as the circular mean of those changes' phases."""
    ph = np.mod(changes, period)
    counts = [(np.abs(_circ(ph - p, period)) <= tol_s + 1e-9).sum() for p in ph]
    p0 = ph[int(np.argmax(counts))]
    inliers = np.abs(_circ(ph - p0, period)) <= tol_s + 1e-9
    return float(np.mod(p0 + _circ(ph[inliers] - p0, period).mean(), period)), inliers


def choose_grid(
    changes: np.ndarray, min_bpm: float = 70.0, max_bpm: float = 160.0, default_bpm: float = 120.0,
    tol_s: float = 0.07,
) -> Grid:
    """The beat grid for change times `changes` (s): see the module docstring, step 2 (pure)."""
    c = np.sort(np.asarray(changes, dtype=np.float64).ravel())
    if c.size < 2:
        phase = float(np.mod(c[0], 60.0 / default_bpm)) if c.size else 0.0
        return Grid(float(default_bpm), phase, _downbeat(phase, 60.0 / default_bpm, c))
    iv = np.diff(c)
    iv = iv[iv > 1e-6]
    if iv.size == 0:
        return choose_grid(c[:1], min_bpm, max_bpm, default_bpm, tol_s)
    median = fold_period(float(np.median(iv)), min_bpm, max_bpm)
    cands = [median] + [fold_period(float(x), min_bpm, max_bpm) for x in iv]
    scored = [(int(_best_phase(c, p, tol_s)[1].sum()), -abs(np.log(p / median)), p) for p in cands]
    period = max(scored)[2]
    phase, inliers = _best_phase(c, period, tol_s)
    k = np.round((c[inliers] - phase) / period)
    if np.unique(k).size >= 3:  # least-squares refinement of c = phase + k * period on the grid's changes
        slope, icpt = np.polyfit(k, c[inliers], 1)
        if min_bpm <= 60.0 / slope <= max_bpm:
            period, phase = float(slope), float(np.mod(icpt, slope))
    phase = 0.0 if period - phase < 1e-9 else phase  # np.mod rounding: a phase of one period is 0
    return Grid(60.0 / period, phase, _downbeat(phase, period, c))


def _downbeat(phase: float, period: float, changes: np.ndarray) -> int:
    """Index (0-3) of the first downbeat: the beat nearest the first change starts a bar."""
    if changes.size == 0:
        return 0
    return int(max(round((changes[0] - phase) / period), 0)) % 4


def make_score(grid: Grid, changes: np.ndarray, duration_s: float, rng: np.random.Generator) -> list[Note]:
    """A clip's notes: groove, bass and chords on `grid`, accents on every change (module docstring, 3)."""
    tonic = int(rng.integers(12))
    prog = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    hz = lambda midi: 440.0 * 2.0 ** ((midi - 69) / 12.0)  # noqa: E731

    def chord(bar: int, octave_midi: int) -> tuple[float, ...]:
        off, quality = prog[bar % len(prog)]
        root = octave_midi + (tonic + off) % 12
        return tuple(hz(root + i) for i in _TRIADS[quality])

    p = grid.period_s
    changes = np.asarray(changes, dtype=np.float64)
    notes: list[Note] = []
    for k, t in enumerate(grid.beats(duration_s).tolist()):
        pos, bar = (k - grid.downbeat) % 4, (k - grid.downbeat) // 4
        accented = changes.size and np.min(np.abs(changes - t)) < 0.03
        if pos in (0, 2) and not accented:
            notes.append(Note(t, "kick", 0.9 if pos == 0 else 0.75))
        if pos in (1, 3):
            notes.append(Note(t, "snare", 0.55))
        notes += [Note(t, "hat", 0.22), Note(t + p / 2, "hat", 0.13)]
        notes.append(Note(t, "bass", 0.45, 0.9 * p, chord(bar, 36)[:1]))
        if pos == 0 or k == 0:  # a pad per bar (and one for the partial bar the clip may start in)
            notes.append(Note(t, "pad", 0.12, (4 - pos) * p, chord(bar, 48)))
    first = grid.beats(duration_s)[:1]
    if first.size and first[0] > 0.05:  # the stretch before the first beat: a pad on the previous bar's chord
        notes.append(Note(0.0, "pad", 0.12, float(first[0]), chord((-1 - grid.downbeat) // 4, 48)))
    for t in changes:
        bar = int(round((t - grid.phase_s) / p - grid.downbeat)) // 4
        notes += [Note(float(t), "kick", 1.0), Note(float(t), "crash", 0.35),
                  Note(float(t), "stab", 0.3, 0.4, chord(bar, 60))]
    return sorted((n for n in notes if 0.0 <= n.time_s < duration_s), key=lambda n: (n.time_s, n.kind))


def _drums(rng: np.random.Generator, sr: int) -> dict[str, np.ndarray]:
    """One sample per drum kind, from the clip's seeded noise."""
    def t(length_s: float) -> np.ndarray:
        return np.arange(int(length_s * sr)) / sr

    def noise(length_s: float, diffs: int) -> np.ndarray:
        x = np.diff(rng.standard_normal(int(length_s * sr) + diffs), n=diffs)  # differencing = high-pass
        return x / np.max(np.abs(x))

    tk = t(0.35)
    kick = np.sin(2 * np.pi * np.cumsum(45.0 + 80.0 * np.exp(-tk / 0.035)) / sr) * np.exp(-tk / 0.13)
    kick[: int(0.002 * sr)] += 0.3 * noise(0.002, 1)
    ts = t(0.25)
    snare = 0.6 * noise(0.25, 1) * np.exp(-ts / 0.06)
    snare += 0.5 * np.sin(2 * np.pi * 185.0 * ts) * np.exp(-ts / 0.04)
    hat = noise(0.06, 2) * np.exp(-t(0.06) / 0.014)
    tc = t(1.6)
    crash = noise(1.6, 2) * np.exp(-tc / 0.45) * np.minimum(tc / 0.002, 1.0)
    return {"kick": kick, "snare": snare, "hat": hat, "crash": crash}


def _tone(freqs: tuple[float, ...], length_s: float, kind: str, sr: int) -> np.ndarray:
    """A bass note (sine + 2nd harmonic), a pad (4-harmonic saw, slow attack) or a stab (same, fast decay)."""
    n = max(int(length_s * sr), 1)
    t = np.arange(n) / sr
    harmonics = ((1, 1.0), (2, 0.3)) if kind == "bass" else ((1, 1.0), (2, 0.5), (3, 0.33), (4, 0.25))
    wave = sum(a * np.sin(2 * np.pi * h * f * t) for f in freqs for h, a in harmonics) / len(freqs)
    attack = {"bass": 0.005, "pad": 0.08, "stab": 0.003}[kind]
    decay = {"bass": 0.6 * length_s, "pad": 4.0 * length_s, "stab": 0.15}[kind]
    release = np.clip((length_s - t) / 0.01, 0.0, 1.0)  # 10 ms fade at the note's end: no clicks
    return wave * np.minimum(t / attack, 1.0) * np.exp(-t / decay) * release


def render(notes: list[Note], duration_s: float, rng: np.random.Generator, sr: int = SAMPLE_RATE,
           stereo: bool = True) -> np.ndarray:
    """float32 [channels, round(duration_s * sr)] of the score, peak-normalised to PEAK_DBFS."""
    n = int(round(duration_s * sr))
    out = np.zeros((2, n))
    bank = _drums(rng, sr)
    for note in notes:
        sound = bank.get(note.kind)
        if sound is None:
            sound = _tone(note.freqs, note.length_s, note.kind, sr)
        a = int(round(note.time_s * sr))
        if a >= n:
            continue
        seg = note.gain * sound[: n - a]
        angle = (_PAN.get(note.kind, 0.0) + 1.0) * np.pi / 4
        out[0, a: a + seg.size] += np.cos(angle) * seg
        out[1, a: a + seg.size] += np.sin(angle) * seg
    out = np.nan_to_num(out if stereo else out.mean(axis=0, keepdims=True))
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    if peak > 0:
        out *= 10.0 ** (PEAK_DBFS / 20.0) / peak
    return out.astype(np.float32)


class BeatSync:
    """Procedural drums, bass and chords on a beat grid locked to the video's changes (module docstring).

    Options: `fps` and `size` (width, height px) of the analysed frames, `detector` ("framediff" or "cuts"),
    tempo range `min_bpm`-`max_bpm` (max >= 2 x min) and `default_bpm` (fewer than 2 changes), `tol_s` (how
    close a change must be to a beat to count as on the grid), `stereo`.
    """

    def __init__(self, fps: float = 25.0, size: tuple[int, int] = (64, 64), detector: str = "framediff",
                 min_bpm: float = 70.0, max_bpm: float = 160.0, default_bpm: float = 120.0,
                 tol_s: float = 0.07, stereo: bool = True) -> None:
        from metrics.visual_change import FrameDiffChanges, SceneCuts
        from vm_eval.models.api import ModelInfo

        if detector not in ("framediff", "cuts"):
            raise BadArgument(f"detector must be 'framediff' or 'cuts', got {detector!r}")
        if not (0 < min_bpm and max_bpm >= 2 * min_bpm):
            raise BadArgument(f"need 0 < min_bpm and max_bpm >= 2 * min_bpm, got {min_bpm}-{max_bpm} BPM")
        self.fps, self.size = float(fps), (int(size[0]), int(size[1]))
        self.min_bpm, self.max_bpm, self.default_bpm = float(min_bpm), float(max_bpm), float(default_bpm)
        self.tol_s, self.stereo = float(tol_s), bool(stereo)
        self.detector = (FrameDiffChanges(fps=self.fps, size=self.size) if detector == "framediff"
                         else SceneCuts(fps=self.fps, size=self.size))
        self.info = ModelInfo(name="beat-sync", family="reference", sample_rate=SAMPLE_RATE,
                              extra={"procedural": "rhythm-only lower bound",
                                     "detector": self.detector.info.name,
                                     "fps": self.fps, "size": list(self.size),
                                     "bpm_range": [self.min_bpm, self.max_bpm]})

    def checkpoints(self) -> list[dict]:
        return []

    def changes(self, clip) -> np.ndarray:
        """Visual change times (s) of a clip, within [0, duration)."""
        t = self.detector(clip.frames(self.fps, self.size), self.fps)
        return t[t < clip.duration_s]

    def compose(self, clip) -> tuple[Grid, list[Note], np.random.Generator]:
        """(grid, score, the clip's generator after drawing the score: it then seeds the drum noise)."""
        changes = self.changes(clip)
        grid = choose_grid(changes, self.min_bpm, self.max_bpm, self.default_bpm, self.tol_s)
        rng = clip.rng()
        return grid, make_score(grid, changes, clip.duration_s, rng), rng

    def generate(self, batch):
        out = []
        for clip in batch:
            try:
                _, notes, rng = self.compose(clip)
                out.append((render(notes, clip.duration_s, rng, SAMPLE_RATE, self.stereo), SAMPLE_RATE))
            except Exception as e:  # a media error fails that clip alone
                out.append(e)
        return out
