"""ImageBind-huge vision and audio embeddings, extracted as av-benchmark extracts them (for the ImageBind score).

Model: Girdhar et al., CVPR 2023, "ImageBind: One Embedding Space To Bind Them All". The model code is the registry
release ``imagebind-unofficial`` 0.1.1, whose ``imagebind/`` is file for file facebookresearch/ImageBind main (the
fork av-benchmark installs, hkchengrex/ImageBind, differs from it only in the text tokenizer and the download
path); ``imagebind_model.imagebind_huge()`` builds the network and the published ``imagebind_huge.pth`` (a plain
state dict of all six modalities) is loaded into it strictly, then every tower but vision and audio is dropped.
Nothing is downloaded.

Extraction follows hkchengrex/av-benchmark (``extract_video.py`` + ``av_bench/data/video_dataset.py`` for video,
``av_bench/extract.py`` + ``av_bench/data/audio_dataset.py:ImageBindAudioDataset`` for audio):

- **Video** (:class:`ImageBindVideo`): av-benchmark decodes ``int(0.5 x duration)`` frames through FFmpeg's
  ``fps=0.5`` filter (torio ``add_basic_video_stream(frame_rate=0.5)``; default rounding ``near``), which for output
  frame n keeps the last source frame that starts before (2n + 1) s. The harness decodes at a declared rate by
  sample and hold from the clip's start, so we declare 1 fps (floor(duration) frames) and keep the frames shown
  at 1, 3, 5, ... s (floor(duration / 2) = av-benchmark's count): the same frames, except where a source frame
  starts exactly at an odd second (integer frame rates: 24, 25, 30 fps), where ours is that frame and
  av-benchmark's the one before it, one source frame earlier (NTSC rates such as 29.97 fps match exactly). The
  whole clip is used (av-benchmark stops at its ``--audio_length``). Then, as av-benchmark: torchvision v2
  ``Resize(224, bicubic)`` of the shorter side (antialiased, on uint8), ``/255``, CLIP mean/std, three 224 x 224
  crops along the longer side (``imagebind.data.SpatialCrop(224, 3)``: left/top, centre, right/bottom), and one
  2-frame view per pair of consecutive frames and crop: ``3 x (T - 1)`` views of ``[3, 2, 224, 224]``. A clip
  needs T >= 2 frames, i.e. at least 4 s of video; shorter clips are skipped (``DoesNotApply``), as
  av-benchmark's loader drops them.
- **Audio** (:class:`ImageBindAudio`, native rate and channels in): ``torchaudio.functional.resample`` to 16 kHz
  (its defaults, as ImageBind's ``load_and_transform_audio_data``), three 2 s clips spread evenly over the whole
  signal (pytorchvideo ``ConstantClipsPerVideoSampler``; they overlap below 6 s), each a 128-bin Kaldi fbank of
  204 frames (``imagebind.data.waveform2melspec``), normalised by mean -4.268 and std 9.138. The fbank reads
  channel 0: for stereo music ImageBind hears the LEFT channel, as in av-benchmark, which passes
  ``torchaudio.load``'s channels unchanged. Clips are cut in place from one buffer as upstream does, so the
  mean removal of one overlapping clip carries into the next one, also as upstream.

Both extractors return one row per view, ``[views, 1024]`` float32, exactly what ``ImageBindModel.forward``
yields per view (vision rows L2-normalised; audio rows L2-normalised times ImageBind's fixed logit scale 20).
``forward`` pools a clip's views by their mean (its ``reduce_list`` branch); the score does the same
(``metrics.imagebind_score``). The network runs in float32 (av-benchmark also wraps the video encoder in
``torch.compile``, which changes nothing but rounding).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from metrics.backbones import checkpoint_identity, load_torch_checkpoint, resolve_checkpoint, resolve_device
from metrics.backbones import unwrap_state_dict
from metrics.base import DoesNotApply, ExtractorInfo, MetricError

CHECKPOINT_NAME = "imagebind-huge"
CHECKPOINT_FILE = "imagebind_huge.pth"
MODALITIES = ("vision", "audio")

# av-benchmark av_bench/data/video_dataset.py
UPSTREAM_FPS = 0.5
DECODE_FPS = 1.0  # frames at k s; the odd ones stand for FFmpeg fps=0.5's picks (see the module docstring)
IMAGE_SIZE = 224
NUM_CROPS = 3
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# imagebind.data.load_and_transform_audio_data defaults (av-benchmark's ImageBindAudioDataset uses the same)
SAMPLE_RATE = 16_000
NUM_MEL_BINS = 128
TARGET_LENGTH = 204
CLIP_DURATION_S = 2
CLIPS_PER_VIDEO = 3
MEL_MEAN = -4.268
MEL_STD = 9.138


def upstream() -> tuple[Any, Any, Any]:
    """(imagebind_model, imagebind.data, ConstantClipsPerVideoSampler), imported quietly.

    Importing ``imagebind`` imports ``imagebind.data``, hence pytorchvideo and pkg_resources (whose deprecation
    warning says nothing to a user of the score)."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
            from imagebind import data
            from imagebind.models import imagebind_model
            from pytorchvideo.data.clip_sampling import ConstantClipsPerVideoSampler
    except ImportError as e:
        raise ImportError(f"ImageBind's model code is missing ({e}): install imagebind-unofficial==0.1.1 and "
                          f"pytorchvideo==0.1.5 as scripts/install.sh does (`make install`)") from e
    return imagebind_model, data, ConstantClipsPerVideoSampler


def _load_state(path: Path) -> dict:
    """The checkpoint's tensors, memory-mapped when the file is in torch's zip format (4.5 GB for huge)."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as e:
        if "mmap" not in str(e):
            raise
        return load_torch_checkpoint(path)  # legacy (non-zip) serialisation cannot be memory-mapped


class ImageBind:
    """ImageBind's vision and audio towers with av-benchmark's preprocessing (see the module docstring).

    ``model_kwargs``: ``ImageBindModel`` arguments for a network other than ``imagebind_huge()`` (tests build
    tiny random ones); None builds huge, the network of the published checkpoint.
    """

    def __init__(self, checkpoint: str | Path, device: str | None = None, batch_size: int = 32,
                 model_kwargs: dict | None = None):
        imagebind_model, self._data, self._sampler = upstream()
        path = resolve_checkpoint(checkpoint, CHECKPOINT_FILE)
        model = (imagebind_model.imagebind_huge(pretrained=False) if model_kwargs is None
                 else imagebind_model.ImageBindModel(**model_kwargs))
        state = unwrap_state_dict(_load_state(path), path)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            arch = "imagebind_huge" if model_kwargs is None else f"ImageBindModel({model_kwargs})"
            detail = " ".join(line.strip() for line in str(e).splitlines()[:2])
            raise ValueError(f"{path.name} does not fit {arch}: {detail[:400]}") from e
        del state
        for towers in (model.modality_preprocessors, model.modality_trunks, model.modality_heads,
                       model.modality_postprocessors):
            for name in [k for k in towers if k not in MODALITIES]:
                del towers[name]
        self.path = path
        self.device = resolve_device(device)
        self.batch_size = max(1, int(batch_size))
        self.model = model.eval().to(self.device)
        self.model_name = "imagebind_huge" if model_kwargs is None else "custom"
        self.backbone = checkpoint_identity(CHECKPOINT_NAME, path)

    # ------------------------------------------------------------------------------------------ embedding
    def embed(self, modality: str, views) -> np.ndarray:
        """Per-view embeddings [views, out_dim] of a tensor of views: ``forward`` on each view as its own
        one-clip list (B = views, S = 1), in batches."""
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(views), self.batch_size):
                batch = views[i:i + self.batch_size].to(self.device)[:, None]
                out.append(self.model({modality: batch})[modality].float().cpu().numpy())
        return np.concatenate(out)

    # ------------------------------------------------------------------------------------------ video
    def video_views(self, frames: np.ndarray):
        """uint8 [T, H, W, 3] frames at 1 fps -> float32 views [3 x (T' - 1), 3, 2, 224, 224], T' frames kept."""
        import torch
        from torchvision.transforms import v2

        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected uint8 RGB frames [T, H, W, 3], got {frames.dtype} {frames.shape}")
        kept = frames[1::2]
        if len(kept) < 2:  # av-benchmark drops such videos ("IB video too short"): skipped, not failed
            raise DoesNotApply(f"ImageBind video views need two frames at {UPSTREAM_FPS:g} fps, a clip of at least "
                               f"4 s; got {len(frames)} frame(s) at {DECODE_FPS:g} fps")
        transform = v2.Compose([v2.Resize(IMAGE_SIZE, interpolation=v2.InterpolationMode.BICUBIC), v2.ToImage(),
                                v2.ToDtype(torch.float32, scale=True), v2.Normalize(CLIP_MEAN, CLIP_STD)])
        x = transform(torch.from_numpy(np.ascontiguousarray(kept)).permute(0, 3, 1, 2))  # [T', 3, h, w]
        crops = torch.stack(self._data.SpatialCrop(IMAGE_SIZE, NUM_CROPS)([x]))  # [crops, T', 3, 224, 224]
        pairs = torch.cat([crops[:, i:i + 2] for i in range(len(kept) - 1)])  # pair-major, crop-minor
        return pairs.permute(0, 2, 1, 3, 4).contiguous()  # [views, 3, 2, 224, 224]

    def video_embeddings(self, frames: np.ndarray) -> np.ndarray:
        return self.embed("vision", self.video_views(frames))

    # ------------------------------------------------------------------------------------------ audio
    def audio_views(self, audio: np.ndarray, sample_rate: int):
        """float32 [channels, n] (or [n]) at `sample_rate` -> normalised fbanks [3, 1, 128, 204]."""
        import torch
        import torchaudio

        a = np.array(audio, dtype=np.float32, order="C")  # a copy: upstream's in-place mean removal stays in it
        a = a[None] if a.ndim == 1 else a
        if a.ndim != 2 or a.shape[1] == 0:
            raise MetricError(f"expected non-empty audio [channels, n], got shape {a.shape}")
        wav = torch.from_numpy(a)
        if sample_rate != SAMPLE_RATE:
            wav = torchaudio.functional.resample(wav, orig_freq=int(sample_rate), new_freq=SAMPLE_RATE)
        if wav.shape[1] < int(0.025 * SAMPLE_RATE):
            raise MetricError(f"audio of {wav.shape[1] / SAMPLE_RATE:.3f} s is shorter than one 25 ms fbank frame")
        sampler = self._sampler(clip_duration=CLIP_DURATION_S, clips_per_video=CLIPS_PER_VIDEO)
        spans = self._data.get_clip_timepoints(sampler, wav.size(1) / SAMPLE_RATE)
        mels = [self._data.waveform2melspec(wav[:, int(s * SAMPLE_RATE):int(e * SAMPLE_RATE)], SAMPLE_RATE,
                                            NUM_MEL_BINS, TARGET_LENGTH) for s, e in spans]
        return (torch.stack(mels) - MEL_MEAN) / MEL_STD

    def audio_embeddings(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        return self.embed("audio", self.audio_views(audio, sample_rate))

    def params(self) -> dict:
        return {"model": self.model_name, "pooling_in_score": "mean of views (ImageBindModel.forward)",
                "reference": "hkchengrex/av-benchmark extract_video.py, av_bench/extract.py"}


def _shared(checkpoint: str | Path | ImageBind, device: str | None) -> ImageBind:
    return checkpoint if isinstance(checkpoint, ImageBind) else ImageBind(checkpoint, device=device)


class ImageBindVideo:
    """VideoExtractor: ImageBind vision embeddings of a clip's 2-frame views, [3 x (T - 1), 1024] (unit rows).

    `checkpoint` may be an :class:`ImageBind` to share one network with :class:`ImageBindAudio`."""

    def __init__(self, checkpoint: str | Path | ImageBind, device: str | None = None):
        self.model = _shared(checkpoint, device)
        self.info = ExtractorInfo(
            name="imagebind-video", version=1, fps=DECODE_FPS, size=None, backbone=self.model.backbone,
            params={**self.model.params(), "frames": "shown at 1, 3, 5, ... s (av-benchmark: FFmpeg fps=0.5, "
                    "int(0.5 x duration) frames)", "resize": f"shorter side {IMAGE_SIZE}, torchvision v2 bicubic "
                    "antialias", "mean": list(CLIP_MEAN), "std": list(CLIP_STD),
                    "crops": f"{NUM_CROPS} x {IMAGE_SIZE} along the longer side", "views": "consecutive frame "
                    "pairs x crops", "output": "per-view embedding, L2-normalised [views, 1024]"})

    def __call__(self, frames: np.ndarray, fps: float) -> np.ndarray:
        return self.model.video_embeddings(frames)


class ImageBindAudio:
    """AudioExtractor (native rate and channels): ImageBind audio embeddings of 3 clips of 2 s, [3, 1024]."""

    def __init__(self, checkpoint: str | Path | ImageBind, device: str | None = None):
        self.model = _shared(checkpoint, device)
        self.info = ExtractorInfo(
            name="imagebind-audio", version=1, sample_rate=None, mono=False, backbone=self.model.backbone,
            params={**self.model.params(), "sample_rate": SAMPLE_RATE,
                    "resampler": "torchaudio.functional.resample (defaults)", "channel": "0 (left), as the fbank",
                    "clips": f"{CLIPS_PER_VIDEO} x {CLIP_DURATION_S} s, evenly spread (ConstantClipsPerVideoSampler)",
                    "fbank": f"kaldi {NUM_MEL_BINS} bins, {TARGET_LENGTH} frames, 25/10 ms hanning",
                    "mel_mean": MEL_MEAN, "mel_std": MEL_STD,
                    "output": "per-clip embedding, L2-normalised x logit scale 20 [3, 1024]"})

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        return self.model.audio_embeddings(audio, sample_rate)
