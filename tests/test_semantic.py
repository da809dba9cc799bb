"""Semantic CLAP/CLIP metrics: prompt building, retrieval ranks, caption handling, and CLIP wiring on random weights."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from metrics.base import ClipContext, DoesNotApply, ExtractorInfo
from metrics.semantic import (
    CATEGORIES, PROMPT_TEMPLATE, VOCABULARY, ClapCaptionScore, ClapVideoRetrieval, VideoDescriptors,
    descriptor_prompt, retrieval_ranks,
)


def test_prompt_and_ranks_by_hand():
    assert descriptor_prompt(np.array([0, 3, 2, 1])) == "happy orchestral music with strings, fast tempo"
    assert set(CATEGORIES) == set(VOCABULARY) and "{mood}" in PROMPT_TEMPLATE
    sim = np.array([[0.9, 0.1, 0.2],
                    [0.5, 0.4, 0.4],   # own 0.4: one greater, one tie -> 1 + 1 + 0.5
                    [0.0, 0.9, 0.3]])  # own 0.3: one greater -> 2
    assert retrieval_ranks(sim).tolist() == [1.0, 2.5, 2.0]


class FakeText:
    """Deterministic unit vectors per string (a stand-in text encoder)."""

    def __init__(self, dim: int = 16):
        self.dim = dim
        self.info = ExtractorInfo(name="fake-text", version=1, params={"fake": True})

    def __call__(self, texts):
        out = []
        for t in texts:
            v = np.random.default_rng(abs(hash(t)) % 2**32).normal(size=self.dim)
            out.append(v / np.linalg.norm(v))
        return np.array(out)


def test_video_descriptors_pick_the_matching_descriptor():
    text = FakeText()
    vec = text(["a tense video"])[0]  # the frames look exactly like the "tense" mood prompt
    visual = SimpleNamespace(global_features=lambda frames, normalize: np.tile(vec, (len(frames), 1)))
    d = VideoDescriptors(visual, text)
    idx = d(np.zeros((3, 8, 8, 3), np.uint8), 1.0)
    assert idx.shape == (4,) and int(idx[0]) == VOCABULARY["mood"].index("tense")


def test_caption_score_and_skip():
    text = FakeText()
    audio = SimpleNamespace(info=ExtractorInfo(name="fake-audio", version=1))
    m = ClapCaptionScore(audio, text)
    cap = "upbeat promo with drums"
    windows = np.stack([text([cap])[0], text([cap])[0]])
    ctx = ClipContext("c", 5.0, caption=cap)
    assert m.score_features({"audio": windows}, ctx) == pytest.approx(1.0)
    with pytest.raises(DoesNotApply, match="no caption"):
        m.score_features({"audio": windows}, ClipContext("c", 5.0))


def test_retrieval_recall_for_matched_and_shuffled_music():
    text = FakeText()
    audio = SimpleNamespace(info=ExtractorInfo(name="fake-audio", version=1))
    descriptors = SimpleNamespace(info=ExtractorInfo(name="fake-desc", version=1, fps=1.0))
    m = ClapVideoRetrieval(audio, text, descriptors, resamples=200)
    idx = {f"c{i}": np.array([i % 10, (3 * i) % 10, i % 3, i % 7], float) for i in range(8)}
    matched = {c: {"video": v, "audio": text([descriptor_prompt(v)])} for c, v in idx.items()}
    s = m.score_set(matched, None, seed=0)
    assert s.value == 1.0 and s.extra["chance_recall@1"] == 1 / 8 and s.extra["median_rank"] == 1.0
    ids = sorted(idx)
    shuffled = {c: {"video": idx[c], "audio": matched[ids[(k + 1) % 8]]["audio"]} for k, c in enumerate(ids)}
    t = m.score_set(shuffled, None, seed=0)
    assert t.value < s.value and t.extra["median_rank"] > 1 and set(t.per_clip) == set(ids)


def test_clip_text_and_descriptors_wiring_on_random_weights(tmp_path):
    import open_clip
    import torch

    from metrics.backbones.clip import ClipVisual
    from metrics.backbones.clip_text import ClipTextEncoder

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    torch.save(model.state_dict(), tmp_path / "open_clip_pytorch_model.bin")
    enc = ClipTextEncoder(tmp_path)
    prompts = ["a calm video", "a fast-paced video"]
    with torch.inference_mode():
        ref = torch.nn.functional.normalize(model.encode_text(open_clip.get_tokenizer("ViT-B-32")(prompts)), dim=-1)
    np.testing.assert_allclose(enc(prompts), ref.numpy(), rtol=1e-5, atol=1e-6)
    d = VideoDescriptors(ClipVisual(tmp_path), enc)
    frames = np.random.default_rng(0).integers(0, 255, (2, 96, 128, 3), dtype=np.uint8)
    a, b = d(frames, 1.0), d(frames, 1.0)
    assert a.shape == (4,) and np.array_equal(a, b)
    assert all(0 <= int(i) < len(VOCABULARY[c]) for c, i in zip(CATEGORIES, a))
    assert d.info.backbone["name"] == "clip-vit-b-32" and d.info.params["text_backbone"]["file"] == tmp_path.joinpath(
        "open_clip_pytorch_model.bin").name
