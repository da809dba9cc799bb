"""CMT (Di et al., ACM MM 2021): Controllable Music Transformer, video -> rhythm tokens -> 5-track MIDI.

Upstream's documented pipeline for a new video (README "Inference", notebook CMT.ipynb), run per clip:

1. the clip's silent video resized to 360 px high (README: ``ffmpeg -vf scale=-1:360``; done here with PyAV,
   width rounded to an even number, frame rate kept) as ``videos/<stem>.mp4``;
2. ``src/video2npz``'s three steps, each its own checked subprocess rather than ``video2npz.sh`` (that script has
   no ``set -e``: a failed step lets the next one convert a STALE ``metadata.json`` and the shell exits 0):
   ``optical_flow.py --video V`` -> ``flow/<stem>.npz``; ``video2metadata.py --video V`` -> ``./metadata.json``
   (visual tempo, visual beats, flow per bar); ``metadata2numpy_mix.py --video V --metadata metadata.json
   --out_dir D`` -> ``D/<stem>.npz``;
3. ``src/gen_midi_conditional.py -c CKPT -f <npz> -g GPU -n 1`` through the seeding wrapper (upstream has no seed
   argument; every sampling draw uses numpy's global generator) -> ``<npz>_0.mid``.

Traps handled (upstream notes at the commit in SPEC):
- All of src/video2npz's paths are relative to the working directory (``flow/``, ``fig/``, ``image/``,
  ``optical_flow/``, ``metadata.json``, visbeat's ``./VisBeatAssets/``, ``../../videos/``), and the flow file and
  visbeat's assets are caches keyed by the video's file name. The steps run in a private copy of upstream's layout
  inside the clip's fresh work folder (``tree/src/video2npz`` as cwd, ``tree/videos``, ``tree/inference``; the
  scripts themselves are run from the checkout, whose folder Python puts first on sys.path), so nothing is
  written into the checkout and concurrent runs share nothing. On top of that the video's name is unique per clip
  (:func:`cmt_stem`: the clip id's safe stem without dots, since optical_flow.py names its cache after the name up
  to the first dot and video2metadata.py replaces '.mp4' only) and the clip's cache entries are removed before the
  steps run.
- Each step's exit code is checked, and so is the file it must write.
- ``-g`` is always passed: without it upstream sets CUDA_VISIBLE_DEVICES=0 over the caller's choice. The
  configured "cuda:N" gives ``-g N`` (and CUDA_VISIBLE_DEVICES=N at launch); "cpu" hides every GPU at launch and
  passes ``-g 9999`` (a GPU no machine has) should upstream's own setting ever take effect before CUDA starts.
- CMT writes no tempo event, so players assume 120 BPM, although it composes 16 ticks per bar against the video's
  visual tempo. The tempo is read from the clip's ``metadata.json`` ("tempo", written by video2metadata.py) and
  put into the MIDI (:func:`baselines.external.midi.set_tempo`) before FluidSynth renders it, as upstream's
  midi2mp3.py does by stretching with 120/tempo.
- Output length: one bar per ``flow_magnitude_per_bar`` entry (the video's length rounded up to a bar) unless the
  model emits EOS earlier; the render is trimmed / padded to the clip, and less than half the clip fails.

Environment trap seen when checking the real feature scripts (py3.8, librosa 0.6.2, numba 0.48): Python puts
src/video2npz first on sys.path, and its ``visbeat3/`` sub-folder (no __init__.py) is a namespace package that wins
over a PEP 660 editable install (``pip install -e``): video2metadata.py then fails with "module 'visbeat3' has no
attribute 'Video_CV'". visbeat3 must be importable from a sys.path entry: a .pth file naming
src/video2npz/visbeat3 worked; upstream's ``python setup.py install`` (setuptools of that env) built an egg without
visbeat3/assets/, whose import then failed.

The three feature steps are deterministic (Farneback flow, librosa beat tracking) and run without the seeding
wrapper (it would import torch three more times per clip).
"""
from __future__ import annotations

import glob
import json
import math
import shutil
import time
from pathlib import Path

from baselines.external.adapter import CheckpointSpec, ExternalSystem, NotConfigured, UpstreamSpec, safe_stem
from baselines.external.midi import set_tempo
from baselines.external.process import UpstreamError, UpstreamTimeout, run_upstream
from vm_eval.errors import BadArgument

HEIGHT = 360  # README step 1: videos are resized to 360p before video2npz
NO_GPU = "9999"  # -g value for device "cpu": an index no machine has, so CUDA would see no device
FEATURE_SCRIPTS = ("src/video2npz/optical_flow.py", "src/video2npz/video2metadata.py",
                   "src/video2npz/metadata2numpy_mix.py")

SPEC = UpstreamSpec(
    name="cmt", title="CMT (Controllable Music Transformer)", repo="wzk1015/video-bgm-generation",
    commit="78eb9a5895cb4c61d74ccb68a0da492f5e418976", licence="MIT", output="midi",
    entry_point="src/gen_midi_conditional.py",
    environment="python 3.7 (bundled visbeat3 egg; numba 0.48 caps it at 3.8), torch 1.9.0, pytorch-fast-transformers "
                "(0.3.0 in upstream's Colab), numpy 1.23.1, librosa 0.6.2, muspy 0.4.0, opencv-python 4.5.3.56, "
                "scikit-video 1.1.11, visbeat3 installed from src/video2npz/visbeat3 (python setup.py install), "
                "ffmpeg (upstream README, py3_requirements.txt)",
    checkpoints=(CheckpointSpec(
        "model", "CMT weights loss_8_params.pt (gen_midi_conditional.py -c)",
        "download loss_8_params.pt from Google Drive (file id 1KvIRRm0KqTlEFDjAgs4fMtLRQBq0rBWy, upstream README) or "
        "`gsutil cp gs://cmt/loss_8_params.pt .` (upstream's Colab notebook)"),),
    sample_rate=None, max_duration_s=None, min_midi_coverage=0.5,
    notes=("video -> 360p -> optical_flow.py, video2metadata.py, metadata2numpy_mix.py (each checked) -> "
           "gen_midi_conditional.py -n 1 with the clip's seed on numpy's global generator (seeding wrapper)",
           "the video's visual tempo (metadata.json 'tempo') is written into the MIDI before rendering; CMT itself "
           "writes none (120 BPM)",
           "5 tracks (drums, piano, guitar, bass, strings), control strength C=0.7 hard-coded upstream",
           "upstream recommends videos under 2 minutes (generation gets slow); not enforced",
           "visbeat3 must be on sys.path (e.g. a .pth file naming src/video2npz/visbeat3), not behind a `pip install -e` "
           "finder: the namespace folder src/video2npz/visbeat3 shadows it (\"no attribute 'Video_CV'\")",
           "feature steps run in a private copy of upstream's relative layout per clip: nothing is written into "
           "the checkout"),
)


def cmt_stem(clip_id: str) -> str:
    """The clip's video name for CMT: unique per clip and without dots (upstream's caches split names at dots)."""
    return safe_stem(clip_id).replace(".", "_")


def gpu_argument(device: str) -> str:
    """gen_midi_conditional.py's -g value (a number, else upstream raises) for a vm-eval device string."""
    if device == "cpu":
        return NO_GPU
    if device.startswith("cuda:") and device.split(":", 1)[1].isdigit():
        return device.split(":", 1)[1]
    if device == "cuda":
        return "0"
    raise BadArgument(f"CMT runs on 'cpu' or 'cuda[:N]', not {device!r}")


def read_tempo(metadata: Path) -> float:
    """The visual tempo (BPM) video2metadata.py wrote; ValueError when absent or not a usable number."""
    data = json.loads(Path(metadata).read_text())
    tempo = data.get("tempo") if isinstance(data, dict) else None
    if isinstance(tempo, list) and len(tempo) == 1:  # librosa versions differ: a scalar or a one-element array
        tempo = tempo[0]
    if isinstance(tempo, bool) or not isinstance(tempo, (int, float)) or not math.isfinite(tempo):
        raise ValueError(f"{metadata} has no numeric 'tempo' (got {tempo!r})")
    if not 20.0 <= tempo <= 400.0:
        raise ValueError(f"{metadata}: tempo {tempo} BPM is outside 20-400")
    return float(tempo)


def resize_to_height(src: Path, dst: Path, height: int = HEIGHT) -> Path:
    """`src` re-encoded `height` px high (aspect kept, even width), same frame rate, no audio."""
    import av

    from vm_eval.media.video import probe_video, write_video

    info = probe_video(src)
    width = max(2, int(round(info.width * height / info.height / 2.0)) * 2)

    def frames():
        with av.open(str(src)) as c:
            for frame in c.decode(c.streams.video[0]):
                yield frame.to_ndarray(format="rgb24", width=width, height=height)

    dst.parent.mkdir(parents=True, exist_ok=True)
    return write_video(dst, frames(), info.fps)


class CMT(ExternalSystem):
    """No options beyond the common ones (config, timeout_s per clip, device, keep_work)."""

    spec = SPEC

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        missing = [s for s in FEATURE_SCRIPTS if not (self.config.checkout / s).is_file()]
        if missing:
            raise NotConfigured(f"{SPEC.title} (cmt) is not ready to run:\n  - checkout {self.config.checkout}: "
                                f"{', '.join(missing)} not found\n      fix: point checkout at a clone of "
                                f"{SPEC.repo} ({SPEC.clone_hint})")
        self.gpu = gpu_argument(self.device)
        self.info.extra.update(gpu_argument=self.gpu, video_height=HEIGHT,
                               midi="upstream's 5-track MIDI with the video's visual tempo written in")

    def generate_clip(self, clip, work: Path):
        self.start_log(clip)
        stem = cmt_stem(clip.id)
        tree = work / "tree"  # upstream's relative layout: src/video2npz is the cwd, ../../videos holds the video
        cwd, npz_dir = tree / "src" / "video2npz", tree / "inference"
        for d in (cwd, npz_dir, tree / "videos"):
            d.mkdir(parents=True, exist_ok=True)
        video = resize_to_height(clip.silent_video(), tree / "videos" / f"{stem}.mp4")
        flow, metadata, npz = cwd / "flow" / f"{stem}.npz", cwd / "metadata.json", npz_dir / f"{stem}.npz"
        midi = npz_dir / f"{stem}.npz_0.mid"
        for stale in (flow, metadata, npz, midi):  # caches keyed by name; the work folder is fresh, belt and braces
            stale.unlink(missing_ok=True)
        shutil.rmtree(cwd / "VisBeatAssets" / "VideoSources" / video.name, ignore_errors=True)

        checkout, py = self.config.checkout, str(self.config.python)
        scripts = checkout / "src" / "video2npz"
        env = self.device_env()
        deadline = time.monotonic() + self.timeout_s  # one budget for the clip's four upstream processes
        self._step(clip, "optical_flow.py", [py, scripts / "optical_flow.py", "--video", video], cwd, env, deadline,
                   flow)
        self._step(clip, "video2metadata.py", [py, scripts / "video2metadata.py", "--video", video], cwd, env,
                   deadline, metadata)
        self._step(clip, "metadata2numpy_mix.py", [py, scripts / "metadata2numpy_mix.py", "--video", video,
                                                   "--metadata", metadata.name, "--out_dir", npz_dir],
                   cwd, env, deadline, npz)
        try:
            tempo = read_tempo(metadata)
        except ValueError as e:
            raise UpstreamError(self.spec.name, f"video2metadata.py: {e}", self.log_path(clip)) from None
        with open(self.log_path(clip), "a", encoding="utf-8") as f:
            f.write(f"[vm-eval] visual tempo from metadata.json: {tempo:.3f} BPM\n")

        gen = self.seeded(clip, checkout / "src" / "gen_midi_conditional.py",
                          ["-c", self.config.checkpoints["model"], "-f", glob.escape(str(npz)), "-g", self.gpu,
                           "-n", 1], [checkout / "src"])
        self._step(clip, "gen_midi_conditional.py", gen, tree / "src", env, deadline, None)
        if not midi.is_file() or midi.stat().st_size == 0:
            raise UpstreamError(self.spec.name, f"upstream finished but wrote no MIDI at {midi}", self.log_path(clip))
        try:
            timed = set_tempo(midi, work / f"{stem}-tempo.mid", tempo)
        except Exception as e:  # mido raises OSError / EOFError / KeyError / ValueError on broken files
            raise UpstreamError(self.spec.name, f"MIDI output does not parse: {type(e).__name__}: {e}",
                                self.log_path(clip)) from None
        return self.collect_midi(clip, timed, work)

    def _step(self, clip, name: str, argv: list, cwd: Path, env: dict, deadline: float, expect: Path | None) -> None:
        """Run one upstream process within the clip's remaining time; check its exit code and its output file."""
        log = self.log_path(clip)
        left = deadline - time.monotonic()
        if left <= 0:
            raise UpstreamTimeout(self.spec.name, f"no result after {self.timeout_s:g} s (timeout) before {name}",
                                  log)
        try:
            run_upstream(self.spec.name, [str(a) for a in argv], cwd, log, left, env={**self.config.env, **env})
        except UpstreamTimeout as e:
            raise UpstreamTimeout(self.spec.name, f"{name}: {e.problem} (clip budget {self.timeout_s:g} s)",
                                  log) from None
        except UpstreamError as e:
            raise UpstreamError(self.spec.name, f"{name}: {e.problem}", log) from None
        if expect is not None and not expect.is_file():
            raise UpstreamError(self.spec.name, f"{name} exited 0 but wrote no {expect}", log)
