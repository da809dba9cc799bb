"""GVMGen (Zuo et al., AAAI 2025): general video-to-music generation with hierarchical attentions (audiocraft-based).

Runs upstream's documented ``test.py --model_path --video_path --syn_path --fps 1 --duration N`` once per clip,
through the seeding wrapper (test.py has no seed argument; tokens are drawn with torch's global generator).
``N`` is the number of frames test.py samples at 1 fps, which is also the number of seconds it generates:
ceil(clip seconds), at most 30 (upstream's README value; the model was trained on ~30 s segments), so clips longer
than 30 s are not applicable.

Upstream's traps, and what the adapter does about them (notes at the commit in SPEC):
- Fixed names: test.py writes ./0.wav and moviepy's temp-audio.m4a in its working directory and always names its
  result <syn_path>/0.mp4. Each clip runs with its own work folder as the working directory and its own syn folder
  (created beforehand: moviepy does not create it), so nothing collides and nothing lands in the checkout.
- test.py catches and only prints errors of the final muxing step: exit code 0 with no 0.mp4 fails the clip.
- --model_path must be a FOLDER holding state_dict.bin (LM) and compression_state_dict.bin (EnCodec): with a file
  (README's example) upstream's loader reads the same file for both models (loaders.py:39-83; inferred from the
  code, not run).
- The only surviving output is the AAC track of the muxed 0.mp4 (the 32 kHz mono wav is deleted; it was re-exported
  by pydub, probably as MP3, and muxed by moviepy, whose defaults are 44.1 kHz stereo). The adapter decodes that
  track at whatever rate it has (logging it), downmixes it to mono (the model is mono), resamples it to the model's
  32 kHz, then checks the duration against the clip with the framework's tolerance and trims or pads it. The
  audio is therefore lossy (AAC) and resampled twice; that is upstream's output as documented.
- CLIP ViT-L/14@336px is downloaded at model build time into ~/.cache/clip: pre-cache it for offline use.
"""
from __future__ import annotations

import math
from pathlib import Path

from baselines.external.adapter import CheckpointSpec, ExternalSystem, UpstreamSpec, safe_stem
from baselines.external.process import UpstreamError

MAX_FRAMES = 30  # README's --duration 30 (frames at --fps 1 = seconds generated)
CLIP_PRECACHE = ("upstream downloads CLIP ViT-L/14@336px when it builds the model, into ~/.cache/clip of the user "
                 "running it (module/encoder/encoder.py): for offline runs put ViT-L-14-336px.pt there first, e.g. "
                 "python -c \"import clip; clip.load('ViT-L/14@336px', device='cpu')\" in any environment with "
                 "openai CLIP, or fetch the URL in upstream's module/encoder/encoder.py")

SPEC = UpstreamSpec(
    name="gvmgen", title="GVMGen", repo="chouliuzuo/GVMGen", commit="5d0c6c6c647cc423a5f317288c9fde03a22c984c",
    licence="Apache-2.0", output="audio", entry_point="test.py",
    environment="python 3.9.0, torch 2.0.0, torchaudio 2.0.1, torchvision 0.15.1, xformers 0.0.17, audiocraft 1.1.0, "
                "moviepy 1.0.3, pydub 0.25.1, ffmpeg (upstream README, requirements.txt)",
    checkpoints=(CheckpointSpec(
        "model", "GVMGen LM and compression model (--model_path folder)",
        "download the published weights from upstream's Google Drive folder "
        "(https://drive.google.com/drive/folders/1OKVQlz7TPKEGTPEK-BiH1tJ3FYT11GON, README section 7) into one folder "
        "that must hold state_dict.bin and compression_state_dict.bin; if the Drive folder lacks the latter, it is "
        "MusicGen's 32 kHz EnCodec (huggingface-cli download facebook/musicgen-small compression_state_dict.bin "
        f"--local-dir <dir>; inferred from upstream's training config, not verified); also: {CLIP_PRECACHE}",
        kind="dir", files=("state_dict.bin", "compression_state_dict.bin")),),
    sample_rate=32000, max_duration_s=float(MAX_FRAMES), duration_tolerance_s=1.0,
    notes=(CLIP_PRECACHE,
           "output is the AAC track of upstream's muxed <syn_path>/0.mp4 (moviepy: 44.1 kHz stereo), decoded, "
           "downmixed to mono and resampled to 32 kHz by vm-eval",
           "--fps 1 --duration ceil(clip seconds): upstream generates one second per sampled frame, at most 30",
           "upstream reloads its model (LM, EnCodec, CLIP) for every clip"),
)


def frames_for(duration_s: float) -> int:
    """test.py's --duration for a clip: frames sampled at 1 fps, i.e. whole seconds covering the clip, 1..30."""
    return max(1, min(MAX_FRAMES, math.ceil(round(duration_s, 3))))


class GVMGen(ExternalSystem):
    spec = SPEC

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.info.extra.update(fps=1, audio_path="AAC track of upstream's 0.mp4 -> mono -> 32 kHz (vm-eval)")

    def generate_clip(self, clip, work: Path):
        self.start_log(clip)
        video = self.stage_video(clip, work / "in")
        syn = work / "syn"
        syn.mkdir()  # moviepy does not create it
        checkout = self.config.checkout
        args = ["--model_path", self.config.checkpoints["model"], "--video_path", video, "--syn_path", syn,
                "--fps", 1, "--duration", frames_for(clip.duration_s)]
        # cwd = the clip's own folder: upstream's fixed ./0.wav and temp-audio.m4a land there
        self.run(clip, self.seeded(clip, checkout / "test.py", args, [checkout]), cwd=work, env=self.device_env())
        return self._collect_muxed(clip, syn / "0.mp4", work)

    def _collect_muxed(self, clip, mp4: Path, work: Path):
        """Decode the AAC track of upstream's 0.mp4, mono, at 32 kHz, then the framework's checks on a WAV of it."""
        from vm_eval.media import MediaError, load_audio
        from vm_eval.media.audio import resample, write_wav

        log = self.log_path(clip)
        if not mp4.is_file() or mp4.stat().st_size == 0:
            raise UpstreamError(self.spec.name, f"upstream finished but wrote no output at {mp4} (test.py prints "
                                "errors of its muxing step and exits 0)", log)
        try:
            track = load_audio(mp4)
        except MediaError as e:
            raise UpstreamError(self.spec.name, f"output does not decode: {e}", log) from None
        audio = resample(track.mono(), self.spec.sample_rate)
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"[vm-eval] {mp4.name}: audio track {track.sample_rate} Hz, {track.channels} ch, "
                    f"{track.duration_s:.3f} s -> mono, {audio.sample_rate} Hz\n")
        wav = write_wav(work / "out" / f"{safe_stem(clip.id)}.wav", audio)
        return self.collect_audio(clip, wav, work)
