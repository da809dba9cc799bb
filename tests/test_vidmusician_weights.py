"""VidMusician's frozen parts load from upstream file layouts (random weights written the way the published
checkpoints are), through VM_EVAL_WEIGHTS, with the recorded sha256 equal to the file's; wrong sizes are refused."""
from __future__ import annotations

import vm_eval  # noqa: F401  compat hook first

import hashlib

import numpy as np
import pytest
import torch

from backbone_helpers import isolate_weights
from vidmusician.backbone import COMPRESSION_FILE, LM_FILE, load_backbone, save_backbone
from vidmusician.config import VidMusicianConfig
from vidmusician.model import t5_config_from_spec
from vidmusician.visual import CHECKPOINT_FILE, VisualEncoder, save_random_tower
from vm_eval.train.components import resolve_components


def sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """$VM_EVAL_WEIGHTS with t5-base (save_pretrained layout, tiny sizes) and clip-vit-b-32 (open_clip's
    whole-model state dict of a random ViT-B-32), plus a local MusicGen folder (state_dict.bin +
    compression_state_dict.bin in audiocraft's {'xp.cfg', 'best_state'} layout, tiny scale)."""
    import open_clip
    from transformers import T5EncoderModel

    root = tmp_path_factory.mktemp("upstream")
    torch.manual_seed(0)
    t5_dir = root / "weights" / "t5-base"
    T5EncoderModel(t5_config_from_spec(VidMusicianConfig.preset("tiny").semantic.t5)).save_pretrained(t5_dir)
    (t5_dir / "spiece.model").write_bytes(b"tokenizer not used: the encoder reads CLIP pseudo-tokens")
    clip_model, _, _ = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    (root / "weights" / "clip-vit-b-32").mkdir(parents=True)
    torch.save(clip_model.state_dict(), root / "weights" / "clip-vit-b-32" / CHECKPOINT_FILE)
    musicgen = save_backbone(load_backbone("tiny", seed=3), root / "musicgen-tiny")
    return root, musicgen


def paper_like(musicgen) -> VidMusicianConfig:
    """Paper preset's lookups (t5-base, ViT-B-32 with the LAION tag) at tiny sizes, backbone from a local folder."""
    return VidMusicianConfig.preset("tiny").with_overrides({
        "backbone.checkpoint_dir": str(musicgen), "semantic.t5.name": "t5-base", "semantic.clip_model": "ViT-B-32",
        "semantic.clip_pretrained": "laion2b_s34b_b79k", "semantic.clip_dim": 512})


def test_upstream_layouts_load_with_their_sha256(upstream, monkeypatch, tmp_path):
    root, musicgen = upstream
    isolate_weights(monkeypatch, root)
    comps = resolve_components(paper_like(musicgen), random_root=tmp_path / "unused", create=False)
    ids = comps.identities
    assert ids["backbone"]["sha256"] == sha(musicgen / LM_FILE)
    assert ids["encodec"]["sha256"] == sha(musicgen / COMPRESSION_FILE)
    assert ids["t5"]["name"] == "t5-base" and ids["t5"]["sha256"] == sha(root / "weights/t5-base/model.safetensors")
    assert ids["clip"]["name"] == "clip-vit-b-32"
    assert ids["clip"]["sha256"] == sha(root / "weights/clip-vit-b-32" / CHECKPOINT_FILE)
    assert comps.pretrained and not any(i.get("random") for i in ids.values())
    assert not (tmp_path / "unused").exists()
    # the loaded weights are the written ones
    written = load_backbone("tiny", seed=3).lm.state_dict()
    for k, v in comps.backbone.lm.state_dict().items():
        assert torch.equal(v, written[k]), k
    assert comps.visual.embed_dim == 512


def test_missing_weights_name_the_file_and_how_to_get_them(upstream, monkeypatch, tmp_path):
    root, musicgen = upstream
    isolate_weights(monkeypatch, tmp_path)  # an empty weights folder
    with pytest.raises(FileNotFoundError, match=r"t5-base.*model\.safetensors.*huggingface-cli download"):
        resolve_components(paper_like(musicgen), create=False)
    cfg = VidMusicianConfig.preset("paper")
    with pytest.raises(FileNotFoundError, match=r"musicgen-medium.*state_dict\.bin.*huggingface-cli download"):
        resolve_components(cfg, create=False)


def test_a_backbone_of_another_scale_is_refused(upstream, monkeypatch):
    root, musicgen = upstream
    isolate_weights(monkeypatch, root)
    (root / "weights" / "musicgen-small").mkdir(exist_ok=True)
    for f in (LM_FILE, COMPRESSION_FILE):  # tiny files where musicgen-small should be
        target = root / "weights" / "musicgen-small" / f
        if not target.exists():
            target.symlink_to(musicgen / f)
    cfg = paper_like(musicgen).with_overrides({"backbone.checkpoint_dir": None, "backbone.scale": "small"})
    with pytest.raises(ValueError, match=r"64x8 LM.*MusicGen-small \(1024x24"):
        resolve_components(cfg, create=False)


def test_random_components_are_written_once_and_reused(tmp_path):
    cfg = VidMusicianConfig.preset("tiny")
    a = resolve_components(cfg, tmp_path / "rw", seed=5)
    files = sorted(p.relative_to(tmp_path) for p in (tmp_path / "rw").rglob("*") if p.is_file())
    assert any(p.name == LM_FILE for p in files) and any(p.name == CHECKPOINT_FILE for p in files)
    b = resolve_components(cfg, tmp_path / "rw", seed=5, create=False)
    assert a.identities == b.identities and all(i["random"] for i in a.identities.values())
    assert not a.pretrained
    with pytest.raises(FileNotFoundError, match="random weights expected"):
        resolve_components(cfg, tmp_path / "elsewhere", seed=5, create=False)


def test_visual_encoder_curves_match_one_pass(tmp_path):
    """Chunked 25-fps encoding gives the curve of one pass (to float rounding: the tower runs on other batch
    sizes); d_0 = 1 for both curves."""
    from vidmusician.rhythm import cls_dissimilarity, patch_dissimilarity

    enc = VisualEncoder(save_random_tower("tiny-clip", tmp_path / CHECKPOINT_FILE), model="tiny-clip", batch_size=4)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (11, 40, 70, 3), dtype=np.uint8)
    vf = enc.encode(frames[:3], [frames[:5], frames[5:]])
    g, p = enc.clip.features(frames)
    np.testing.assert_allclose(vf.d_patch, patch_dissimilarity(torch.from_numpy(p)).numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(vf.d_cls, cls_dissimilarity(torch.from_numpy(g)).numpy(), rtol=1e-4, atol=1e-6)
    assert vf.cls.shape == (3, 48) and vf.d_patch[0] == 1.0 and vf.d_cls[0] == 1.0
    with pytest.raises(ValueError, match="no frames"):
        enc.encode(frames[:0], frames)


def test_musicgen_files_found_through_the_weights_folder(upstream, monkeypatch):
    """The lookup a real preset uses (musicgen-<scale> in $VM_EVAL_WEIGHTS), exercised at the tiny scale by
    registering a musicgen-tiny checkpoint the way musicgen-medium is registered."""
    from vm_eval import weights

    root, musicgen = upstream
    isolate_weights(monkeypatch, root)
    medium = weights.KNOWN["musicgen-medium"]
    monkeypatch.setitem(weights.KNOWN, "musicgen-tiny", weights.Checkpoint(
        "musicgen-tiny", medium.role, medium.files, hub_id=None))
    folder = root / "weights" / "musicgen-tiny"
    folder.mkdir(exist_ok=True)
    for f in (LM_FILE, COMPRESSION_FILE):
        if not (folder / f).exists():
            (folder / f).symlink_to(musicgen / f)
    cfg = paper_like(musicgen).with_overrides({"backbone.checkpoint_dir": None})
    comps = resolve_components(cfg, create=False)
    assert comps.identities["backbone"]["name"] == "musicgen-tiny"
    assert comps.identities["backbone"]["sha256"] == sha(musicgen / LM_FILE)
    assert comps.identities["backbone"]["path"] == str(folder / LM_FILE)
