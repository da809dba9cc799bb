"""VidMusician's visual encoder: open_clip image tower -> the two conditions the model reads.

- semantic: global CLIP image embeddings (``encode_image``) of frames at 1 fps, ``cls`` [F1, embed_dim];
- rhythm: the visual-change curve at 25 fps, ``d_patch`` [F25] = 1 - mean_p cos(p_t, p_{t-1}) of the final-layer
  patch tokens (d_0 = 1), plus ``d_cls`` [F25] = 1 - cos of the global embeddings (ablation "rhythm from [CLS]").

Why the 25-fps patch tokens are reduced to ``d`` before caching: ViT-B-32 gives 49 x 768 floats per frame, 110 MB
for a 30 s clip at 25 fps; the model only ever reads their frame-to-frame dissimilarity (no trainable weight sits
before it), so caching the curve is exact and 10^4 times smaller.

The tower, its preprocessing and checkpoint reading are ``metrics.backbones.clip.ClipVisual`` (bit-exact open_clip
evaluation transform); the metrics that use CLIP and this model therefore see identical features for identical
weights. Towers open_clip does not name (the tiny test tower) are passed as an open_clip-style config.
"""
from __future__ import annotations

import typing as tp
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .rhythm import cls_dissimilarity, patch_dissimilarity

CHECKPOINT_FILE = "open_clip_pytorch_model.bin"

# open_clip-style config of the tiny random tower used by the `tiny` preset (CPU tests, demo): 64 px input,
# 16 px patches -> 16 patch tokens, width 32, 2 layers, 48-d embedding (= SemanticConfig.clip_dim of `tiny`).
TINY_CLIP_CFG: tp.Dict[str, tp.Any] = {
    "embed_dim": 48,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 32, "head_width": 16, "patch_size": 16},
}
MODEL_CFGS: tp.Dict[str, tp.Dict[str, tp.Any]] = {"tiny-clip": TINY_CLIP_CFG}


@dataclass
class VisualFeatures:
    """What the model reads from one clip's video. Frame k of a curve sits at time k / fps (seconds)."""
    cls: np.ndarray  # [F1, embed_dim] float32, global embeddings at cls_fps
    d_patch: np.ndarray  # [F25] float32, patch-token dissimilarity at rhythm_fps, d_0 = 1
    d_cls: np.ndarray  # [F25] float32, global-embedding dissimilarity at rhythm_fps, d_0 = 1
    cls_fps: float = 1.0
    rhythm_fps: float = 25.0

    def rhythm(self, source: str) -> np.ndarray:
        """The curve for ``RhythmConfig.source`` ("patches" or "cls")."""
        if source not in ("patches", "cls"):
            raise ValueError(f"rhythm source must be 'patches' or 'cls', got {source!r}")
        return self.d_patch if source == "patches" else self.d_cls


def model_cfg(name: str) -> tp.Optional[tp.Dict[str, tp.Any]]:
    """Our own config for tower ``name`` (None: ask open_clip for it)."""
    return MODEL_CFGS.get(name)


def build_random_tower(name: str, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised open_clip image tower (seeded)."""
    import open_clip
    from open_clip.model import _build_vision_tower

    cfg = model_cfg(name) or open_clip.get_model_config(name)
    if cfg is None:
        raise ValueError(f"unknown CLIP model {name!r} (open_clip names, or {', '.join(MODEL_CFGS)})")
    torch.manual_seed(seed)
    return _build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"], quick_gelu=bool(cfg.get("quick_gelu", False)))


def save_random_tower(name: str, path: tp.Union[str, Path], seed: int = 0) -> Path:
    """Write a random tower as open_clip's published checkpoint layout does (``visual.*`` keys of the CLIP
    state dict), so it loads through the same path as real weights."""
    path = Path(path)
    if path.suffix != ".bin":
        path = path / CHECKPOINT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tower = build_random_tower(name, seed)
    state = {f"visual.{k}": v.detach().clone() for k, v in tower.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    return path


class VisualEncoder:
    """CLIP image tower on a local checkpoint file (or folder holding ``open_clip_pytorch_model.bin``).

    ``batch_size`` frames go through the network at once. ``device``: "cpu", "cuda", ... (default: best).
    """

    def __init__(self, checkpoint: tp.Union[str, Path], model: str = "ViT-B-32", device: tp.Optional[str] = None,
                 batch_size: int = 64):
        from metrics.backbones.clip import ClipVisual

        self.clip = ClipVisual(checkpoint, model=model, device=device, batch_size=batch_size,
                               model_cfg=model_cfg(model))
        self.model = model
        self.path = self.clip.path
        self.embed_dim = self.clip.embed_dim

    def encode(self, frames_cls: np.ndarray, frames_rhythm: tp.Union[np.ndarray, tp.Iterable[np.ndarray]],
               cls_fps: float = 1.0, rhythm_fps: float = 25.0) -> VisualFeatures:
        """uint8 RGB frames [T, H, W, 3] at ``cls_fps``, and at ``rhythm_fps`` (one array, or consecutive chunks
        of one so a long high-resolution clip never sits in memory whole) -> :class:`VisualFeatures`.

        Rhythm frames go through the tower ``batch_size`` at a time and only their dissimilarity is kept.
        """
        if len(frames_cls) == 0:
            raise ValueError("the video has no frames in this span")
        cls = self.clip.global_features(frames_cls)
        chunks = [frames_rhythm] if isinstance(frames_rhythm, np.ndarray) else frames_rhythm
        d_patch, d_cls = [], []
        prev_g = prev_p = None
        step = self.clip.batch_size
        for chunk in chunks:
            for i in range(0, len(chunk), step):
                g, p = self.clip.features(chunk[i:i + step])
                g_t, p_t = torch.from_numpy(g), torch.from_numpy(p)
                # one frame of overlap with the previous batch keeps the curve identical to a single pass
                if prev_p is not None:
                    g_t, p_t = torch.cat([prev_g, g_t]), torch.cat([prev_p, p_t])
                dp, dc = patch_dissimilarity(p_t), cls_dissimilarity(g_t)
                if prev_p is not None:
                    dp, dc = dp[1:], dc[1:]
                d_patch.append(dp.numpy())
                d_cls.append(dc.numpy())
                prev_g, prev_p = g_t[-1:], p_t[-1:]
        if not d_patch:
            raise ValueError("the video has no frames in this span")
        return VisualFeatures(cls=cls.astype(np.float32), d_patch=np.concatenate(d_patch).astype(np.float32),
                              d_cls=np.concatenate(d_cls).astype(np.float32), cls_fps=float(cls_fps),
                              rhythm_fps=float(rhythm_fps))
