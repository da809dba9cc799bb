"""The MusicGen-backbone decoder (vidmusician.decoder) against audiocraft's own streaming forward, the reference it
replaces (random weights, float32, CPU, one thread):

- teacher-forced logits, step by step, equal audiocraft's streaming ``LMModel`` calls within 1e-5 relative: the
  plain LM, musicgen-text's text conditions (+ CFG null rows) and VidMusician stage 2 with the rhythm adapter's
  hooks active in the reference and the decoder's in-attention additions on ours; at tiny and small scale;
- greedy decoding (>= 200 steps, tiny) and sampled decoding with the same per-clip generators give identical tokens
  to the reference loop (audiocraft streaming forward + the same sampler);
- an unchanged sliding-window condition reuses its cross-attention K / V, a changed one does not.
Batch-size independence of outputs and seeding stays covered by tests/test_vidmusician_generate.py."""
from __future__ import annotations

import vm_eval  # noqa: F401  compat hook first (audiocraft on a CPU machine)

import dataclasses

import pytest
import torch
from torch import nn

from vidmusician.backbone import cross_condition, random_lm
from vidmusician.config import VidMusicianConfig
from vidmusician.decoder import MusicGenDecoder, decoder_for
from vidmusician.generate import ConditionCache, _rhythm_outputs, conditioning_of, generate_codes, make_generators
from vidmusician.generate import sample_tokens
from vidmusician.model import VidMusician

pytestmark = pytest.mark.usefixtures("one_blas_thread")
REL = 1e-5


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)




class CharTokenizer:
    """T5-tokenizer stand-in (ids from characters, </s> = 1, padding to the longest): the text path's numbers are
    tested in test_musicgen_text; here only the conditions it yields matter."""

    def __call__(self, texts, return_tensors="pt", padding=True, truncation=True, max_length=512):
        ids = [[3 + (ord(c) % 60) for c in t][: max_length - 1] + [1] for t in texts]
        n = max(len(i) for i in ids)
        return {"input_ids": torch.tensor([i + [0] * (n - len(i)) for i in ids]),
                "attention_mask": torch.tensor([[1] * len(i) + [0] * (n - len(i)) for i in ids])}


def text_model(lm: nn.Module):
    from transformers import T5Config, T5EncoderModel

    from baselines.musicgen_text import T5TextConditioner, TextMusicGen

    torch.manual_seed(7)
    t5 = T5EncoderModel(T5Config(vocab_size=64, d_model=16, d_ff=32, d_kv=8, num_layers=1, num_heads=2)).eval()
    return TextMusicGen(lm, T5TextConditioner(t5, CharTokenizer(), nn.Linear(16, lm.dim))).eval()


def vidmusician_stage2(lm: nn.Module, scale: str) -> VidMusician:
    cfg = VidMusicianConfig.preset("tiny").with_overrides({"backbone.scale": scale})
    model = VidMusician(cfg, stage="2", lm=lm, seed=0).eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # off zero so that the rhythm changes the logits
        model.rhythm.zero_linear.weight.add_(torch.randn(model.rhythm.zero_linear.weight.shape, generator=g))
        model.rhythm.zero_linear.bias.add_(0.5 * torch.randn(model.dim, generator=g))
    return model


@pytest.fixture(scope="module", params=["tiny", "small"])
def world(request):
    scale = request.param
    lm = random_lm(scale, seed=0)
    return scale, lm, text_model(lm), vidmusician_stage2(lm, scale)


# ------------------------------------------------------------------------------------------------ reference
def _conditions(model, inputs, guided: bool):
    """(condition tensors [cond rows; null rows], rows' rhythm additions or None) as generate_codes builds them."""
    cond_of = conditioning_of(model)
    cond, mask = cond_of.condition(inputs)
    if guided:
        null, null_mask = cond_of.null_condition(cond.shape[0], cond.shape[1])
        cond, mask = torch.cat([cond, null]), torch.cat([mask, null_mask.to(mask.dtype)])
    return cross_condition(cond, mask), cond.shape[0] // (2 if guided else 1)


def reference_logits(model, condition_tensors, seq: torch.Tensor, additions, first: int) -> torch.Tensor:
    """audiocraft's streaming forward over ``seq`` [B', K, S]: positions [0, first) in one call, then one per call;
    the rhythm adapter's hooks (if any) add ``additions`` with an offset that advances per call."""
    lm = model.lm
    adapter = getattr(model, "rhythm", None)
    out = []
    with lm.streaming():
        if adapter is not None:
            adapter.set_outputs(additions, offset=0, auto_advance=True)
        try:
            out.append(lm(seq[..., :first], [], condition_tensors=condition_tensors))
            for s in range(first, seq.shape[-1]):
                out.append(lm(seq[..., s:s + 1], [], condition_tensors=condition_tensors))
        finally:
            if adapter is not None:
                adapter.set_outputs(None)
    return torch.cat(out, dim=2)


def decoder_logits(model, condition_tensors, seq: torch.Tensor, additions, first: int) -> torch.Tensor:
    dec = decoder_for(model.lm)
    dec.begin(dec.cross_cache(dec.cross_source(condition_tensors)), seq.shape[-1], additions)
    out = [dec.step(seq[..., :first], all_logits=True)]
    out += [dec.step(seq[..., s:s + 1], all_logits=True) for s in range(first, seq.shape[-1])]
    return torch.cat(out, dim=2)


def reference_codes(model, inputs, n_frames: int, seeds, gen, d=None) -> torch.Tensor:
    """The decoding loop generate_codes ran before the decoder: audiocraft streaming forward, same sampler."""
    lm = model.lm
    guided = float(gen.cfg_coef) != 1.0
    ct, B = _conditions(model, inputs, guided)
    additions = _rhythm_outputs(model, d, B, guided)
    generators = make_generators(seeds)
    K, special = lm.num_codebooks, lm.special_token_id
    pattern = lm.pattern_provider.get_pattern(n_frames)
    seq, _, seq_mask = pattern.build_pattern_sequence(torch.full((B, K, n_frames), -1, dtype=torch.long), special)
    adapter = getattr(model, "rhythm", None)
    with lm.streaming():
        if adapter is not None:
            adapter.set_outputs(additions, offset=0, auto_advance=True)
        prev = 0
        for step in range(pattern.get_first_step_with_timesteps(0), seq.shape[-1]):
            inp = seq[..., prev:step]
            logits = lm(torch.cat([inp, inp]) if guided else inp, [], condition_tensors=ct)[:, :, -1]
            if guided:
                c, u = logits.split(B)
                logits = u + float(gen.cfg_coef) * (c - u)
            tok = sample_tokens(logits, generators, gen.use_sampling, gen.temperature, gen.top_k, gen.top_p)
            tok = torch.where(seq_mask[:, step].unsqueeze(0), tok, torch.full_like(tok, special))
            seq[..., step] = torch.where(seq[..., step] == -1, tok, seq[..., step])
            prev = step
        if adapter is not None:
            adapter.set_outputs(None)
    out, _, _ = pattern.revert_pattern_sequence(seq, special_token=-1)
    return out[..., :n_frames]


def _inputs(kind: str, model, batch: int, n: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    if kind == "text":
        return ["happy pop with drums", "calm piano"][:batch], None
    if kind == "lm":
        return None, None
    cls = torch.randn(batch, 3, model.config.semantic.clip_dim, generator=g)
    return cls, torch.rand(batch, n, generator=g)


# ------------------------------------------------------------------------------------------------ teacher forcing
@pytest.mark.parametrize("kind", ["lm", "text", "vidmusician"])
def test_teacher_forced_logits_equal_audiocraft_streaming(world, kind):
    scale, lm, text, vidm = world
    steps = 40 if scale == "tiny" else 5  # small: a prompt chunk of 3 and 2 single steps keep it cheap
    first = 3  # a multi-position first call (a prompt), then single steps
    g = torch.Generator().manual_seed(2)
    seq = torch.randint(0, lm.card, (4, lm.num_codebooks, steps), generator=g)  # B' = 4: two rows + CFG rows
    with torch.inference_mode():
        if kind == "lm":
            model = text  # any holder of the LM; conditions given directly
            src = torch.randn(2, 5, lm.dim, generator=g)
            ct = cross_condition(torch.cat([src, torch.zeros_like(src)]))
            additions = None
        else:
            model = text if kind == "text" else vidm
            inputs, d = _inputs(kind, model, 2, steps)
            ct, B = _conditions(model, inputs, guided=True)
            additions = _rhythm_outputs(model, d, B, guided=True)
            assert (additions is not None) == (kind == "vidmusician")
        ref = reference_logits(model, ct, seq, additions, first)
        ours = decoder_logits(model, ct, seq, additions, first)
        assert ours.shape == ref.shape == (4, lm.num_codebooks, steps, lm.card)
        err = float((ours - ref).abs().max() / ref.abs().max())
        assert err <= REL, f"{scale}/{kind}: relative logit difference {err:.3g}"
        if additions is not None:  # non-vacuous: without the rhythm the logits move
            bare = decoder_logits(model, ct, seq, None, first)
            assert (bare - ref).abs().max() > 100 * REL * ref.abs().max()


# ------------------------------------------------------------------------------------------------ decoding
def _gen(model, **kw):
    base = model.config.generation if isinstance(model, VidMusician) else VidMusicianConfig.preset("tiny").generation
    return dataclasses.replace(base, **kw)


@pytest.mark.parametrize("kind", ["text", "vidmusician"])
def test_greedy_decoding_identical_for_200_steps(world, kind):
    scale, lm, text, vidm = world
    if scale != "tiny":
        pytest.skip("greedy long decoding at tiny scale only (cost)")
    model = text if kind == "text" else vidm
    n = 210  # 210 frames -> 213 delay-pattern steps
    inputs, d = _inputs(kind, model, 2, n + 4)
    gen = _gen(model, use_sampling=False)
    with torch.inference_mode():
        ref = reference_codes(model, inputs, n, [0, 1], gen, d)
    ours = generate_codes(model, inputs, n, [0, 1], gen, d=d)
    assert torch.equal(ours, ref)


@pytest.mark.parametrize("kind", ["text", "vidmusician"])
def test_sampled_decoding_identical_with_same_generators(world, kind):
    scale, lm, text, vidm = world
    if scale != "tiny" and kind == "text":
        pytest.skip("small scale: VidMusician's path (rhythm included) stands for both (cost)")
    model = text if kind == "text" else vidm
    tiny = scale == "tiny"
    n = 60 if tiny else 2
    inputs, d = _inputs(kind, model, 2, n + 4)
    settings = (_gen(model, top_k=50), _gen(model, top_k=0, top_p=0.9)) if tiny else (_gen(model, top_k=50),)
    for gen in settings:
        with torch.inference_mode():
            ref = reference_codes(model, inputs, n, [11, 12], gen, d)
        ours = generate_codes(model, inputs, n, [11, 12], gen, d=d)
        assert torch.equal(ours, ref)
        if tiny:  # non-vacuous: the seeds matter
            assert not torch.equal(ours, generate_codes(model, inputs, n, [13, 12], gen, d=d))


# ------------------------------------------------------------------------------------------------ condition cache
def test_sliding_window_reuses_an_unchanged_condition(world, monkeypatch):
    scale, lm, text, vidm = world
    if scale != "tiny":
        pytest.skip("tiny scale covers the mechanism")
    projected = []
    real = MusicGenDecoder.cross_cache

    def spy(self, source, previous=None):
        out = real(self, source, previous)
        projected.append(out is not previous)
        return out

    monkeypatch.setattr(MusicGenDecoder, "cross_cache", spy)
    gen = _gen(text)
    cache = ConditionCache()
    a = generate_codes(text, ["calm piano"], 8, [1], gen, condition_cache=cache)
    calls = []
    real_condition = text.condition
    monkeypatch.setattr(text, "condition", lambda *a_, **k: calls.append(1) or real_condition(*a_, **k))
    b = generate_codes(text, ["calm piano"], 8, [1], gen, condition_cache=cache)  # same prompt: no new work
    assert torch.equal(a, b) and projected == [True] and calls == []
    generate_codes(text, ["sad jazz"], 8, [1], gen, condition_cache=cache)  # another prompt: projected anew
    assert projected == [True, True] and calls == [1]
    # VidMusician: the same [CLS] frames in the next window reuse it too; other frames do not
    cls, d = _inputs("vidmusician", vidm, 1, 12)
    vcache = ConditionCache()
    projected.clear()
    generate_codes(vidm, cls, 8, [1], gen, d=d, condition_cache=vcache)
    generate_codes(vidm, cls.clone(), 8, [1], gen, d=d, condition_cache=vcache)
    assert projected == [True]
    generate_codes(vidm, cls + 1.0, 8, [1], gen, d=d, condition_cache=vcache)
    assert projected == [True, True]
    # the decoder itself: a bitwise-equal source keeps the projected K / V, another one does not
    dec = decoder_for(lm)
    src = vcache.source
    assert dec.cross_cache(src.clone(), previous=vcache.cross) is vcache.cross
    assert dec.cross_cache(src + 1e-3, previous=vcache.cross) is not vcache.cross
