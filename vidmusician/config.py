"""Model configuration for VidMusician, as frozen dataclasses.

Facts versus choices
--------------------
Facts (paper abstract/figures, audiocraft's public model-scale configs): MusicGen backbone; 4 EnCodec codebooks
of 2048 entries at 50 Hz from 32 kHz audio; backbone scales xsmall 64x2, small 1024x24 (16 heads), medium
1536x48 (24 heads), large 2048x48 (32 heads); CLIP global features -> T5 (LoRA) -> cross-attention; rhythm
from 1 - cos of CLIP patch features through Zero-Linear and Identity-Linears, added at the first layer of each
4-layer block in the first 3/4 of the layers; 24.79M trainable parameters; MusicGen sampling defaults
top_k 250, top_p 0, temperature 1.0, cfg_coef 3.0.

Everything else is a documented choice (marked ``CHOICE`` below) and can be changed with
:meth:`VidMusicianConfig.with_overrides`, which is also how ablation variants are expressed.

Trainable-parameter arithmetic (paper preset: MusicGen-medium d=1536, 48 layers; T5-base; ViT-B-32)
-------------------------------------------------------------------------------------------------
- Embedding Manager, Linear 512 -> 768 with bias:            512*768 + 768       =    393,984
- projector, Linear 768 -> 1536 with bias:                   768*1536 + 1536     =  1,181,184
- rhythm Zero-Linear, Linear 1 -> 1536 with bias:            1536 + 1536         =      3,072
- rhythm Identity-Linears, 9 x Linear 1536 -> 1536 w/ bias:  9*(1536^2 + 1536)   = 21,247,488
- LoRA on T5-base encoder q and v, 12 layers x 2 Linears 768 -> 768: r*(768+768) each = 36,864*r
Fixed part 22,825,728; 24.79M needs r = (24,790,000 - 22,825,728) / 36,864 = 53.3. The exact fit (53) is not
a rank anyone picks; the only power of two within 2% is r = 64: 22,825,728 + 2,359,296 = 25,185,024 (+1.59%).
CHOICE: ``lora_rank = 64`` (``vidmusician.params.search_lora_rank`` reproduces this search).
"""
from __future__ import annotations

import dataclasses
import json
import typing as tp
from dataclasses import dataclass, field

PAPER_TRAINABLE = 24_790_000  # "24.79M trainable parameters" (paper)


class ConfigError(KeyError, ValueError):
    """An unknown config key or preset, or a value out of range (from --override or a grid file). A KeyError and a
    ValueError at once, for callers that catch either; printed as its message alone."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------------------------- backbone
@dataclass(frozen=True)
class BackboneScale:
    """Size of the MusicGen transformer LM. Cross-attention conditioning width equals ``dim``."""
    name: str
    dim: int
    num_layers: int
    num_heads: int

    @property
    def cross_attention_dim(self) -> int:
        # MusicGen's conditioners project to the LM width (T5Conditioner output_dim = dim).
        return self.dim


SCALES: tp.Dict[str, BackboneScale] = {
    # CHOICE: heads for xsmall are not in the public facts we keep; 2 heads of 32 dims each.
    "xsmall": BackboneScale("xsmall", 64, 2, 2),
    "small": BackboneScale("small", 1024, 24, 16),
    "medium": BackboneScale("medium", 1536, 48, 24),
    "large": BackboneScale("large", 2048, 48, 32),
    # CPU-test scale: 8 layers so that two 4-layer blocks (injection points 0 and 4) exist.
    "tiny": BackboneScale("tiny", 64, 8, 2),
}


@dataclass(frozen=True)
class BackboneConfig:
    """MusicGen backbone: LM scale plus the EnCodec token space (facts: 4 x 2048, 50 Hz, 32 kHz)."""
    scale: str = "medium"
    n_q: int = 4
    card: int = 2048
    frame_rate: int = 50
    sample_rate: int = 32000
    hidden_scale: int = 4  # MusicGen FF width = 4 * dim
    # Local directory with upstream state_dict.bin / compression_state_dict.bin; None = random weights.
    checkpoint_dir: tp.Optional[str] = None
    freeze: bool = True  # fact: the backbone is frozen in both stages

    @property
    def spec(self) -> BackboneScale:
        return SCALES[self.scale]


# --------------------------------------------------------------------------------------------- semantic
@dataclass(frozen=True)
class T5Spec:
    """Enough of a T5 encoder config to build it (t5-base facts by default)."""
    name: str = "t5-base"
    d_model: int = 768
    d_ff: int = 3072
    d_kv: int = 64
    num_layers: int = 12
    num_heads: int = 12
    vocab_size: int = 32128


@dataclass(frozen=True)
class SemanticConfig:
    """Global CLIP features -> Embedding Manager -> T5 encoder (LoRA) -> projector -> cross-attention."""
    clip_model: str = "ViT-B-32"  # CHOICE: CLIP variant is unknown; ViT-B-32 is the common default
    # CHOICE: the weights are unknown too; LAION-2B ViT-B-32 is the open_clip checkpoint the suite already knows
    # (`vm-eval weights`: clip-vit-b-32). Also accepted: a local open_clip_pytorch_model.bin path, or "none"
    # (random tower, tests). OpenAI's weights need clip_model="ViT-B-32-quickgelu" and a local file path.
    clip_pretrained: str = "laion2b_s34b_b79k"
    clip_dim: int = 512  # ViT-B-32 image-embedding width (after CLIP's visual projection)
    fps: float = 1.0  # secondary readings: 1 frame per second
    t5: T5Spec = field(default_factory=T5Spec)
    lora_rank: int = 64  # CHOICE, see module docstring: power of two within 2% of 24.79M trainable
    lora_alpha: float = 64.0  # CHOICE: alpha = rank (LoRA scale 1.0)
    lora_targets: tp.Tuple[str, ...] = ("q", "v")  # CHOICE: the original LoRA paper's attention targets
    lora_dropout: float = 0.05  # CHOICE: common PEFT default
    t5_init: str = "pretrained"  # "pretrained" | "scratch" (ablation "T5 from scratch")
    projector_bias: bool = True

    def __post_init__(self):
        _check_choice("semantic.t5_init", self.t5_init, ("pretrained", "scratch"))


# --------------------------------------------------------------------------------------------- rhythm
@dataclass(frozen=True)
class RhythmConfig:
    """Rhythm branch: d_t = 1 - cos(p_t, p_{t-1}) of CLIP features -> Zero-Linear -> Identity-Linears."""
    fps: float = 25.0  # secondary readings: the same video at 25 fps
    source: str = "patches"  # "patches" | "cls" (ablation: CLS-token similarity)
    token_rate_hz: int = 50  # EnCodec frame rate; d_t is linearly interpolated to it
    block_size: int = 4  # fact: first layer of each 4-layer block
    inject_fraction: float = 0.75  # fact (secondary, as MusiConGen): first 3/4 of the layers
    init: str = "zero-identity"  # "zero-identity" | "default" (ablation: no zero/identity init)
    style: str = "vidmusician"  # "vidmusician" | "musiconGen" (MusiConGen-style in-attention)
    # CHOICE: d_t is one scalar per frame, so the Zero-Linear maps 1 -> dim; then one dim -> dim Identity-Linear
    # per injection point, chained (F_R1 = L_1(O(d)), F_Rj = L_j(F_R(j-1))).
    in_features: int = 1

    def __post_init__(self):
        _check_choice("rhythm.source", self.source, ("patches", "cls"))
        _check_choice("rhythm.init", self.init, ("zero-identity", "default"))
        _check_choice("rhythm.style", self.style, ("vidmusician", "musiconGen"))
        if not 0.0 < self.inject_fraction <= 1.0:
            raise ConfigError(f"rhythm.inject_fraction must be in (0, 1], got {self.inject_fraction}")
        if self.block_size < 1:
            raise ConfigError(f"rhythm.block_size must be >= 1, got {self.block_size}")


# --------------------------------------------------------------------------------------------- training
@dataclass(frozen=True)
class TrainConfig:
    """Training schedule. The paper gives none of these numbers: all are CHOICES (MusicGen fine-tuning habits)."""
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int = 500
    cosine: bool = True  # cosine decay after warm-up
    clip_grad: float = 1.0
    batch_size: int = 16
    steps: int = 20_000  # per stage
    stage: str = "both"  # "1" (semantic), "2" (rhythm), "both" (1 then 2), "joint" (ablation: one stage)
    cfg_dropout: float = 0.2  # MusicGen's classifier-free-guidance training dropout
    segment_s: float = 30.0
    seed: int = 0
    # Activation checkpointing of the frozen LM's transformer layers (audiocraft ``StreamingTransformer``
    # ``checkpointing="torch"``: each layer's activations are recomputed in the backward pass). Trades about one
    # extra forward pass for much less activation memory; results are unchanged (same gradients up to float
    # round-off). Set by the trainer for the duration of ``vidmusician.train.train`` only.
    grad_checkpointing: bool = False

    def __post_init__(self):
        _check_choice("train.stage", self.stage, ("1", "2", "both", "joint"))


@dataclass(frozen=True)
class GenerationConfig:
    """Sampling; MusicGen's defaults (facts) and its 30 s window."""
    top_k: int = 250
    top_p: float = 0.0
    temperature: float = 1.0
    cfg_coef: float = 3.0
    max_duration_s: float = 30.0
    use_sampling: bool = True


# --------------------------------------------------------------------------------------------- bundle
@dataclass(frozen=True)
class VidMusicianConfig:
    name: str = "paper"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    semantic: SemanticConfig = field(default_factory=SemanticConfig)
    rhythm: RhythmConfig = field(default_factory=RhythmConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)

    # -- derived
    @property
    def scale(self) -> BackboneScale:
        return self.backbone.spec

    @property
    def injection_layers(self) -> tp.List[int]:
        return injection_layers(self.scale.num_layers, self.rhythm.block_size, self.rhythm.inject_fraction)

    # -- serialisation
    def to_dict(self) -> dict:
        """JSON-safe nested dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: tp.Mapping[str, tp.Any]) -> "VidMusicianConfig":
        return _from_dict(cls, data, prefix="")

    def with_overrides(self, overrides: tp.Mapping[str, tp.Any]) -> "VidMusicianConfig":
        """New config with dotted keys replaced, e.g. ``{"rhythm.init": "default", "semantic.t5.d_model": 32}``."""
        data = self.to_dict()
        for key, value in overrides.items():
            parts = key.split(".")
            node = data
            for i, part in enumerate(parts):
                if not isinstance(node, dict) or part not in node:
                    where = ".".join(parts[:i]) or "<top>"
                    options = sorted(node) if isinstance(node, dict) else []
                    raise ConfigError(f"unknown config key {key!r}: {part!r} is not a field of {where} "
                                   f"(fields: {', '.join(options)})")
                if i == len(parts) - 1:
                    if isinstance(node[part], dict):
                        raise ConfigError(f"config key {key!r} names a section; override its fields instead")
                    if isinstance(node[part], str) and isinstance(value, (int, float)) and not isinstance(value, bool):
                        value = str(value)  # "stage=1" from a command line is the choice "1", not the number
                    node[part] = list(value) if isinstance(value, tuple) else value
                else:
                    node = node[part]
        return VidMusicianConfig.from_dict(data)

    @staticmethod
    def preset(name: str) -> "VidMusicianConfig":
        return preset(name)


def _from_dict(cls, data: tp.Mapping[str, tp.Any], prefix: str):
    if not isinstance(data, tp.Mapping):
        raise TypeError(f"config section {prefix or '<top>'} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(prefix + k for k in unknown)} "
                       f"(fields of {prefix.rstrip('.') or '<top>'}: {', '.join(sorted(fields))})")
    hints = tp.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _from_dict(hint, value, prefix=f"{prefix}{name}.")
        elif tp.get_origin(hint) is tuple:
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _check_choice(key: str, value: str, options: tp.Sequence[str]) -> None:
    if value not in options:
        raise ConfigError(f"{key} must be one of {', '.join(map(repr, options))}, got {value!r}")


def injection_layers(num_layers: int, block_size: int = 4, fraction: float = 0.75) -> tp.List[int]:
    """First layer of each ``block_size``-layer block within the first ``fraction`` of the layers.

    As MusiConGen: 48 layers -> [0, 4, ..., 32] (9 points; layer 36 would start the last quarter).
    24 layers -> [0, 4, 8, 12, 16] (5 points); 8 layers -> [0, 4] (2 points).
    """
    if num_layers < 1 or block_size < 1:
        raise ValueError("num_layers and block_size must be >= 1")
    limit = int(round(num_layers * fraction))
    return [i for i in range(0, num_layers, block_size) if i < limit]


TINY_T5 = T5Spec(name="tiny-t5", d_model=32, d_ff=64, d_kv=16, num_layers=2, num_heads=2, vocab_size=128)


def preset(name: str) -> VidMusicianConfig:
    """``paper``: MusicGen-medium + t5-base + ViT-B-32. ``tiny``: CPU-test sizes, random weights."""
    if name == "paper":
        return VidMusicianConfig(name="paper")
    if name == "tiny":
        return VidMusicianConfig(
            name="tiny",
            backbone=BackboneConfig(scale="tiny"),
            semantic=SemanticConfig(clip_model="tiny-clip", clip_pretrained="none", clip_dim=48, t5=TINY_T5,
                                    lora_rank=4, lora_alpha=4.0),  # random T5 stands in for the pretrained one
            train=TrainConfig(batch_size=2, steps=10, warmup_steps=2, segment_s=2.0),
            generation=GenerationConfig(top_k=50, max_duration_s=2.0),
        )
    raise ConfigError(f"unknown preset {name!r} (presets: paper, tiny)")


PRESETS = ("paper", "tiny")
