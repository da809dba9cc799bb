"""VidMuse (Tian et al., CVPR 2025): audiocraft-based video-to-music with long-short-term visual modelling.

Runs upstream's documented ``infer.py --model_path --video_dir --output_dir`` (one clip per call, with the
clip's seed applied by the seeding wrapper; upstream has no seed argument and loads its model per call). Upstream
generates int(video seconds) of 32 kHz mono audio, so up to 1 s of the clip's tail is padded with silence.
"""
from __future__ import annotations

from pathlib import Path

from baselines.external.adapter import CheckpointSpec, ExternalSystem, UpstreamSpec, safe_stem

SPEC = UpstreamSpec(
    name="vidmuse", title="VidMuse", repo="ZeyueT/VidMuse", commit="1e9296e78a85c4a3f291be37a2d6de42c1d26222",
    licence="CC-BY-NC-4.0", output="audio", entry_point="infer.py",
    environment="python 3.9, torch 2.1.0, ffmpeg (upstream README)",
    checkpoints=(CheckpointSpec(
        "model", "VidMuse LM and compression model (--model_path folder)",
        "huggingface-cli download HKUSTAudio/VidMuse state_dict.bin compression_state_dict.bin --local-dir <dir>; "
        "upstream also loads facebook/encodec_32khz and openai/clip-vit-base-patch32 from the Hugging Face cache of "
        "its environment (download them there before running offline)",
        kind="dir", files=("state_dict.bin", "compression_state_dict.bin")),),
    sample_rate=32000, max_duration_s=None, duration_tolerance_s=1.0,
    notes=("output is int(video seconds) long (floored); the remainder is padded with silence",
           "windows of 30 s with a 29.5 s stride beyond 30 s (upstream)"),
)


class VidMuse(ExternalSystem):
    spec = SPEC

    def __init__(self, top_k: int = 250, top_p: float = 0.0, temperature: float = 1.0, cfg_coef: float = 3.0,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.sampling = {"topk": int(top_k), "topp": float(top_p), "temperature": float(temperature),
                         "cfg_coef": float(cfg_coef)}
        self.info.extra.update(sampling=self.sampling)

    def generate_clip(self, clip, work: Path):
        self.start_log(clip)
        video = self.stage_video(clip, work / "in")
        out, tmp = work / "out", work / "tmp"
        tmp.mkdir()
        args = ["--model_path", self.config.checkpoints["model"], "--video_dir", video.parent, "--output_dir", out]
        for key, value in self.sampling.items():
            args += [f"--{key}", value]
        checkout = self.config.checkout
        # Same filesystem for cwd, TMPDIR and output: upstream moves its temp files with rename().
        self.run(clip, self.seeded(clip, checkout / "infer.py", args, [checkout]), cwd=work,
                 env={"TMPDIR": str(tmp), **self.device_env()})
        return self.collect_audio(clip, out / f"{safe_stem(clip.id)}_output.wav", work)
