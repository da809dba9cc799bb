"""MusicGen backbone (audiocraft LM + 32 kHz EnCodec): random-weight builds and local checkpoint loading.

How conditioning reaches the LM
-------------------------------
audiocraft's ``LMModel.forward`` sums the code embeddings, passes ``condition_tensors`` through its
``ConditionFuser`` and hands the fused "cross" conditions to ``StreamingTransformer`` as
``cross_attention_src``. We build the LM with an EMPTY ``ConditioningProvider`` (no T5 inside, so nothing is
downloaded) and a fuser that routes the condition named ``description`` (upstream's name for the text
condition) to cross-attention. Our own semantic branch later supplies
``condition_tensors = {"description": (tensor [B, S, dim], mask [B, S])}``; see :func:`cross_condition`.

Upstream checkpoints
--------------------
``state_dict.bin`` and ``compression_state_dict.bin`` are ``torch.save``d dicts ``{"xp.cfg": <config>,
"best_state": <state dict>}`` (audiocraft ``models/loaders.py``). The LM's ``best_state`` also holds
``condition_provider.*`` weights (upstream's T5 conditioner output projection 768 -> dim); our LM has no
conditioner, so those are split off and returned in :attr:`Backbone.conditioner_state` (usable to initialise
the semantic projector). Loading is from a local directory only.

This module imports audiocraft lazily (inside functions); on a CPU-only machine the application's compat import
hook must be installed before the first call.
"""
from __future__ import annotations

import copy
import os
import typing as tp
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .config import SCALES, BackboneScale

LM_FILE = "state_dict.bin"
COMPRESSION_FILE = "compression_state_dict.bin"
CROSS_CONDITION = "description"  # upstream's condition name; our semantic provider fills it
_HOW_TO_GET = ("get it with: huggingface-cli download facebook/musicgen-medium state_dict.bin "
               "compression_state_dict.bin --local-dir <dir>  (or musicgen-small / musicgen-large)")


# --------------------------------------------------------------------------------------------- configs
def lm_xp_cfg(scale: tp.Union[str, BackboneScale], n_q: int = 4, card: int = 2048,
              segment_duration: float = 30.0) -> dict:
    """An upstream-shaped ("xp.cfg") config for a MusicGen LM of the given scale.

    Values are MusicGen's published LM settings (pre-norm, no biases, GELU, sinusoidal positions, delay
    pattern, gaussian depth-scaled init, classifier-free-guidance dropout 0.2 / coefficient 3.0).
    ``memory_efficient`` selects torch's scaled-dot-product attention (audiocraft's default backend).
    """
    spec = SCALES[scale] if isinstance(scale, str) else scale
    return {
        "lm_model": "transformer_lm",
        "device": "cpu",
        "dtype": "float32",
        "dataset": {"segment_duration": segment_duration},
        "transformer_lm": {
            "dim": spec.dim, "num_heads": spec.num_heads, "num_layers": spec.num_layers,
            "hidden_scale": 4, "n_q": n_q, "card": card, "dropout": 0.0, "emb_lr": None,
            "activation": "gelu", "norm_first": True, "bias_ff": False, "bias_attn": False, "bias_proj": False,
            "past_context": None, "causal": True, "custom": False, "memory_efficient": True,
            "attention_as_float32": False, "layer_scale": None, "positional_embedding": "sin", "xpos": False,
            "checkpointing": "none", "weight_init": "gaussian", "depthwise_init": "current",
            "zero_bias_init": True, "norm": "layer_norm", "cross_attention": True,
        },
        "codebooks_pattern": {"modeling": "delay", "delay": {"delays": list(range(n_q)), "flatten_first": 0,
                                                             "empty_initial": 0}},
        "classifier_free_guidance": {"training_dropout": 0.2, "inference_coef": 3.0},
        "attribute_dropout": {},
        "fuser": {"cross_attention_pos_emb": False, "cross_attention_pos_emb_scale": 1.0,
                  "sum": [], "prepend": [], "cross": [CROSS_CONDITION], "input_interpolate": []},
        "conditioners": {},  # ours: none inside the LM (the semantic branch is separate)
        "vidmusician": {"scale": spec.name},
    }


def compression_xp_cfg(n_q: int = 4, bins: int = 2048, sample_rate: int = 32000,
                       kmeans_init: bool = False) -> dict:
    """Upstream-shaped config of MusicGen's 32 kHz EnCodec (SEANet 64 filters, ratios 8,5,4,4 -> hop 640 ->
    50 Hz, 128-d latent, 2-layer LSTM, weight norm; RVQ 4 x 2048).

    ``kmeans_init`` is False for random builds (codebooks start random instead of needing data for k-means);
    it does not change the state-dict layout.
    """
    return {
        "compression_model": "encodec",
        "device": "cpu",
        "channels": 1,
        "sample_rate": sample_rate,
        "encodec": {"autoencoder": "seanet", "quantizer": "rvq", "sample_rate": sample_rate, "channels": 1,
                    "causal": False, "renormalize": False},
        "seanet": {"dimension": 128, "channels": 1, "causal": False, "n_filters": 64, "n_residual_layers": 1,
                   "ratios": [8, 5, 4, 4], "activation": "ELU", "activation_params": {"alpha": 1.0},
                   "norm": "weight_norm", "norm_params": {}, "kernel_size": 7, "residual_kernel_size": 3,
                   "last_kernel_size": 7, "dilation_base": 2, "pad_mode": "constant", "true_skip": True,
                   "compress": 2, "lstm": 2, "disable_norm_outer_blocks": 0,
                   "decoder": {"trim_right_ratio": 1.0, "final_activation": None, "final_activation_params": None},
                   "encoder": {}},
        "rvq": {"n_q": n_q, "q_dropout": False, "bins": bins, "decay": 0.99, "kmeans_init": kmeans_init,
                "kmeans_iters": 50, "threshold_ema_dead_code": 2, "orthogonal_reg_weight": 0.0,
                "orthogonal_reg_active_codes_only": False},
        "no_quant": {},
    }


def _plain(cfg: tp.Any) -> dict:
    """OmegaConf / dict -> plain dict (interpolations resolved where possible)."""
    from omegaconf import DictConfig, OmegaConf
    node = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(copy.deepcopy(dict(cfg)))
    try:  # upstream configs carry interpolations such as ${sample_rate}
        return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]
    except Exception:  # an interpolation pointing outside the dumped config: keep raw values
        return OmegaConf.to_container(node, resolve=False)  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------- builders
def build_lm_from_cfg(cfg: tp.Any, device: tp.Union[str, torch.device] = "cpu",
                      dtype: torch.dtype = torch.float32) -> nn.Module:
    """Build an audiocraft ``LMModel`` from an (upstream or :func:`lm_xp_cfg`) config, without conditioners.

    Only ``transformer_lm``, ``codebooks_pattern``, ``classifier_free_guidance`` and ``fuser`` are read.
    Works on ``device="meta"`` (no memory, for counting parameters).
    """
    from audiocraft.models.builders import get_codebooks_pattern_provider
    from audiocraft.models.lm import LMModel
    from audiocraft.modules.conditioners import ConditionFuser, ConditioningProvider
    from omegaconf import OmegaConf

    cfg = _plain(cfg)
    kwargs = dict(cfg["transformer_lm"])
    q_modeling = kwargs.pop("q_modeling", None)
    n_q = kwargs["n_q"]
    pattern_cfg = cfg.get("codebooks_pattern") or {}
    if pattern_cfg.get("modeling") is None:
        pattern_cfg = {"modeling": q_modeling or "delay", "delay": {"delays": list(range(n_q))}}
    cfg_guid = cfg.get("classifier_free_guidance") or {}
    fuser_cfg = dict(cfg.get("fuser") or {})
    fuse2cond = {k: list(fuser_cfg.pop(k, []) or []) for k in ("sum", "cross", "prepend", "input_interpolate")}
    if not fuse2cond["cross"]:
        fuse2cond["cross"] = [CROSS_CONDITION]
    kwargs["cross_attention"] = True
    device = torch.device(device)
    with torch.device(device):
        pattern = get_codebooks_pattern_provider(n_q, OmegaConf.create(pattern_cfg))
        lm = LMModel(
            pattern_provider=pattern,
            condition_provider=ConditioningProvider({}, device=device),
            fuser=ConditionFuser(fuse2cond=fuse2cond, **fuser_cfg),
            cfg_dropout=float(cfg_guid.get("training_dropout", 0.0)),
            cfg_coef=float(cfg_guid.get("inference_coef", 3.0)),
            attribute_dropout={},
            dtype=dtype, device=device, **kwargs)
    return lm.to(device=device, dtype=dtype)


def random_lm(scale: tp.Union[str, BackboneScale], seed: int = 0) -> nn.Module:
    """A random MusicGen LM built fast: on the meta device, then filled from one generator (audiocraft's own
    init takes ~70 s at small scale here). Normal(0, 0.05) weights, LayerNorm gains 1 + noise."""
    cfg = lm_xp_cfg(scale)
    cfg["transformer_lm"].update(weight_init=None, depthwise_init=None, zero_bias_init=False)
    lm = build_lm_from_cfg(cfg, device="meta").to_empty(device="cpu")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in lm.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.normal_(0.0, 0.05, generator=g)
    return lm.eval().requires_grad_(False)


def build_lm(scale: tp.Union[str, BackboneScale] = "medium", device: tp.Union[str, torch.device] = "cpu",
             dtype: torch.dtype = torch.float32, seed: tp.Optional[int] = None, **cfg_kwargs) -> nn.Module:
    """MusicGen LM of ``scale`` with random weights, cross-attention width = ``dim``."""
    if seed is not None:
        torch.manual_seed(seed)
    return build_lm_from_cfg(lm_xp_cfg(scale, **cfg_kwargs), device=device, dtype=dtype)


def build_compression_from_cfg(cfg: tp.Any, device: tp.Union[str, torch.device] = "cpu") -> nn.Module:
    from audiocraft.models.builders import get_compression_model
    from omegaconf import OmegaConf

    cfg = _plain(cfg)
    cfg["device"] = str(device)
    with torch.device(device):
        model = get_compression_model(OmegaConf.create(cfg))
    return model


def build_compression_model(device: tp.Union[str, torch.device] = "cpu", seed: tp.Optional[int] = None,
                            **cfg_kwargs) -> nn.Module:
    """MusicGen's 32 kHz EnCodec (4 x 2048 codes at 50 Hz) with random weights, in eval mode."""
    if seed is not None:
        torch.manual_seed(seed)
    return build_compression_from_cfg(compression_xp_cfg(**cfg_kwargs), device=device).eval()


def cross_condition(src: torch.Tensor, mask: tp.Optional[torch.Tensor] = None) -> dict:
    """Wrap a cross-attention source ``[B, S, dim]`` as ``condition_tensors`` for ``LMModel``."""
    if mask is None:
        mask = torch.ones(src.shape[:2], dtype=torch.long, device=src.device)
    return {CROSS_CONDITION: (src, mask)}


def lm_logits(lm: nn.Module, codes: torch.Tensor, cross_src: torch.Tensor,
              cross_mask: tp.Optional[torch.Tensor] = None):
    """Teacher-forced predictions: codes ``[B, K, T]`` + cross source ``[B, S, dim]`` -> ``LMOutput``
    (``logits [B, K, T, card]``, ``mask [B, K, T]``)."""
    return lm.compute_predictions(codes, [], condition_tensors=cross_condition(cross_src, cross_mask))


# --------------------------------------------------------------------------------------------- loading
@dataclass
class Backbone:
    lm: nn.Module
    compression_model: nn.Module
    scale: BackboneScale
    pretrained: bool
    source: str
    lm_cfg: dict
    compression_cfg: dict
    conditioner_state: tp.Dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def sample_rate(self) -> int:
        return int(self.compression_model.sample_rate)

    @property
    def frame_rate(self) -> float:
        return float(self.compression_model.frame_rate)


def _scale_from_lm_cfg(cfg: dict) -> BackboneScale:
    t = cfg["transformer_lm"]
    for spec in SCALES.values():
        if (spec.dim, spec.num_layers, spec.num_heads) == (t["dim"], t["num_layers"], t["num_heads"]):
            return spec
    return BackboneScale("custom", int(t["dim"]), int(t["num_layers"]), int(t["num_heads"]))


def _load_pkg(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"missing {path.name} in {path.parent} ({path}); {_HOW_TO_GET}")
    pkg = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(pkg, dict) or "best_state" not in pkg or "xp.cfg" not in pkg:
        keys = sorted(pkg) if isinstance(pkg, dict) else type(pkg).__name__
        if isinstance(pkg, dict) and "pretrained" in pkg:
            raise ValueError(f"{path} points to a separately published model ({pkg['pretrained']!r}) instead of "
                             "holding weights; use a MusicGen checkpoint whose file holds 'xp.cfg' and "
                             "'best_state' (facebook/musicgen-small/medium/large)")
        raise ValueError(f"{path} is not in audiocraft's checkpoint layout "
                         f"{{'xp.cfg': ..., 'best_state': ...}} (found: {keys})")
    return pkg


def load_backbone(scale_or_dir: tp.Union[str, os.PathLike], device: tp.Union[str, torch.device] = "cpu",
                  dtype: torch.dtype = torch.float32, seed: tp.Optional[int] = None) -> Backbone:
    """A scale name (``tiny``, ``xsmall``, ``small``, ``medium``, ``large``) builds random weights; a local
    directory with upstream ``state_dict.bin`` and ``compression_state_dict.bin`` loads them. Never downloads."""
    if isinstance(scale_or_dir, str) and scale_or_dir in SCALES and not Path(scale_or_dir).is_dir():
        lm_cfg, comp_cfg = lm_xp_cfg(scale_or_dir), compression_xp_cfg()
        lm = build_lm(scale_or_dir, device=device, dtype=dtype, seed=seed)
        comp = build_compression_model(device=device, seed=None if seed is None else seed + 1)
        return Backbone(lm.eval(), comp, SCALES[scale_or_dir], False, f"random:{scale_or_dir}", lm_cfg, comp_cfg)

    root = Path(scale_or_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{str(scale_or_dir)!r} is neither a backbone scale ({', '.join(SCALES)}) nor a "
                                f"local directory holding {LM_FILE} and {COMPRESSION_FILE}; {_HOW_TO_GET}")
    missing = [name for name in (LM_FILE, COMPRESSION_FILE) if not (root / name).is_file()]
    if missing:
        raise FileNotFoundError(f"missing {' and '.join(missing)} in {root}; {_HOW_TO_GET}")

    lm_pkg = _load_pkg(root / LM_FILE)
    lm_cfg = _plain(lm_pkg["xp.cfg"])
    lm = build_lm_from_cfg(lm_cfg, device="cpu", dtype=torch.float32)
    state = dict(lm_pkg["best_state"])
    conditioner_state = {k: v for k, v in state.items() if k.startswith("condition_provider.")}
    lm_state = {k: v for k, v in state.items() if not k.startswith("condition_provider.")}
    result = lm.load_state_dict(lm_state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{root / LM_FILE} does not fit the LM built from its own config: "
                         f"missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}")

    comp_pkg = _load_pkg(root / COMPRESSION_FILE)
    comp_cfg = _plain(comp_pkg["xp.cfg"])
    comp = build_compression_from_cfg(comp_cfg, device="cpu")
    comp.load_state_dict(comp_pkg["best_state"])
    return Backbone(lm.to(device=device, dtype=dtype).eval(), comp.to(device).eval(), _scale_from_lm_cfg(lm_cfg),
                    True, str(root), lm_cfg, comp_cfg, conditioner_state)


def save_backbone(backbone: Backbone, directory: tp.Union[str, os.PathLike]) -> Path:
    """Write ``state_dict.bin`` / ``compression_state_dict.bin`` in audiocraft's layout."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    lm_state = {k: v.detach().cpu() for k, v in backbone.lm.state_dict().items()}
    lm_state.update(backbone.conditioner_state)
    torch.save({"xp.cfg": backbone.lm_cfg, "best_state": lm_state}, root / LM_FILE)
    comp_state = {k: v.detach().cpu() for k, v in backbone.compression_model.state_dict().items()}
    torch.save({"xp.cfg": backbone.compression_cfg, "best_state": comp_state}, root / COMPRESSION_FILE)
    return root


# --------------------------------------------------------------------------------------------- helpers
def freeze(module: nn.Module) -> nn.Module:
    """No gradients and eval mode (dropout off). Note: a later ``parent.train()`` flips the mode back;
    training code should call ``freeze`` again (or override ``train``) for frozen submodules."""
    for p in module.parameters():
        p.requires_grad_(False)
    module.eval()
    return module


def count_parameters(module: nn.Module) -> tp.Tuple[int, int]:
    """(total, trainable) parameter counts; works on meta tensors."""
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return total, trainable


def default_device(prefer: tp.Optional[str] = None) -> torch.device:
    """``prefer`` (or $VIDMUSICIAN_DEVICE) if given, else CUDA, then Apple MPS, then CPU."""
    prefer = prefer or os.environ.get("VIDMUSICIAN_DEVICE")
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
