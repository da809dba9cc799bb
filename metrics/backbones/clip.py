"""CLIP image tower (open_clip ``ViT-B-32``, ``laion2b_s34b_b79k``): global and patch features of frames.

``ClipVisual(checkpoint)`` holds the vision transformer only (open_clip's own ``VisionTransformer`` module;
the text tower is never built). For uint8 RGB frames ``[T, H, W, 3]``:

- ``global_features(frames) -> [T, 512]``: the image embedding, i.e. what open_clip's ``model.encode_image``
  returns (class token -> ``ln_post`` -> projection), NOT L2-normalised unless ``normalize=True``
  (encode_image's own default is unnormalised too);
- ``patch_features(frames) -> [T, P, width]`` (ViT-B-32 at 224 px: P = 7 x 7 = 49 patches in row-major order,
  width 768): the patch tokens of the final transformer layer, class token excluded, AFTER ``ln_post`` and
  WITHOUT the projection: the tokens open_clip itself returns with ``output_tokens=True``. ``ln_post`` is a
  per-token LayerNorm, so it keeps the tokens local; the projection is trained only on the class token, so it
  is not applied (VidMusician's rhythm signal takes 1 - cosine between consecutive frames' patch features).

Preprocessing is open_clip's evaluation transform for this model as ``create_model_and_transforms`` builds it
(``PreprocessCfg`` defaults, size = the tower's image size; for ViT-B-32: resize the shortest side to 224 with
bicubic PIL resampling, centre crop 224 x 224, /255, normalise by the OpenAI mean and std), done on numpy
frames: the resize runs through PIL exactly as torchvision's ``Resize`` does for PIL images (a tensor bicubic
resize differs by up to ~20 grey levels on noisy, sharp-edged frames), the crop and normalisation are array
operations with the same arithmetic, so the network input equals upstream's bit for bit. The network runs in
batches of ``batch_size`` frames.

Video extractors: ``ClipGlobal(checkpoint, fps=1.0)`` (semantic condition, 1 fps) and
``ClipPatches(checkpoint, fps=25.0)`` (rhythm condition, 25 fps). Both declare ``size=None``: frames come at
their decoded size and the CLIP transform above does the resizing and cropping (a harness resize to 224 x 224
would squash the aspect ratio).

Checkpoint: the published ``open_clip_pytorch_model.bin`` is the state dict of the whole CLIP model
(``visual.*``, text tower, ``logit_scale``); only ``visual.*`` is read (strictly). ``state_dict`` wrappers and
``module.`` prefixes are accepted. Nothing is downloaded.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from metrics.backbones import checkpoint_identity, resolve_device
from metrics.backbones import load_torch_checkpoint, resolve_checkpoint, unwrap_state_dict
from metrics.base import ExtractorInfo

CHECKPOINT_NAME = "clip-vit-b-32"
CHECKPOINT_FILE = "open_clip_pytorch_model.bin"


def _shortest_side_size(h: int, w: int, size: int) -> tuple[int, int]:
    """(new_h, new_w) when the shorter side becomes `size` (torchvision's rule for an int size: the long side
    is truncated, not rounded)."""
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    return (new_long, new_short) if w <= h else (new_short, new_long)


def _centre_crop_box(h: int, w: int, ch: int, cw: int) -> tuple[int, int]:
    """(top, left) of a centred ch x cw crop (torchvision's rounding: Python round of half the margin)."""
    return int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))


class ClipVisual:
    """open_clip image tower with its evaluation preprocessing on numpy frames (see the module docstring)."""

    def __init__(self, checkpoint: str | Path, model: str = "ViT-B-32", device: str | None = None,
                 batch_size: int = 64, model_cfg: dict | None = None):
        import open_clip
        from open_clip.model import _build_vision_tower
        from open_clip.transform import PreprocessCfg

        path = resolve_checkpoint(checkpoint, CHECKPOINT_FILE)
        # model_cfg: an open_clip-style config for towers open_clip does not name (e.g. tiny random test towers)
        cfg = model_cfg or open_clip.get_model_config(model)
        if cfg is None:
            raise ValueError(f"open_clip has no model config {model!r}")
        vision_cfg = dict(cfg["vision_cfg"])
        if vision_cfg.get("timm_model_name"):
            raise NotImplementedError(f"{model}: only open_clip's own VisionTransformer towers are supported")
        vision_cfg["output_tokens"] = True  # forward returns (pooled @ proj, patch tokens after ln_post)
        quick_gelu = bool(cfg.get("quick_gelu", False))
        visual = _build_vision_tower(cfg["embed_dim"], vision_cfg, quick_gelu=quick_gelu)
        if not hasattr(visual, "ln_post") or getattr(visual, "attn_pool", None) is not None:
            raise NotImplementedError(f"{model}: expected a plain ViT tower (class-token pooling, "
                                      f"no attention pool)")

        state = unwrap_state_dict(load_torch_checkpoint(path), path)
        vis = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
        if not vis:
            raise ValueError(f"{path.name} holds no visual.* weights: not an open_clip CLIP checkpoint")
        visual.load_state_dict(vis, strict=True)

        self.path = path
        self.model_name = model
        self.device = resolve_device(device)
        self.batch_size = max(1, int(batch_size))
        self.visual = visual.eval().to(self.device)
        pp = dataclasses.asdict(PreprocessCfg())
        size = visual.image_size
        pp["size"] = tuple(size) if isinstance(size, (tuple, list)) else (int(size), int(size))
        if pp["resize_mode"] not in ("shortest", "squash") or pp["interpolation"] not in ("bicubic",
                                                                                          "bilinear"):
            raise NotImplementedError(f"preprocessing {pp} is not supported")
        self.preprocess_cfg = pp
        self.embed_dim = int(cfg["embed_dim"])
        self.width = int(vision_cfg.get("width", 768))
        gh, gw = visual.grid_size
        self.n_patches = int(gh * gw)
        self.backbone = checkpoint_identity(CHECKPOINT_NAME, path)

    # ----------------------------------------------------------------------------------------- preprocessing
    def preprocess(self, frames: np.ndarray):
        """uint8 [T, H, W, 3] -> normalised float32 tensor [T, 3, h, w] (open_clip's eval transform)."""
        import torch
        from PIL import Image

        frames = self._check(frames)
        th, tw = self.preprocess_cfg["size"]
        resample = Image.BICUBIC if self.preprocess_cfg["interpolation"] == "bicubic" else Image.BILINEAR
        out = np.empty((len(frames), th, tw, 3), dtype=np.uint8)
        for i, frame in enumerate(frames):
            h, w = frame.shape[:2]
            if self.preprocess_cfg["resize_mode"] == "shortest":
                if th != tw:
                    raise NotImplementedError("shortest-side resize needs a square crop")
                nh, nw = _shortest_side_size(h, w, th)
            else:  # squash
                nh, nw = th, tw
            img = Image.fromarray(frame)
            if (nh, nw) != (h, w):
                img = img.resize((nw, nh), resample)
            arr = np.asarray(img)
            top, left = _centre_crop_box(nh, nw, th, tw)
            out[i] = arr[top:top + th, left:left + tw]
        x = torch.from_numpy(out).permute(0, 3, 1, 2).contiguous().to(dtype=torch.float32).div(255)
        mean = torch.tensor(self.preprocess_cfg["mean"], dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.preprocess_cfg["std"], dtype=torch.float32).view(1, 3, 1, 1)
        return x.sub_(mean).div_(std)

    @staticmethod
    def _check(frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected RGB frames [T, H, W, 3], got shape {frames.shape}")
        if frames.dtype != np.uint8:
            raise ValueError(f"expected uint8 frames, got {frames.dtype}")
        return frames

    # ----------------------------------------------------------------------------------------- features
    def features(self, frames: np.ndarray, normalize: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(global [T, embed_dim], patches [T, P, width]) in one pass, float32."""
        import torch

        frames = self._check(frames)
        g_out, p_out = [], []
        with torch.inference_mode():
            for i in range(0, len(frames), self.batch_size):
                x = self.preprocess(frames[i:i + self.batch_size]).to(self.device)
                pooled, tokens = self.visual(x)
                if normalize:
                    pooled = torch.nn.functional.normalize(pooled, dim=-1)
                g_out.append(pooled.float().cpu().numpy())
                p_out.append(tokens.float().cpu().numpy())
        if not g_out:
            return (np.zeros((0, self.embed_dim), np.float32),
                    np.zeros((0, self.n_patches, self.width), np.float32))
        return np.concatenate(g_out), np.concatenate(p_out)

    def global_features(self, frames: np.ndarray, normalize: bool = False) -> np.ndarray:
        """Image embeddings [T, 512] (encode_image; L2-normalised only if `normalize`)."""
        return self.features(frames, normalize=normalize)[0]

    def patch_features(self, frames: np.ndarray) -> np.ndarray:
        """Final-layer patch tokens after ln_post, no projection, class token excluded: [T, P, width]."""
        return self.features(frames)[1]

    def params(self) -> dict:
        pp = self.preprocess_cfg
        return {"model": self.model_name,
                "preprocess": f"PIL {pp['interpolation']} resize ({pp['resize_mode']}) to {pp['size'][0]}, "
                              f"centre crop {pp['size'][0]}x{pp['size'][1]}, /255, normalise",
                "mean": list(pp["mean"]), "std": list(pp["std"])}


def _visual(checkpoint, device, batch_size) -> ClipVisual:
    if isinstance(checkpoint, ClipVisual):
        return checkpoint
    return ClipVisual(checkpoint, device=device, batch_size=batch_size)


class ClipGlobal:
    """VideoExtractor: CLIP image embedding per frame, [T, 512] (unnormalised unless `normalize`), at `fps`.

    `checkpoint` may also be an existing :class:`ClipVisual` to share one network between extractors.
    """

    def __init__(self, checkpoint: str | Path | ClipVisual, fps: float = 1.0, device: str | None = None,
                 normalize: bool = False, batch_size: int = 64):
        self.visual = _visual(checkpoint, device, batch_size)
        self.normalize = bool(normalize)
        self.info = ExtractorInfo(
            name="clip-global", version=1,
            params={**self.visual.params(), "output": "image embedding (encode_image) [T, 512]",
                    "normalize": self.normalize},
            fps=float(fps), size=None, backbone=self.visual.backbone,
        )

    def __call__(self, frames: np.ndarray, fps: float) -> np.ndarray:
        return self.visual.global_features(frames, normalize=self.normalize)


class ClipPatches:
    """VideoExtractor: CLIP final-layer patch tokens per frame (after ln_post, no projection) [T, 49, 768]."""

    def __init__(self, checkpoint: str | Path | ClipVisual, fps: float = 25.0, device: str | None = None,
                 batch_size: int = 64):
        self.visual = _visual(checkpoint, device, batch_size)
        self.info = ExtractorInfo(
            name="clip-patches", version=1,
            params={**self.visual.params(),
                    "output": "final-layer patch tokens after ln_post, no projection, class token excluded "
                              "[T, P, width]"},
            fps=float(fps), size=None, backbone=self.visual.backbone,
        )

    def __call__(self, frames: np.ndarray, fps: float) -> np.ndarray:
        return self.visual.patch_features(frames)
