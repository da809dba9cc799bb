"""One incremental decoder for every MusicGen-backbone model (VidMusician, musicgen-text, their tiny twins).

It runs the frozen weights of an audiocraft ``LMModel`` step by step with the same arithmetic as audiocraft's
streaming forward (``StreamingTransformer`` with pre-norm layers, torch's scaled-dot-product attention, sinusoidal
positions added to the summed code embeddings, optional layer scale, output norm, one linear head per codebook),
but:

- the cross-attention keys / values of the condition are projected once per window (:class:`CrossCache`; a
  sliding window whose condition is unchanged reuses them), where audiocraft re-projects them at every step;
- the self-attention keys / values go into a preallocated buffer written in place (:class:`KVCache`), where
  audiocraft grows its cache by ``torch.cat`` every step;
- an in-attention addition (VidMusician's rhythm features F_Rj) is added to the input of layer j at the step's
  positions -- what :meth:`~vidmusician.rhythm.RhythmAdapter.attach`'s pre-hooks do in teacher forcing;
- only the last position's logits are computed when generating.

Rows are batched as given: under classifier-free guidance the caller passes ``[conditional rows; null rows]``.

CUDA (untested here: no GPU in the sessions that wrote it): weights are copied once to bfloat16 and single-token
steps can be replayed from a captured CUDA graph over static buffers (attention over the whole window with a
position mask). Graphs are used only when a start-up self-check (a few steps against the eager path) passes;
``VIDMUSICIAN_CUDA_GRAPHS=0`` turns them off.

Thread choice on CPU (:func:`decode_threads`, also used for EnCodec decoding and training): one thread for small
models (the tiny presets: Python overhead dominates and a second OpenMP thread only spins), else the cores in this
process's affinity, never more than torch's current setting (a worker pinned to one thread stays at one). It does
not follow the machine's load, so a run's tokens do not depend on what else is running.

Depends on torch and (for the module classes it reads) audiocraft; no vm_eval imports.
"""
from __future__ import annotations

import contextlib
import logging
import os
import typing as tp
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .kvcache import CrossCache, KVCache

__all__ = ["MusicGenDecoder", "decoder_for", "decode_threads", "cpu_threads", "SMALL_MODEL_PARAMS"]

log = logging.getLogger(__name__)

# Below this many LM parameters one thread decodes fastest (per-step work is a few small matrix-vector products).
SMALL_MODEL_PARAMS = 50_000_000


# ----------------------------------------------------------------------------------------------------- weights
@dataclass
class _Layer:
    """One pre-norm transformer layer's tensors (views of the LM's parameters, or bf16 copies on CUDA)."""

    norm1: tp.Tuple[torch.Tensor, tp.Optional[torch.Tensor], float]
    w_in: torch.Tensor
    b_in: tp.Optional[torch.Tensor]
    w_out: torch.Tensor
    b_out: tp.Optional[torch.Tensor]
    norm_cross: tp.Tuple[torch.Tensor, tp.Optional[torch.Tensor], float]
    w_q: torch.Tensor
    b_q: tp.Optional[torch.Tensor]
    w_k: torch.Tensor
    b_k: tp.Optional[torch.Tensor]
    w_v: torch.Tensor
    b_v: tp.Optional[torch.Tensor]
    w_cout: torch.Tensor
    b_cout: tp.Optional[torch.Tensor]
    norm2: tp.Tuple[torch.Tensor, tp.Optional[torch.Tensor], float]
    w_ff1: torch.Tensor
    b_ff1: tp.Optional[torch.Tensor]
    w_ff2: torch.Tensor
    b_ff2: tp.Optional[torch.Tensor]
    activation: tp.Callable[[torch.Tensor], torch.Tensor]
    scale1: tp.Optional[torch.Tensor]  # layer scale (None: identity)
    scale_cross: tp.Optional[torch.Tensor]
    scale2: tp.Optional[torch.Tensor]


def _cast(t: tp.Optional[torch.Tensor], dtype: torch.dtype) -> tp.Optional[torch.Tensor]:
    return None if t is None else t.detach().to(dtype)  # same dtype: the parameter itself, no copy


def _norm(m: nn.Module, dtype: torch.dtype):
    if not isinstance(m, nn.LayerNorm):
        raise NotImplementedError(f"decoder supports LayerNorm only, got {type(m).__name__}")
    return _cast(m.weight, dtype), _cast(m.bias, dtype), float(m.eps)


def _scale(m: nn.Module, dtype: torch.dtype) -> tp.Optional[torch.Tensor]:
    if isinstance(m, nn.Identity):
        return None
    if not getattr(m, "channel_last", True):
        raise NotImplementedError("channel-first LayerScale is not supported")
    return _cast(m.scale, dtype)


def _attn_weights(attn: nn.Module) -> tp.Tuple[torch.Tensor, tp.Optional[torch.Tensor], nn.Linear]:
    """(packed in-projection weight [3 dim, dim], its bias, out projection) of a StreamingMultiheadAttention."""
    if getattr(attn, "custom", False):
        return attn.in_proj_weight, attn.in_proj_bias, attn.out_proj
    mha = attn.mha  # nn.MultiheadAttention (audiocraft's non-custom path): same packed layout
    return mha.in_proj_weight, mha.in_proj_bias, mha.out_proj


def _check_supported(lm: nn.Module) -> None:
    tr = lm.transformer
    if tr.positional_embedding != "sin" or tr.rope is not None:
        raise NotImplementedError(f"decoder supports sinusoidal positions only, got {tr.positional_embedding!r}")
    if tr.checkpointing not in ("none",) and lm.training:
        raise NotImplementedError("decoder runs in eval mode only")
    fuse = lm.fuser.fuse2cond
    if fuse.get("sum") or fuse.get("prepend") or fuse.get("input_interpolate"):
        raise NotImplementedError("decoder supports cross-attention conditions only (no sum / prepend fusing)")
    if getattr(lm, "two_step_cfg", False):
        raise NotImplementedError("two-step classifier-free guidance is not supported (MusicGen batches CFG)")
    for i, layer in enumerate(tr.layers):
        if not layer.norm_first:
            raise NotImplementedError(f"layer {i}: decoder supports pre-norm (norm_first) layers only")
        for name, attn in (("self", layer.self_attn), ("cross", layer.cross_attention)):
            if attn is None:
                raise NotImplementedError(f"layer {i}: decoder needs cross-attention layers")
            if attn.past_context is not None or attn.rope is not None or attn.qk_layer_norm or attn.kv_repeat != 1:
                raise NotImplementedError(f"layer {i} {name}-attention: past_context / rope / qk norm / kv repeat")
            if attn.custom and not attn.memory_efficient:
                raise NotImplementedError(f"layer {i}: the einsum attention path is not supported")


def _ln(x: torch.Tensor, norm) -> torch.Tensor:
    w, b, eps = norm
    return F.layer_norm(x, (x.shape[-1],), w, b, eps)


def _scaled(x: torch.Tensor, s: tp.Optional[torch.Tensor]) -> torch.Tensor:
    return x if s is None else s * x


# ----------------------------------------------------------------------------------------------------- decoder
class MusicGenDecoder:
    """Incremental decoding over an audiocraft ``LMModel``'s frozen weights (see the module docstring).

    Use: ``cross = dec.cross_cache(source)`` (fused cross-attention source ``[B', S, dim]``), then
    ``dec.begin(cross, capacity, additions)`` for a window of at most ``capacity`` sequence steps, then
    ``dec.step(tokens)`` with ``[B', K, L]`` delay-pattern tokens (the first call may hold several positions, e.g. a
    prompt; later calls usually one). ``additions``: ``{layer: [B', N, dim]}`` added to layer j's input at step
    positions < N (zero past N).
    """

    def __init__(self, lm: nn.Module, dtype: tp.Optional[torch.dtype] = None, cuda_graphs: tp.Optional[bool] = None):
        _check_supported(lm)
        self.device = next(lm.parameters()).device
        on_cuda = self.device.type == "cuda"
        self.dtype = dtype or (torch.bfloat16 if on_cuda else next(lm.parameters()).dtype)
        tr = lm.transformer
        dt = self.dtype
        self.n_q, self.card, self.dim = int(lm.num_codebooks), int(lm.card), int(lm.dim)
        first = tr.layers[0].self_attn
        self.heads = int(first.num_heads)
        self.head_dim = self.dim // self.heads
        self.max_period, self.pos_scale = float(tr.max_period), float(tr.positional_scale)
        self.emb = [_cast(e.weight, dt) for e in lm.emb]
        self.layers: tp.List[_Layer] = []
        for layer in tr.layers:
            w_in, b_in, out = _attn_weights(layer.self_attn)
            cw, cb, cout = _attn_weights(layer.cross_attention)
            d = self.dim
            self.layers.append(_Layer(
                norm1=_norm(layer.norm1, dt), w_in=_cast(w_in, dt), b_in=_cast(b_in, dt),
                w_out=_cast(out.weight, dt), b_out=_cast(out.bias, dt), norm_cross=_norm(layer.norm_cross, dt),
                w_q=_cast(cw[:d], dt), b_q=None if cb is None else _cast(cb[:d], dt),
                w_k=_cast(cw[d:2 * d], dt), b_k=None if cb is None else _cast(cb[d:2 * d], dt),
                w_v=_cast(cw[2 * d:], dt), b_v=None if cb is None else _cast(cb[2 * d:], dt),
                w_cout=_cast(cout.weight, dt), b_cout=_cast(cout.bias, dt), norm2=_norm(layer.norm2, dt),
                w_ff1=_cast(layer.linear1.weight, dt), b_ff1=_cast(layer.linear1.bias, dt),
                w_ff2=_cast(layer.linear2.weight, dt), b_ff2=_cast(layer.linear2.bias, dt),
                activation=layer.activation, scale1=_scale(layer.layer_scale_1, dt),
                scale_cross=_scale(layer.layer_scale_cross, dt), scale2=_scale(layer.layer_scale_2, dt)))
        self.out_norm = None if lm.out_norm is None else _norm(lm.out_norm, dt)
        self.heads_w = [_cast(lin.weight, dt) for lin in lm.linears]
        self.heads_b = [_cast(lin.bias, dt) for lin in lm.linears]
        self._fuser = lm.fuser
        self.kv = KVCache(len(self.layers), self.heads, self.head_dim, dt, self.device)
        self._pos: tp.Optional[torch.Tensor] = None  # sinusoidal table [capacity, dim]
        self._cross: tp.Optional[CrossCache] = None
        self._add: tp.Dict[int, torch.Tensor] = {}
        self._graphs = None
        self._src_ptr = lm.emb[0].weight.data_ptr()
        if on_cuda:
            self._graphs = _GraphRunner.maybe(self, cuda_graphs)

    # -- conditions ---------------------------------------------------------------------------------------------
    def cross_source(self, condition_tensors: dict) -> torch.Tensor:
        """The LM fuser's cross-attention source ``[B', S, dim]`` (audiocraft ignores the condition mask)."""
        any_cond = next(iter(condition_tensors.values()))[0]
        empty = any_cond.new_zeros(any_cond.shape[0], 0, self.dim)
        _, src = self._fuser(empty, condition_tensors)
        if src is None:
            raise ValueError("no cross-attention condition")
        return src

    def cross_cache(self, source: torch.Tensor, previous: tp.Optional[CrossCache] = None) -> CrossCache:
        """Project every layer's cross-attention K / V of ``source`` once; ``previous`` is returned unchanged when
        it was computed from a bitwise-equal source (a sliding window with the same condition)."""
        if previous is not None and previous.matches(source):
            return previous
        src = source.to(self.dtype)
        B, S, _ = src.shape
        keys, values = [], []
        for lw in self.layers:
            # [B, S, (h d)] -> [B, h, S, d] views, as audiocraft's rearrange gives
            keys.append(F.linear(src, lw.w_k, lw.b_k).view(B, S, self.heads, self.head_dim).transpose(1, 2))
            values.append(F.linear(src, lw.w_v, lw.b_v).view(B, S, self.heads, self.head_dim).transpose(1, 2))
        return CrossCache(source, keys, values)

    # -- windows ------------------------------------------------------------------------------------------------
    def begin(self, cross: CrossCache, capacity: int,
              additions: tp.Optional[tp.Dict[int, torch.Tensor]] = None) -> None:
        """Start a window of at most ``capacity`` steps for the rows of ``cross``."""
        from audiocraft.modules.transformer import create_sin_embedding

        B = cross.keys[0].shape[0]
        self.kv.reset(B, capacity)
        if self._pos is None or self._pos.shape[0] < capacity:
            positions = torch.arange(capacity, device=self.device).view(1, -1, 1)
            self._pos = create_sin_embedding(positions, self.dim, max_period=self.max_period,
                                             dtype=self.dtype)[0]  # elementwise in the position: slicing is exact
        self._cross = cross
        self._add = {}
        for j, f in (additions or {}).items():
            if not 0 <= j < len(self.layers):
                raise IndexError(f"addition for layer {j}: the LM has {len(self.layers)} layers")
            if f.shape[0] != B:
                raise ValueError(f"addition for layer {j} has batch {f.shape[0]}, rows are {B}")
            full = f.new_zeros(B, capacity, self.dim, dtype=self.dtype)
            n = min(capacity, f.shape[1])
            full[:, :n] = f[:, :n].to(self.dtype)
            self._add[j] = full
        if self._graphs is not None:
            self._graphs.begin()

    def release(self) -> None:
        """Drop the window's buffers (KV cache, condition, additions, captured graphs): a decoder cached for a
        model must not hold a 30 s window's cache (GBs at medium scale) between generation calls."""
        self.kv.release()
        self._cross, self._add = None, {}
        if self._graphs is not None:
            self._graphs.graphs.clear()
            self._graphs.ready = False

    @property
    def position(self) -> int:
        """Steps decoded so far in this window."""
        return self.kv.length

    def step(self, tokens: torch.Tensor, all_logits: bool = False) -> torch.Tensor:
        """Feed delay-pattern tokens ``[B', K, L]`` at the next L positions; returns float logits
        ``[B', K, L, card]`` (``all_logits``) or those of the last position ``[B', K, card]``."""
        if self._cross is None:
            raise RuntimeError("MusicGenDecoder.begin was not called")
        t, L = self.kv.length, int(tokens.shape[-1])
        if self._graphs is not None and L == 1 and not all_logits and self._graphs.ready:
            logits = self._graphs.step(tokens, t)
        else:
            logits = self._forward(tokens, t, all_logits)
        self.kv.length = t + L
        return logits

    def _forward(self, tokens: torch.Tensor, t: int, all_logits: bool) -> torch.Tensor:
        B, K, L = tokens.shape
        H, D = self.heads, self.head_dim
        x = sum([F.embedding(tokens[:, k], self.emb[k]) for k in range(K)])  # as LMModel.forward
        x = x + self.pos_scale * self._pos[t:t + L].unsqueeze(0)
        cross = self._cross
        causal = L > 1
        mask = None
        if causal and t > 0:  # a multi-position chunk after earlier steps: explicit causal mask over the cache
            qpos = torch.arange(t, t + L, device=x.device).view(-1, 1)
            mask = torch.arange(t + L, device=x.device).view(1, -1) <= qpos
            causal = False
        for i, lw in enumerate(self.layers):
            add = self._add.get(i)
            if add is not None:
                x = x + add[:, t:t + L]  # in-attention, before the layer (RhythmAdapter's pre-hook)
            h = _ln(x, lw.norm1)
            q, k, v = F.linear(h, lw.w_in, lw.b_in).view(B, L, 3, H, D).permute(2, 0, 3, 1, 4).unbind(0)
            keys, values = self.kv.write(i, t, k, v)
            a = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, is_causal=causal)
            x = x + _scaled(F.linear(a.transpose(1, 2).reshape(B, L, self.dim), lw.w_out, lw.b_out), lw.scale1)
            h = _ln(x, lw.norm_cross)
            q = F.linear(h, lw.w_q, lw.b_q).view(B, L, H, D).transpose(1, 2)
            a = F.scaled_dot_product_attention(q, cross.keys[i], cross.values[i])
            x = x + _scaled(F.linear(a.transpose(1, 2).reshape(B, L, self.dim), lw.w_cout, lw.b_cout),
                            lw.scale_cross)
            h = F.linear(lw.activation(F.linear(_ln(x, lw.norm2), lw.w_ff1, lw.b_ff1)), lw.w_ff2, lw.b_ff2)
            x = x + _scaled(h, lw.scale2)
        if not all_logits:
            x = x[:, -1:]
        if self.out_norm is not None:
            x = _ln(x, self.out_norm)
        logits = torch.stack([F.linear(x, w, b) for w, b in zip(self.heads_w, self.heads_b)], dim=1)
        logits = logits.float()
        return logits if all_logits else logits[:, :, -1]


# ----------------------------------------------------------------------------------------------------- CUDA graphs
class _GraphRunner:
    """Single-token steps replayed from a CUDA graph over static buffers (UNTESTED: written without a GPU).

    The static step attends over the whole window with a position mask and writes the KV cache with
    ``index_copy_`` at a position held in a device tensor, so one capture serves every step of every window of
    the same (rows, capacity, condition length). A step is idempotent for given (tokens, position), so the warm-up
    runs before capture compute the real step.
    """

    def __init__(self, dec: "MusicGenDecoder"):
        self.dec = dec
        self.graphs: tp.Dict[tuple, tp.Any] = {}
        self.ready = False
        self._key: tp.Optional[tuple] = None

    @classmethod
    def maybe(cls, dec: "MusicGenDecoder", wanted: tp.Optional[bool]) -> tp.Optional["_GraphRunner"]:
        if wanted is False or os.environ.get("VIDMUSICIAN_CUDA_GRAPHS", "1") == "0":
            return None
        runner = cls(dec)
        try:
            ok, err = runner.self_check()
        except Exception as e:  # any capture failure: eager path
            ok, err = False, f"{type(e).__name__}: {e}"
        if not ok:
            log.warning("CUDA graphs off for this decoder: self-check failed (%s)", err)
            return None
        return runner

    def self_check(self, steps: int = 6) -> tp.Tuple[bool, str]:
        """Decode a few random steps eagerly and from the graph; agree within bf16 noise?"""
        dec = self.dec
        g = torch.Generator(device=dec.device).manual_seed(0)
        src = torch.randn(2, 3, dec.dim, device=dec.device, generator=g, dtype=torch.float32)
        toks = torch.randint(0, dec.card, (2, dec.n_q, steps), device=dec.device, generator=g)
        cross = dec.cross_cache(src)
        graphs, dec._graphs = dec._graphs, None
        dec.begin(cross, steps + 2)
        ref = torch.stack([dec.step(toks[..., s:s + 1]) for s in range(steps)])
        dec._graphs = self
        dec.begin(cross, steps + 2)
        got = torch.stack([dec.step(toks[..., s:s + 1]) for s in range(steps)])
        dec._graphs = graphs
        err = float((got - ref).abs().max() / ref.abs().max().clamp_min(1e-6))
        self.graphs.clear()
        return err < 2e-2, f"relative difference {err:.3g}"

    def begin(self) -> None:
        dec = self.dec
        cross = dec._cross
        self._key = (dec.kv.batch, dec.kv.capacity, dec.kv.buffer.data_ptr(), dec._pos.data_ptr(),
                     cross.keys[0].shape[2], tuple(sorted(dec._add)))
        entry = self.graphs.get(self._key)
        if entry is not None:  # same shapes: refresh the static condition / addition buffers in place
            for dst, srcs in ((entry["ck"], cross.keys), (entry["cv"], cross.values)):
                for d_, s_ in zip(dst, srcs):
                    d_.copy_(s_)
            for j, buf in entry["add"].items():
                buf.copy_(dec._add[j])
        self.ready = True

    def _capture(self) -> dict:
        dec = self.dec
        B, cap = dec.kv.batch, dec.kv.capacity
        entry = {"ck": [k.clone() for k in dec._cross.keys], "cv": [v.clone() for v in dec._cross.values],
                 "add": {j: a.clone() for j, a in dec._add.items()},
                 "tokens": torch.zeros(B, dec.n_q, 1, dtype=torch.long, device=dec.device),
                 "t": torch.zeros(1, dtype=torch.long, device=dec.device),
                 "arange": torch.arange(cap, device=dec.device)}
        return entry

    def _static(self, e: dict) -> torch.Tensor:
        dec = self.dec
        B, K, H, D = dec.kv.batch, dec.n_q, dec.heads, dec.head_dim
        tok, t = e["tokens"], e["t"]
        x = sum([F.embedding(tok[:, k], dec.emb[k]) for k in range(K)])
        x = x + dec.pos_scale * dec._pos.index_select(0, t).unsqueeze(0)
        valid = (e["arange"] <= t).view(1, 1, 1, -1)
        buf = dec.kv.buffer
        for i, lw in enumerate(dec.layers):
            add = e["add"].get(i)
            if add is not None:
                x = x + add.index_select(1, t)
            q, k, v = F.linear(_ln(x, lw.norm1), lw.w_in, lw.b_in).view(B, 1, 3, H, D).permute(2, 0, 3, 1, 4).unbind(0)
            buf[0, i].index_copy_(2, t, k)
            buf[1, i].index_copy_(2, t, v)
            a = F.scaled_dot_product_attention(q, buf[0, i], buf[1, i], attn_mask=valid)
            x = x + _scaled(F.linear(a.transpose(1, 2).reshape(B, 1, dec.dim), lw.w_out, lw.b_out), lw.scale1)
            q = F.linear(_ln(x, lw.norm_cross), lw.w_q, lw.b_q).view(B, 1, H, D).transpose(1, 2)
            a = F.scaled_dot_product_attention(q, e["ck"][i], e["cv"][i])
            x = x + _scaled(F.linear(a.transpose(1, 2).reshape(B, 1, dec.dim), lw.w_cout, lw.b_cout), lw.scale_cross)
            h = F.linear(lw.activation(F.linear(_ln(x, lw.norm2), lw.w_ff1, lw.b_ff1)), lw.w_ff2, lw.b_ff2)
            x = x + _scaled(h, lw.scale2)
        if dec.out_norm is not None:
            x = _ln(x, dec.out_norm)
        return torch.stack([F.linear(x, w, b) for w, b in zip(dec.heads_w, dec.heads_b)], dim=1)[:, :, -1].float()

    def step(self, tokens: torch.Tensor, t: int) -> torch.Tensor:
        entry = self.graphs.get(self._key)
        fresh = entry is None
        if fresh:
            entry = self._capture()
        entry["tokens"].copy_(tokens)
        entry["t"].fill_(t)
        if fresh:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):  # warm-up (idempotent: writes position t, reads <= t)
                    self._static(entry)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                entry["out"] = self._static(entry)
            entry["graph"] = graph
            self.graphs[self._key] = entry
        entry["graph"].replay()
        return entry["out"].clone()


_DECODERS: "weakref.WeakKeyDictionary[nn.Module, MusicGenDecoder]" = weakref.WeakKeyDictionary()


def decoder_for(lm: nn.Module) -> MusicGenDecoder:
    """The decoder of ``lm`` on its current device, built once (weights are frozen; a moved LM gets a new one)."""
    dec = _DECODERS.get(lm)
    device = next(lm.parameters()).device
    if dec is None or dec.device != device or dec._src_ptr != lm.emb[0].weight.data_ptr():
        dec = MusicGenDecoder(lm)
        _DECODERS[lm] = dec
    return dec


# ----------------------------------------------------------------------------------------------------- threads
def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def decode_threads(model: nn.Module) -> int:
    """CPU threads for decoding with ``model``.

    ``$VIDMUSICIAN_DECODE_THREADS`` forces a count (benchmarks). Otherwise: 1 below :data:`SMALL_MODEL_PARAMS`
    parameters (the tiny presets: Python overhead dominates, a second thread only waits); else the cores this
    process may run on (``os.sched_getaffinity``), capped by torch's current setting (an executor worker pinned to 1
    stays at 1). The count never follows the machine's load: the thread count can change float summation order and
    so the sampled tokens, and a run must give the same output on a busy machine. On a machine shared with other
    CPU-bound jobs, force a count: a decoding step is a chain of short memory-bound matrix-vector products, and a
    thread whose core another process holds makes every op wait (measured here at small scale: 2 threads on a
    shared 2-core machine ran 3-8x slower than 1).
    """
    forced = os.environ.get("VIDMUSICIAN_DECODE_THREADS")
    if forced:
        return max(1, int(forced))
    n_params = sum(p.numel() for p in model.parameters())
    if n_params < SMALL_MODEL_PARAMS:
        return 1
    cores = _cores()
    return max(1, min(cores, torch.get_num_threads()))


@contextlib.contextmanager
def cpu_threads(n: int) -> tp.Iterator[int]:
    """torch's intra-op threads set to ``n`` inside the block, restored afterwards."""
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
