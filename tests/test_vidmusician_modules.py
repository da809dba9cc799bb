"""VidMusician conditioning modules: rhythm (dissimilarity, resampling, Zero/Identity-Linear adapter, hooks) and
semantic (Embedding Manager, T5 + LoRA, projector). Tiny random models only."""
from __future__ import annotations

import vm_eval  # noqa: F401  compat hook first (peft -> transformers -> torchvision on a CPU machine)

import pytest
import torch
from torch import nn

from vidmusician.rhythm import (RhythmAdapter, cls_dissimilarity, inject,
                                patch_dissimilarity, to_token_rate)

DIM = 48


# ------------------------------------------------------------------------------------------------ rhythm curve

def test_patch_dissimilarity_hand_cases():
    torch.manual_seed(0)
    frame = torch.randn(4, 8)  # P=4, D=8
    same = torch.stack([frame, frame, frame])
    d = patch_dissimilarity(same)
    assert d.shape == (3,)
    assert d[0] == 1.0
    assert torch.allclose(d[1:], torch.zeros(2), atol=1e-6)
    # orthogonal per patch: e_0 then e_1 for every patch
    a = torch.zeros(2, 3, 5)
    a[0, :, 0] = 1.0
    a[1, :, 1] = 2.0
    assert torch.allclose(patch_dissimilarity(a), torch.tensor([1.0, 1.0]))
    # half the patches change to orthogonal, half stay -> 0.5 (per-patch mean, not pooled)
    b = torch.zeros(2, 2, 3)
    b[:, :, 0] = 1.0
    b[1, 1] = torch.tensor([0.0, 1.0, 0.0])
    assert torch.allclose(patch_dissimilarity(b), torch.tensor([1.0, 0.5]))
    # batched form
    assert patch_dissimilarity(torch.stack([same, same])).shape == (2, 3)
    # cls variant
    c = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    assert torch.allclose(cls_dissimilarity(c), torch.tensor([1.0, 0.0, 1.0, 1.0]))


def test_to_token_rate_interpolation():
    d = torch.tensor([[0.0, 1.0, 0.0]])  # frames at 0, 0.5, 1.0 s (fps 2)
    out = to_token_rate(d, fps=2.0, duration_s=1.5, rate_hz=4.0)
    # tokens at 0, .25, .5, .75, 1.0, 1.25 s; the last one is past frame 2 -> held
    assert out.shape == (1, 6)
    assert torch.allclose(out, torch.tensor([[0.0, 0.5, 1.0, 0.5, 0.0, 0.0]]))
    assert to_token_rate(torch.ones(25), fps=25, duration_s=2.0).shape == (100,)
    assert to_token_rate(torch.tensor([[3.0]]), fps=25, duration_s=0.1, rate_hz=50).eq(3.0).all()


def test_default_injection_layers():
    from vidmusician.config import injection_layers as default_injection_layers

    assert default_injection_layers(48) == [0, 4, 8, 12, 16, 20, 24, 28, 32]
    assert default_injection_layers(24) == [0, 4, 8, 12, 16]


# ------------------------------------------------------------------------------------------------ adapter

def test_zero_identity_init_outputs_exactly_zero():
    ad = RhythmAdapter(DIM, [0, 2, 4], identity_on_first=False)
    outs = ad(torch.rand(2, 7))
    assert list(outs) == [0, 2, 4]
    for v in outs.values():
        assert v.shape == (2, 7, DIM)
        assert torch.equal(v, torch.zeros_like(v))
    assert len(ad.identity_linears) == 2
    assert sum(p.numel() for p in ad.parameters()) == 2 * DIM + 2 * (DIM * DIM + DIM)


def test_identity_on_first_variant_and_style_spelling():
    ad = RhythmAdapter(DIM, [0, 2, 4], identity_on_first=True)
    assert len(ad.identity_linears) == 3
    assert all(torch.equal(v, torch.zeros_like(v)) for v in ad(torch.rand(1, 3)).values())
    with torch.no_grad():
        ad.zero_linear.weight.fill_(1.0)
    outs = ad(torch.full((1, 3), 0.5))
    assert all(torch.equal(v, torch.full((1, 3, DIM), 0.5)) for v in outs.values())
    assert RhythmAdapter(DIM, [0, 1], style="musiconGen").style == "musicongen"


def test_identity_chain_passes_input_unchanged():
    ad = RhythmAdapter(DIM, [0, 2, 4, 6])
    with torch.no_grad():
        ad.zero_linear.weight.normal_()
        ad.zero_linear.bias.normal_()
    outs = ad(torch.rand(3, 5))
    first = outs[0]
    assert first.abs().sum() > 0
    for j in (2, 4, 6):
        assert torch.equal(outs[j], first)


def test_one_step_updates_and_gradient_reaches_zero_linear():
    torch.manual_seed(0)
    ad = RhythmAdapter(DIM, [0, 1, 2])
    d = torch.rand(2, 6)
    target = torch.randn(2, 6, DIM)
    loss = sum(((v - target) ** 2).mean() for v in ad(d).values())
    loss.backward()
    assert ad.zero_linear.weight.grad is not None and ad.zero_linear.weight.grad.abs().sum() > 0
    assert ad.zero_linear.bias.grad.abs().sum() > 0
    opt = torch.optim.SGD(ad.parameters(), lr=0.1)
    opt.step()
    outs = ad(d)
    assert all(v.abs().sum() > 0 for v in outs.values())


def test_default_init_differs():
    torch.manual_seed(0)
    ad = RhythmAdapter(DIM, [0, 1], init="default")
    assert ad.zero_linear.weight.abs().sum() > 0
    assert not torch.equal(ad.identity_linears[0].weight, torch.eye(DIM))
    assert ad(torch.rand(1, 4))[0].abs().sum() > 0


def test_musicongen_style():
    ad = RhythmAdapter(DIM, [0, 2, 4], style="musicongen")
    assert not hasattr(ad, "identity_linears") and len(ad.projections) == 3
    assert all(torch.equal(v, torch.zeros_like(v)) for v in ad(torch.rand(1, 3)).values())
    torch.manual_seed(0)
    ad2 = RhythmAdapter(DIM, [0, 2, 4], style="musicongen", init="default")
    outs = ad2(torch.rand(1, 3))
    assert not torch.equal(outs[0], outs[2])
    assert sum(p.numel() for p in ad2.parameters()) == 3 * 2 * DIM
    with pytest.raises(ValueError):
        RhythmAdapter(DIM, [0], style="other")
    with pytest.raises(ValueError):
        RhythmAdapter(DIM, [0], init="other")


def test_inject():
    h = torch.randn(2, 3, 4)
    a = torch.randn(2, 3, 4)
    assert torch.equal(inject(h, a), h + a)


def _encoder(n_layers=4):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(DIM, nhead=4, dim_feedforward=64, dropout=0.0, batch_first=True)
    enc = nn.TransformerEncoder(layer, num_layers=n_layers, enable_nested_tensor=False)
    return enc.eval()


def test_hooks_zero_init_exact_then_d_matters():
    enc = _encoder()
    x = torch.randn(2, 10, DIM)
    ref = enc(x)
    ad = RhythmAdapter(DIM, [0, 2])
    handles = ad.attach(enc.layers)
    d1, d2 = torch.rand(2, 10), torch.rand(2, 10)
    with ad.conditioning(d1):
        out0 = enc(x)
    assert torch.equal(out0, ref)
    with torch.no_grad():
        ad.zero_linear.weight.normal_()
    with ad.conditioning(d1):
        o1 = enc(x)
    with ad.conditioning(d2):
        o2 = enc(x)
    assert not torch.allclose(o1, ref)
    assert not torch.allclose(o1, o2)
    # outside a conditioning block the hooks add nothing
    assert torch.equal(enc(x), ref)
    # removing the handles restores the plain model
    for h in handles:
        h.remove()
    with ad.conditioning(d1):
        assert torch.equal(enc(x), ref)


def test_hook_adds_before_the_layer():
    """Layer j receives hidden + F_Rj as its input."""
    seen = {}

    class Probe(nn.Module):
        def __init__(self, k):
            super().__init__()
            self.k = k

        def forward(self, x):
            seen[self.k] = x.clone()
            return x

    layers = nn.ModuleList([Probe(0), Probe(1), Probe(2)])
    ad = RhythmAdapter(DIM, [0, 2], init="default")
    ad.attach(layers)
    x = torch.zeros(1, 4, DIM)
    d = torch.rand(1, 4)
    with ad.conditioning(d) as outs, torch.no_grad():
        h = x
        for layer in layers:
            h = layer(h)
    assert torch.allclose(seen[0], outs[0])
    assert torch.allclose(seen[1], outs[0])
    assert torch.allclose(seen[2], outs[0] + outs[2])


def test_length_mismatch_crop_and_pad():
    ad = RhythmAdapter(DIM, [0], init="default")
    d = torch.rand(1, 5)
    with ad.conditioning(d) as outs:
        w = ad.window(0, 8, 1)
        assert torch.equal(w[:, :5], outs[0]) and torch.equal(w[:, 5:], torch.zeros(1, 3, DIM))
        assert torch.equal(ad.window(0, 3, 1), outs[0][:, :3])
        ad.set_offset(4)
        w = ad.window(0, 3, 1)
        assert torch.equal(w[:, :1], outs[0][:, 4:5]) and torch.equal(w[:, 1:], torch.zeros(1, 2, DIM))
        assert ad.window(0, 2, 3).shape == (3, 2, DIM)  # batch-1 curve broadcasts
    assert ad.window(0, 2, 1) is None


class _CausalLM(nn.Module):
    """Per-position layers (no attention mixing across time), so step-by-step equals full-sequence exactly."""

    def __init__(self, n_layers=4):
        super().__init__()
        torch.manual_seed(0)
        self.layers = nn.ModuleList([nn.Sequential(nn.Linear(DIM, DIM), nn.Tanh()) for _ in range(n_layers)])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


@pytest.mark.parametrize("mode", ["set_offset", "auto_advance"])
def test_step_by_step_offset_matches_full_sequence(mode):
    lm = _CausalLM()
    ad = RhythmAdapter(DIM, [0, 2], init="default")
    ad.attach(lm.layers)
    x = torch.randn(2, 6, DIM)
    d = torch.rand(2, 6)
    with torch.no_grad():
        with ad.conditioning(d):
            full = lm(x)
        steps = []
        with ad.conditioning(d, auto_advance=(mode == "auto_advance")):
            for t in range(6):
                if mode == "set_offset":
                    ad.set_offset(t)
                steps.append(lm(x[:, t:t + 1]))
            if mode == "auto_advance":
                assert ad.offset == 6
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-6)
    # wrong offset would differ
    with torch.no_grad(), ad.conditioning(d, offset=1):
        shifted = lm(x[:, :1])
    assert not torch.allclose(shifted, full[:, :1])


def test_attach_batch_second_and_kwargs():
    class KwLayer(nn.Module):
        def forward(self, hidden_states=None):
            return hidden_states

    ad = RhythmAdapter(DIM, [0], init="default")
    d = torch.rand(2, 3)
    kl = nn.ModuleList([KwLayer()])
    ad.attach(kl)
    with ad.conditioning(d) as outs, torch.no_grad():
        assert torch.allclose(kl[0](hidden_states=torch.zeros(2, 3, DIM)), outs[0])
    tl = nn.ModuleList([nn.Identity()])
    ad.attach(tl, batch_first=False)
    with ad.conditioning(d) as outs, torch.no_grad():
        assert torch.allclose(tl[0](torch.zeros(3, 2, DIM)), outs[0].transpose(0, 1))
    with pytest.raises(IndexError):
        ad.attach(nn.ModuleList())


# ------------------------------------------------------------------------------------------------ semantic

CLIP_DIM, COND_DIM = 24, DIM


def _t5_config():
    from transformers import T5Config

    return T5Config(d_model=32, d_ff=64, num_layers=2, num_heads=2, vocab_size=100, d_kv=16, dropout_rate=0.0)


def _encoder_sem(**kw):
    from vidmusician.semantic import SemanticEncoder

    torch.manual_seed(0)
    return SemanticEncoder(_t5_config(), clip_dim=CLIP_DIM, cond_dim=COND_DIM, lora_rank=4, lora_alpha=8, **kw)


def test_semantic_trainable_set_and_frozen_base():
    enc = _encoder_sem()
    trainable = enc.trainable_parameters()
    requires = [p for p in enc.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in requires}
    n_em = CLIP_DIM * 32 + 32
    n_proj = 32 * COND_DIM + COND_DIM
    # LoRA on q and v of 2 layers: A (32 -> 4) and B (4 -> 32, q/v width = heads*d_kv = 32) each
    n_lora = 2 * 2 * (4 * 32 + 32 * 4)
    assert sum(p.numel() for p in enc.lora_parameters()) == n_lora
    assert sum(p.numel() for p in trainable) == n_em + n_proj + n_lora
    assert all(not p.requires_grad for _, p in enc.base_t5_parameters())

    base_before = {n: p.detach().clone() for n, p in enc.base_t5_parameters()}
    train_before = [p.detach().clone() for p in trainable]
    enc.train()
    opt = torch.optim.Adam(trainable, lr=1e-2)
    feats = torch.randn(2, 5, CLIP_DIM)
    # two steps: LoRA B starts at zero, so A only receives gradient after B has moved
    for _ in range(2):
        opt.zero_grad()
        cond, mask = enc(feats)
        assert cond.shape == (2, 5, COND_DIM) and mask.shape == (2, 5) and mask.all()
        (cond ** 2).mean().backward()
        opt.step()
    for n, p in enc.base_t5_parameters():
        assert torch.equal(p, base_before[n]), n
    assert all(not torch.equal(p, q) for p, q in zip(trainable, train_before))


def test_semantic_output_depends_on_features_and_masks():
    enc = _encoder_sem().eval()
    a = torch.randn(1, 4, CLIP_DIM)
    with torch.no_grad():
        c1, _ = enc(a)
        c2, _ = enc(a + torch.randn_like(a))
    assert not torch.allclose(c1, c2)
    clips = [torch.randn(3, CLIP_DIM), torch.randn(5, CLIP_DIM)]
    with torch.no_grad():
        cond, mask = enc(clips)
        alone, _ = enc(clips[0].unsqueeze(0))
    assert cond.shape == (2, 5, COND_DIM)
    assert mask.tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    assert torch.equal(cond[0, 3:], torch.zeros(2, COND_DIM))
    # padding does not leak into the real positions
    assert torch.allclose(cond[0, :3], alone[0], atol=1e-5)


def test_semantic_scratch_mode():
    from transformers import T5EncoderModel

    pre = T5EncoderModel(_t5_config())
    from vidmusician.semantic import SemanticEncoder

    enc = SemanticEncoder(pre, clip_dim=CLIP_DIM, cond_dim=COND_DIM, lora_rank=4, lora_alpha=8, t5_init="scratch")
    assert not enc.uses_lora and enc.lora_parameters() == []
    assert not any("lora_" in n for n, _ in enc.named_parameters())
    assert all(p.requires_grad for p in enc.t5.parameters())
    assert enc.t5 is not pre
    n_t5 = sum(p.numel() for p in enc.t5.parameters())
    assert sum(p.numel() for p in enc.trainable_parameters()) == n_t5 + (CLIP_DIM * 32 + 32) + (32 * COND_DIM + COND_DIM)
    cond, mask = enc(torch.randn(1, 2, CLIP_DIM))
    assert cond.shape == (1, 2, COND_DIM)
    # pretrained mode with a given model wraps that model (its weights frozen)
    enc2 = SemanticEncoder(pre, clip_dim=CLIP_DIM, cond_dim=COND_DIM, lora_rank=4, lora_alpha=8)
    assert enc2.uses_lora and enc2.lora_parameters()
    assert all(not p.requires_grad for _, p in enc2.base_t5_parameters())
    with pytest.raises(ValueError):
        SemanticEncoder(_t5_config(), clip_dim=CLIP_DIM, cond_dim=COND_DIM, t5_init="other")


def test_null_condition():
    enc = _encoder_sem()
    cond, mask = enc.null_condition(3, 7)
    assert cond.shape == (3, 7, COND_DIM) and torch.equal(cond, torch.zeros_like(cond))
    assert mask.shape == (3, 7) and not mask.any()


def test_vidmusician_modules_do_not_import_eval_code():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "vidmusician"
    for name in ("rhythm.py", "semantic.py"):
        tree = ast.parse((root / name).read_text())
        for node in ast.walk(tree):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
            for m in mods:
                assert m.split(".")[0] not in {"vm_eval", "baselines", "metrics"}, (name, m)
