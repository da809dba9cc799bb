"""LAION-CLAP (laion_clap 1.1.x, non-fusion checkpoints): audio embeddings per 10 s window, text embeddings.

Audio: ``ClapAudio(checkpoint)(audio, sample_rate) -> float32 [windows, 512]``, each row L2-normalised exactly
as ``CLAP.get_audio_embedding`` normalises it (HTS-AT ``embedding`` -> ``audio_projection`` -> L2 norm).

    Input handling follows laion_clap's documented file pipeline (``get_audio_embedding_from_filelist``:
    ``librosa.load(path, sr=48000)``, then int16 quantisation, then ``get_audio_features``):
    1. downmix by the mean of the channels, then resample to 48 kHz with
       ``librosa.resample(res_type="soxr_hq")`` (what ``librosa.load(sr=48000)`` does, in that order);
    2. quantise to int16 and back (clip to [-1, 1], x 32767, truncate, / 32767);
    3. cut into windows of ``window_s`` = 10 s (CLAP's 480 000-sample input) every ``hop_s`` (default: 10 s,
       no overlap). Upstream never looks past one window: a clip longer than 10 s is randomly cropped by
       ``get_audio_features(data_truncating="rand_trunc")``; we embed every window instead, deterministically.
    4. the final partial window (and a clip shorter than one window) is filled to 10 s as upstream fills short
       clips, ``fill="repeatpad"`` (tile the audio int(480000 / n) times, zero-pad the rest), or with zeros
       (``fill="zeropad"``). A partial tail shorter than ``min_tail_s`` (1 s) is dropped when at least one
       other window exists; a clip shorter than one window always gives one window; empty audio raises
       MetricError. ``embed_clip`` gives one 512-d vector per clip: the L2-normalised mean of the window
       embeddings.

    The network is laion_clap's HTS-AT module (``clap_module.htsat``) plus a projection with the checkpoint's
    ``audio_projection`` layout; the RoBERTa text tower is not built. The published checkpoints name their
    audio encoder: ``630k-*.pt`` use HTSAT-tiny, ``music_*.pt`` HTSAT-base (laion_clap's README; ``amodel`` is
    also read off the weights, patch-embedding width 96 = tiny, 128 = base, 256 = large, and a mismatch is an
    error). The checkpoint file name is part of the identity: ``backbone = {name, file, sha256}`` with name
    e.g. ``clap-music`` / ``clap-630k-audioset``.

Text: ``ClapText(checkpoint, tokenizer=<folder>)(texts) -> float32 [n, 512]`` (L2-normalised, as
``CLAP.get_text_embedding``): RoBERTa ``pooler_output`` -> ``text_projection`` -> L2 norm, tokens from the
roberta-base BPE tokenizer padded/truncated to 77 (``CLAP_Module.tokenizer``). The RoBERTa weights are inside
the CLAP checkpoint and its shape is read from them; the TOKENIZER files (``vocab.json``, ``merges.txt`` of
``FacebookAI/roberta-base``) are not, and must be on disk (a folder, or the Hugging Face cache). Without them
we raise FileNotFoundError naming them, never fall back to
``RobertaTokenizer.from_pretrained("roberta-base")``: offline, transformers 5 returns from that call a
tokenizer that knows only the special tokens and maps every word to ``<unk>``, silently.

laion_clap's package ``__init__`` imports ``laion_clap.training.data``, which loads three tokenizers from the
hub at import time (it hangs without network unless HF_HUB_OFFLINE=1). We never import ``laion_clap`` itself:
we load its ``clap_module`` subpackage under the top-level name ``clap_module``, which is how laion_clap
itself imports it (it puts its own folder on ``sys.path``), so both share one module if laion_clap is imported
later.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np

from metrics.backbones import channels_first, checkpoint_identity, resolve_device
from metrics.backbones import load_torch_checkpoint, unwrap_state_dict
from metrics.base import ExtractorInfo, MetricError

SAMPLE_RATE = 48_000
CLIP_SAMPLES = 480_000  # 10 s: the HTS-AT input length of every published CLAP audio config
JOINT_DIM = 512
CONTEXT_LENGTH = 77

# published LAION-CLAP files (hub lukewys/laion_clap) -> (identity name, audio encoder)
CHECKPOINTS: dict[str, tuple[str, str]] = {
    "630k-best.pt": ("clap-630k", "HTSAT-tiny"),
    "630k-audioset-best.pt": ("clap-630k-audioset", "HTSAT-tiny"),
    "music_audioset_epoch_15_esc_90.14.pt": ("clap-music", "HTSAT-base"),
    "music_speech_epoch_15_esc_89.25.pt": ("clap-music-speech", "HTSAT-base"),
    "music_speech_audioset_epoch_15_esc_89.98.pt": ("clap-music-speech-audioset", "HTSAT-base"),
}
FUSION_CHECKPOINTS = ("630k-fusion-best.pt", "630k-audioset-fusion-best.pt")
HTSAT_WIDTH = {96: "HTSAT-tiny", 128: "HTSAT-base", 256: "HTSAT-large"}
TOKENIZER_FILES = ("vocab.json", "merges.txt")
TOKENIZER_HUB_IDS = ("FacebookAI/roberta-base", "roberta-base")


# ---------------------------------------------------------------------------------------------------- loading
def clap_module():
    """laion_clap's ``clap_module`` package, imported without running ``laion_clap/__init__`` (module doc)."""
    mod = sys.modules.get("clap_module")
    if mod is not None:
        if not hasattr(mod, "CLAPAudioCfp"):
            raise ImportError(f"a module named clap_module that is not laion_clap's is imported ({mod!r})")
        return mod
    spec = importlib.util.find_spec("laion_clap")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("laion_clap is not installed (pip install laion-clap --no-deps)")
    root = Path(next(iter(spec.submodule_search_locations))) / "clap_module"
    sub = importlib.util.spec_from_file_location("clap_module", root / "__init__.py",
                                                 submodule_search_locations=[str(root)])
    mod = importlib.util.module_from_spec(sub)
    sys.modules["clap_module"] = mod
    try:
        sub.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop("clap_module", None)
        raise
    return mod


def model_config(amodel: str) -> dict:
    cm = clap_module()
    path = Path(cm.__file__).parent / "model_configs" / f"{amodel}.json"
    if not path.is_file():
        raise ValueError(f"laion_clap has no audio model config {amodel!r}")
    return json.loads(path.read_text())


def resolve_clap_checkpoint(checkpoint: str | Path) -> Path:
    """A CLAP checkpoint file, or the single published CLAP file inside a folder."""
    p = Path(checkpoint).expanduser()
    if p.is_dir():
        found = [p / f for f in CHECKPOINTS if (p / f).is_file()]
        if len(found) != 1:
            raise FileNotFoundError(
                f"{p}: expected exactly one of {', '.join(CHECKPOINTS)} in the folder, found "
                f"{', '.join(f.name for f in found) or 'none'}")
        p = found[0]
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {p} (expected a LAION-CLAP checkpoint such as "
                                f"{' or '.join(list(CHECKPOINTS)[1:3])})")
    if p.name in FUSION_CHECKPOINTS or "fusion" in p.name:
        raise NotImplementedError(f"{p.name} is a fusion CLAP checkpoint; only non-fusion checkpoints are "
                                  f"supported")
    return p


def load_clap_state(path: Path) -> dict:
    state = unwrap_state_dict(load_torch_checkpoint(path), path)
    if not any(k.startswith("audio_branch.") for k in state):
        raise ValueError(f"{path.name} holds no audio_branch.* weights: not a LAION-CLAP checkpoint")
    return state


def checkpoint_name(path: Path, name: str | None) -> str:
    if name:
        return name
    return CHECKPOINTS.get(path.name, ("laion-clap", ""))[0]


def infer_amodel(state: dict) -> str:
    w = state.get("audio_branch.patch_embed.proj.weight")
    if w is None:
        raise ValueError("no audio_branch.patch_embed.proj.weight: only HTS-AT audio encoders are supported")
    width = int(w.shape[0])
    if width not in HTSAT_WIDTH:
        raise ValueError(f"unknown HTS-AT width {width}")
    return HTSAT_WIDTH[width]


def _sub_state(state: dict, prefixes: tuple[str, ...]) -> dict:
    return {k: v for k, v in state.items() if k.startswith(prefixes)}


def _mlp(d_in: int):
    import torch.nn as nn

    return nn.Sequential(nn.Linear(d_in, JOINT_DIM), nn.ReLU(), nn.Linear(JOINT_DIM, JOINT_DIM))


# ---------------------------------------------------------------------------------------------------- audio
def quantise_int16(y: np.ndarray) -> np.ndarray:
    """laion_clap's float32 -> int16 -> float32 round trip."""
    q = (np.clip(y, -1.0, 1.0) * 32767.0).astype(np.int16)
    return (q / 32767.0).astype(np.float32)


def fill_window(seg: np.ndarray, length: int, fill: str) -> np.ndarray:
    if len(seg) >= length:
        return seg[:length]
    if fill == "repeatpad":
        seg = np.tile(seg, length // len(seg))
    return np.pad(seg, (0, length - len(seg)))


def window_spans(n: int, window: int, hop: int, min_tail: int) -> list[tuple[int, int]]:
    """[start, end) of full windows every `hop` samples, plus one partial tail window (see the module doc)."""
    if n <= 0:
        return []
    spans = [(s, s + window) for s in range(0, n - window + 1, hop)]
    nxt = spans[-1][0] + hop if spans else 0
    if nxt < n and (spans[-1][1] < n if spans else True):
        if not spans or n - nxt >= min_tail:
            spans.append((nxt, n))
    return spans


def pool_windows(embeddings: np.ndarray) -> np.ndarray:
    """[windows, 512] -> [512]: the L2-normalised mean of the rows."""
    m = np.asarray(embeddings, np.float64).mean(axis=0)
    return (m / max(np.linalg.norm(m), 1e-12)).astype(np.float32)


class ClapAudio:
    """LAION-CLAP audio embeddings, one L2-normalised 512-d row per 10 s window (see the module docstring)."""

    def __init__(self, checkpoint: str | Path, device: str | None = None, amodel: str | None = None,
                 name: str | None = None, window_s: float = 10.0, hop_s: float | None = None,
                 fill: str = "repeatpad", min_tail_s: float = 1.0, batch_size: int = 8):
        import torch.nn as nn

        path = resolve_clap_checkpoint(checkpoint)
        if fill not in ("repeatpad", "zeropad"):
            raise ValueError(f"fill must be 'repeatpad' or 'zeropad', got {fill!r}")
        if abs(window_s * SAMPLE_RATE - CLIP_SAMPLES) > 0.5:
            raise ValueError(f"window_s must be {CLIP_SAMPLES / SAMPLE_RATE} s (the CLAP input length)")
        hop_s = window_s if hop_s is None else float(hop_s)
        if not 0 < hop_s <= window_s:
            raise ValueError(f"hop_s must be in (0, window_s], got {hop_s}")
        state = load_clap_state(path)
        found = infer_amodel(state)
        expected = CHECKPOINTS.get(path.name, (None, None))[1]
        for label, want in (("amodel", amodel), (f"the published {path.name}", expected)):
            if want and want != found:
                raise ValueError(f"{path.name}: weights are {found} but {label} says {want}")
        cfg = model_config(found)
        cm = clap_module()
        from clap_module.htsat import create_htsat_model

        tower = nn.Module()
        tower.audio_branch = create_htsat_model(cm.CLAPAudioCfp(**cfg["audio_cfg"]), False, "None")
        tower.audio_projection = _mlp(cfg["embed_dim"])
        tower.load_state_dict(_sub_state(state, ("audio_branch.", "audio_projection.")), strict=True)
        if cfg["audio_cfg"]["sample_rate"] != SAMPLE_RATE or cfg["audio_cfg"]["clip_samples"] != CLIP_SAMPLES:
            raise ValueError(f"{found}: unexpected audio config {cfg['audio_cfg']}")

        self.path = path
        self.amodel = found
        self.device = resolve_device(device)
        self.tower = tower.eval().to(self.device)
        self.fill = fill
        self.window = CLIP_SAMPLES
        self.hop = int(round(hop_s * SAMPLE_RATE))
        self.min_tail = int(round(min_tail_s * SAMPLE_RATE))
        self.batch_size = max(1, int(batch_size))
        self.info = ExtractorInfo(
            name="clap-audio", version=1,
            params={"amodel": found, "output": "L2-normalised audio embedding per window [windows, 512]",
                    "window_s": float(window_s), "hop_s": hop_s, "fill": fill,
                    "min_tail_s": float(min_tail_s),
                    "model_sample_rate": SAMPLE_RATE, "downmix": "mean of channels before resampling",
                    "resampler": "librosa.resample(res_type='soxr_hq') (as librosa.load(sr=48000))",
                    "quantise": "int16 round trip"},
            sample_rate=None, mono=False,
            backbone=checkpoint_identity(checkpoint_name(path, name), path),
        )

    def prepare(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Native [channels, n] (or [n]) -> 48 kHz mono, int16-quantised float32 [n48]."""
        import librosa

        x = channels_first(audio)
        y = librosa.to_mono(np.ascontiguousarray(x))
        if int(sample_rate) != SAMPLE_RATE:
            y = librosa.resample(y, orig_sr=int(sample_rate), target_sr=SAMPLE_RATE, res_type="soxr_hq")
        return quantise_int16(np.asarray(y, dtype=np.float32))

    def windows(self, n48: int) -> list[tuple[int, int]]:
        return window_spans(n48, self.window, self.hop, self.min_tail)

    def embed_windows(self, batch: np.ndarray) -> np.ndarray:
        """Quantised 48 kHz windows [B, 480000] -> L2-normalised embeddings [B, 512]."""
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
            h = self.tower.audio_branch({"waveform": x}, device=self.device)["embedding"]
            e = torch.nn.functional.normalize(self.tower.audio_projection(h), dim=-1)
        return e.float().cpu().numpy()

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        y = self.prepare(audio, sample_rate)
        spans = self.windows(len(y))
        if not spans:
            raise MetricError("empty audio")
        segs = np.stack([fill_window(y[s:e], self.window, self.fill) for s, e in spans])
        out = [self.embed_windows(segs[i:i + self.batch_size]) for i in range(0, len(segs), self.batch_size)]
        return np.concatenate(out)

    def embed_clip(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """One 512-d vector per clip: the L2-normalised mean of the window embeddings."""
        return pool_windows(self(audio, sample_rate))


# ---------------------------------------------------------------------------------------------------- text
def find_tokenizer(tokenizer: str | Path | None) -> Path:
    """Folder holding roberta-base's vocab.json and merges.txt: `tokenizer`, else the Hugging Face cache."""
    looked = []
    if tokenizer is not None:
        p = Path(tokenizer).expanduser()
        looked.append(str(p))
        if all((p / f).is_file() for f in TOKENIZER_FILES):
            return p
    else:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            try_to_load_from_cache = None
        for repo in TOKENIZER_HUB_IDS:
            looked.append(f"Hugging Face cache ({repo})")
            if try_to_load_from_cache is None:
                continue
            hit = try_to_load_from_cache(repo, TOKENIZER_FILES[0])
            if isinstance(hit, str) and all((Path(hit).parent / f).is_file() for f in TOKENIZER_FILES):
                return Path(hit).parent
    raise FileNotFoundError(
        f"CLAP text tokenizer files not found: need {' and '.join(TOKENIZER_FILES)} of roberta-base "
        f"(hub {TOKENIZER_HUB_IDS[0]}); looked in {'; '.join(looked)}. Get them with "
        f"`huggingface-cli download {TOKENIZER_HUB_IDS[0]} {' '.join(TOKENIZER_FILES)} --local-dir <folder>` "
        f"and pass tokenizer=<folder>. "
        f"(RobertaTokenizer.from_pretrained('roberta-base') offline silently yields an unusable tokenizer.)")


def roberta_config(state: dict):
    """RobertaConfig matching the text_branch.* weights (roberta-base constants where shapes cannot tell)."""
    from transformers import RobertaConfig

    emb = state["text_branch.embeddings.word_embeddings.weight"]
    vocab, hidden = (int(s) for s in emb.shape)
    layers = 1 + max(int(m.group(1)) for k in state
                     if (m := re.match(r"text_branch\.encoder\.layer\.(\d+)\.", k)))
    return RobertaConfig(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=hidden // 64,
        intermediate_size=int(state["text_branch.encoder.layer.0.intermediate.dense.weight"].shape[0]),
        max_position_embeddings=int(state["text_branch.embeddings.position_embeddings.weight"].shape[0]),
        type_vocab_size=int(state["text_branch.embeddings.token_type_embeddings.weight"].shape[0]),
        layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2, hidden_act="gelu",
    )


class ClapText:
    """LAION-CLAP text embeddings (RoBERTa branch), L2-normalised [n, 512]; see the module docstring."""

    def __init__(self, checkpoint: str | Path, tokenizer: str | Path | None = None, device: str | None = None,
                 name: str | None = None, batch_size: int = 32):
        import torch.nn as nn
        from transformers import RobertaModel, RobertaTokenizer

        path = resolve_clap_checkpoint(checkpoint)
        state = load_clap_state(path)
        if not any(k.startswith("text_branch.") for k in state):
            raise ValueError(f"{path.name} holds no text_branch.* weights (an audio-only checkpoint?)")
        needed = ("text_branch.embeddings.word_embeddings.weight", "text_branch.pooler.dense.weight")
        if any(k not in state for k in needed):
            raise NotImplementedError(f"{path.name}: only RoBERTa text branches are supported")
        tok_dir = find_tokenizer(tokenizer)
        tok = RobertaTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
        n_vocab = len(json.loads((tok_dir / "vocab.json").read_text(encoding="utf-8")))
        if len(tok) < n_vocab or len(tok) <= 5:
            raise ValueError(f"tokenizer in {tok_dir} did not load its vocabulary "
                             f"({len(tok)} of {n_vocab} tokens)")
        config = roberta_config(state)
        if len(tok) > config.vocab_size:
            raise ValueError(f"tokenizer has {len(tok)} tokens but the text model only {config.vocab_size}")

        text = nn.Module()
        text.text_branch = RobertaModel(config, add_pooling_layer=True)
        text.text_projection = _mlp(config.hidden_size)
        sub = _sub_state(state, ("text_branch.", "text_projection."))
        own = text.state_dict()
        for k in [k for k in sub if k not in own and k.endswith(("position_ids", "token_type_ids"))]:
            del sub[k]  # non-persistent buffers in recent transformers (laion_clap deletes position_ids too)
        text.load_state_dict(sub, strict=True)

        self.path = path
        self.tokenizer = tok
        self.device = resolve_device(device)
        self.text = text.eval().to(self.device)
        self.batch_size = max(1, int(batch_size))
        h = hashlib.sha256()
        for f in TOKENIZER_FILES:
            h.update(f.encode() + b"\0" + (tok_dir / f).read_bytes())
        self.info = ExtractorInfo(
            name="clap-text", version=1,
            params={"text_model": "roberta",
                    "tokenizer": f"roberta-base BPE, padded/truncated to {CONTEXT_LENGTH}",
                    "tokenizer_sha256": h.hexdigest(), "output": "L2-normalised text embedding [n, 512]"},
            backbone=checkpoint_identity(checkpoint_name(path, name), path),
        )

    def tokenize(self, texts: list[str]) -> dict:
        return self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=CONTEXT_LENGTH,
                              return_tensors="pt")

    def embed_tokens(self, input_ids, attention_mask) -> np.ndarray:
        """Token ids [B, L] and mask -> L2-normalised [B, 512] (pooler_output -> text_projection)."""
        import torch

        with torch.inference_mode():
            out = self.text.text_branch(input_ids=input_ids.to(self.device),
                                        attention_mask=attention_mask.to(self.device))["pooler_output"]
            e = torch.nn.functional.normalize(self.text.text_projection(out), dim=-1)
        return e.float().cpu().numpy()

    def __call__(self, texts: list[str]) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        out = []
        for i in range(0, len(texts), self.batch_size):
            tok = self.tokenize(texts[i:i + self.batch_size])
            out.append(self.embed_tokens(tok["input_ids"], tok["attention_mask"]))
        return np.concatenate(out) if out else np.zeros((0, JOINT_DIM), np.float32)
