"""VidMusician generation (tiny preset, random weights, CPU): incremental decoding matches teacher forcing (rhythm
offset included), per-row seeding, top-k / top-p, classifier-free guidance, sliding windows, exact-length audio."""
from __future__ import annotations

import vm_eval  # noqa: F401  compat hook first (audiocraft / peft on a CPU machine)

import dataclasses
import math

import pytest
import torch

import vidmusician.generate as vg
from vidmusician.backbone import cross_condition
from vidmusician.config import VidMusicianConfig
from vidmusician.generate import decode_audio, generate_codes, generate_long, plan_windows, sample_tokens
from vidmusician.model import VidMusician

B, F1, T = 2, 2, 24  # clips, 1-fps [CLS] frames, frames per short generation
CFG = VidMusicianConfig.preset("tiny")
GEN = CFG.generation  # top_k 50, cfg_coef 3.0, max_duration_s 2.0
GREEDY = dataclasses.replace(GEN, use_sampling=False)
pytestmark = pytest.mark.usefixtures("one_blas_thread")  # many tiny forwards: BLAS threads only add contention


def _model(stage: str) -> VidMusician:
    model = VidMusician(CFG, stage=stage, seed=0).eval()
    if stage != "1":  # move the Zero-Linear off zero so the rhythm curve changes the logits
        g = torch.Generator().manual_seed(3)
        with torch.no_grad():
            zl = model.rhythm.zero_linear
            zl.weight.add_(torch.randn(zl.weight.shape, generator=g))
            zl.bias.add_(0.5 * torch.randn(zl.bias.shape, generator=g))
    return model


@pytest.fixture(scope="module")
def models():
    return {"1": _model("1"), "2": _model("2")}


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(1)
    cls = torch.randn(B, F1, CFG.semantic.clip_dim, generator=g)
    d = torch.rand(B, T + 6, generator=g)
    return cls, d


def _guided_logits(model, codes, cls, d, coef):
    """Teacher-forced logits [B, K, T, card] (+ valid mask) with guidance computed from two full passes:
    conditional (semantic + rhythm) and unconditional (null semantic condition, no rhythm)."""
    out = model.predictions(codes, cls, None, d)
    if coef == 1.0:
        return out.logits, out.mask.bool().clone()
    src, _ = model.semantic_condition(cls)
    null, null_mask = model.semantic.null_condition(codes.shape[0], src.shape[1])
    unc = model.lm.compute_predictions(codes, [], condition_tensors=cross_condition(null, null_mask))
    return unc.logits + coef * (out.logits - unc.logits), out.mask.bool().clone()


def _check_greedy(codes, logits, valid):
    """Every valid generated token is the teacher-forced argmax (up to float noise between the streaming and the
    full-sequence pass: the chosen logit is within 1e-4 of the best one)."""
    chosen = logits.gather(-1, codes.unsqueeze(-1)).squeeze(-1)
    best = logits.max(dim=-1).values
    assert valid.sum() > 0.5 * valid.numel()
    assert torch.all((best - chosen)[valid] <= 1e-4)
    return (logits.argmax(-1) == codes)[valid].float().mean().item()


# ------------------------------------------------------------------------------------------------ teacher forcing
@pytest.mark.parametrize("stage,coef", [("1", 1.0), ("2", 1.0), ("2", 3.0)])
def test_greedy_decoding_equals_teacher_forcing(models, inputs, stage, coef):
    model = models[stage]
    cls, d = inputs
    gen = dataclasses.replace(GREEDY, cfg_coef=coef)
    codes = generate_codes(model, cls, T, [0, 1], gen, d=d)
    assert codes.shape == (B, CFG.backbone.n_q, T) and codes.dtype == torch.long
    with torch.no_grad():
        logits, valid = _guided_logits(model, codes, cls, d, coef)
        assert _check_greedy(codes, logits, valid) == 1.0
        if stage == "2":
            # non-vacuous: the rhythm matters, and a curve shifted by one token does not reproduce the tokens
            shifted, _ = _guided_logits(model, codes, cls, d[:, 1:], coef)
            assert not torch.equal(shifted.argmax(-1)[valid], codes[valid])
            assert not torch.equal(generate_codes(model, cls, T, [0, 1], gen, d=None), codes)
    assert model.rhythm._outputs is None  # hooks cleared after generation


def test_prompt_continuation_equals_teacher_forcing(models, inputs):
    model = models["2"]
    cls, d = inputs
    prompt = torch.randint(0, CFG.backbone.card, (B, CFG.backbone.n_q, 7), generator=torch.Generator().manual_seed(5))
    codes = generate_codes(model, cls, T, [0, 1], GREEDY, d=d, prompt=prompt)
    assert torch.equal(codes[..., :7], prompt)
    with torch.no_grad():
        logits, valid = _guided_logits(model, codes, cls, d, GREEDY.cfg_coef)
    valid[..., :7] = False  # prompt frames were given, every later frame was generated
    assert _check_greedy(codes, logits, valid) == 1.0


# ------------------------------------------------------------------------------------------------ seeding
def test_per_row_seeding(models, inputs):
    model = models["2"]
    cls, d = inputs
    both = generate_codes(model, cls, T, [7, 8], GEN, d=d)
    alone0 = generate_codes(model, cls[:1], T, [7], GEN, d=d[:1])
    alone1 = generate_codes(model, cls[1:], T, [8], GEN, d=d[1:])
    assert torch.equal(both[:1], alone0) and torch.equal(both[1:], alone1)
    assert torch.equal(generate_codes(model, cls[:1], T, [7], GEN, d=d[:1]), alone0)  # same seed twice
    assert not torch.equal(generate_codes(model, cls[:1], T, [9], GEN, d=d[:1]), alone0)  # other seed


# ------------------------------------------------------------------------------------------------ sample_tokens
def _gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_sample_tokens_filters():
    logits = torch.randn(3, 4, 100, generator=torch.Generator().manual_seed(0)) * 3
    greedy = logits.argmax(-1)
    assert torch.equal(sample_tokens(logits, [], use_sampling=False), greedy)
    assert torch.equal(sample_tokens(logits, _gens(0, 1, 2), temperature=0.0), greedy)
    for s in range(5):
        assert torch.equal(sample_tokens(logits, _gens(s, s + 1, s + 2), top_k=1), greedy)
        # top_p takes precedence over top_k
        assert torch.equal(sample_tokens(logits, _gens(s, s + 1, s + 2), top_k=50, top_p=1e-6), greedy)
    # top_k <= 0 or >= card: no filter
    a = sample_tokens(logits, _gens(4, 5, 6), top_k=0)
    assert torch.equal(sample_tokens(logits, _gens(4, 5, 6), top_k=100), a)
    assert torch.equal(sample_tokens(logits, _gens(4, 5, 6), top_k=1000), a)
    # sampling stays inside each row's top-k set, and really samples (more than one token seen)
    k = 5
    allowed = logits.topk(k, dim=-1).indices  # [3, 4, k]
    gens = _gens(10, 11, 12)
    seen = set()
    for _ in range(200):
        tok = sample_tokens(logits, gens, top_k=k)
        assert (allowed == tok.unsqueeze(-1)).any(-1).all()
        seen.add(tok[0, 0].item())
    assert len(seen) > 1
    # top_p: only the smallest prefix whose mass before the token is <= p
    probs = torch.tensor([[[0.5, 0.3, 0.15, 0.05]]])
    for s in range(50):
        assert sample_tokens(probs.log(), _gens(s), top_p=0.6).item() in (0, 1)


def test_sample_tokens_rows_use_own_generator():
    logits = torch.randn(2, 4, 64, generator=torch.Generator().manual_seed(1))
    pair = sample_tokens(logits, _gens(3, 4), top_k=20)
    assert torch.equal(pair[:1], sample_tokens(logits[:1], _gens(3), top_k=20))
    assert torch.equal(pair[1:], sample_tokens(logits[1:], _gens(4), top_k=20))
    with pytest.raises(ValueError):
        sample_tokens(logits, _gens(3), top_k=20)


# ------------------------------------------------------------------------------------------------ guidance
def _spy_additions(monkeypatch):
    """Record the in-attention additions ({layer: [rows, N, dim]}) each decoding window starts with."""
    from vidmusician.decoder import MusicGenDecoder

    calls = []
    real = MusicGenDecoder.begin

    def begin(self, cross, capacity, additions=None):
        calls.append((cross.keys[0].shape[0], {j: f.clone() for j, f in (additions or {}).items()}))
        return real(self, cross, capacity, additions)

    monkeypatch.setattr(MusicGenDecoder, "begin", begin)
    return calls


def test_cfg_batches_and_null_rows_get_no_rhythm(models, inputs, monkeypatch):
    model = models["2"]
    cls, d = inputs
    calls = _spy_additions(monkeypatch)
    generate_codes(model, cls, 10, [0, 1], dataclasses.replace(GEN, cfg_coef=1.0), d=d)
    (rows, adds), = calls
    assert rows == B and sorted(adds) == sorted(model.rhythm.injection_layers)  # conditional rows only
    assert all(f.shape[0] == B and f.abs().sum() > 0 for f in adds.values())
    calls.clear()
    generate_codes(model, cls, 10, [0, 1], GEN, d=d)
    (rows, adds), = calls
    assert rows == 2 * B
    expected = model.rhythm(d)
    for j, f in adds.items():
        assert f[:B].abs().sum() > 0  # conditional rows: rhythm
        assert torch.all(f[B:] == 0)  # null rows: none
        assert torch.equal(f[:B], expected[j])  # step s of the window gets d[:, s] (F_Rj at position s)


def test_cfg_coef_one_is_conditional_only(models, inputs, monkeypatch):
    """cfg_coef=1 never builds the null condition (and, see the spy test above, runs the conditional rows only;
    its greedy output equals conditional teacher forcing, see the first test); guidance changes the samples."""
    model = models["2"]
    cls, d = inputs
    guided = generate_codes(model, cls, T, [3, 4], GEN, d=d)

    def no_null(*args, **kwargs):
        raise AssertionError("null condition used with cfg_coef=1")

    monkeypatch.setattr(model.semantic, "null_condition", no_null)
    a = generate_codes(model, cls, T, [3, 4], dataclasses.replace(GEN, cfg_coef=1.0), d=d)
    assert torch.equal(a, generate_codes(model, cls, T, [3, 4], dataclasses.replace(GEN, cfg_coef=1.0), d=d))
    assert not torch.equal(a, guided)


def test_state_restored_on_error(models, inputs):
    model = models["2"]
    cls, d = inputs
    sentinel = {0: torch.ones(1, 3, model.dim)}
    model.rhythm.set_outputs(sentinel, offset=5, auto_advance=False)
    model.train()

    def boom(done, total):
        if done == 3:
            raise RuntimeError("stop")

    try:
        with pytest.raises(RuntimeError, match="stop"):
            generate_codes(model, cls, 10, [0, 1], GEN, d=d, progress=boom)
        assert model.rhythm._outputs is sentinel and model.rhythm.offset == 5
        assert model.training and not model.lm._is_streaming
    finally:
        model.rhythm.set_outputs(None)
        model.eval()


# ------------------------------------------------------------------------------------------------ sliding window
def test_plan_windows():
    assert plan_windows(100, 100, 60) == [(0, 100, 0)]
    assert plan_windows(175, 100, 60) == [(0, 100, 0), (60, 100, 40), (120, 55, 40)]
    # 60 s with MusicGen's 30 s windows and 18 s stride
    assert plan_windows(3000, 1500, 900) == [(0, 1500, 0), (900, 1500, 600), (1800, 1200, 600)]


def test_generate_long_sliding_window(models, monkeypatch):
    model = models["2"]
    g = torch.Generator().manual_seed(2)
    clips = [torch.randn(4, CFG.semantic.clip_dim, generator=g) for _ in range(B)]  # frames at 0, 1, 2, 3 s
    curves = [torch.rand(175, generator=g), torch.rand(160, generator=g)]
    calls = []
    real = vg.generate_codes

    def spy(model_, cls, n, seeds, gen, **kw):
        out = real(model_, cls, n, seeds, gen, **kw)
        calls.append(dict(cls=[c.clone() for c in cls], n=n, out=out, **kw))
        return out

    monkeypatch.setattr(vg, "generate_codes", spy)
    reports = []
    codes = generate_long(model, clips, curves, 3.5, [5, 6], GEN, progress=lambda a, b: reports.append((a, b)))
    monkeypatch.undo()
    assert codes.shape == (B, CFG.backbone.n_q, 175)
    assert [c["n"] for c in calls] == [100, 100, 55]
    # windows see the [CLS] frames inside [t0, t0 + W) and the rhythm from their own start token
    assert [len(c["cls"][0]) for c in calls] == [2, 2, 1]
    assert torch.equal(calls[1]["cls"][0], clips[0][2:4]) and torch.equal(calls[2]["cls"][1], clips[1][3:4])
    assert torch.equal(calls[1]["d"][0, :100], curves[0][60:160])
    assert torch.equal(calls[1]["d"][1, :100], curves[1][60:160])
    # continuity: each prompt is the previous window's overlapping tokens and is kept unchanged
    assert calls[0]["prompt"] is None
    assert torch.equal(calls[1]["prompt"], calls[0]["out"][..., 60:100])
    assert torch.equal(calls[2]["prompt"], calls[1]["out"][..., 60:100])
    for c in calls[1:]:
        assert torch.equal(c["out"][..., :40], c["prompt"])
    assert torch.equal(codes[..., :100], calls[0]["out"])
    assert torch.equal(codes[..., 60:160], calls[1]["out"])
    assert torch.equal(codes[..., 120:], calls[2]["out"])
    # the first window equals a standalone 2 s generation with the same seeds
    d_full = torch.zeros(B, 175)
    for i, c in enumerate(curves):
        d_full[i, : len(c)] = c
    alone = generate_codes(model, [c[:2] for c in clips], 100, [5, 6], GEN, d=d_full)
    assert torch.equal(codes[..., :100], alone)
    # progress runs over all windows, monotonically, to the end
    done = [a for a, _ in reports]
    assert done == sorted(done) and reports[-1][0] == reports[-1][1] and len({b for _, b in reports}) == 1


def test_generate_long_single_window(models):
    model = models["1"]
    clips = [torch.randn(2, CFG.semantic.clip_dim)]  # frames at 0 s and 1 s; a 1 s clip uses the first only
    codes = generate_long(model, clips, None, 1.0, [1], GEN)
    assert codes.shape == (1, CFG.backbone.n_q, 50)
    assert torch.equal(codes, generate_codes(model, [clips[0][:1]], 50, [1], GEN))


# ------------------------------------------------------------------------------------------------ audio
def test_decode_audio_exact_length():
    from vidmusician.backbone import build_compression_model

    comp = build_compression_model(seed=0)
    codes = torch.randint(0, CFG.backbone.card, (1, CFG.backbone.n_q, 50), generator=torch.Generator().manual_seed(0))
    for duration in (1.0, 0.73):
        n_frames = math.ceil(duration * 50)
        wav = decode_audio(comp, codes[..., :n_frames], round(duration * 32000))
        assert wav.shape == (1, 1, round(duration * 32000)) and wav.dtype == torch.float32
        assert torch.isfinite(wav).all()
    short = decode_audio(comp, codes[..., :20], round(0.5 * 32000))  # 0.4 s of codes: zero-padded
    assert short.shape[-1] == 16000 and torch.all(short[..., 12800:] == 0)


# ------------------------------------------------------------------------------------------------ threads
class _Sized(torch.nn.Module):
    """A module of ``n`` parameters on the meta device (no memory): what decode_threads counts."""

    def __init__(self, n: int):
        super().__init__()
        self.w = torch.nn.Parameter(torch.empty(n, device="meta"))


def test_decode_threads_rule(monkeypatch):
    from vidmusician import decoder

    monkeypatch.delenv("VIDMUSICIAN_DECODE_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert decoder.decode_threads(_Sized(decoder.SMALL_MODEL_PARAMS - 1)) == 1  # tiny presets: one thread
        monkeypatch.setattr(decoder, "_cores", lambda: 8)
        assert decoder.decode_threads(_Sized(decoder.SMALL_MODEL_PARAMS)) == 2  # capped by torch's setting
        monkeypatch.setattr(decoder, "_cores", lambda: 1)
        assert decoder.decode_threads(_Sized(decoder.SMALL_MODEL_PARAMS)) == 1  # capped by the affinity
        monkeypatch.setenv("VIDMUSICIAN_DECODE_THREADS", "3")
        assert decoder.decode_threads(_Sized(10)) == 3  # forced
    finally:
        torch.set_num_threads(before)


def test_decode_audio_runs_at_the_codec_thread_count(monkeypatch):
    """EnCodec decoding follows the LM's size rule (the 57M-parameter codec is above the one-thread limit), and
    torch's setting is restored afterwards."""
    from vidmusician import decoder
    from vidmusician.backbone import build_compression_model

    monkeypatch.delenv("VIDMUSICIAN_DECODE_THREADS", raising=False)
    monkeypatch.setattr(decoder, "_cores", lambda: 8)
    comp = build_compression_model(seed=0)
    seen = []
    real = comp.decode
    monkeypatch.setattr(comp, "decode", lambda *a: seen.append(torch.get_num_threads()) or real(*a))
    codes = torch.zeros(1, CFG.backbone.n_q, 10, dtype=torch.long)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        decode_audio(comp, codes, 6400)
        monkeypatch.setattr(decoder, "SMALL_MODEL_PARAMS", 10 ** 9)  # as if the codec were small
        decode_audio(comp, codes, 6400)
        assert seen == [2, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
