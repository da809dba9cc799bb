"""VidMusician config, MusicGen backbone builds/loading, and meta-device parameter counts."""
from __future__ import annotations

import json

import pytest
import torch

import vm_eval  # noqa: F401  compat import hook before audiocraft / transformers

from vidmusician import backbone as bb
from vidmusician import params
from vidmusician.config import (PAPER_TRAINABLE, SCALES, VidMusicianConfig, injection_layers, preset)


# --------------------------------------------------------------------------------------------- config
def test_scales_facts():
    assert (SCALES["xsmall"].dim, SCALES["xsmall"].num_layers, SCALES["xsmall"].num_heads) == (64, 2, 2)
    assert (SCALES["small"].dim, SCALES["small"].num_layers, SCALES["small"].num_heads) == (1024, 24, 16)
    assert (SCALES["medium"].dim, SCALES["medium"].num_layers, SCALES["medium"].num_heads) == (1536, 48, 24)
    assert (SCALES["large"].dim, SCALES["large"].num_layers, SCALES["large"].num_heads) == (2048, 48, 32)
    assert SCALES["tiny"].num_layers == 8
    for spec in SCALES.values():
        assert spec.dim % spec.num_heads == 0
        assert spec.cross_attention_dim == spec.dim


def test_presets_facts():
    paper = preset("paper")
    assert paper.scale.name == "medium"
    assert (paper.backbone.n_q, paper.backbone.card, paper.backbone.frame_rate, paper.backbone.sample_rate) == \
        (4, 2048, 50, 32000)
    assert paper.semantic.clip_model == "ViT-B-32" and paper.semantic.clip_dim == 512
    assert paper.semantic.t5.name == "t5-base" and paper.semantic.t5.d_model == 768
    assert paper.semantic.lora_rank == 64 and paper.semantic.lora_targets == ("q", "v")
    assert (paper.rhythm.fps, paper.rhythm.token_rate_hz, paper.rhythm.block_size) == (25.0, 50, 4)
    g = paper.generation
    assert (g.top_k, g.top_p, g.temperature, g.cfg_coef, g.max_duration_s) == (250, 0.0, 1.0, 3.0, 30.0)
    assert paper.injection_layers == list(range(0, 33, 4))
    tiny = preset("tiny")
    assert tiny.scale.name == "tiny" and tiny.injection_layers == [0, 4]
    with pytest.raises(KeyError, match="unknown preset"):
        preset("huge")


def test_injection_layers():
    assert injection_layers(48) == [0, 4, 8, 12, 16, 20, 24, 28, 32]
    assert injection_layers(24) == [0, 4, 8, 12, 16]
    assert injection_layers(8) == [0, 4]
    assert injection_layers(48, fraction=1.0) == list(range(0, 48, 4))


def test_round_trip_and_overrides():
    for name in ("paper", "tiny"):
        cfg = preset(name)
        data = json.loads(json.dumps(cfg.to_dict()))
        assert VidMusicianConfig.from_dict(data) == cfg
    cfg = preset("paper").with_overrides({"rhythm.init": "default", "semantic.lora_targets": ["q", "k", "v"],
                                          "train.stage": "joint"})
    assert cfg.rhythm.init == "default" and cfg.semantic.lora_targets == ("q", "k", "v")
    assert cfg.train.stage == "joint" and preset("paper").rhythm.init == "zero-identity"
    with pytest.raises(KeyError, match="rhythm.inti"):
        preset("paper").with_overrides({"rhythm.inti": "default"})
    with pytest.raises(KeyError, match="names a section"):
        preset("paper").with_overrides({"rhythm": "x"})
    with pytest.raises(ValueError, match="rhythm.init"):
        preset("paper").with_overrides({"rhythm.init": "zeros"})
    with pytest.raises(KeyError, match="bogus"):
        VidMusicianConfig.from_dict({**preset("tiny").to_dict(), "bogus": 1})


# --------------------------------------------------------------------------------------------- backbone
@pytest.fixture(scope="module")
def tiny_backbone():
    return bb.load_backbone("tiny", seed=0)


def test_tiny_lm_forward(tiny_backbone):
    lm = tiny_backbone.lm
    B, T, S, dim = 2, 12, 5, SCALES["tiny"].dim
    codes = torch.randint(0, 2048, (B, 4, T))
    src = torch.randn(B, S, dim)
    with torch.no_grad():
        out = bb.lm_logits(lm, codes, src)
        other = bb.lm_logits(lm, codes, torch.randn(B, S, dim))
    assert out.logits.shape == (B, 4, T, 2048) and out.mask.shape == (B, 4, T)
    valid = out.mask.bool()
    assert valid.any() and torch.isfinite(out.logits[valid]).all()
    assert not torch.allclose(out.logits[valid], other.logits[valid])  # cross-attention source matters


def test_encodec_one_second(tiny_backbone):
    comp = tiny_backbone.compression_model
    assert tiny_backbone.sample_rate == 32000 and tiny_backbone.frame_rate == 50
    wav = 0.1 * torch.randn(2, 1, 32000)
    with torch.no_grad():
        codes, scale = comp.encode(wav)
        audio = comp.decode(codes, scale)
    assert codes.shape == (2, 4, 50) and codes.min() >= 0 and codes.max() < 2048
    assert audio.shape == (2, 1, 32000)


def test_load_backbone_round_trip(tiny_backbone, tmp_path):
    extra = {"condition_provider.conditioners.description.output_proj.weight": torch.randn(64, 768)}
    tiny_backbone.conditioner_state = extra
    bb.save_backbone(tiny_backbone, tmp_path)
    pkg = torch.load(tmp_path / "state_dict.bin", weights_only=False)
    assert set(pkg) == {"xp.cfg", "best_state"}
    loaded = bb.load_backbone(tmp_path)
    assert loaded.pretrained and loaded.scale.name == "tiny"
    for a, b in ((tiny_backbone.lm, loaded.lm), (tiny_backbone.compression_model, loaded.compression_model)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(loaded.conditioner_state[next(iter(extra))], next(iter(extra.values())))
    codes, src = torch.randint(0, 2048, (1, 4, 6)), torch.randn(1, 3, 64)
    with torch.no_grad():
        la, lb = bb.lm_logits(tiny_backbone.lm, codes, src), bb.lm_logits(loaded.lm, codes, src)
    assert torch.allclose(la.logits.nan_to_num(), lb.logits.nan_to_num())
    (tmp_path / "compression_state_dict.bin").unlink()
    with pytest.raises(FileNotFoundError, match="compression_state_dict.bin.*huggingface-cli download"):
        bb.load_backbone(tmp_path)
    with pytest.raises(FileNotFoundError, match="neither a backbone scale"):
        bb.load_backbone(tmp_path / "nowhere")


def test_freeze_and_device(tiny_backbone):
    lm = bb.freeze(bb.build_lm("tiny", seed=1))
    assert bb.count_parameters(lm)[1] == 0 and not lm.training
    assert isinstance(bb.default_device(), torch.device)
    assert bb.default_device("cpu") == torch.device("cpu")


# --------------------------------------------------------------------------------------------- params
def test_paper_parameter_breakdown(capsys):
    bd = params.parameter_breakdown("paper")
    total_lm = bd["backbone_lm"][0]
    assert 1.4e9 < total_lm < 2.0e9 and bd["backbone_lm"][1] == 0  # MusicGen-medium LM, frozen
    assert 56e6 < bd["encodec"][0] < 58e6
    assert 105e6 < bd["t5_encoder"][0] < 115e6 and bd["t5_encoder"][1] == 0  # t5-base encoder, frozen
    assert bd["lora"][1] == 64 * 24 * (768 + 768)
    assert bd["embedding_manager"][1] == 512 * 768 + 768
    assert bd["projector"][1] == 768 * 1536 + 1536
    assert bd["rhythm"][1] == (1536 + 1536) + 9 * (1536 * 1536 + 1536)
    trainable = bd["total"][1]
    assert abs(trainable - PAPER_TRAINABLE) / PAPER_TRAINABLE < 0.02
    search = params.search_lora_rank("paper")
    assert search["chosen"] == preset("paper").semantic.lora_rank == 64
    assert 53 < search["exact_rank"] < 54
    with capsys.disabled():
        print("\n" + params.format_breakdown(bd))
        print(params.format_search(search))
        print(params.format_breakdown(params.parameter_breakdown("tiny")))


def test_ablation_breakdowns():
    no_rhythm = params.parameter_breakdown(preset("paper").with_overrides({"train.stage": "1"}))
    assert no_rhythm["rhythm"] == (0, 0)
    scratch = params.parameter_breakdown(preset("paper").with_overrides({"semantic.t5_init": "scratch"}))
    assert scratch["lora"] == (0, 0) and scratch["t5_encoder"][1] == scratch["t5_encoder"][0]
    tiny = params.parameter_breakdown("tiny")
    assert tiny["lora"][1] == 4 * 2 * 2 * (32 + 32) and tiny["rhythm"][1] == (64 + 64) + 2 * (64 * 64 + 64)
