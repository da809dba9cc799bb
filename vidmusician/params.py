"""Parameter counts per component, built on the meta device (no weights, no memory), and the LoRA-rank search.

Components (``breakdown`` keys) and what is trainable:

- ``backbone_lm``: MusicGen transformer LM (frozen: fact).
- ``encodec``: 32 kHz EnCodec (frozen; only encodes targets / decodes outputs).
- ``t5_encoder``: T5 encoder built from a ``T5Config`` (frozen under LoRA; fully trainable when
  ``semantic.t5_init == "scratch"``, the "T5 from scratch" ablation, which then has no LoRA).
- ``lora``: ``rank * (in + out)`` per targeted Linear of the T5 encoder (no bias), counted analytically over
  the meta model's Linears whose name is a target (``q``, ``v`` ...).
- ``embedding_manager``: Linear ``clip_dim -> t5.d_model`` with bias.
- ``projector``: Linear ``t5.d_model -> backbone dim`` (bias per ``semantic.projector_bias``).
- ``rhythm``: Zero-Linear ``1 -> dim`` (d_t is one scalar per frame) plus one Identity-Linear ``dim -> dim``
  (with bias) per injection point (9 for 48 layers). Absent when ``train.stage == "1"`` (the "no rhythm"
  ablation).

The CLIP image encoder is frozen and not counted (it is not part of the 24.79M either way).
"""
from __future__ import annotations

import typing as tp

import torch
from torch import nn

from .config import PAPER_TRAINABLE, VidMusicianConfig, preset

Breakdown = tp.Dict[str, tp.Tuple[int, int]]


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _linear(in_f: int, out_f: int, bias: bool = True) -> int:
    return in_f * out_f + (out_f if bias else 0)


def build_t5_encoder(cfg: VidMusicianConfig, device: tp.Union[str, torch.device] = "meta") -> nn.Module:
    """A ``transformers.T5EncoderModel`` with the config's T5 sizes (random / meta weights, nothing loaded)."""
    from transformers import T5Config, T5EncoderModel

    t5 = cfg.semantic.t5
    t5_cfg = T5Config(vocab_size=t5.vocab_size, d_model=t5.d_model, d_kv=t5.d_kv, d_ff=t5.d_ff,
                      num_layers=t5.num_layers, num_heads=t5.num_heads, feed_forward_proj="relu")
    with torch.device(device):
        return T5EncoderModel(t5_cfg)


def lora_parameters(model: nn.Module, rank: int, targets: tp.Sequence[str]) -> int:
    """Analytic LoRA size: ``rank * (in + out)`` for every Linear whose last name component is a target."""
    total = 0
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in targets:
            total += rank * (module.in_features + module.out_features)
    return total


def parameter_breakdown(cfg: tp.Union[str, VidMusicianConfig] = "paper") -> Breakdown:
    """``{component: (total, trainable)}`` plus ``total``; everything is built on the meta device."""
    from .backbone import build_compression_model, build_lm

    cfg = preset(cfg) if isinstance(cfg, str) else cfg
    scale, sem, rh = cfg.scale, cfg.semantic, cfg.rhythm
    out: Breakdown = {}

    lm = build_lm(scale, device="meta", n_q=cfg.backbone.n_q, card=cfg.backbone.card)
    out["backbone_lm"] = (_count(lm), 0 if cfg.backbone.freeze else _count(lm))
    comp = build_compression_model(device="meta", n_q=cfg.backbone.n_q, bins=cfg.backbone.card,
                                   sample_rate=cfg.backbone.sample_rate)
    out["encodec"] = (_count(comp), 0)

    t5 = build_t5_encoder(cfg, device="meta")
    n_t5 = _count(t5)
    if sem.t5_init == "scratch":
        out["t5_encoder"] = (n_t5, n_t5)
        out["lora"] = (0, 0)
    else:
        out["t5_encoder"] = (n_t5, 0)
        n_lora = lora_parameters(t5.encoder, sem.lora_rank, sem.lora_targets)
        out["lora"] = (n_lora, n_lora)

    n_em = _linear(sem.clip_dim, sem.t5.d_model)
    out["embedding_manager"] = (n_em, n_em)
    n_proj = _linear(sem.t5.d_model, scale.dim, sem.projector_bias)
    out["projector"] = (n_proj, n_proj)

    if cfg.train.stage == "1":
        out["rhythm"] = (0, 0)
    else:  # the adapter itself on the meta device: both styles (chained identity / MusiConGen projections) count
        from .rhythm import RhythmAdapter

        with torch.device("meta"):
            n_rh = _count(RhythmAdapter(scale.dim, cfg.injection_layers, init=rh.init, style=rh.style))
        out["rhythm"] = (n_rh, n_rh)

    out["total"] = (sum(v[0] for v in out.values()), sum(v[1] for v in out.values()))
    return out


def structural_signature(cfg: tp.Union[str, VidMusicianConfig]) -> tp.Dict[str, tp.Any]:
    """What distinguishes one ablation variant from another, without weights (meta device): trainable parameters
    per component over all stages run, T5 mode, rhythm injection layers / init / style / source, and the stages.
    Rhythm fields are None when no stage trains the rhythm adapter."""
    from .train import stage_plan

    cfg = preset(cfg) if isinstance(cfg, str) else cfg
    stages = stage_plan(cfg.train.stage)
    rhythm = any(s in ("2", "joint") for s in stages)
    breakdown = parameter_breakdown(cfg)
    rh = cfg.rhythm
    return {
        "trainable": {k: t for k, (_, t) in sorted(breakdown.items()) if k != "total" and t},
        "t5": "scratch" if cfg.semantic.t5_init == "scratch" else "lora",
        "injection_layers": list(cfg.injection_layers) if rhythm else None,
        "rhythm_init": rh.init if rhythm else None,
        "rhythm_style": rh.style.lower() if rhythm else None,
        "rhythm_source": rh.source if rhythm else None,
        "stages": stages,
    }


def trainable_total(cfg: tp.Union[str, VidMusicianConfig]) -> int:
    return parameter_breakdown(cfg)["total"][1]


def search_lora_rank(cfg: tp.Union[str, VidMusicianConfig] = "paper", target: int = PAPER_TRAINABLE,
                     tolerance: float = 0.02, max_rank: int = 256) -> dict:
    """Which LoRA ranks put the trainable total within ``tolerance`` of ``target``?

    Trainable total is affine in the rank, so two meta builds (rank 0 and 1) give the whole line.
    Returns fixed part, per-rank slope, the exact (real-valued) fit, all ranks within tolerance, and the
    chosen rank: the power of two closest to the target among those within tolerance (the closest integer
    rank if no power of two qualifies).
    """
    cfg = preset(cfg) if isinstance(cfg, str) else cfg
    fixed = trainable_total(cfg.with_overrides({"semantic.lora_rank": 0}))
    slope = trainable_total(cfg.with_overrides({"semantic.lora_rank": 1})) - fixed
    if slope <= 0:
        raise ValueError("LoRA adds no trainable parameters under this config (no targets, or T5 from scratch)")
    rows = [(r, fixed + slope * r, (fixed + slope * r - target) / target) for r in range(1, max_rank + 1)]
    within = [row for row in rows if abs(row[2]) <= tolerance]
    pow2 = [row for row in within if row[0] & (row[0] - 1) == 0]
    pool = pow2 or within
    chosen = min(pool, key=lambda row: abs(row[2]))[0] if pool else None
    return {"target": target, "tolerance": tolerance, "fixed": fixed, "per_rank": slope,
            "exact_rank": (target - fixed) / slope, "within": within, "chosen": chosen,
            "chosen_total": None if chosen is None else fixed + slope * chosen,
            "rows": rows}


def format_search(result: dict, show: tp.Sequence[int] = (8, 16, 32, 48, 53, 56, 64, 96, 128)) -> str:
    lines = [f"target {result['target']:,} +- {result['tolerance']:.0%}; fixed trainable {result['fixed']:,}; "
             f"{result['per_rank']:,} per LoRA rank; exact fit r = {result['exact_rank']:.2f}",
             f"{'rank':>6} {'trainable':>13} {'vs target':>10}"]
    for r, total, rel in result["rows"]:
        if r in show:
            mark = "  <- within" if abs(rel) <= result["tolerance"] else ""
            mark += "  CHOSEN" if r == result["chosen"] else ""
            lines.append(f"{r:>6} {total:>13,} {rel:>+10.2%}{mark}")
    within = [row[0] for row in result["within"]]
    lines.append(f"ranks within tolerance: {within[0]}..{within[-1]}" if within else "no rank within tolerance")
    lines.append(f"chosen rank (closest power of two within tolerance): {result['chosen']}")
    return "\n".join(lines)


def format_breakdown(breakdown: Breakdown) -> str:
    """Plain-text table: component, total, trainable (exact counts and millions)."""
    def fmt(n: int) -> str:
        return f"{n:>15,} {n / 1e6:>10.2f}M"
    lines = [f"{'component':<18} {'total':>15} {'':>11} {'trainable':>15} {'':>11}", "-" * 74]
    for name, (total, trainable) in breakdown.items():
        if name == "total":
            lines.append("-" * 74)
        lines.append(f"{name:<18} {fmt(total)} {fmt(trainable)}")
    return "\n".join(lines)
