"""M2UGen (Hussain et al., 2023): LLaMA-2 7B with MERT / ViT / ViViT encoders, decoding music with MusicGen-medium.

Runs upstream's non-interactive ``M2UGen/inference.py`` (the README documents only the Gradio demo; this script
takes one ``--prompt`` and one ``--video_file`` per run, loads the whole model, answers, then exits). One process
per clip, through the seeding wrapper with the clip's seed (upstream has no seed argument): that fixes the random
32-frame window it samples (``np.random.randint`` at inference.py:202), the LLM's top-p sampling and MusicGen's
sampling. Every model path comes from a configured checkpoint role; ``--vit_path`` and ``--vivit_path`` are always
passed because their defaults wrongly name MERT (inference.py:36-43).

Upstream's traps and what the adapter does about them:

* The output is ``temp/<random>.wav`` under the working directory (``tempfile`` names, not seedable), reported only
  on stdout as ``Generated Audio: temp/....wav`` (inference.py:145-155, 259-260). The process runs with the clip's
  private work folder as its cwd; the path is parsed from the log, else the only wav under ``temp/`` is taken.
* The LLM must emit all eight ``[AUD0]..[AUD7]`` tokens for any music to be made (m2ugen.py:765-767); when it does
  not, upstream prints its text answer and exits 0 without writing anything. That clip fails with that reason and
  the answer.
* The music lasts ``round(video seconds)`` whole seconds (ffprobe, inference.py:209-215, 246-248): MusicGen gets
  ``int(256/5 * L)`` new tokens (m2ugen.py:672-673), i.e. ``(int(51.2 L) - 3) / 50`` s of 32 kHz mono audio (the
  delay pattern of 4 codebooks plus the start token costs 3 frames). No upper cap, so the allowed gap to the clip
  grows with its length (:func:`duration_tolerance_s`); the output is then trimmed or padded to the clip. Clips
  under half a second round to 0 s of music and are not applicable.
* A video whose container reports 0 frames makes upstream's frame sampler raise (``randint(32, 0)``, exit 1): the
  adapter checks the staged video first and fails the clip without loading the 7B model.

At commit 2c702a48 the MusicGen decoder is conditioned on the LLM's decoded text answer, not on the [AUD]
embeddings (m2ugen.py:668-673): the video reaches the music only through that text (a code reading, untested).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from baselines.external.adapter import CheckpointSpec, ExternalSystem, NotConfigured, UpstreamSpec
from baselines.external.process import UpstreamError
from vm_eval.errors import BadArgument

DEFAULT_PROMPT = "Generate a music for the video."
LLAMA_TYPE = "7B"
HF_ROLES = ("mert", "vit", "vivit", "musicgen")  # from_pretrained folders: their weights join the identity hash

SPEC = UpstreamSpec(
    name="m2ugen", title="M2UGen", repo="shansongliu/M2UGen", commit="2c702a482f1ea3ef1b28cfad3d58a038a35183a7",
    licence="MIT", output="audio", entry_point="M2UGen/inference.py",
    environment="python 3.9.17, torch 2.1.0, transformers 4.35.2 (README, requirements.txt), plus PyAV (imported by "
                "inference.py, missing from requirements.txt) and ffprobe on PATH; one CUDA GPU of 32 GB, about 49 GB "
                "of RAM to load the checkpoint (README)",
    checkpoints=(
        CheckpointSpec(
            "model", "M2UGen-MusicGen-medium checkpoint.pth (--model; holds the fine-tuned LLaMA weights too)",
            "huggingface-cli download M2UGen/M2UGen-MusicGen-medium checkpoint.pth --local-dir <dir> (about 31 GB); "
            "the small variant does not match the musicgen-medium decoder this adapter passes"),
        CheckpointSpec(
            "llama", "LLaMA-2 7B folder: 7B/params.json and tokenizer.model (--llama_dir; weights not read)",
            "request access to meta-llama/Llama-2-7b on Hugging Face, then huggingface-cli download "
            "meta-llama/Llama-2-7b params.json --local-dir <dir>/7B and huggingface-cli download "
            "meta-llama/Llama-2-7b tokenizer.model --local-dir <dir> (consolidated.00.pth is not needed: "
            "inference.py passes load_llama=False)",
            kind="dir", files=(f"{LLAMA_TYPE}/params.json", "tokenizer.model")),
        CheckpointSpec(
            "mert", "MERT-v1-330M folder (--mert_path; always loaded, with its remote code)",
            "huggingface-cli download m-a-p/MERT-v1-330M --local-dir <dir>",
            kind="dir",
            files=("config.json", "preprocessor_config.json", "configuration_MERT.py", "modeling_MERT.py")),
        CheckpointSpec(
            "vit", "ViT folder (--vit_path)",
            "huggingface-cli download google/vit-base-patch16-224-in21k config.json preprocessor_config.json "
            "model.safetensors --local-dir <dir>",
            kind="dir", files=("config.json", "preprocessor_config.json")),
        CheckpointSpec(
            "vivit", "ViViT folder (--vivit_path)",
            "huggingface-cli download google/vivit-b-16x2-kinetics400 --local-dir <dir>",
            kind="dir", files=("config.json", "preprocessor_config.json")),
        CheckpointSpec(
            "musicgen", "MusicGen-medium folder, transformers format (--music_decoder_path)",
            "huggingface-cli download facebook/musicgen-medium --local-dir <dir> --exclude state_dict.bin "
            "compression_state_dict.bin",
            kind="dir", files=("config.json", "generation_config.json", "preprocessor_config.json")),
    ),
    sample_rate=32000, max_duration_s=None, duration_tolerance_s=0.75,
    notes=(
        "entry point M2UGen/inference.py (undocumented; the README only shows the Gradio demo); one 7B load per clip",
        "the seeding wrapper makes the random 32-frame window (inference.py:202 np.random.randint) a function of the "
        "clip's seed; the window is about 1 s ending at a random frame, not chosen by content",
        "music lasts (int(51.2 * round(video s)) - 3) / 50 s, no upper cap (MusicGen was trained on 30 s); allowed "
        "gap to the clip: 0.75 s + 0.025 s per clip second, then trimmed / padded",
        "no audio when the LLM does not emit all 8 [AUD] tokens: upstream exits 0 without output; the clip fails",
        "hard-coded sampling: LLM top_p 0.8, temperature 0.6, 512 tokens; MusicGen guidance 3.5 with its "
        "generation_config (sampling); bitwise repeatability also depends on CUDA kernels",
        "MusicGen is conditioned on the LLM's text answer at this commit (m2ugen.py:668-673), not on its embeddings",
        "videos under 32 frames: upstream repeats one frame (and fails with probability 1/frames)",
    ),
)

_GENERATED = re.compile(r"^Generated Audio: (.+\.wav)\s*$", re.M)
_ANSWER = re.compile(r"^A\. (.*)$", re.M)


def upstream_seconds(video_s: float) -> float:
    """Length of upstream's music for a video of `video_s` seconds (inference.py:215, m2ugen.py:673, MusicGen)."""
    whole = int(round(video_s))
    return max(0, int(256 / 5 * whole) - 3) / 50


def duration_tolerance_s(clip_s: float) -> float:
    """Allowed |output - clip|: half a second of rounding, 2.4 % extra per second of MusicGen, a margin."""
    return SPEC.duration_tolerance_s + 0.025 * clip_s


def _weight_files(folder: Path) -> tuple[str, ...]:
    """The weight files transformers 4.35 loads from a from_pretrained folder (safetensors first), shards included."""
    for single, index in (("model.safetensors", "model.safetensors.index.json"),
                          ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        if (folder / single).is_file():
            return (single,)
        if (folder / index).is_file():
            try:
                shards = sorted(set(json.loads((folder / index).read_text())["weight_map"].values()))
            except (OSError, ValueError, KeyError, AttributeError):
                return (index,)
            return (index, *shards)
    return ()


class M2UGen(ExternalSystem):
    spec = SPEC

    def __init__(self, prompt: str = DEFAULT_PROMPT, **kwargs) -> None:
        super().__init__(**kwargs)
        if not prompt or not prompt.strip():
            raise BadArgument("m2ugen: the prompt must not be empty")
        if self.device == "cpu":
            raise NotConfigured("M2UGen runs on CUDA only (inference.py:94 moves the model to 'cuda'); set device to "
                                "cuda:N ([baselines.m2ugen] device or $VM_EVAL_M2UGEN_DEVICE)")
        missing = [f"checkpoint '{role}' at {self.config.checkpoints[role]}: no model.safetensors or "
                   f"pytorch_model.bin (nor a sharded index)\n      fix: {self._how_to_get(role)}"
                   for role in HF_ROLES if not _weight_files(self.config.checkpoints[role])]
        if missing:
            raise NotConfigured("M2UGen (m2ugen) is not ready to run:\n  - " + "\n  - ".join(missing))
        self.prompt = prompt
        self.info.extra.update(
            prompt=prompt, music_decoder="musicgen (facebook/musicgen-medium)",
            sampling={"llm_top_p": 0.8, "llm_temperature": 0.6, "llm_max_gen_len": 512,
                      "musicgen_guidance_scale": 3.5, "musicgen": "its generation_config (sampling)"},
            frame_window="32 consecutive frames ending at a seeded random frame (inference.py:198-206)")

    def _how_to_get(self, role: str) -> str:
        return next(ck.how_to_get for ck in self.spec.checkpoints if ck.role == role)

    # ------------------------------------------------------------------ provenance
    def checkpoints(self) -> list[dict]:
        """As the base class, but the Hugging Face folders are hashed with the weights upstream loads from them."""
        from vm_eval.weights import sha256_of

        out = []
        for ck in self.spec.checkpoints:
            path = self.config.checkpoints[ck.role]
            files = ck.files + (_weight_files(path) if ck.role in HF_ROLES else ())
            out.append({"name": f"{self.spec.name}:{ck.role}", "path": str(path), "sha256": sha256_of(path, files)})
        return out

    # ------------------------------------------------------------------ the run
    def _check_duration(self, clip) -> None:
        from vm_eval.models.api import NotApplicable

        super()._check_duration(clip)
        if int(round(clip.duration_s)) == 0:
            raise NotApplicable(f"M2UGen makes round(video seconds) of music: 0 s for clip {clip.id} "
                                f"({clip.duration_s:.2f} s)")

    def generate_clip(self, clip, work: Path):
        self.start_log(clip)
        video = self.stage_video(clip, work / "in")
        self._check_frames(clip, video)
        ck = self.config.checkpoints
        args = ["--model", ck["model"], "--llama_dir", ck["llama"], "--llama_type", LLAMA_TYPE,
                "--mert_path", ck["mert"], "--vit_path", ck["vit"], "--vivit_path", ck["vivit"],
                "--music_decoder", "musicgen", "--music_decoder_path", ck["musicgen"],
                "--prompt", self.prompt, "--video_file", video.resolve()]
        package = self.config.checkout / "M2UGen"  # `from llama.m2ugen import ...`, `from util.misc import ...`
        with open(self.log_path(clip), "a", encoding="utf-8") as f:
            f.write(f"[vm-eval] upstream makes about {upstream_seconds(clip.duration_s):.2f} s of music for this "
                    f"{clip.duration_s:.2f} s clip\n")
        # Every model path is a local folder: stay offline unless the user's [baselines.m2ugen.env] says otherwise.
        env = {var: self.config.env.get(var, "1") for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
        self.run(clip, self.seeded(clip, package / "inference.py", args, [package]), cwd=work,
                 env={**env, **self.device_env()})
        return self.collect_audio(clip, self._find_output(clip, work), work)

    def _check_frames(self, clip, video: Path) -> None:
        """Upstream samples frames with randint(32, container frame count): 0 frames (or no video) cannot work."""
        import av

        try:
            with av.open(str(video)) as c:
                frames = c.streams.video[0].frames if c.streams.video else None
        except Exception as e:  # PyAV raises its own error types per FFmpeg error
            raise UpstreamError(self.spec.name, f"the staged video {video} does not open: {type(e).__name__}: {e}",
                                self.log_path(clip)) from None
        if not frames:
            what = "has no video stream" if frames is None else "reports 0 frames in its container"
            raise UpstreamError(self.spec.name, f"the staged video {what}; upstream's frame sampler "
                                "(inference.py:202, np.random.randint(32, frames)) would fail, so it was not run",
                                self.log_path(clip))

    def _find_output(self, clip, work: Path) -> Path:
        """The wav upstream reported on stdout, else the only wav under temp/; fail with the reason otherwise."""
        text = self.log_path(clip).read_text(encoding="utf-8", errors="replace")
        reported = _GENERATED.findall(text)
        if reported:
            path = Path(reported[-1].strip())
            path = path if path.is_absolute() else work / path
            if path.is_file():
                return path
        wavs = sorted((work / "temp").glob("*.wav"))
        if len(wavs) == 1:
            return wavs[0]
        if len(wavs) > 1:
            raise UpstreamError(self.spec.name, f"upstream wrote {len(wavs)} wavs under {work / 'temp'} and reported "
                                f"{reported[-1] if reported else 'none'} on stdout; cannot tell which is the music",
                                self.log_path(clip))
        answers = _ANSWER.findall(text)
        said = f"; its answer was: {answers[-1].strip()!r}" if answers else ""
        if reported:
            problem = f"upstream reported {reported[-1]} but no wav exists under {work / 'temp'}"
        else:
            problem = ("upstream exited 0 without writing music: the LLM did not emit all 8 [AUD] tokens "
                       "(m2ugen.py:765-767), so no audio was generated" + said)
        raise UpstreamError(self.spec.name, problem, self.log_path(clip))

    def duration_tolerance_s(self, clip) -> float:
        """Grows with the clip: upstream's music is 2.4 % longer per second (see :func:`duration_tolerance_s`)."""
        return duration_tolerance_s(clip.duration_s)
