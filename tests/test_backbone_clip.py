"""CLIP visual extractors against open_clip's own model and preprocessing, on random weights.

open_clip's `ViT-B-32` is built by `create_model_and_transforms` with seeded random weights (visual tower
perturbed so every parameter matters), saved as the published `open_clip_pytorch_model.bin` is (the whole
model's state dict) in a temporary weights folder, read back into the same model by open_clip's own
`load_checkpoint`, and loaded by our `ClipVisual` from `vm_eval.weights.require("clip-vit-b-32")`. Upstream
path: the `preprocess` transform on PIL images, then `encode_image` (global) and
`visual.forward_intermediates(normalize_intermediates=True)` (final-layer patch tokens after ln_post). Ours:
numpy frames through our batched port of that transform. Relative error = max |ours - upstream| / max
|upstream|.
"""
from __future__ import annotations


import numpy as np
import pytest

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")
from PIL import Image  # noqa: E402

from backbone_helpers import isolate_weights, max_rel  # noqa: E402
from metrics.backbones import checkpoint_identity  # noqa: E402
from metrics.backbones import clip as V  # noqa: E402

RTOL = 1e-5
SAVED: dict = {}


def frames(t: int, h: int, w: int, seed: int) -> np.ndarray:
    """Smooth gradients with moving blobs and some noise: uint8 [t, h, w, 3]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    out = []
    for i in range(t):
        cx, cy = rng.uniform(0.2, 0.8, 2)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.02)
        img = np.stack([xx + 0.1 * i, yy, blob], axis=-1) * 200 + rng.normal(0, 8, (h, w, 3))
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(out)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clip")
    mp = pytest.MonkeyPatch()
    isolate_weights(mp, tmp)
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    with torch.no_grad():
        for p in model.visual.parameters():
            p.add_(0.02 * torch.randn_like(p))
    folder = tmp / "weights" / V.CHECKPOINT_NAME
    folder.mkdir(parents=True)
    torch.save(model.state_dict(), folder / V.CHECKPOINT_FILE)
    open_clip.load_checkpoint(model, str(folder / V.CHECKPOINT_FILE))  # upstream's loader reads the file back
    SAVED.update(model=model.eval(), preprocess=preprocess)
    yield tmp
    mp.undo()


@pytest.fixture(scope="module")
def ours(env):
    from vm_eval.weights import require

    return V.ClipVisual(require(V.CHECKPOINT_NAME), device="cpu", batch_size=2)


def upstream(x: np.ndarray):
    """open_clip: PIL preprocess per frame; one forward_intermediates pass gives the image embedding (what
    encode_image returns, checked on the first frame) and the last layer's patch tokens after ln_post."""
    model, preprocess = SAVED["model"], SAVED["preprocess"]
    batch = torch.stack([preprocess(Image.fromarray(f)) for f in x])
    with torch.no_grad():
        out = model.visual.forward_intermediates(batch, indices=1, normalize_intermediates=True,
                                                 output_fmt="NLC")
        first = model.encode_image(batch[:1])
    assert torch.allclose(first, out["image_features"][:1], rtol=1e-5, atol=1e-6)
    return batch, out["image_features"].numpy(), out["image_intermediates"][-1].numpy()


@pytest.mark.parametrize("shape", [(3, 96, 128), (1, 150, 100)])
def test_matches_upstream(ours, shape):
    x = frames(*shape, seed=sum(shape))
    batch, g_ref, p_ref = upstream(x)
    # preprocessing: the network input is identical, bit for bit (same PIL resize, same crop and arithmetic)
    assert torch.equal(ours.preprocess(x), batch)
    g, p = ours.features(x)
    assert g.shape == (shape[0], 512) and p.shape == (shape[0], 49, 768)
    assert g.dtype == np.float32 and p.dtype == np.float32
    eg, ep = max_rel(g, g_ref), max_rel(p, p_ref)
    print(f"clip {shape}: global max relative error {eg:.2e}, patches {ep:.2e}")
    assert eg < RTOL and ep < RTOL
    if shape[0] > 1:  # ours ran in batches of 2: across a batch boundary too
        assert not np.allclose(g[0], g[1], atol=1e-3)  # the random network tells frames apart


@pytest.mark.parametrize("shape", [(1, 224, 224), (2, 300, 533), (1, 31, 17)])
def test_preprocessing_matches_upstream(ours, shape):
    """No resize (224 x 224), a downscale and an upscale with odd margins: identical network input."""
    x = frames(*shape, seed=sum(shape))
    batch = torch.stack([SAVED["preprocess"](Image.fromarray(f)) for f in x])
    assert torch.equal(ours.preprocess(x), batch)


def test_normalised_global_and_determinism(ours):
    x = frames(1, 64, 80, seed=7)
    g, p = ours.features(x)
    gn = ours.global_features(x, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(gn, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(g / np.linalg.norm(g, axis=1, keepdims=True), gn, rtol=1e-5, atol=1e-6)
    assert np.array_equal(ours.patch_features(x), p)


def test_video_extractors(env, ours):
    x = frames(1, 90, 160, seed=8)
    g, p = ours.features(x)
    glob = V.ClipGlobal(ours)
    patches = V.ClipPatches(ours)
    assert glob.info.fps == 1.0 and patches.info.fps == 25.0
    assert glob.info.size is None and patches.info.size is None  # the CLIP transform resizes and crops itself
    assert glob.info.backbone == patches.info.backbone == ours.backbone
    assert glob.info.name != patches.info.name
    assert np.array_equal(glob(x, 1.0), g)
    assert np.array_equal(patches(x, 25.0), p)
    assert V.ClipGlobal(ours, fps=2.0).info.fps == 2.0


def test_empty_and_bad_input(ours):
    g, p = ours.features(np.zeros((0, 32, 32, 3), np.uint8))
    assert g.shape == (0, 512) and p.shape == (0, 49, 768)
    with pytest.raises(ValueError, match="uint8"):
        ours.features(np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="RGB"):
        ours.features(np.zeros((1, 32, 32), np.uint8))


def test_identity(env, ours, tmp_path):
    path = env / "weights" / V.CHECKPOINT_NAME / V.CHECKPOINT_FILE
    assert ours.backbone == checkpoint_identity(V.CHECKPOINT_NAME, path)
    state = {k: v for k, v in SAVED["model"].state_dict().items() if k.startswith("visual.")}
    state["visual.proj"] = state["visual.proj"] + 1.0
    other = tmp_path / V.CHECKPOINT_FILE
    torch.save(state, other)
    a, b = ours.backbone, checkpoint_identity(V.CHECKPOINT_NAME, other)
    assert a["file"] == b["file"] == V.CHECKPOINT_FILE and a["sha256"] != b["sha256"]


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"open_clip_pytorch_model\.bin"):
        V.ClipVisual(tmp_path / "none" / V.CHECKPOINT_FILE)
    with pytest.raises(FileNotFoundError, match=r"open_clip_pytorch_model\.bin"):
        V.ClipPatches(tmp_path)  # a folder without the file


@pytest.mark.parametrize("h, w, size, expected", [
    (96, 128, 224, (224, 298)),  # long side truncated, as torchvision does
    (150, 100, 224, (336, 224)),
    (224, 224, 224, (224, 224)),
])
def test_resize_geometry(h, w, size, expected):
    assert V._shortest_side_size(h, w, size) == expected
