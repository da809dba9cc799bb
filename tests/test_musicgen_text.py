"""musicgen-text baseline (tiny random MusicGen + tiny random T5 + a SentencePiece tokenizer trained here, CPU):
exact-length 32 kHz output, per-clip seeding independent of batch mates, prompt selection (caption / CLIP
descriptors / template), the upstream text path (T5 -> output_proj -> mask zeroing) by hand, CFG null rows, weight
errors naming the missing file, and the demo's tiny_random constructor."""
from __future__ import annotations

import vm_eval  # noqa: F401  compat hook first (audiocraft on a CPU machine)

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from baselines import musicgen_text as mt
from metrics.base import ExtractorInfo
from metrics.semantic import descriptor_prompt
from vm_eval.models.api import NotApplicable, clip_seed
from vm_eval.weights import WeightsMissing

pytestmark = pytest.mark.usefixtures("one_blas_thread")
CORPUS = ["happy energetic electronic music with drums", "calm ambient music with piano, slow tempo",
          "sad orchestral music with strings", "upbeat promo with drums and bass", "a car commercial at night",
          "epic cinematic brass", "playful folk music with acoustic guitar, fast tempo"]


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """A tiny random backbone (with an output projection in its conditioner state) and a tiny random T5 whose
    tokenizer is trained here, both in upstream file layouts."""
    root = tmp_path_factory.mktemp("mgt-weights")
    return mt.write_random_parts(root, seed=0, t5=dict(d_model=24, d_ff=48, d_kv=12), lines=CORPUS)


class FakeDescriptors:
    """A video extractor like metrics.semantic.VideoDescriptors: fixed descriptor indices, counts its calls."""

    def __init__(self, indices=(1, 2, 0, 3)):
        self.indices = np.array(indices, float)
        self.calls = 0
        self.info = ExtractorInfo(name="fake-descriptors", version=1, fps=1.0)

    def __call__(self, frames, fps):
        self.calls += 1
        return self.indices


@pytest.fixture(scope="module")
def model(parts):
    bb, t5 = parts
    return mt.MusicGenText(backbone=bb, t5=t5, descriptors=FakeDescriptors(), window_s=0.3)


def _clip(tmp_path, cid, duration=0.2, caption=None, run_seed=0):
    video = tmp_path / f"{cid}.mp4"
    video.write_bytes(cid.encode())  # only hashed for the descriptor cache key
    return SimpleNamespace(id=cid, seed=clip_seed(run_seed, cid), duration_s=duration, caption=caption,
                           category="promo", cache_root=tmp_path / "cache", video_path=video,
                           clip=SimpleNamespace(start=0.0, end=duration),
                           frames=lambda fps, size=None: np.zeros((2, 8, 8, 3), np.uint8))


# ------------------------------------------------------------------------------------------------ output
def test_output_length_rate_and_prompt_record(model, tmp_path):
    clips = [_clip(tmp_path, "a", 0.3, "happy pop"), _clip(tmp_path, "b", 0.43, "calm ambient piano"),
             _clip(tmp_path, "c", 0.5, "epic brass")]  # c: longer than the 0.3 s window -> sliding windows
    outs = model.generate(clips)
    for clip, (wav, sr) in zip(clips, outs):
        assert sr == 32000 and wav.dtype == np.float32
        assert wav.shape == (1, round(clip.duration_s * 32000)) and np.isfinite(wav).all()
    assert model.prompts["b"]["prompt"] == "calm ambient piano" and model.prompts["b"]["source"] == "caption"
    assert model.info.family == "baseline" and model.info.trained is False  # random backbone flagged
    assert model.gen.top_k == 250 and model.gen.top_p == 0.0 and model.gen.cfg_coef == 3.0


def test_seed_determinism_and_batch_independence(model, tmp_path):
    a, a2 = _clip(tmp_path, "a", caption="happy pop"), _clip(tmp_path, "a2", caption="happy pop")  # one LM batch
    b = _clip(tmp_path, "b", caption="calm ambient music with piano, slow tempo")  # another prompt length
    together = model.generate([a, b, a2])
    alone = [model.generate([c])[0] for c in (a, b, a2)]
    for (x, _), (y, _) in zip(together, alone):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(together[0][0], together[2][0])  # same prompt, other seed
    other = _clip(tmp_path, "a", caption="happy pop", run_seed=1)
    assert not np.array_equal(model.generate([other])[0][0], alone[0][0])


def test_sliding_window_output_is_deterministic(model, tmp_path):
    c = _clip(tmp_path, "long", 0.5, "epic brass")
    np.testing.assert_array_equal(model.generate([c])[0][0], model.generate([c])[0][0])


# ------------------------------------------------------------------------------------------------ prompts
def test_prompt_selection(model, parts, tmp_path):
    desc = FakeDescriptors()
    bb, t5 = parts
    want_desc = descriptor_prompt(desc.indices)
    with_cap, without = _clip(tmp_path, "cap", caption="funky bass"), _clip(tmp_path, "nocap")

    def build(**kw):
        return mt.MusicGenText(backbone=bb, t5=t5, descriptors=desc, **kw)

    auto = build(prompt="auto")
    assert auto.prompt_for(with_cap) == ("funky bass", "caption")
    assert auto.prompt_for(without) == (want_desc, "descriptors")
    assert desc.calls == 1
    assert auto.prompt_for(without)[0] == want_desc and desc.calls == 1  # cached, under the metrics' key
    assert build(prompt="descriptors").prompt_for(with_cap) == (want_desc, "descriptors")
    cap = build(prompt="caption")
    assert not cap.uses_descriptors and not any(i["name"].startswith("descriptors:") for i in cap.checkpoints())
    with pytest.raises(NotApplicable, match="no caption"):
        cap.prompt_for(without)
    out = cap.generate([without, with_cap])
    assert isinstance(out[0], NotApplicable) and out[1][0].shape == (1, round(0.2 * 32000))
    tpl = build(prompt="auto", template="{prompt}, lo-fi {category}")
    assert tpl.prompt_for(with_cap) == ("funky bass, lo-fi promo", "template")
    assert tpl.prompt_for(without) == (f"{want_desc}, lo-fi promo", "template")
    fixed = build(prompt="caption", template="solo piano")
    assert fixed.prompt_for(without) == ("solo piano", "template") and not fixed.uses_descriptors
    with pytest.raises(ValueError, match="unknown"):
        build(template="{mood}")
    with pytest.raises(ValueError, match="prompt must be"):
        build(prompt="video")


# ------------------------------------------------------------------------------------------------ conditioning
def test_text_condition_matches_hand_computation(model, parts):
    from transformers import T5Tokenizer

    from vidmusician.backbone import LM_FILE

    bb, t5_dir = parts
    text = model.model.text
    state = torch.load(bb / LM_FILE, map_location="cpu", weights_only=False)["best_state"]
    w, b = state[mt.OUTPUT_PROJ + "weight"], state[mt.OUTPUT_PROJ + "bias"]
    assert w.shape == (64, 24)  # T5 d_model -> LM width, as upstream's 768 -> dim
    assert torch.equal(text.output_proj.weight, w) and torch.equal(text.output_proj.bias, b)
    prompts = ["happy pop", "calm ambient music with piano, slow tempo", ""]
    tok = T5Tokenizer.from_pretrained(str(t5_dir))(prompts, padding=True, return_tensors="pt")
    ids, mask = tok["input_ids"], tok["attention_mask"].clone()
    mask[2] = 0  # the empty description: masked out entirely
    assert ids[0, (mask[0] == 1).sum() - 1] == 1  # </s> closes each prompt
    with torch.no_grad():
        hidden = text.t5(input_ids=ids, attention_mask=mask).last_hidden_state
        want = (hidden @ w.T + b) * mask.unsqueeze(-1)
        got, got_mask = text.encode(prompts)
        assert torch.equal(got_mask, mask)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        assert torch.all(got[2] == 0) and torch.all(got[0, mask[0] == 0] == 0)
        # the sampling loop's condition: each prompt alone, padded with zeros / mask 0 -> the same numbers
        cond, cmask = model.model.condition(prompts)
        assert torch.equal(cmask, mask)
        torch.testing.assert_close(cond, want, rtol=1e-5, atol=1e-6)
        # truncation at MAX_TEXT_TOKENS
        long_ids = text.tokenize(["piano " * 600])["input_ids"]
        assert long_ids.shape[1] == mt.MAX_TEXT_TOKENS and long_ids[0, -1] == 1


def test_prompt_changes_condition(model):
    with torch.no_grad():
        a, _ = model.model.condition(["happy pop music"])
        b, _ = model.model.condition(["sad jazz music"])
        c, _ = model.model.condition(["happy pop music"])
    assert torch.equal(a, c) and a.shape[:2] == (1, model.model.text.n_tokens("happy pop music"))
    n = min(a.shape[1], b.shape[1])
    assert (a[:, :n] - b[:, :n]).abs().max() > 1e-3


def test_cfg_null_rows_are_zeros_with_mask_zero(model, monkeypatch):
    from vidmusician.generate import CrossConditioning, generate_codes

    tm = model.model
    assert isinstance(tm, CrossConditioning)
    null, null_mask = tm.null_condition(2, 5)
    assert null.shape == (2, 5, 64) and torch.all(null == 0) and torch.all(null_mask == 0)
    from vidmusician.decoder import MusicGenDecoder

    seen, steps = [], []
    real_source, real_step = MusicGenDecoder.cross_source, MusicGenDecoder.step

    def spy_source(self, condition_tensors):
        seen.append(condition_tensors["description"])
        return real_source(self, condition_tensors)

    def spy_step(self, tokens, all_logits=False):
        steps.append(tokens.shape[0])
        return real_step(self, tokens, all_logits)

    monkeypatch.setattr(MusicGenDecoder, "cross_source", spy_source)
    monkeypatch.setattr(MusicGenDecoder, "step", spy_step)
    prompts = ["happy pop", "sad jazz"]
    generate_codes(tm, prompts, 6, [1, 2], model.gen)
    assert len(seen) == 1  # the condition enters once per window
    src, mask = seen[0]
    assert src.shape[0] == 4 and steps and all(n == 4 for n in steps)  # [cond rows; null rows], every step
    with torch.no_grad():
        cond, cmask = tm.condition(prompts)
    torch.testing.assert_close(src[:2], cond)
    assert torch.equal(mask[:2], cmask)
    assert torch.all(src[2:] == 0) and torch.all(mask[2:] == 0)
    # the same as the empty / None description through the text path (audiocraft's CFG dropout + T5 conditioner)
    with torch.no_grad():
        dropped, dropped_mask = tm.text.encode([None, None])
    assert torch.all(dropped == 0) and torch.all(dropped_mask == 0)


# ------------------------------------------------------------------------------------------------ weights
def test_missing_weights_name_the_file(parts, tmp_path, monkeypatch):
    from vidmusician.backbone import COMPRESSION_FILE, LM_FILE

    bb, t5 = parts
    monkeypatch.setenv("VM_EVAL_WEIGHTS", str(tmp_path / "empty"))
    for var in ("VM_EVAL_WEIGHT_MUSICGEN_SMALL", "VM_EVAL_WEIGHT_T5_BASE", "VM_EVAL_WEIGHT_CLIP_VIT_B_32"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(WeightsMissing, match=r"musicgen-small.*state_dict\.bin.*huggingface-cli download "
                                             r"facebook/musicgen-small"):
        mt.MusicGenText(scale="small", t5=t5, prompt="caption")
    half = tmp_path / "half"
    half.mkdir()
    (half / LM_FILE).write_bytes(b"x")
    with pytest.raises(WeightsMissing, match=COMPRESSION_FILE):
        mt.MusicGenText(backbone=half, t5=t5, prompt="caption")
    no_spm = tmp_path / "t5-no-spm"
    no_spm.mkdir()
    for f in ("config.json", "model.safetensors"):
        (no_spm / f).write_bytes((t5 / f).read_bytes())
    with pytest.raises(WeightsMissing, match=r"spiece\.model.*google-t5/t5-base"):
        mt.MusicGenText(backbone=bb, t5=no_spm, prompt="caption")
    with pytest.raises(WeightsMissing, match=r"t5-base.*spiece\.model"):
        mt.MusicGenText(backbone=bb, prompt="caption")  # t5-base from the registry: absent here
    with pytest.raises(WeightsMissing, match=r"open_clip_pytorch_model\.bin"):
        mt.MusicGenText(backbone=bb, t5=t5, prompt="auto")  # descriptors need CLIP: named before loading
    with pytest.raises(WeightsMissing, match=r"open_clip_pytorch_model\.bin"):
        mt.MusicGenText(backbone=bb, t5=t5, prompt="auto", clip=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="scale must be"):
        mt.MusicGenText(scale="tiny", t5=t5, prompt="caption")


def test_checkpoints_name_every_part(parts, tmp_path):
    bb, t5 = parts
    clip = tmp_path / mt.CLIP_FILE
    clip.write_bytes(b"not loaded until a clip needs descriptors")
    m = mt.MusicGenText(backbone=bb, t5=t5, clip=clip)
    ids = {i["name"].split(":")[0]: i for i in m.checkpoints()}
    assert set(ids) == {"backbone", "encodec", "t5", "tokenizer", "clip"}
    assert ids["tokenizer"]["path"].endswith("spiece.model") and ids["clip"]["path"] == str(clip)
    assert all(len(i["sha256"]) == 64 for i in ids.values())
    assert ids["backbone"].get("random") and not ids["clip"].get("random")


def test_tiny_random_writes_once_and_runs(tmp_path):
    results = tmp_path / "results"
    m = mt.tiny_random(results=results)
    assert m.info.name == "musicgen-text-tiny-random" and m.info.trained is False
    folder = results / "random-weights" / mt.TINY_DIR
    assert {p.name for p in folder.iterdir()} == {"musicgen-tiny-random-s0", "t5-random-s1"}
    again = mt.tiny_random(results=results)
    assert again.checkpoints() == m.checkpoints()
    out = m.generate([_clip(tmp_path, "x", 0.2, "upbeat promo music with drums"), _clip(tmp_path, "y", 0.2)])
    assert out[0][0].shape == (1, 6400) and isinstance(out[1], NotApplicable)
