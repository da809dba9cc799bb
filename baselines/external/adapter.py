"""The shape every published-system adapter shares: facts about upstream, configuration, per-clip subprocess runs.

An adapter subclasses :class:`ExternalSystem`, states its :class:`UpstreamSpec` and implements
:meth:`ExternalSystem.generate_clip`: write upstream's inputs into a fresh work folder, run its documented entry
point with :meth:`run` (its interpreter, a timeout, a kept log), and return :meth:`collect_audio` /
:meth:`collect_midi` of the file it wrote. Each clip runs in its own upstream process with the clip's own seed,
so a clip's output never depends on which other clips were in the batch (upstream loads its model per call;
that is the price of per-clip seeds). One clip's failure is that clip's record; the run goes on.
"""
from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from baselines.external.config import SystemConfig, load_system_config
from baselines.external.midi import RENDER_RATE, midi_duration_s, render_midi, soundfont_identity
from baselines.external.process import Finished, UpstreamError, run_upstream, seeded_argv
from vm_eval.errors import UserError

DEFAULT_TIMEOUT_S = 1800.0  # per clip; a 7B model on a cold GPU needs minutes to load


@dataclass(frozen=True)
class CheckpointSpec:
    """A checkpoint upstream needs: `kind` "file" or "dir" (then `files` must be inside it)."""

    role: str
    description: str
    how_to_get: str
    kind: str = "file"
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class UpstreamSpec:
    """What an adapter was written against. `commit` is the upstream commit whose CLI and outputs it mirrors."""

    name: str
    title: str
    repo: str
    commit: str
    licence: str
    output: str  # "audio" or "midi"
    entry_point: str  # path inside the checkout that must exist
    environment: str  # upstream's stated interpreter / torch, for `vm-eval baselines check`
    checkpoints: tuple[CheckpointSpec, ...]
    sample_rate: int | None = None  # declared rate of upstream's audio output (Hz); MIDI systems: None
    max_duration_s: float | None = None  # longest clip upstream generates for, seconds
    duration_tolerance_s: float = 1.0  # audio outputs: |output - clip| allowed before the clip fails
    min_midi_coverage: float = 0.5  # MIDI outputs: shorter than this share of the clip fails (padding hides less)
    notes: tuple[str, ...] = ()

    @property
    def clone_hint(self) -> str:
        return f"git clone https://github.com/{self.repo} && git -C {self.repo.split('/')[1]} checkout {self.commit}"


class NotConfigured(UserError, RuntimeError):
    """The system cannot run on this machine as configured; the message lists every missing piece and its fix."""


def safe_stem(clip_id: str) -> str:
    """A file stem for a clip id: readable, unique (hash suffix), no path separators or spaces."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", clip_id).strip("._")[:48] or "clip"
    return f"{readable}-{hashlib.sha256(clip_id.encode()).hexdigest()[:10]}"


def git_head(checkout: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


@dataclass
class Problem:
    """One missing or wrong piece of a system's set-up, with what to do about it."""

    what: str
    fix: str
    fatal: bool = True


@dataclass
class Status:
    spec: UpstreamSpec
    config: SystemConfig
    problems: list[Problem] = field(default_factory=list)
    checkout_commit: str | None = None

    @property
    def ready(self) -> bool:
        return not any(p.fatal for p in self.problems)

    def message(self) -> str:
        lines = [f"{self.spec.title} ({self.spec.name}) is not ready to run:"]
        lines += [f"  - {p.what}\n      fix: {p.fix}" for p in self.problems if p.fatal]
        src = self.config.config_file or "no vm-eval.toml found"
        lines.append(f"  configuration: {src}; see `vm-eval baselines check {self.spec.name}`")
        return "\n".join(lines)


def inspect(spec: UpstreamSpec, config: SystemConfig) -> Status:
    """Everything wrong with a system's set-up, without running upstream code (fast: stats files only)."""
    st = Status(spec, config)
    pre = f"VM_EVAL_{spec.name.upper().replace('-', '_')}_"
    if config.checkout is None:
        st.problems.append(Problem("checkout: not configured",
                                   f"{spec.clone_hint}; then set [baselines.{spec.name}] checkout or ${pre}CHECKOUT"))
    elif not (config.checkout / spec.entry_point).is_file():
        st.problems.append(Problem(f"checkout {config.checkout}: {spec.entry_point} not found there",
                                   f"point checkout at a clone of {spec.repo} ({spec.clone_hint})"))
    else:
        st.checkout_commit = git_head(config.checkout)
        if st.checkout_commit and st.checkout_commit != spec.commit:
            st.problems.append(Problem(f"checkout is at {st.checkout_commit[:12]}, the adapter mirrors {spec.commit[:12]}",
                                       f"git -C {config.checkout} checkout {spec.commit} (other commits may change "
                                       "arguments or outputs)", fatal=False))
    if config.python is None:
        st.problems.append(Problem("python: not configured",
                                   f"create upstream's environment ({spec.environment}) and set [baselines.{spec.name}] "
                                   f"python or ${pre}PYTHON to its interpreter"))
    elif not config.python.is_file():
        st.problems.append(Problem(f"python {config.python} does not exist",
                                   f"set the interpreter of upstream's environment ({spec.environment})"))
    for ck in spec.checkpoints:
        path = config.checkpoints.get(ck.role)
        env = f"${pre}CKPT_{ck.role.upper()}"
        if path is None:
            st.problems.append(Problem(f"checkpoint '{ck.role}' ({ck.description}): not configured",
                                       f"{ck.how_to_get}; then set [baselines.{spec.name}.checkpoints] {ck.role} or {env}"))
            continue
        missing = _missing_checkpoint_files(ck, path)
        if missing:
            st.problems.append(Problem(f"checkpoint '{ck.role}' at {path}: {missing}", ck.how_to_get))
    if spec.output == "midi":
        from baselines.external.midi import fluidsynth_binary

        if fluidsynth_binary() is None:
            st.problems.append(Problem("fluidsynth: not installed", "apt-get install fluidsynth fluid-soundfont-gm"))
        if config.soundfont is None or not config.soundfont.is_file():
            st.problems.append(Problem(f"SoundFont: {config.soundfont or 'none found'}",
                                       "apt-get install fluid-soundfont-gm, or set [midi] soundfont / $VM_EVAL_SOUNDFONT"))
    return st


def _missing_checkpoint_files(ck: CheckpointSpec, path: Path) -> str | None:
    if ck.kind == "file":
        return None if path.is_file() else "file not found"
    if not path.is_dir():
        return "folder not found"
    absent = [f for f in ck.files if not (path / f).exists()]
    return f"missing {', '.join(absent)}" if absent else None


class ExternalSystem:
    """Base of the published-system adapters (see the module docstring for the life of one clip)."""

    spec: ClassVar[UpstreamSpec]

    def __init__(self, config: str | Path | None = None, timeout_s: float | None = None, device: str | None = None,
                 keep_work: bool = False) -> None:
        from vm_eval.models.api import ModelInfo

        self.config = load_system_config(self.spec.name, config)
        self.status = inspect(self.spec, self.config)
        if not self.status.ready:
            raise NotConfigured(self.status.message())
        self.timeout_s = float(timeout_s or self.config.timeout_s or DEFAULT_TIMEOUT_S)
        self.device = device or self.config.device or "cuda:0"
        self.keep_work = keep_work
        midi = self.spec.output == "midi"
        self.info = ModelInfo(
            name=self.spec.name, family="baseline", output=self.spec.output,
            sample_rate=RENDER_RATE if midi else self.spec.sample_rate, max_duration_s=self.spec.max_duration_s,
            extra={"repo": self.spec.repo, "upstream_commit": self.spec.commit, "licence": self.spec.licence,
                   "checkout_commit": self.status.checkout_commit, "device": self.device,
                   "timeout_s": self.timeout_s, **({"render": f"fluidsynth, {RENDER_RATE} Hz"} if midi else {})},
        )

    # ------------------------------------------------------------------ provenance
    def checkpoints(self) -> list[dict]:
        from vm_eval.weights import sha256_of

        out = []
        for ck in self.spec.checkpoints:
            path = self.config.checkpoints[ck.role]
            files = ck.files if (ck.kind == "dir" and ck.files) else None
            out.append({"name": f"{self.spec.name}:{ck.role}", "path": str(path), "sha256": sha256_of(path, files)})
        if self.spec.output == "midi":
            out.append(soundfont_identity(self.config.soundfont))
        # The code that ran is part of the system's identity: another upstream commit is another run.
        out.append({"name": f"{self.spec.name}:upstream-code", "path": str(self.config.checkout),
                    "git_commit": self.status.checkout_commit or "unknown (the checkout is not a git clone)",
                    "adapter_mirrors": self.spec.commit})
        return out

    # ------------------------------------------------------------------ the run
    def generate(self, batch) -> list:
        out = []
        for clip in batch:
            try:
                self._check_duration(clip)
                out.append(self.generate_clip(clip, self._fresh_work(clip)))
            except Exception as e:  # this clip alone; the runner records the message (upstream's log tail included)
                out.append(e)
        return out

    def generate_clip(self, clip, work: Path):
        """Produce one clip's Audio in `work` (an empty folder of this clip). Subclasses implement it."""
        raise NotImplementedError

    def _check_duration(self, clip) -> None:
        from vm_eval.models.api import NotApplicable

        if clip.duration_s <= 0:
            raise NotApplicable(f"clip {clip.id} has no duration")
        if self.spec.max_duration_s and clip.duration_s > self.spec.max_duration_s + 1e-6:
            raise NotApplicable(f"{self.spec.title} generates at most {self.spec.max_duration_s:g} s; clip {clip.id} "
                                f"is {clip.duration_s:.2f} s")

    def _base(self, clip) -> Path:
        return Path(clip.cache_root) / "baselines" / self.spec.name

    def _fresh_work(self, clip) -> Path:
        work = self._base(clip) / "work" / safe_stem(clip.id)
        shutil.rmtree(work, ignore_errors=True)  # a half-finished earlier attempt must not be mistaken for output
        work.mkdir(parents=True)
        return work

    def log_path(self, clip) -> Path:
        """Upstream's stdout + stderr for this clip (kept after the run, overwritten by a retry)."""
        return self._base(clip) / "logs" / f"{safe_stem(clip.id)}.log"

    def run(self, clip, argv: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True) -> Finished:
        return run_upstream(self.spec.name, argv, cwd, self.log_path(clip), self.timeout_s,
                            env={**self.config.env, **(env or {})}, check=check)

    def seeded(self, clip, script: Path, args: list, sys_path: list[Path] = ()) -> list[str]:
        """argv running upstream's `script` with the clip's seed applied to random, numpy and torch first."""
        return seeded_argv(self.config.python, clip.seed, script, [str(a) for a in args], list(sys_path))

    def device_env(self) -> dict[str, str]:
        """CUDA_VISIBLE_DEVICES for the configured device ("cuda:N" -> "N", "cpu" -> "" hides every GPU)."""
        if self.device.startswith("cuda:"):
            return {"CUDA_VISIBLE_DEVICES": self.device.split(":", 1)[1]}
        return {"CUDA_VISIBLE_DEVICES": ""} if self.device == "cpu" else {}

    def stage_video(self, clip, folder: Path) -> Path:
        """The clip's silent video (its span only, no audio track) copied to `folder/<safe stem>.mp4`."""
        folder.mkdir(parents=True, exist_ok=True)
        dst = folder / f"{safe_stem(clip.id)}.mp4"
        shutil.copyfile(clip.silent_video(), dst)
        return dst

    def start_log(self, clip) -> None:
        log = self.log_path(clip)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"[vm-eval] {self.spec.name} for clip {clip.id} ({clip.duration_s:.3f} s), seed {clip.seed}\n")

    # ------------------------------------------------------------------ outputs
    def duration_tolerance_s(self, clip) -> float:
        """Allowed |output - clip| in seconds for this clip (the spec's; adapters whose error grows override it)."""
        return self.spec.duration_tolerance_s

    def collect_audio(self, clip, path: Path, work: Path):
        """Validate upstream's audio file (exists, decodes, declared rate, duration) and fit it to the clip."""
        from vm_eval.media import MediaError, load_audio

        log = self.log_path(clip)
        if not path.is_file():
            raise UpstreamError(self.spec.name, f"upstream finished but wrote no output at {path}", log)
        try:
            audio = load_audio(path)
        except MediaError as e:
            raise UpstreamError(self.spec.name, f"output does not decode: {e}", log) from None
        if self.spec.sample_rate and audio.sample_rate != self.spec.sample_rate:
            raise UpstreamError(self.spec.name, f"output is {audio.sample_rate} Hz; upstream declares "
                                f"{self.spec.sample_rate} Hz ({path})", log)
        tolerance = self.duration_tolerance_s(clip)
        if abs(audio.duration_s - clip.duration_s) > tolerance:
            raise UpstreamError(self.spec.name, f"wrong duration: output is {audio.duration_s:.2f} s for a "
                                f"{clip.duration_s:.2f} s clip (tolerance {tolerance:g} s)", log)
        self._cleanup(work)
        return audio.fit_length(clip.duration_s)

    def collect_midi(self, clip, midi: Path, work: Path):
        """Render upstream's MIDI with FluidSynth, then trim or pad it to the clip's duration."""
        from vm_eval.media import audio_stats

        log = self.log_path(clip)
        if not midi.is_file() or midi.stat().st_size == 0:
            raise UpstreamError(self.spec.name, f"upstream finished but wrote no MIDI at {midi}", log)
        try:
            length = midi_duration_s(midi)
        except Exception as e:  # mido raises OSError / EOFError / KeyError on broken files
            raise UpstreamError(self.spec.name, f"MIDI output does not parse: {type(e).__name__}: {e}", log) from None
        if length < self.spec.min_midi_coverage * clip.duration_s:
            raise UpstreamError(self.spec.name, f"wrong duration: MIDI output lasts {length:.2f} s for a "
                                f"{clip.duration_s:.2f} s clip (less than {self.spec.min_midi_coverage:.0%})", log)
        audio = render_midi(midi, self.config.soundfont, work / "rendered.wav").fit_length(clip.duration_s)
        if audio_stats(audio).silent:
            raise UpstreamError(self.spec.name, f"MIDI output renders to silence over the clip ({midi})", log)
        self._cleanup(work)
        return audio

    def _cleanup(self, work: Path) -> None:
        if not self.keep_work:
            shutil.rmtree(work, ignore_errors=True)
