"""VidMusician: frozen MusicGen LM + semantic branch (CLIP [CLS] -> T5/LoRA -> cross-attention) + rhythm branch
(visual-change curve -> Zero/Identity-Linear adapter -> in-attention at the first layer of each 4-layer block).

How the pieces meet (see ``backbone.py``, ``semantic.py``, ``rhythm.py``):

- the :class:`~vidmusician.semantic.SemanticEncoder` output ``[B, S, dim]`` is handed to the LM as the
  ``description`` condition, which the LM's fuser routes to its existing cross-attention;
- the :class:`~vidmusician.rhythm.RhythmAdapter` is attached with forward pre-hooks to
  ``lm.transformer.layers[j]`` for ``j`` in ``config.injection_layers``; :meth:`VidMusician.forward` wraps the
  backbone call in ``adapter.conditioning(d)`` so the hooks add F_Rj to the hidden state before layer j.

Token alignment: the LM runs on MusicGen's delay-pattern sequence; sequence step ``s`` predicts codebook 0 at
frame ``s`` (codebook k at frame ``s - k``), so the hook adds ``d[:, s]`` at step ``s`` (offset 0). Steps past the
end of ``d`` get no rhythm cue (zeros), see :meth:`RhythmAdapter.conditioning`.

Stages (``config.train.stage`` or the ``stage`` argument): ``"1"`` semantic module trains, no rhythm in the
forward pass; ``"2"`` rhythm adapter trains, semantic module frozen; ``"joint"`` both train (ablation "one-stage
training"). ``"both"`` (the two-stage schedule) starts in stage ``"1"``; the trainer calls :meth:`set_stage`.
The backbone is always frozen and kept in eval mode.

Depends on torch, transformers/peft (via ``semantic``) and audiocraft (via ``backbone``); no vm_eval imports.
"""
from __future__ import annotations

import contextlib
import typing as tp

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import build_lm, cross_condition, freeze, load_backbone
from .config import T5Spec, VidMusicianConfig
from .rhythm import RhythmAdapter, cls_dissimilarity, patch_dissimilarity, to_token_rate
from .semantic import SemanticEncoder, load_t5_encoder

__all__ = ["VidMusician", "STAGES", "t5_config_from_spec"]

STAGES = ("1", "2", "joint")


def t5_config_from_spec(spec: T5Spec, **kwargs):
    """A ``transformers.T5Config`` for a randomly initialised T5 encoder of the given size."""
    from transformers import T5Config

    return T5Config(vocab_size=spec.vocab_size, d_model=spec.d_model, d_kv=spec.d_kv, d_ff=spec.d_ff,
                    num_layers=spec.num_layers, num_heads=spec.num_heads, **kwargs)


def _normalise_stage(stage: tp.Any) -> str:
    stage = str(stage)
    if stage == "both":  # two-stage schedule: starts with the semantic stage
        stage = "1"
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(STAGES)} (or 'both'), got {stage!r}")
    return stage


class VidMusician(nn.Module):
    """The full model. ``VidMusician(config)`` builds random weights everywhere (tests, tiny preset).

    Args:
        config: the model configuration (``VidMusicianConfig.preset("tiny")`` in tests).
        stage: ``"1"``, ``"2"``, ``"joint"`` or ``"both"`` (= start at ``"1"``); default ``config.train.stage``.
        lm: a ready audiocraft ``LMModel`` (e.g. ``load_backbone(dir).lm``). Default: loaded from
            ``config.backbone.checkpoint_dir`` when set, else a random one of ``config.backbone.scale``.
        t5: a ready ``T5EncoderModel`` or ``T5Config``. Default: ``load_t5_encoder(config.semantic.t5.name)``
            when ``load_pretrained_t5`` is true, else a random T5 of ``config.semantic.t5``'s size.
        seed: seeds torch's RNG before building (backbone, then semantic module, then rhythm adapter, so two
            models with the same seed share backbone and semantic weights whatever the rhythm init).
    """

    def __init__(self, config: VidMusicianConfig, stage: tp.Optional[str] = None, lm: tp.Optional[nn.Module] = None,
                 t5: tp.Any = None, load_pretrained_t5: bool = False, seed: tp.Optional[int] = None):
        super().__init__()
        if seed is not None:
            torch.manual_seed(seed)
        self.config = config
        scale = config.scale
        bb = config.backbone
        # -- backbone (frozen)
        if lm is None:
            if bb.checkpoint_dir:
                lm = load_backbone(bb.checkpoint_dir).lm
            else:
                lm = build_lm(scale, n_q=bb.n_q, card=bb.card)
        self.lm = freeze(lm)
        layers = self.transformer_layers
        self.dim = int(self.lm.dim) if hasattr(self.lm, "dim") else scale.dim
        # -- semantic branch
        sem = config.semantic
        if t5 is None:
            t5 = load_t5_encoder(sem.t5.name) if load_pretrained_t5 else t5_config_from_spec(sem.t5)
        self.semantic = SemanticEncoder(t5, clip_dim=sem.clip_dim, cond_dim=scale.cross_attention_dim,
                                        lora_rank=sem.lora_rank, lora_alpha=sem.lora_alpha,
                                        lora_targets=sem.lora_targets, lora_dropout=sem.lora_dropout,
                                        t5_init=sem.t5_init)
        # -- rhythm branch, hooked into the LM's transformer layers
        rh = config.rhythm
        self.rhythm = RhythmAdapter(self.dim, config.injection_layers, init=rh.init, style=rh.style)
        self._hook_handles = self.rhythm.attach(layers)
        self.stage = "1"
        self.set_stage(config.train.stage if stage is None else stage)

    # ------------------------------------------------------------------------------------------------ structure
    @property
    def transformer_layers(self) -> nn.ModuleList:
        """The LM's transformer layer list (audiocraft ``LMModel.transformer.layers``)."""
        return self.lm.transformer.layers

    @property
    def uses_rhythm(self) -> bool:
        return self.stage != "1"

    def set_stage(self, stage: str) -> "VidMusician":
        """Switch stage and set ``requires_grad`` so exactly :meth:`trainable_parameters` train."""
        self.stage = _normalise_stage(stage)
        trainable = {id(p) for p in self.trainable_parameters()}
        for p in self.parameters():
            p.requires_grad_(id(p) in trainable)
        self.train(self.training)  # re-apply the eval mode of frozen parts
        return self

    def trainable_parameters(self, stage: tp.Optional[str] = None) -> tp.List[nn.Parameter]:
        """Stage ``"1"``: the semantic module's trainable parameters (EM + LoRA + projector, or EM + T5 +
        projector when T5 is trained from scratch). Stage ``"2"``: the rhythm adapter only. ``"joint"``: both.
        Never the backbone."""
        stage = self.stage if stage is None else _normalise_stage(stage)
        params: tp.List[nn.Parameter] = []
        if stage in ("1", "joint"):
            params += list(self.semantic.trainable_parameters())
        if stage in ("2", "joint"):
            params += list(self.rhythm.parameters())
        return params

    def train(self, mode: bool = True) -> "VidMusician":
        super().train(mode)
        self.lm.eval()  # frozen backbone: always eval (no dropout)
        if self.stage == "2":
            self.semantic.eval()  # frozen in stage 2
        return self

    def remove_hooks(self) -> None:
        for h in self._hook_handles:
            h.remove()
        self._hook_handles = []

    # ------------------------------------------------------------------------------------------------ conditions
    def semantic_condition(self, cls_feats: tp.Union[torch.Tensor, tp.Sequence[torch.Tensor]],
                           cls_mask: tp.Optional[torch.Tensor] = None) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        """CLIP [CLS] features [B, F1, clip_dim] (+ bool mask) -> cross-attention source [B, F1, dim] + mask."""
        return self.semantic(cls_feats, cls_mask)

    def rhythm_curve(self, feats: torch.Tensor, fps: tp.Optional[float] = None,
                     duration_s: tp.Optional[float] = None) -> torch.Tensor:
        """Visual-change curve at the token rate (50 Hz).

        ``feats``: patch features [T, P, D] / [B, T, P, D] (``config.rhythm.source == "patches"``) or CLS
        features [T, D] / [B, T, D] (``"cls"``), sampled at ``fps`` (default ``config.rhythm.fps``).
        ``duration_s`` defaults to T / fps. Returns [N] / [B, N] with N = round(duration_s * token_rate).
        """
        rh = self.config.rhythm
        fps = float(rh.fps if fps is None else fps)
        if rh.source == "patches":
            if feats.dim() not in (3, 4):
                raise ValueError(f"rhythm.source='patches' needs [T, P, D] or [B, T, P, D], got {tuple(feats.shape)}")
            d = patch_dissimilarity(feats)
        else:
            if feats.dim() not in (2, 3):
                raise ValueError(f"rhythm.source='cls' needs [T, D] or [B, T, D], got {tuple(feats.shape)}")
            d = cls_dissimilarity(feats)
        if duration_s is None:
            duration_s = d.shape[-1] / fps
        return to_token_rate(d, fps=fps, duration_s=float(duration_s), rate_hz=float(rh.token_rate_hz))

    # ------------------------------------------------------------------------------------------------ forward
    @contextlib.contextmanager
    def rhythm_conditioning(self, d: tp.Optional[torch.Tensor], drop: tp.Optional[torch.Tensor] = None):
        """Make the rhythm hooks add F_Rj(d) inside the block (nothing in stage ``"1"`` or when ``d`` is None).

        ``drop`` [B] bool: rows whose rhythm addition is exactly zero (classifier-free-guidance dropout; with a
        trained adapter ``O(0) = bias != 0``, so a zero curve would not do). Blocks nest; the outer state is
        restored on exit. The trainer wraps forward *and* backward in this block when gradient checkpointing is
        on, because the checkpointed layers re-run their pre-hooks during the backward pass.
        """
        rh = self.rhythm
        if not self.uses_rhythm or d is None:
            with rh.conditioning(None, offset=0) as outs:
                yield outs
            return
        if d.dim() == 1:
            d = d.unsqueeze(0)
        outs = rh(d)
        if drop is not None:
            keep = (~drop.bool()).to(device=next(iter(outs.values())).device)
            outs = {j: f * keep.view(-1, 1, 1).to(f.dtype) for j, f in outs.items()}
        prev = (rh._outputs, rh.offset, rh._auto_advance)
        rh.set_outputs(outs, offset=0)
        try:
            yield outs
        finally:
            rh.set_outputs(prev[0], offset=prev[1], auto_advance=prev[2])

    def predictions(self, codes: torch.Tensor, cls_feats: tp.Union[torch.Tensor, tp.Sequence[torch.Tensor]],
                    cls_mask: tp.Optional[torch.Tensor] = None, d: tp.Optional[torch.Tensor] = None,
                    valid: tp.Optional[torch.Tensor] = None, drop: tp.Optional[torch.Tensor] = None):
        """Teacher-forced ``LMOutput`` (``logits [B, K, T, card]``, valid ``mask [B, K, T]``).

        ``d``: token-rate rhythm curve [B, T] (or [1, T] / [T], broadcast); ignored in stage ``"1"``.
        ``valid``: bool [B, T], True = real frame (False = padding at the end of a shorter clip). The returned
        mask then also excludes every position whose delay-pattern context reaches a padded frame: codebook k
        at frame t is kept only when frame ``t + k`` is real -- exactly the positions an unpadded sequence of
        that row's length would have.
        ``drop``: bool [B], classifier-free-guidance condition dropout: dropped rows get
        :meth:`~vidmusician.semantic.SemanticEncoder.null_condition` (zero vectors, mask False) as semantic
        condition and no rhythm addition, i.e. they are the unconditional model.
        """
        cond, mask = self.semantic_condition(cls_feats, cls_mask)
        if drop is not None:
            drop = drop.to(device=cond.device).bool()
            if drop.shape != (cond.shape[0],):
                raise ValueError(f"drop must be [B={cond.shape[0]}], got {tuple(drop.shape)}")
            null, null_mask = self.semantic.null_condition(cond.shape[0], cond.shape[1])
            cond = torch.where(drop.view(-1, 1, 1), null.to(cond.dtype), cond)
            mask = torch.where(drop.view(-1, 1), null_mask, mask.bool())
        with self.rhythm_conditioning(d, drop):
            out = self.lm.compute_predictions(codes, [], condition_tensors=cross_condition(cond, mask))
        if valid is not None:
            out = type(out)(out.logits, out.mask.bool() & _shifted_valid(valid.to(out.mask.device), codes.shape[1]))
        return out

    def forward(self, codes: torch.Tensor, cls_feats: tp.Union[torch.Tensor, tp.Sequence[torch.Tensor]],
                cls_mask: tp.Optional[torch.Tensor] = None, d: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
        """codes [B, K, T], cls_feats [B, F1, clip_dim] (+ mask [B, F1]), d [B, T] or None -> logits
        [B, K, T, card]. Positions the delay pattern cannot predict hold NaN (see :meth:`predictions`' mask)."""
        return self.predictions(codes, cls_feats, cls_mask, d).logits

    def loss(self, codes: torch.Tensor, cls_feats: tp.Union[torch.Tensor, tp.Sequence[torch.Tensor]],
             cls_mask: tp.Optional[torch.Tensor] = None, d: tp.Optional[torch.Tensor] = None,
             valid: tp.Optional[torch.Tensor] = None, drop: tp.Optional[torch.Tensor] = None) -> torch.Tensor:
        """Cross-entropy of the logits against ``codes`` over the valid positions (MusicGen's training loss,
        averaged over codebooks; within a codebook, averaged over all valid positions of the batch).
        ``valid`` / ``drop``: see :meth:`predictions` (padded frames never enter the loss)."""
        out = self.predictions(codes, cls_feats, cls_mask, d, valid=valid, drop=drop)
        losses = []
        for k in range(codes.shape[1]):
            valid_k = out.mask[:, k].bool()
            logits_k = out.logits[:, k][valid_k]
            losses.append(F.cross_entropy(logits_k.float(), codes[:, k][valid_k]))
        return torch.stack(losses).mean()


def _shifted_valid(valid: torch.Tensor, n_q: int) -> torch.Tensor:
    """valid [B, T] -> [B, K, T]: codebook k at frame t counts when frame t + k is real (delay pattern)."""
    valid = valid.bool()
    if valid.dim() != 2:
        raise ValueError(f"valid must be [B, T], got {tuple(valid.shape)}")
    B, T = valid.shape
    rows = []
    for k in range(n_q):
        shifted = torch.zeros_like(valid)
        if k < T:
            shifted[:, : T - k] = valid[:, k:]
        rows.append(shifted)
    return torch.stack(rows, dim=1)
