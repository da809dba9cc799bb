"""VidMusician full model (tiny preset, random weights): zero/identity init keeps stage-1 behaviour exactly,
stage-2 training moves only the rhythm adapter, conditions reach the logits."""
from __future__ import annotations

import vm_eval  # noqa: F401  compat hook first (audiocraft / peft on a CPU machine)

import pytest
import torch

from vidmusician.config import VidMusicianConfig
from vidmusician.model import VidMusician

SEED = 0
B, T, F1 = 2, 20, 3


def _config(**overrides) -> VidMusicianConfig:
    return VidMusicianConfig.preset("tiny").with_overrides(overrides) if overrides else VidMusicianConfig.preset("tiny")


def _model(stage: str, **overrides) -> VidMusician:
    return VidMusician(_config(**overrides), stage=stage, seed=SEED).eval()


@pytest.fixture(scope="module")
def inputs():
    cfg = _config()
    g = torch.Generator().manual_seed(1)
    codes = torch.randint(0, cfg.backbone.card, (B, cfg.backbone.n_q, T), generator=g)
    cls = torch.randn(B, F1, cfg.semantic.clip_dim, generator=g)
    mask = torch.ones(B, F1, dtype=torch.bool)
    mask[1, -1] = False
    d = torch.rand(B, T, generator=g)
    return codes, cls, mask, d


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit equality, NaN (delay-pattern invalid positions) equal to NaN."""
    return torch.equal(torch.nan_to_num(a, nan=0.0), torch.nan_to_num(b, nan=0.0)) and torch.equal(a.isnan(), b.isnan())


def _valid(model, codes, cls, mask, d=None):
    out = model.predictions(codes, cls, mask, d)
    return out.logits[out.mask.bool()]


def test_structure_and_shapes(inputs):
    codes, cls, mask, d = inputs
    model = _model("2")
    cfg = model.config
    assert model.rhythm.injection_layers == cfg.injection_layers == [0, 4]
    assert len(model.transformer_layers) == cfg.scale.num_layers
    assert model.semantic.clip_dim == cfg.semantic.clip_dim
    logits = model(codes, cls, mask, d)
    assert logits.shape == (B, cfg.backbone.n_q, T, cfg.backbone.card)
    assert torch.isfinite(_valid(model, codes, cls, mask, d)).all()


def test_zero_identity_init_equals_stage1(inputs):
    codes, cls, mask, d = inputs
    m1, m2 = _model("1"), _model("2")
    with torch.no_grad():
        l1 = m1(codes, cls, mask, d)  # stage 1 ignores d
        l1_none = m1(codes, cls, mask, None)
        l2 = m2(codes, cls, mask, d)
        l2_none = m2(codes, cls, mask, None)
    assert _same(l1, l1_none)
    assert _same(l1, l2)
    assert _same(l2, l2_none)
    # non-vacuous: the valid logits are real numbers
    assert torch.isfinite(_valid(m2, codes, cls, mask, d)).all()


def test_default_init_changes_logits_at_init(inputs):
    codes, cls, mask, d = inputs
    m1 = _model("1")
    m_def = _model("2", **{"rhythm.init": "default"})
    with torch.no_grad():
        l1 = _valid(m1, codes, cls, mask, d)
        l_def = _valid(m_def, codes, cls, mask, d)
        l_def_none = _valid(m_def, codes, cls, mask, None)
    assert not torch.equal(l1, l_def)
    assert torch.equal(l1, l_def_none)  # same backbone + semantic weights (seeded), rhythm is the only change


def test_cls_features_change_stage1_logits(inputs):
    codes, cls, mask, _ = inputs
    m1 = _model("1")
    with torch.no_grad():
        a = _valid(m1, codes, cls, mask)
        b = _valid(m1, codes, cls + torch.randn_like(cls), mask)
    assert not torch.equal(a, b)


def test_trainable_parameters_per_stage():
    m = _model("1")
    sem_ids = {id(p) for p in m.semantic.trainable_parameters()}
    rh_ids = {id(p) for p in m.rhythm.parameters()}
    lm_ids = {id(p) for p in m.lm.parameters()}
    assert {id(p) for p in m.trainable_parameters()} == sem_ids
    assert {id(p) for p in m.parameters() if p.requires_grad} == sem_ids
    m.set_stage("2")
    assert {id(p) for p in m.trainable_parameters()} == rh_ids
    assert {id(p) for p in m.parameters() if p.requires_grad} == rh_ids
    m.set_stage("joint")
    assert {id(p) for p in m.parameters() if p.requires_grad} == sem_ids | rh_ids
    assert not (lm_ids & {id(p) for p in m.parameters() if p.requires_grad})
    # frozen parts stay in eval mode when the model trains
    m.set_stage("2").train()
    assert not m.lm.training and not m.semantic.training and m.rhythm.training


def test_stage2_step_trains_adapter_only(inputs):
    codes, cls, mask, d = inputs
    model = _model("2")
    frozen_before = {n: p.detach().clone() for n, p in model.named_parameters() if not n.startswith("rhythm.")}
    assert all(not p.requires_grad for n, p in model.named_parameters() if not n.startswith("rhythm."))
    with torch.no_grad():
        before = _valid(model, codes, cls, mask, d)

    model.train()
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-3)
    loss = model.loss(codes, cls, mask, d)
    assert torch.isfinite(loss)
    loss.backward()
    zg = model.rhythm.zero_linear.weight.grad
    assert zg is not None and zg.abs().sum() > 0  # gradient reaches the Zero-Linear through the identity chain
    assert model.rhythm.zero_linear.bias.grad.abs().sum() > 0
    assert all(p.grad is None for n, p in model.named_parameters() if not n.startswith("rhythm."))
    opt.step()
    opt.zero_grad()
    model.eval()

    for n, p in model.named_parameters():
        if not n.startswith("rhythm."):
            assert torch.equal(p, frozen_before[n]), f"{n} changed"
    assert model.rhythm.zero_linear.weight.abs().sum() > 0
    with torch.no_grad():
        after = _valid(model, codes, cls, mask, d)
        other_d = _valid(model, codes, cls, mask, torch.flip(d, dims=[1]))
        no_d = _valid(model, codes, cls, mask, None)
    assert not torch.equal(before, after)
    assert not torch.equal(after, other_d)
    assert torch.equal(before, no_d)  # without a rhythm curve the trained model is still the stage-1 model


def test_rhythm_curve_sources():
    torch.manual_seed(0)
    m = _model("2")
    patches = torch.randn(2, 25, 4, 8)  # [B, T, P, D] at 25 fps = 1 s
    d = m.rhythm_curve(patches, fps=25)
    assert d.shape == (2, 50)
    assert torch.all(d[:, 0] == 1.0)
    assert m.rhythm_curve(patches[0], fps=25, duration_s=0.5).shape == (25,)
    with pytest.raises(ValueError):
        m.rhythm_curve(torch.randn(25, 8), fps=25)
    mc = VidMusician(_config(**{"rhythm.source": "cls"}), stage="2", seed=SEED)
    cls = torch.randn(25, 8)
    dc = mc.rhythm_curve(cls, fps=25, duration_s=1.0)
    assert dc.shape == (50,)
    assert torch.allclose(dc[::2][1:], (1 - torch.nn.functional.cosine_similarity(cls[1:], cls[:-1], dim=-1)),
                          atol=1e-6)
