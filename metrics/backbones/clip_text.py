"""CLIP text tower (open_clip ``ViT-B-32``, same checkpoint file as ClipVisual) for zero-shot video tagging.

``ClipTextEncoder(checkpoint)(texts) -> [n, 512]`` L2-normalised, as ``model.encode_text`` then normalisation,
with open_clip's bundled BPE tokenizer (offline, 77 tokens). The whole CLIP state dict is loaded strictly; only the
text path is used.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from metrics.backbones import (
    checkpoint_identity, load_torch_checkpoint, resolve_checkpoint, resolve_device, unwrap_state_dict,
)
from metrics.backbones.clip import CHECKPOINT_FILE, CHECKPOINT_NAME


class ClipTextEncoder:
    def __init__(self, checkpoint: str | Path, model: str = "ViT-B-32", device: str | None = None):
        import open_clip

        path = resolve_checkpoint(checkpoint, CHECKPOINT_FILE)
        clip = open_clip.create_model(model, pretrained=None)
        clip.load_state_dict(unwrap_state_dict(load_torch_checkpoint(path), path), strict=True)
        self.device = resolve_device(device)
        self.model = clip.eval().to(self.device)
        self.tokenizer = open_clip.get_tokenizer(model)
        self.backbone = checkpoint_identity(CHECKPOINT_NAME, path)
        self.model_name = model

    def __call__(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            e = self.model.encode_text(self.tokenizer(list(texts)).to(self.device))
            e = torch.nn.functional.normalize(e, dim=-1)
        return e.float().cpu().numpy()
