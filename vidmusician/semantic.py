"""Semantic conditioning of VidMusician: global CLIP features -> T5 (LoRA) -> backbone cross-attention source.

Pipeline (design doc, "VidMusician, as far as public facts go"): frames at 1 fps -> CLIP image encoder, keep the
global [CLS] feature per frame -> :class:`EmbeddingManager` (a Linear into T5's input-embedding space; the T5
encoder reads the mapped vectors as pseudo-tokens via ``inputs_embeds``) -> T5 encoder, fine-tuned with LoRA on
the attention q and v projections -> projector Linear(t5_dim -> cond_dim) -> the backbone's existing
cross-attention (what MusicGen's text conditioner provides).

Depends on torch, transformers and peft only (no vm_eval / baselines / metrics imports). Note: on a CPU-only
machine with a CUDA torchvision, importing peft needs the project's compat hook installed first (``import
vm_eval`` does that); that is the caller's business, this module does not import vm_eval.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

__all__ = ["EmbeddingManager", "SemanticEncoder", "pad_clip_features", "load_t5_encoder"]

T5_INITS = ("pretrained", "scratch")


def pad_clip_features(feats: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Stack variable-length per-clip [T_i, clip_dim] features into [B, T_max, clip_dim] (zero-padded at the end)
    and a bool mask [B, T_max] (True = real frame)."""
    if len(feats) == 0:
        raise ValueError("no clips")
    t_max = max(int(f.shape[0]) for f in feats)
    dim = int(feats[0].shape[-1])
    ref = feats[0]
    out = ref.new_zeros(len(feats), t_max, dim)
    mask = torch.zeros(len(feats), t_max, dtype=torch.bool, device=ref.device)
    for i, f in enumerate(feats):
        out[i, : f.shape[0]] = f
        mask[i, : f.shape[0]] = True
    return out, mask


def load_t5_encoder(name_or_path: str, **kwargs):
    """Load a pretrained T5 encoder (hub id such as "t5-base", MusicGen's text encoder, or a local folder).

    Needs the weights to be available (offline here: a local path or a populated HF cache)."""
    from transformers import T5EncoderModel

    return T5EncoderModel.from_pretrained(name_or_path, **kwargs)


class EmbeddingManager(nn.Module):
    """Linear map of each global CLIP [CLS] feature (one per 1-fps frame) into T5's input-embedding space.

    ``forward(cls_feats, mask=None)``: ``cls_feats`` is [B, T, clip_dim] (or a list of [T_i, clip_dim] tensors,
    padded here); returns pseudo-tokens [B, T, t5_dim] and a bool attention mask [B, T] (True = real frame;
    all True when no mask is given). Padded positions of the pseudo-tokens are set to 0.
    PyTorch default init (the design doc gives no init for the EM; assumption).
    """

    def __init__(self, clip_dim: int, t5_dim: int):
        super().__init__()
        self.clip_dim = int(clip_dim)
        self.t5_dim = int(t5_dim)
        self.proj = nn.Linear(self.clip_dim, self.t5_dim)

    def forward(self, cls_feats: Union[torch.Tensor, Sequence[torch.Tensor]],
                mask: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        if not torch.is_tensor(cls_feats):
            if mask is not None:
                raise ValueError("pass either a padded tensor with a mask or a list of clips, not both")
            cls_feats, mask = pad_clip_features(list(cls_feats))
        if cls_feats.dim() == 2:
            cls_feats = cls_feats.unsqueeze(0)
            mask = mask.unsqueeze(0) if mask is not None else None
        if cls_feats.dim() != 3 or cls_feats.shape[-1] != self.clip_dim:
            raise ValueError(f"expected [B, T, {self.clip_dim}], got {tuple(cls_feats.shape)}")
        if mask is None:
            mask = torch.ones(cls_feats.shape[:2], dtype=torch.bool, device=cls_feats.device)
        mask = mask.to(device=cls_feats.device).bool()
        w = self.proj.weight
        tokens = self.proj(cls_feats.to(dtype=w.dtype, device=w.device))
        tokens = tokens * mask.unsqueeze(-1).to(tokens.dtype)
        return tokens, mask


class SemanticEncoder(nn.Module):
    """CLIP [CLS] sequence -> cross-attention source [B, T, cond_dim] + bool mask [B, T].

    ``t5_config_or_model``: a ``transformers.T5Config`` (a T5EncoderModel is built from it, randomly initialised)
    or a ready ``T5EncoderModel`` (e.g. from :func:`load_t5_encoder`).

    ``t5_init="pretrained"`` (default design): the given T5 is kept, all its own weights are frozen, and peft
    LoRA adapters (rank ``lora_rank``, alpha ``lora_alpha``, dropout ``lora_dropout``) are put on
    ``lora_targets`` (T5's attention projections "q" and "v" by default). Passing a T5Config here gives a
    random-weight T5 treated as if pretrained -- what the tests use.
    ``t5_init="scratch"`` (ablation "T5 from scratch"): a fresh randomly initialised T5EncoderModel is built
    from the config (a given model contributes only its config; its weights are discarded), every T5 weight
    trains and there is no LoRA.

    Trainable in both modes: the Embedding Manager and the projector (PyTorch default init; assumption).
    Outputs at padded positions are zeroed (as MusicGen's T5 conditioner does with its text embeddings).
    """

    def __init__(self, t5_config_or_model, clip_dim: int, cond_dim: int, lora_rank: int = 8,
                 lora_alpha: float = 16.0, lora_targets: Sequence[str] = ("q", "v"), lora_dropout: float = 0.0,
                 t5_init: str = "pretrained"):
        super().__init__()
        from transformers import T5Config, T5EncoderModel

        if t5_init not in T5_INITS:
            raise ValueError(f"t5_init must be one of {T5_INITS}, got {t5_init!r}")
        if isinstance(t5_config_or_model, T5Config):
            config = t5_config_or_model
            t5 = T5EncoderModel(config) if t5_init == "pretrained" else None
        elif isinstance(t5_config_or_model, nn.Module) and hasattr(t5_config_or_model, "config"):
            config = t5_config_or_model.config
            t5 = t5_config_or_model if t5_init == "pretrained" else None
        else:
            raise TypeError("t5_config_or_model must be a T5Config or a T5EncoderModel")
        if t5 is None:  # scratch
            t5 = T5EncoderModel(config)
        self.t5_init = t5_init
        self.clip_dim = int(clip_dim)
        self.cond_dim = int(cond_dim)
        self.t5_dim = int(config.d_model)
        self.lora_rank = int(lora_rank)
        self.lora_alpha = float(lora_alpha)
        self.lora_targets = tuple(lora_targets)
        self.lora_dropout = float(lora_dropout)

        self.embedding_manager = EmbeddingManager(self.clip_dim, self.t5_dim)
        if t5_init == "pretrained":
            from peft import LoraConfig, get_peft_model

            for p in t5.parameters():
                p.requires_grad_(False)
            lcfg = LoraConfig(r=self.lora_rank, lora_alpha=self.lora_alpha,
                              target_modules=list(self.lora_targets), lora_dropout=self.lora_dropout,
                              bias="none")
            self.t5 = get_peft_model(t5, lcfg)
            # belt and braces: only LoRA parameters inside the T5 train
            for name, p in self.t5.named_parameters():
                p.requires_grad_("lora_" in name)
        else:
            self.t5 = t5
            for p in self.t5.parameters():
                p.requires_grad_(True)
        self.projector = nn.Linear(self.t5_dim, self.cond_dim)

    @property
    def uses_lora(self) -> bool:
        return self.t5_init == "pretrained"

    def lora_parameters(self) -> List[nn.Parameter]:
        if not self.uses_lora:
            return []
        return [p for n, p in self.t5.named_parameters() if "lora_" in n]

    def base_t5_parameters(self) -> List[Tuple[str, nn.Parameter]]:
        """The T5's own weights (without LoRA parameters)."""
        return [(n, p) for n, p in self.t5.named_parameters() if "lora_" not in n]

    def trainable_parameters(self) -> List[nn.Parameter]:
        """EM + LoRA + projector (pretrained mode), or EM + all of T5 + projector (scratch mode)."""
        params = list(self.embedding_manager.parameters())
        params += self.lora_parameters() if self.uses_lora else list(self.t5.parameters())
        params += list(self.projector.parameters())
        return params

    def forward(self, cls_feats: Union[torch.Tensor, Sequence[torch.Tensor]],
                mask: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """``cls_feats`` [B, T, clip_dim] (+ bool mask [B, T]) or a list of [T_i, clip_dim] ->
        (condition [B, T, cond_dim], bool mask [B, T])."""
        tokens, mask = self.embedding_manager(cls_feats, mask)
        out = self.t5(inputs_embeds=tokens, attention_mask=mask.long())
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        cond = self.projector(hidden)
        cond = cond * mask.unsqueeze(-1).to(cond.dtype)
        return cond, mask

    def null_condition(self, batch: int, length: int = 1) -> Tuple[torch.Tensor, torch.Tensor]:
        """Unconditional input for classifier-free guidance: zeros [batch, length, cond_dim] and an all-False mask.

        Mirrors what MusicGen's text conditioner yields for a dropped (empty) description: zero embeddings with
        nothing marked valid. Use it for the unconditional half at sampling time
        (``logits = uncond + cfg_coef * (cond - uncond)``) and to replace dropped conditions in training.
        Caveat: a cross-attention that *applies* the mask would see a fully masked row (softmax over nothing ->
        NaN); such backbones must either ignore the mask for these rows or attend to the zero vectors unmasked
        (as far as we know audiocraft passes no cross-attention mask, so it attends to the zeroed embeddings).
        """
        p = self.projector.weight
        cond = torch.zeros(batch, max(int(length), 1), self.cond_dim, dtype=p.dtype, device=p.device)
        mask = torch.zeros(batch, cond.shape[1], dtype=torch.bool, device=p.device)
        return cond, mask
