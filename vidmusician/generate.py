"""Sampling from VidMusician (and other MusicGen-backbone models): one window (:func:`generate_codes`), long videos
by sliding windows (:func:`generate_long`), and EnCodec decoding to a waveform of an exact length
(:func:`decode_audio`).

Which condition reaches the LM's cross-attention is the model's business, behind a small interface
(:class:`CrossConditioning`): ``condition(inputs, mask)`` gives the cross-attention source and mask of the
conditional rows, ``null_condition(batch, length)`` the classifier-free-guidance null rows, and
``window(inputs_per_clip, t0_s, t1_s)`` the inputs of one sliding window. A model that has these three methods is
used as it is (e.g. ``baselines.musicgen_text``: T5 text conditions); VidMusician gets them from
:func:`conditioning_of` (its semantic branch on 1-fps CLIP [CLS] features). Models without a rhythm adapter
(no ``rhythm`` / ``uses_rhythm``) get no rhythm.

Token alignment (the same as teacher forcing in :meth:`VidMusician.predictions`): the LM runs on MusicGen's
delay-pattern sequence (step 0 holds only special tokens; step ``s`` predicts codebook k at frame ``s - k``) and
the rhythm hooks add ``d[:, s]`` at sequence step ``s``. Decoding runs the LM's frozen weights through
:class:`vidmusician.decoder.MusicGenDecoder` (cross-attention K / V once per window, a preallocated KV cache; the
same arithmetic as audiocraft's streaming forward, tested in ``tests/test_decoder_equivalence.py``), one step per
call (the first call feeds step 0, or the whole prompt region); the decoder adds F_Rj[:, s] to layer j's input at
step ``s``, as the adapter's hooks do in a full-sequence pass. CPU decoding runs at
:func:`vidmusician.decoder.decode_threads` threads (one for the tiny presets), restored afterwards.

Randomness: every batch row draws from its own ``torch.Generator`` (made from its seed), so a clip's output does
not depend on which other clips share the batch. Caveat: audiocraft's cross-attention ignores the condition mask,
so clips whose [CLS] sequences are zero-padded to a longer batch partner see extra zero vectors; bit-identical
batch independence therefore holds for clips with the same number of [CLS] frames (the same holds in training).

Classifier-free guidance (``cfg_coef != 1``): one forward on the doubled batch ``[cond rows; null rows]``; null
rows get the semantic null condition AND no rhythm (both conditions dropped together, as in training), and
``logits = uncond + cfg_coef * (cond - uncond)``.

Depends on torch and the model's audiocraft LM only (no vm_eval imports).
"""
from __future__ import annotations

import contextlib
import math
import typing as tp
from dataclasses import dataclass

import torch

from .backbone import cross_condition
from .config import GenerationConfig
from .decoder import MusicGenDecoder, cpu_threads, decode_threads, decoder_for
from .kvcache import CrossCache

__all__ = ["sample_tokens", "generate_codes", "generate_long", "plan_windows", "decode_audio", "make_generators",
           "CrossConditioning", "conditioning_of", "ConditionCache", "DEFAULT_OVERLAP_FRACTION"]

# MusicGen's habit: 30 s windows advanced by 18 s, i.e. the new window keeps the last 40% of the previous one.
DEFAULT_OVERLAP_FRACTION = 0.4

Seeds = tp.Sequence[tp.Union[int, torch.Generator]]
Progress = tp.Optional[tp.Callable[[int, int], None]]


# ----------------------------------------------------------------------------------------------------- conditions
@tp.runtime_checkable
class CrossConditioning(tp.Protocol):
    """What the sampling loop asks a model for, besides its audiocraft LM (``model.lm``).

    ``condition(inputs, mask=None)``: the conditional rows' cross-attention source [B, S, dim] and mask [B, S].
    ``null_condition(batch, length)``: the guidance null rows (MusicGen: zeros with mask 0, what a dropped
    condition gives), [batch, length, dim] + mask. ``window(inputs_per_clip, t0_s, t1_s)``: the inputs of the
    sliding window [t0_s, t1_s) of each clip (a list, one entry per clip, passed to ``condition``).
    """

    def condition(self, inputs: tp.Any, mask: tp.Optional[torch.Tensor] = None
                  ) -> tp.Tuple[torch.Tensor, torch.Tensor]: ...

    def null_condition(self, batch: int, length: int) -> tp.Tuple[torch.Tensor, torch.Tensor]: ...

    def window(self, inputs_per_clip: tp.Sequence[tp.Any], t0_s: float, t1_s: float) -> tp.List[tp.Any]: ...


class _SemanticConditioning:
    """VidMusician's conditioning: CLIP [CLS] features [F, clip_dim] at ``cls_fps`` -> its semantic branch."""

    def __init__(self, model, cls_fps: float = 1.0):
        self.model, self.cls_fps = model, cls_fps

    def condition(self, cls_feats, cls_mask=None):
        return self.model.semantic_condition(cls_feats, cls_mask)

    def null_condition(self, batch, length):
        return self.model.semantic.null_condition(batch, length)

    def window(self, cls_feats_per_clip, t0_s, t1_s):
        return [_cls_window(f, t0_s, t1_s, self.cls_fps) for f in cls_feats_per_clip]


def conditioning_of(model, cls_fps: float = 1.0) -> CrossConditioning:
    """The model itself when it implements :class:`CrossConditioning`, else VidMusician's semantic branch."""
    if isinstance(model, CrossConditioning):
        return model
    return _SemanticConditioning(model, cls_fps)


# ----------------------------------------------------------------------------------------------------- sampling
def make_generators(seeds: Seeds, device: tp.Union[str, torch.device] = "cpu") -> tp.List[torch.Generator]:
    """One ``torch.Generator`` per row: ints are seeds (a fresh generator on ``device``); generators pass through
    unchanged (so their state continues, e.g. across sliding windows)."""
    out = []
    for s in seeds:
        if isinstance(s, torch.Generator):
            out.append(s)
        else:
            out.append(torch.Generator(device=torch.device(device)).manual_seed(int(s)))
    return out


def sample_tokens(logits: torch.Tensor, generators: tp.Sequence[torch.Generator], use_sampling: bool = True,
                  temperature: float = 1.0, top_k: int = 250, top_p: float = 0.0) -> torch.Tensor:
    """Draw one token per codebook: logits [B, K, card] -> LongTensor [B, K].

    Row i draws only from ``generators[i]``. ``use_sampling=False`` (or ``temperature <= 0``) is argmax.
    MusicGen's rule: ``top_p > 0`` takes precedence over ``top_k``; ``top_k <= 0`` or ``>= card`` means no top-k
    filter. Top-k keeps every token whose probability reaches the k-th largest (ties kept); top-p keeps the
    smallest prefix of the sorted distribution whose mass before the token is <= p (at least the top token).
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must be [B, K, card], got {tuple(logits.shape)}")
    B, K, card = logits.shape
    if not use_sampling or temperature <= 0.0:
        return logits.argmax(dim=-1)
    if len(generators) != B:
        raise ValueError(f"need one generator per row: {len(generators)} generators for batch {B}")
    probs = torch.softmax(logits.float() / float(temperature), dim=-1)
    order: tp.Optional[torch.Tensor] = None
    if top_p > 0.0:
        probs, order = probs.sort(dim=-1, descending=True)
        mass_before = probs.cumsum(dim=-1) - probs
        probs = probs * (mass_before <= float(top_p)).to(probs.dtype)
    elif 0 < top_k < card:
        kth = probs.topk(int(top_k), dim=-1).values[..., -1:]
        probs = probs * (probs >= kth).to(probs.dtype)
    probs = probs / probs.sum(dim=-1, keepdim=True)
    rows = [torch.multinomial(probs[i], 1, generator=generators[i]).squeeze(-1) for i in range(B)]
    tokens = torch.stack(rows)  # [B, K]
    if order is not None:
        tokens = order.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return tokens


# ----------------------------------------------------------------------------------------------------- one window
def _rhythm_outputs(model, d: tp.Optional[torch.Tensor], batch: int,
                    guided: bool) -> tp.Optional[tp.Dict[int, torch.Tensor]]:
    """F_Rj for the hooks: [B, N, dim] (or [2B, N, dim] with zero null rows under guidance); None = no rhythm."""
    if d is None or not getattr(model, "uses_rhythm", False):
        return None
    if d.dim() == 1:
        d = d.unsqueeze(0)
    if d.shape[0] not in (1, batch):
        raise ValueError(f"d has batch {d.shape[0]}, expected {batch} (or 1)")
    outs = {}
    for j, f in model.rhythm(d).items():
        f = f.expand(batch, -1, -1)
        outs[j] = torch.cat([f, torch.zeros_like(f)], dim=0) if guided else f
    return outs


@dataclass
class ConditionCache:
    """What one window's condition left for the next window of the same clips (see :func:`generate_long`): its
    inputs, the rows' cross-attention source and the decoder's projected K / V. A window whose inputs are equal
    skips the conditioning model; one whose cross-attention source is bitwise equal skips the K / V projection."""

    inputs: tp.Any = None
    guided: tp.Optional[bool] = None
    source: tp.Optional[torch.Tensor] = None
    cross: tp.Optional[CrossCache] = None


def _same_inputs(a: tp.Any, b: tp.Any) -> bool:
    """Bitwise-equal conditioning inputs (tensors, strings, or lists / tuples of them)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and a.device == b.device and torch.equal(a, b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_inputs(x, y) for x, y in zip(a, b))
    if a is None or b is None:
        return a is b
    return type(a) is type(b) and isinstance(a, (str, int, float)) and a == b


def _cross_source(model, decoder: MusicGenDecoder, inputs, cls_mask, guided: bool,
                  cache: tp.Optional[ConditionCache]) -> tp.Tuple[torch.Tensor, CrossCache]:
    """The rows' fused cross-attention source ``[B', S, dim]`` (conditional rows, then the null rows under
    guidance) and its K / V, reusing ``cache`` where the window's condition is unchanged."""
    if (cache is not None and cache.source is not None and cls_mask is None and cache.guided == guided
            and _same_inputs(inputs, cache.inputs)):
        return cache.source, cache.cross
    conditioning = conditioning_of(model)
    cond, mask = conditioning.condition(inputs, cls_mask)
    if guided:
        null, null_mask = conditioning.null_condition(cond.shape[0], cond.shape[1])
        cond, mask = torch.cat([cond, null]), torch.cat([mask, null_mask.to(mask.dtype)])
    source = decoder.cross_source(cross_condition(cond, mask))
    cross = decoder.cross_cache(source, previous=None if cache is None else cache.cross)
    if cache is not None:
        cache.inputs, cache.guided, cache.source, cache.cross = inputs, guided, source, cross
    return source, cross


def generate_codes(model, cls_feats: tp.Union[torch.Tensor, tp.Sequence[torch.Tensor]], n_frames: int,
                   seeds: Seeds, gen: GenerationConfig, cls_mask: tp.Optional[torch.Tensor] = None,
                   d: tp.Optional[torch.Tensor] = None, prompt: tp.Optional[torch.Tensor] = None,
                   progress: Progress = None, condition_cache: tp.Optional[ConditionCache] = None) -> torch.Tensor:
    """Generate one window of ``n_frames`` EnCodec frames (50 Hz): LongTensor [B, K, n_frames].

    Args:
        model: a :class:`~vidmusician.model.VidMusician` or another module with an ``lm`` implementing
            :class:`CrossConditioning` (run in eval mode; its previous mode is restored).
        cls_feats: the conditioning inputs. VidMusician: 1-fps CLIP [CLS] features [B, F1, clip_dim] (+ bool
            ``cls_mask`` [B, F1]) or a list of [F_i, clip_dim]; other models: whatever their ``condition`` takes.
        n_frames: frames to produce (prompt included), i.e. duration_s * 50.
        seeds: one int (or ready ``torch.Generator``, continued) per row.
        gen: sampling settings (``use_sampling``, ``temperature``, ``top_k``, ``top_p``, ``cfg_coef``).
        d: token-rate (50 Hz) rhythm curve [B, N] (or [N] / [1, N], broadcast); step s gets ``d[:, s]``, steps
            past N get none. Ignored when ``not model.uses_rhythm``.
        prompt: codes [B, K, P] (P < n_frames) to continue from; they are copied to the output unchanged.
        progress: called as ``progress(done_steps, total_steps)`` after each decoding step.
        condition_cache: carried from window to window by :func:`generate_long` (reuses an unchanged condition).
    """
    lm = model.lm
    device = next(lm.parameters()).device
    was_training = model.training
    model.eval()
    threads = decode_threads(lm) if device.type == "cpu" else torch.get_num_threads()
    try:
        with torch.inference_mode(), cpu_threads(threads), contextlib.ExitStack() as stack:
            decoder = decoder_for(lm)
            guided = float(gen.cfg_coef) != 1.0
            source, cross = _cross_source(model, decoder, cls_feats, cls_mask, guided, condition_cache)
            B = source.shape[0] // (2 if guided else 1)
            if len(seeds) != B:
                raise ValueError(f"need one seed per row: {len(seeds)} seeds for batch {B}")
            generators = make_generators(seeds, device)
            rhythm = _rhythm_outputs(model, d, B, guided)

            K, special = lm.num_codebooks, lm.special_token_id
            P = 0 if prompt is None else int(prompt.shape[-1])
            if prompt is not None and (prompt.shape[0] != B or prompt.shape[1] != K):
                raise ValueError(f"prompt must be [{B}, {K}, P], got {tuple(prompt.shape)}")
            if not 0 <= P < n_frames:
                raise ValueError(f"prompt length {P} must be below n_frames={n_frames}")
            unknown = -1
            pattern = lm.pattern_provider.get_pattern(n_frames)
            codes = torch.full((B, K, n_frames), unknown, dtype=torch.long, device=device)
            if prompt is not None:
                codes[..., :P] = prompt.to(device)
            seq, _, seq_mask = pattern.build_pattern_sequence(codes, special)  # [B, K, S], mask [K, S]
            first = pattern.get_first_step_with_timesteps(P)
            total = seq.shape[-1] - first

            decoder.begin(cross, seq.shape[-1], rhythm)
            stack.callback(decoder.release)
            prev = 0
            for step in range(first, seq.shape[-1]):
                inp = seq[..., prev:step]  # step 0 (or the prompt region) first, then one step per call
                if guided:
                    inp = torch.cat([inp, inp])
                logits = decoder.step(inp)  # [B', K, card]
                if guided:
                    c, u = logits.split(B)
                    logits = u + float(gen.cfg_coef) * (c - u)
                tok = sample_tokens(logits, generators, gen.use_sampling, gen.temperature, gen.top_k, gen.top_p)
                tok = torch.where(seq_mask[:, step].unsqueeze(0), tok, torch.full_like(tok, special))
                col = seq[..., step]
                seq[..., step] = torch.where(col == unknown, tok, col)  # never overwrite prompt tokens
                prev = step
                if progress is not None:
                    progress(step - first + 1, total)
            out, _, _ = pattern.revert_pattern_sequence(seq, special_token=unknown)
            out = out[..., :n_frames]
            if (out < 0).any() or (out >= lm.card).any():
                raise RuntimeError("generation left invalid codes")  # should never happen
    finally:
        model.train(was_training)
    return out.clone()  # outside inference mode: an ordinary tensor


# ----------------------------------------------------------------------------------------------------- long videos
def plan_windows(n_total: int, window: int, stride: int) -> tp.List[tp.Tuple[int, int, int]]:
    """Sliding-window plan in tokens: [(start, length, prompt_length)]. Windows of ``window`` tokens start
    ``stride`` apart; each continues from the previous one's overlapping tokens (prompt); the last one is just
    long enough to reach ``n_total``."""
    if n_total < 1 or window < 1:
        raise ValueError("n_total and window must be >= 1")
    if n_total <= window:
        return [(0, n_total, 0)]
    if not 0 < stride < window:
        raise ValueError(f"stride ({stride} tokens) must be in (0, window={window})")
    plan, t0, end = [], 0, 0
    while True:
        n = min(window, n_total - t0)
        plan.append((t0, n, end - t0 if t0 > 0 else 0))
        end = t0 + n
        if end >= n_total:
            return plan
        t0 += stride


def _cls_window(feats: torch.Tensor, t0_s: float, t1_s: float, cls_fps: float) -> torch.Tensor:
    """The [CLS] frames whose times k / cls_fps fall in [t0_s, t1_s); at least one (the nearest) frame."""
    eps = 1e-9
    n = int(feats.shape[0])
    lo = max(0, math.ceil(t0_s * cls_fps - eps))
    hi = min(n, math.ceil(t1_s * cls_fps - eps))
    if hi <= lo:
        k = min(max(math.floor(t0_s * cls_fps + eps), 0), n - 1)
        return feats[k:k + 1]
    return feats[lo:hi]


def _d_window(d_per_clip: tp.Optional[tp.Sequence[tp.Optional[torch.Tensor]]], start: int,
              length: int) -> tp.Optional[torch.Tensor]:
    """Stack d_i[start : start + length] (zero-padded: no rhythm cue) -> [B, length]; None without curves."""
    if d_per_clip is None or all(x is None for x in d_per_clip):
        return None
    ref = next(x for x in d_per_clip if x is not None)
    out = ref.new_zeros(len(d_per_clip), length, dtype=torch.float32)
    for i, x in enumerate(d_per_clip):
        if x is not None:
            piece = x.reshape(-1)[start:start + length].float()
            out[i, :piece.shape[0]] = piece
    return out


def _offset_progress(progress: tp.Callable[[int, int], None], base: int, grand: int) -> tp.Callable[[int, int], None]:
    """Report one window's steps as part of the whole run."""
    return lambda done, total: progress(base + done, grand)


def generate_long(model, cls_feats_per_clip: tp.Sequence[torch.Tensor],
                  d_per_clip: tp.Optional[tp.Sequence[tp.Optional[torch.Tensor]]], duration_s: float,
                  seeds: tp.Sequence[int], gen: GenerationConfig, cls_fps: float = 1.0, token_rate: int = 50,
                  stride_s: tp.Optional[float] = None, progress: Progress = None) -> torch.Tensor:
    """Codes for ``duration_s`` seconds of music per clip: LongTensor [B, K, round(duration_s * token_rate)].

    Up to ``gen.max_duration_s`` this is one :func:`generate_codes` window. Longer: windows of W =
    ``gen.max_duration_s`` starting every ``stride_s`` seconds (default ``W * (1 - 0.4)``, MusicGen's habit: 18 s
    for 30 s windows); each window takes the previous output's tokens that overlap it as its prompt. A window
    [t0, t0 + W) is conditioned on the [CLS] frames with times k / cls_fps in that range (at least one) and on
    ``d[t0_tok:]``, so its sequence step s gets the rhythm of absolute token t0_tok + s (as in one long pass;
    tokens past the curve's end get none). The last window is only as long as needed to reach the end.

    Models other than VidMusician take their windows' inputs from their own :class:`CrossConditioning`
    ``window`` (e.g. the same text prompt in every window, as MusicGen continues a description).

    Args:
        cls_feats_per_clip: per clip, 1-fps [CLS] features [F_i, clip_dim] covering the whole video (or the
            model's own conditioning inputs, one per clip).
        d_per_clip: per clip, the token-rate rhythm curve [N_i] (or None / a list with None entries).
        seeds: one int per clip; each clip's generator is created once and continues across windows.
        progress: ``progress(done_steps, total_steps)`` over all windows.
    """
    B = len(cls_feats_per_clip)
    if len(seeds) != B or (d_per_clip is not None and len(d_per_clip) != B):
        raise ValueError("cls_feats_per_clip, d_per_clip and seeds need one entry per clip")
    n_total = int(round(duration_s * token_rate))
    window = int(round(gen.max_duration_s * token_rate))
    if stride_s is None:
        stride_s = gen.max_duration_s * (1.0 - DEFAULT_OVERLAP_FRACTION)
    plan = plan_windows(n_total, window, int(round(stride_s * token_rate)))
    device = next(model.lm.parameters()).device
    generators = make_generators(seeds, device)
    conditioning = conditioning_of(model, cls_fps)
    # each window's delay-pattern sequence has len(layout) steps; decoding starts at the first non-prompt one
    layouts = [len(model.lm.pattern_provider.get_pattern(n).layout) for _, n, _ in plan]
    totals = [s - model.lm.pattern_provider.get_pattern(n).get_first_step_with_timesteps(p)
              for s, (_, n, p) in zip(layouts, plan)]
    done_before = 0
    cache = ConditionCache()  # a window whose condition is unchanged reuses the previous one's K / V
    out = torch.zeros(B, model.lm.num_codebooks, n_total, dtype=torch.long, device=device)
    for (t0, n, p), seq_len, steps in zip(plan, layouts, totals):
        t0_s, t1_s = t0 / token_rate, (t0 + n) / token_rate
        cls = conditioning.window(cls_feats_per_clip, t0_s, t1_s)
        d = _d_window(d_per_clip, t0, seq_len)
        prompt = out[..., t0:t0 + p] if p > 0 else None
        cb = None if progress is None else _offset_progress(progress, done_before, sum(totals))
        codes = generate_codes(model, cls, n, generators, gen, d=d, prompt=prompt, progress=cb, condition_cache=cache)
        out[..., t0:t0 + n] = codes
        done_before += steps
    return out


# ----------------------------------------------------------------------------------------------------- audio
def decode_audio(compression_model, codes: torch.Tensor, n_samples: int) -> torch.Tensor:
    """EnCodec decode codes [B, K, T] -> waveform FloatTensor [B, C, n_samples] (trimmed or zero-padded at the
    end; ``n_samples = round(duration_s * sample_rate)``, 32 kHz for MusicGen). On CPU it runs at
    :func:`~vidmusician.decoder.decode_threads` threads for the codec's size (one for the tiny codecs)."""
    on_cpu = codes.device.type == "cpu"
    threads = decode_threads(compression_model) if on_cpu else torch.get_num_threads()
    with torch.inference_mode(), cpu_threads(threads):
        wav = compression_model.decode(codes, None).float()
    wav = wav.clone()  # outside inference mode: an ordinary tensor
    if wav.shape[-1] >= n_samples:
        return wav[..., :n_samples]
    return torch.nn.functional.pad(wav, (0, n_samples - wav.shape[-1]))
