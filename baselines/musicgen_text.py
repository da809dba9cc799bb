"""`musicgen-text`: plain MusicGen conditioned on a TEXT prompt per clip (the text-to-music baseline).

The video never reaches the model; it only chooses the prompt:
- ``prompt="caption"``: the clip's caption (a clip without one is skipped, NotApplicable);
- ``prompt="descriptors"``: CLIP zero-shot descriptors of the video (mood, genre, tempo, instrumentation; the
  ones :mod:`metrics.semantic` uses for ``clap-video-prompt``) filled into its PROMPT_TEMPLATE. They are cached in
  the shared feature cache under the same key as that metric's, so the metric and the model share the work;
- ``prompt="auto"`` (default): the caption when the clip has one, else the descriptors;
- ``template="..."``: a user text, used verbatim or with fields ``{prompt}`` (the text chosen above),
  ``{caption}``, ``{descriptors}``, ``{category}``.
The prompt used for each clip is logged (logger ``baselines.musicgen_text``), kept in ``model.prompts`` and, with
``prompt_log=PATH``, appended to that JSON-lines file: the run journal has no per-clip field for it.

Text path, as upstream MusicGen's T5Conditioner: T5 tokenizer (padding, truncation at 512 tokens; an empty / None
description gets attention mask 0) -> frozen T5 encoder, last hidden state -> the checkpoint's own output
projection (``condition_provider.conditioners.description.output_proj``, 768 -> LM width, kept by
:class:`vidmusician.backbone.Backbone` in ``conditioner_state``) -> embeddings zeroed where the mask is 0 ->
the LM's cross-attention. Classifier-free guidance's null rows are what audiocraft's
ClassifierFreeGuidanceDropout + T5Conditioner give for the dropped description: zeros with mask 0.

Sampling is VidMusician's own loop (:mod:`vidmusician.generate`, decoding with the one MusicGen-backbone decoder
:mod:`vidmusician.decoder`; this model implements its CrossConditioning interface; a sliding window keeps the
clip's prompt, so it reuses the first window's cross-attention keys / values): MusicGen's defaults top_k 250,
top_p 0, temperature 1.0, cfg_coef 3.0, 30 s windows advanced by 18 s past 30 s, one torch.Generator per clip
from the clip's seed, EnCodec decode to exactly round(duration * 32000) samples.

Batch independence: audiocraft's cross-attention ignores the condition mask, so a prompt zero-padded to a longer
batch partner would see extra zero vectors (upstream MusicGen batches like that). Here every prompt is encoded
alone and the LM batches only clips with the same duration and the same number of prompt tokens, so a clip's
music depends on its prompt and seed only, never on its batch mates.

Weights (nothing downloads): ``scale=small|medium|large`` -> the weights registry's ``musicgen-<scale>``
(``state_dict.bin`` + ``compression_state_dict.bin``), or ``backbone=DIR``; ``t5=t5-base`` (registry) or a
folder with ``config.json``, ``model.safetensors``, ``spiece.model``; ``clip=`` an open_clip checkpoint (file
or folder) for descriptors, default the registry's ``clip-vit-b-32`` (needed only when descriptors may be used).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import string
import typing as tp
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vm_eval import paths, weights
from vm_eval.fsutil import file_sha256, json_sha256
from vm_eval.models.api import ClipInput, ModelInfo, NotApplicable
from vm_eval.models.identity import identified_by

log = logging.getLogger(__name__)

PROMPT_MODES = ("auto", "caption", "descriptors")
SCALES = ("small", "medium", "large")
OUTPUT_PROJ = "condition_provider.conditioners.description.output_proj."
T5_FILES = ("config.json", "model.safetensors", "spiece.model")
CLIP_NAME, CLIP_FILE = "clip-vit-b-32", "open_clip_pytorch_model.bin"
MAX_TEXT_TOKENS = 512  # t5-base's model_max_length (the three registry files do not state it)
RANDOM_MARKER = "random-weights.json"  # in a folder written by write_random_parts: its weights are random
TEMPLATE_FIELDS = ("prompt", "caption", "descriptors", "category")


# ------------------------------------------------------------------------------------------------ text conditioning
class T5TextConditioner(nn.Module):
    """Upstream MusicGen's T5 conditioner, frozen: texts -> (embeddings [B, L, dim], mask [B, L] long)."""

    def __init__(self, t5: nn.Module, tokenizer, output_proj: nn.Linear, max_length: int = MAX_TEXT_TOKENS):
        super().__init__()
        self.t5, self.tokenizer, self.output_proj = t5, tokenizer, output_proj
        self.max_length = int(max_length)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    @property
    def device(self) -> torch.device:
        return self.output_proj.weight.device

    def tokenize(self, texts: tp.Sequence[tp.Optional[str]]) -> tp.Dict[str, torch.Tensor]:
        """Padding to the longest, truncation at ``max_length``; None / "" rows get attention mask 0."""
        entries = [t if t is not None else "" for t in texts]
        inputs = self.tokenizer(entries, return_tensors="pt", padding=True, truncation=True,
                                max_length=self.max_length)
        mask = inputs["attention_mask"]
        empty = [i for i, t in enumerate(entries) if t == ""]
        if empty:
            mask[empty, :] = 0
        return {"input_ids": inputs["input_ids"].to(self.device), "attention_mask": mask.to(self.device)}

    def n_tokens(self, text: tp.Optional[str]) -> int:
        return int(self.tokenize([text])["input_ids"].shape[1])

    def forward(self, inputs: tp.Dict[str, torch.Tensor]) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        mask = inputs["attention_mask"]
        hidden = self.t5(input_ids=inputs["input_ids"], attention_mask=mask).last_hidden_state
        embeds = self.output_proj(hidden.to(self.output_proj.weight))
        return embeds * mask.unsqueeze(-1), mask

    def encode(self, texts: tp.Sequence[tp.Optional[str]]) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        return self(self.tokenize(texts))


class TextMusicGen(nn.Module):
    """MusicGen LM + T5 text conditioner; implements :class:`vidmusician.generate.CrossConditioning` (inputs are
    prompt strings, one per clip; every sliding window keeps the clip's prompt, as MusicGen continues one)."""

    def __init__(self, lm: nn.Module, text: T5TextConditioner):
        super().__init__()
        from vidmusician.backbone import freeze

        self.lm = freeze(lm)
        self.text = text

    def condition(self, prompts: tp.Sequence[tp.Optional[str]], mask: tp.Optional[torch.Tensor] = None):
        """Each prompt encoded alone (no batch-mate effects), then zero-padded (mask 0) to the longest."""
        if mask is not None:
            raise ValueError("text conditions take no mask")
        pieces = [self.text.encode([p]) for p in prompts]
        length = max(int(e.shape[1]) for e, _ in pieces)
        cond = torch.cat([nn.functional.pad(e, (0, 0, 0, length - e.shape[1])) for e, _ in pieces])
        masks = torch.cat([nn.functional.pad(m, (0, length - m.shape[1])) for _, m in pieces])
        return cond, masks

    def null_condition(self, batch: int, length: int):
        """The dropped description (audiocraft's CFG dropout sets it to None -> T5 mask 0 -> zeros)."""
        w = self.text.output_proj.weight
        length = max(int(length), 1)
        return (torch.zeros(batch, length, w.shape[0], dtype=w.dtype, device=w.device),
                torch.zeros(batch, length, dtype=torch.long, device=w.device))

    def window(self, prompts_per_clip, t0_s: float, t1_s: float) -> list:
        return list(prompts_per_clip)


# ------------------------------------------------------------------------------------------------ loading
def _missing(what: str, path: Path, how: str) -> weights.WeightsMissing:
    return weights.WeightsMissing(f"musicgen-text: missing {path.name} for {what} ({path}); {how}")


def backbone_folder(scale: str | None, backbone: str | Path | None) -> tuple[Path, str]:
    """(folder with state_dict.bin + compression_state_dict.bin, its name)."""
    from vidmusician.backbone import COMPRESSION_FILE, LM_FILE

    if backbone:
        folder = Path(backbone).expanduser()
        for f in (LM_FILE, COMPRESSION_FILE):
            if not (folder / f).is_file():
                raise _missing("the MusicGen backbone", folder / f, "backbone= takes a folder with MusicGen's "
                               f"{LM_FILE} and {COMPRESSION_FILE}; " + weights.how_to_get("musicgen-medium"))
        return folder, folder.name
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)} (or pass backbone=DIR), got {scale!r}")
    name = f"musicgen-{scale}"
    return weights.require(name), name


def t5_folder(t5: str | Path) -> tuple[Path, str]:
    name = str(t5)
    if name in weights.KNOWN:
        return weights.require(name), name
    folder = Path(name).expanduser()
    if not folder.is_dir():
        raise weights.WeightsMissing(f"musicgen-text: t5={name!r} is neither a known checkpoint (t5-base) nor a "
                                     f"folder holding {', '.join(T5_FILES)}; " + weights.how_to_get("t5-base"))
    for f in T5_FILES:
        if not (folder / f).is_file():
            raise _missing("the T5 text encoder", folder / f, weights.how_to_get("t5-base"))
    return folder, folder.name


def clip_file(clip: str | Path | None) -> tuple[Path, str]:
    if clip:
        p = Path(clip).expanduser()
        p = p / CLIP_FILE if p.is_dir() else p
        if not p.is_file():
            raise _missing("the descriptors' CLIP", p, "clip= takes open_clip's ViT-B-32 checkpoint; "
                           + weights.how_to_get(CLIP_NAME))
        return p, p.stem
    p = weights.require(CLIP_NAME)
    return (p / CLIP_FILE if p.is_dir() else p), CLIP_NAME


def load_text_conditioner(t5_dir: Path, conditioner_state: dict, lm_file: Path,
                          device: torch.device | str = "cpu") -> T5TextConditioner:
    from transformers import T5Tokenizer
    from transformers.utils import logging as hf_logging

    from vidmusician.semantic import load_t5_encoder

    w, b = conditioner_state.get(OUTPUT_PROJ + "weight"), conditioner_state.get(OUTPUT_PROJ + "bias")
    if w is None:
        raise ValueError(f"{lm_file} holds no T5 output projection ({OUTPUT_PROJ}weight): musicgen-text needs a "
                         "text-conditioned MusicGen checkpoint (facebook/musicgen-small/medium/large)")
    hf_logging.disable_progress_bar()
    t5 = load_t5_encoder(str(t5_dir))
    if int(t5.config.d_model) != int(w.shape[1]):
        raise ValueError(f"T5 in {t5_dir} is {t5.config.d_model}-d but {lm_file}'s output projection expects "
                         f"{w.shape[1]}-d (upstream MusicGen uses t5-base)")
    tokenizer = T5Tokenizer.from_pretrained(str(t5_dir))
    proj = nn.Linear(int(w.shape[1]), int(w.shape[0]), bias=b is not None)
    proj.load_state_dict({"weight": w, **({"bias": b} if b is not None else {})})
    return T5TextConditioner(t5, tokenizer, proj).to(device)


def _is_random(folder: Path) -> bool:
    return (folder / RANDOM_MARKER).is_file()


@dataclasses.dataclass(frozen=True)
class _Setup:
    """Everything the constructor's arguments decide before any weight is loaded."""

    prompt_mode: str
    template: str | None
    uses_descriptors: bool  # then CLIP is a part of the model
    bb_dir: Path
    bb_name: str
    t5_dir: Path
    t5_name: str
    clip_path: Path | None
    gen: tp.Any  # vidmusician.config.GenerationConfig
    stride_s: float | None
    identities: list[dict]  # checkpoints()

    @classmethod
    def of(cls, *, scale: str, backbone: str | Path | None, t5: str | Path, clip: str | Path | None, prompt: str,
           template: str | None, cfg: float | None, top_k: int | None, top_p: float | None,
           temperature: float | None, stride_s: float | None, window_s: float | None, descriptors: tp.Any) -> "_Setup":
        """Check the options, find every file (errors name the missing one before anything heavy loads), hash
        them."""
        from vidmusician.backbone import COMPRESSION_FILE, LM_FILE
        from vidmusician.config import GenerationConfig

        if prompt not in PROMPT_MODES:
            raise ValueError(f"prompt must be one of {', '.join(PROMPT_MODES)}, got {prompt!r}")
        fields = _template_fields(template)
        chosen_may_use = prompt != "caption" and (template is None or "prompt" in fields)
        uses_descriptors = chosen_may_use or "descriptors" in fields
        bb_dir, bb_name = backbone_folder(scale, backbone)
        t5_dir, t5_name = t5_folder(t5)
        clip_path = clip_name = None
        if uses_descriptors and descriptors is None:
            clip_path, clip_name = clip_file(clip)
        gen = GenerationConfig()  # MusicGen's defaults
        overrides = {"cfg_coef": cfg, "top_k": top_k, "top_p": top_p, "temperature": temperature,
                     "max_duration_s": window_s}
        gen = dataclasses.replace(gen, **{k: type(getattr(gen, k))(v) for k, v in overrides.items()
                                          if v is not None})
        random_bb, random_t5 = _is_random(bb_dir), _is_random(t5_dir)
        parts = [("backbone", bb_name, bb_dir / LM_FILE, random_bb),
                 ("encodec", bb_name, bb_dir / COMPRESSION_FILE, random_bb),
                 ("t5", t5_name, t5_dir / "model.safetensors", random_t5),
                 ("tokenizer", t5_name, t5_dir / "spiece.model", random_t5)]
        if clip_path is not None:
            parts.append(("clip", clip_name, clip_path, False))
        identities = [{"name": f"{role}:{name}", "path": str(path), "sha256": file_sha256(path),
                       **({"random": True} if random else {})} for role, name, path, random in parts]
        if descriptors is not None and uses_descriptors:
            identities.append({"name": "descriptors:" + descriptors.info.name, "path": "",
                               "sha256": json_sha256(dataclasses.asdict(descriptors.info))})
        return cls(prompt, template, uses_descriptors, bb_dir, bb_name, t5_dir, t5_name, clip_path, gen,
                   None if stride_s is None else float(stride_s), identities)

    def info(self, label: str, sample_rate: int, scale: str) -> ModelInfo:
        """The model's info, given what its backbone files declare: EnCodec's rate (Hz) and the LM scale's name."""
        return ModelInfo(
            name=label, family="baseline", sample_rate=int(sample_rate), max_duration_s=None,
            trained=not _is_random(self.bb_dir),
            extra={"backbone": self.bb_name, "scale": scale, "t5": self.t5_name, "prompt": self.prompt_mode,
                   "template": self.template,
                   "descriptors": "clip-zero-shot (metrics.semantic)" if self.uses_descriptors else None,
                   "generation": dataclasses.asdict(self.gen), "stride_s": self.stride_s,
                   "conditioning": "T5 text -> MusicGen output_proj -> cross-attention (upstream MusicGen)"})


_RUNTIME_ARGS = ("device", "label", "prompt_log")  # constructor arguments that _Setup does not take


# ------------------------------------------------------------------------------------------------ the model
class MusicGenText:
    """Model-contract adapter (see the module docstring for the options).

    Generation overrides: ``cfg`` (guidance coefficient), ``top_k``, ``top_p``, ``temperature``, ``stride_s``
    (sliding-window step, s), ``window_s`` (window length, s; MusicGen's 30). ``descriptors`` (Python callers and
    tests only): a ready video extractor used instead of building CLIP from ``clip``.
    """

    def __init__(self, scale: str = "medium", backbone: str | Path | None = None, t5: str | Path = "t5-base",
                 clip: str | Path | None = None, prompt: str = "auto", template: str | None = None,
                 cfg: float | None = None, top_k: int | None = None, top_p: float | None = None,
                 temperature: float | None = None, stride_s: float | None = None, window_s: float | None = None,
                 device: str | None = None, label: str = "musicgen-text", prompt_log: str | Path | None = None,
                 descriptors: tp.Any = None):
        from vidmusician.backbone import LM_FILE, default_device, load_backbone

        setup = _Setup.of(scale=scale, backbone=backbone, t5=t5, clip=clip, prompt=prompt, template=template,
                          cfg=cfg, top_k=top_k, top_p=top_p, temperature=temperature, stride_s=stride_s,
                          window_s=window_s, descriptors=descriptors)
        self.prompt_mode, self.template = setup.prompt_mode, setup.template
        self.uses_descriptors = setup.uses_descriptors
        self.device = default_device(device)
        bb = load_backbone(setup.bb_dir)
        text = load_text_conditioner(setup.t5_dir, bb.conditioner_state, setup.bb_dir / LM_FILE, self.device)
        self.model = TextMusicGen(bb.lm, text).to(self.device).eval()
        self.compression = bb.compression_model.to(self.device).eval()
        self.sample_rate = int(self.compression.sample_rate)
        self.gen, self.stride_s = setup.gen, setup.stride_s
        self._descriptors, self._clip_path = descriptors, setup.clip_path
        self.prompt_log = Path(prompt_log) if prompt_log else None
        self.prompts: dict[str, dict] = {}
        self._identities = setup.identities
        self.info = setup.info(label, self.sample_rate, bb.scale.name)

    @classmethod
    def identify(cls, **kwargs) -> tuple[ModelInfo, list[dict]]:
        """(info, checkpoints()) of the model the constructor's keyword arguments build, from the files alone:
        hashed, their configs read memory-mapped, no weight loaded and no module built."""
        import inspect

        from vidmusician.backbone import COMPRESSION_FILE, LM_FILE
        from vm_eval.models.identity import encodec_sample_rate, musicgen_scale

        bound = inspect.signature(cls).bind(**kwargs)  # the constructor's defaults; refuses what it refuses
        bound.apply_defaults()
        args = bound.arguments
        setup = _Setup.of(**{k: v for k, v in args.items() if k not in _RUNTIME_ARGS})
        info = setup.info(args["label"], encodec_sample_rate(setup.bb_dir / COMPRESSION_FILE),
                          musicgen_scale(setup.bb_dir / LM_FILE).name)
        return info, [dict(i) for i in setup.identities]

    def checkpoints(self) -> list[dict]:
        return [dict(i) for i in self._identities]

    # ------------------------------------------------------------------------------------------------ prompts
    @property
    def descriptors(self):
        """The CLIP zero-shot video descriptors (metrics.semantic), built on first use."""
        if self._descriptors is None:
            from metrics.backbones.clip import ClipVisual
            from metrics.backbones.clip_text import ClipTextEncoder
            from metrics.semantic import VideoDescriptors

            device = str(self.device)
            self._descriptors = VideoDescriptors(ClipVisual(self._clip_path, device=device),
                                                 ClipTextEncoder(self._clip_path, device=device))
        return self._descriptors

    def descriptor_text(self, clip: ClipInput) -> str:
        from metrics.semantic import descriptor_prompt
        from vm_eval.fsutil import span_key
        from vm_eval.scoring.inputs import extractor_id
        from vm_eval.store.feature_cache import FeatureCache

        d = self.descriptors
        cache = FeatureCache(clip.cache_root / "features")
        key = "video:" + span_key(clip.video_path, clip.clip.start, clip.clip.end)  # = the metrics' key
        idx = cache.get_or_compute(extractor_id(d), key, lambda: np.asarray(d(clip.frames(d.info.fps, d.info.size),
                                                                               d.info.fps)))
        return descriptor_prompt(idx)

    def prompt_for(self, clip: ClipInput) -> tuple[str, str]:
        """(prompt, where it came from: "caption" | "descriptors" | "template"); NotApplicable without one."""
        memo: dict[str, str] = {}

        def caption() -> str:
            if not clip.caption:
                raise NotApplicable(f"clip {clip.id} has no caption (musicgen-text prompt={self.prompt_mode!r}"
                                    f"{', template uses {caption}' if self.template else ''})")
            return clip.caption

        def descriptors() -> str:
            if "d" not in memo:
                memo["d"] = self.descriptor_text(clip)
            return memo["d"]

        def chosen() -> tuple[str, str]:
            if self.prompt_mode == "caption" or (self.prompt_mode == "auto" and clip.caption):
                return caption(), "caption"
            return descriptors(), "descriptors"

        if self.template is None:
            return chosen()
        fields = _template_fields(self.template)
        values = {"category": clip.category or ""}
        if "prompt" in fields:
            values["prompt"] = chosen()[0]
        if "caption" in fields:
            values["caption"] = caption()
        if "descriptors" in fields:
            values["descriptors"] = descriptors()
        return self.template.format(**values), "template"

    def _record(self, clip: ClipInput, prompt: str, source: str) -> None:
        rec = {"clip_id": clip.id, "seed": clip.seed, "prompt": prompt, "source": source, "model": self.info.name}
        self.prompts[clip.id] = rec
        log.info("musicgen-text prompt for %s (%s): %s", clip.id, source, prompt)
        if self.prompt_log is not None:
            self.prompt_log.parent.mkdir(parents=True, exist_ok=True)
            with open(self.prompt_log, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")

    # ------------------------------------------------------------------------------------------------ generation
    def generate(self, batch: list[ClipInput]) -> list:
        from vidmusician.generate import decode_audio, generate_long

        out: dict[str, tp.Any] = {}
        groups: dict[tuple, list] = defaultdict(list)
        for clip in batch:
            try:
                prompt, source = self.prompt_for(clip)
                n_tok = self.model.text.n_tokens(prompt)
            except Exception as e:  # that clip alone (NotApplicable: skipped by design)
                out[clip.id] = e
                continue
            self._record(clip, prompt, source)
            # one sampling call per (duration, prompt length): no row is padded (see the module docstring)
            groups[(round(clip.duration_s, 6), n_tok)].append((clip, prompt))
        for (duration, _), items in groups.items():
            try:
                codes = generate_long(self.model, [p for _, p in items], None, duration, [c.seed for c, _ in items],
                                      self.gen, token_rate=int(round(self.compression.frame_rate)),
                                      stride_s=self.stride_s)
                n = int(round(duration * self.sample_rate))
                for i, (clip, _) in enumerate(items):  # one clip per decode: batched convolutions differ in the bits
                    wav = decode_audio(self.compression, codes[i:i + 1].to(self.device), n)[0]
                    out[clip.id] = (np.ascontiguousarray(wav.float().cpu().numpy(), dtype=np.float32),
                                    self.sample_rate)
            except Exception as e:
                for clip, _ in items:
                    out[clip.id] = e
        return [out[c.id] for c in batch]


def _template_fields(template: str | None) -> set[str]:
    if template is None:
        return set()
    names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    bad = names - set(TEMPLATE_FIELDS)
    if bad:
        raise ValueError(f"template fields {sorted(bad)} unknown; use {{{'}, {'.join(TEMPLATE_FIELDS)}}}")
    return names


# ------------------------------------------------------------------------------------------------ tiny random
TINY_DIR = "musicgen-text-tiny"  # <results>/random-weights/musicgen-text-tiny
TINY_T5 = dict(d_model=32, d_ff=64, d_kv=16, num_layers=2, num_heads=2)
_CORPUS_EXTRA = (
    "upbeat promo music with drums", "a commercial for a new car", "travel compilation with acoustic guitar",
    "sports highlights with electronic beats", "product showcase, bright and modern", "calm nature documentary",
)


def tokenizer_corpus() -> list[str]:
    """Sentences for the tiny random tokenizer: the descriptor vocabulary in its prompt template, plus captions."""
    from metrics.semantic import CATEGORIES, VOCABULARY, descriptor_prompt

    lines = list(_CORPUS_EXTRA)
    n = max(len(v) for v in VOCABULARY.values())
    for i in range(n):
        lines.append(descriptor_prompt(np.array([(i * (k + 1)) % len(VOCABULARY[c])
                                                 for k, c in enumerate(CATEGORIES)])))
    return lines


def train_spiece(path: Path, lines: tp.Sequence[str], vocab_size: int = 120) -> Path:
    """A tiny SentencePiece unigram model in T5's id layout (pad 0, eos 1, unk 2, no bos)."""
    import io

    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(list(lines) * 4), model_writer=buf, vocab_size=vocab_size,
                                   model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   hard_vocab_limit=False, num_threads=1, minloglevel=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return path


def write_random_parts(root: str | Path, seed: int = 0, scale: str = "tiny", t5: dict | None = None,
                       lines: tp.Sequence[str] | None = None) -> tuple[Path, Path]:
    """Write a random MusicGen backbone (with a random T5 output projection in its conditioner state) and a random
    T5 encoder + tokenizer in upstream layouts, once: (backbone folder, t5 folder). Each holds RANDOM_MARKER."""
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    from vidmusician.backbone import COMPRESSION_FILE, LM_FILE, load_backbone, save_backbone

    root = Path(root)
    bb_dir, t5_dir = root / f"musicgen-{scale}-random-s{seed}", root / f"t5-random-s{seed + 1}"
    spec = dict(TINY_T5, **(t5 or {}))
    if not all((t5_dir / f).is_file() for f in (*T5_FILES, RANDOM_MARKER)):
        train_spiece(t5_dir / "spiece.model", lines if lines is not None else tokenizer_corpus())
        n_vocab = len(T5Tokenizer.from_pretrained(str(t5_dir)))
        torch.manual_seed(seed + 1)
        T5EncoderModel(T5Config(vocab_size=n_vocab, **spec)).save_pretrained(str(t5_dir))
        (t5_dir / RANDOM_MARKER).write_text(json.dumps({"seed": seed + 1, "t5": spec}))
    if not all((bb_dir / f).is_file() for f in (LM_FILE, COMPRESSION_FILE, RANDOM_MARKER)):
        bb = load_backbone(scale, seed=seed)
        gen = torch.Generator().manual_seed(seed + 2)
        proj = nn.Linear(spec["d_model"], bb.scale.dim)
        with torch.no_grad():  # PyTorch's default Linear init, from our own generator
            bound = 1.0 / spec["d_model"] ** 0.5
            proj.weight.uniform_(-bound, bound, generator=gen)
            proj.bias.uniform_(-bound, bound, generator=gen)
        bb.conditioner_state = {OUTPUT_PROJ + k: v.detach().clone() for k, v in proj.state_dict().items()}
        save_backbone(bb, bb_dir)
        (bb_dir / RANDOM_MARKER).write_text(json.dumps({"seed": seed, "scale": scale}))
    return bb_dir, t5_dir


def _tiny_random_args(results: str | Path | None, seed: int, kwargs: dict) -> dict:
    """MusicGenText's arguments for musicgen-text-tiny-random, its random parts written first if absent."""
    bb_dir, t5_dir = write_random_parts(paths.results_dir(results) / "random-weights" / TINY_DIR, int(seed))
    return dict(backbone=bb_dir, t5=t5_dir, **{"prompt": "caption", "label": "musicgen-text-tiny-random", **kwargs})


def _identify_tiny_random(results: str | Path | None = None, seed: int = 0,
                          **kwargs) -> tuple[ModelInfo, list[dict]]:
    """tiny_random's identity; writing its random parts the first time is the only work with modules."""
    return MusicGenText.identify(**_tiny_random_args(results, seed, kwargs))


@identified_by(_identify_tiny_random)
def tiny_random(results: str | Path | None = None, seed: int = 0, **kwargs) -> MusicGenText:
    """The demo's musicgen-text: tiny RANDOM backbone, T5 and tokenizer written once under
    ``<results>/random-weights/musicgen-text-tiny`` (mechanics only; flagged untrained). Prompts default to the
    captions (clips without one are skipped): descriptors would need a real CLIP (``prompt=auto clip=PATH``)."""
    return MusicGenText(**_tiny_random_args(results, seed, kwargs))
