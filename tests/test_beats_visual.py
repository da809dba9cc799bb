"""Music and video event extractors (metrics/beats.py, metrics/visual_change.py) on the demo's known events.

The beat and onset accuracy on the demo music is tested in tests/test_alignment.py (which extracts them for
its clips anyway); here: the music extractors' identity and input checks, and every video extractor.
Tolerance for visual events: +-1 frame at 25 fps (+-40 ms).
Truths: SceneCuts must find the demo's hard cuts (flashes are not cuts); FrameDiffChanges is built to find
abrupt global changes, i.e. hard cuts and flash onsets (first flash frame), and to ignore object motion.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import vm_eval  # noqa: F401  (compat hook before madmom / torchvision)
from metrics.beats import BeatTimes, OnsetTimes
from metrics.events import f_measure, precision_recall_f
from metrics.visual_change import (ClipPatchChanges, FlowPeaks, FrameDiffChanges, SceneCuts, flow_magnitude_curve,
                                   patch_change_curve, pick_events)
from vm_eval.data.demo import FPS, load_ground_truth
from vm_eval.media import decode_frames

FRAME = 1.0 / FPS  # s: +-1 frame tolerance for visual events


@pytest.fixture(scope="module")
def demo(data_dir):
    root = data_dir / "demo"
    return root, load_ground_truth(root)


@pytest.fixture(scope="module")
def frames(demo):
    """Every demo video at 25 frames/s, 128 x 128 px (the visual extractors' info), decoded on 2 threads."""
    root, truth = demo
    ids = sorted(truth)
    with ThreadPoolExecutor(2) as pool:
        arrays = pool.map(lambda cid: decode_frames(root / "videos" / f"{cid}.mp4", FPS, (128, 128)), ids)
        return dict(zip(ids, arrays))


@pytest.fixture(scope="module")
def framediff_events(frames) -> dict[str, np.ndarray]:
    det = FrameDiffChanges()
    return {cid: det(f, FPS) for cid, f in frames.items()}


# ------------------------------------------------------------------------------------------ music
# (accuracy of BeatTimes / OnsetTimes on the demo music: tests/test_alignment.py, which extracts them anyway)
def test_music_extractor_identity_and_input_checks():
    bt, on = BeatTimes(), OnsetTimes()
    assert (bt.info.sample_rate, bt.info.mono, on.info.sample_rate, on.info.mono) == (44100, True, 44100, True)
    assert bt.info.params["fps"] == 100 and bt.info.params["min_bpm"] == 55.0 and bt.info.params["max_bpm"] == 215.0
    assert on.info.params["threshold"] == 0.35 and on.info.params["combine_s"] == 0.03
    assert BeatTimes(max_bpm=180).info != bt.info  # parameters are part of the identity
    with pytest.raises(ValueError, match="44100"):
        bt(np.zeros((1, 32000), np.float32), 32000)
    assert bt(np.zeros((1, 100), np.float32), 44100).size == 0  # too short to track


# ------------------------------------------------------------------------------------------ video: cuts, changes
def _mean_f(detector, frames, truth, events) -> tuple[float, dict]:
    per = {cid: f_measure(events(truth[cid]), detector(frames[cid], FPS), FRAME) for cid in frames}
    return float(np.mean(list(per.values()))), per


def test_framediff_finds_cuts_and_flash_onsets(framediff_events, demo):
    _, truth = demo
    per = {cid: f_measure(truth[cid].cut_times + truth[cid].flash_times, e, FRAME) for cid, e in framediff_events.items()}
    mean = float(np.mean(list(per.values())))
    print(f"\nFrameDiffChanges F (+-1 frame) vs cuts + flash onsets: mean {mean:.3f}, min {min(per.values()):.3f}")
    assert mean >= 0.9


def test_framediff_ignores_motion_bursts(framediff_events, demo):
    """No event inside a motion burst (objects jittering ~7 px/frame) unless a cut or flash is there."""
    _, truth = demo
    stray = 0
    for cid, t in truth.items():
        events = framediff_events[cid]
        known = np.array(t.cut_times + t.flash_times)
        for a, b in t.motion_bursts:
            inside = events[(events >= a) & (events < b)]
            stray += sum(np.min(np.abs(known - e)) > FRAME + 1e-9 for e in inside)
    assert stray == 0


@pytest.mark.parametrize("detector", ["adaptive", "content"])
def test_scene_cuts_find_the_hard_cuts(frames, demo, detector):
    _, truth = demo
    subset = frames if detector == "adaptive" else {k: v for i, (k, v) in enumerate(sorted(frames.items())) if i % 2 == 0}
    mean, per = _mean_f(SceneCuts(detector), subset, truth, lambda t: t.cut_times)
    print(f"\nSceneCuts({detector}) F (+-1 frame) vs cuts on {len(subset)} clips: mean {mean:.3f}")
    assert mean >= 0.9


def test_scene_cuts_flash_filter_is_what_rejects_flashes(frames, demo):
    """PySceneDetect alone reports every flash as a cut (precision ~0.6 on the demo); the flash filter drops
    exactly those."""
    _, truth = demo
    det = SceneCuts("adaptive")
    raw_f, kept_flash = [], 0
    for cid in sorted(frames)[:8]:
        raw = det.cut_frames(frames[cid]) / FPS
        raw_f.append(f_measure(truth[cid].cut_times, raw, FRAME))
        assert all(np.min(np.abs(raw - fl)) <= FRAME for fl in truth[cid].flash_times)  # flashes were reported
        filtered = det(frames[cid], FPS)
        kept_flash += sum(np.min(np.abs(filtered - fl)) <= FRAME for fl in truth[cid].flash_times if filtered.size)
    assert np.mean(raw_f) < 0.85 and kept_flash == 0


def test_visual_extractors_declare_their_inputs():
    for det in (FrameDiffChanges(), SceneCuts(), SceneCuts("content"), FlowPeaks(), FlowPeaks(peaks="adaptive")):
        assert det.info.fps == 25.0 and det.info.size == (128, 128) and det.info.version == 1
        with pytest.raises(ValueError):
            det(np.zeros((4, 16, 16, 3), np.uint8), 30.0)  # wrong rate
    assert SceneCuts().info.params["threshold"] == 3.0 and SceneCuts("content").info.params["threshold"] == 27.0
    with pytest.raises(ValueError):
        FrameDiffChanges()(np.zeros((4, 16, 16, 3), np.float32), 25.0)  # not uint8


def test_pick_events_golden():
    c = np.zeros(50)
    c[[10, 11, 13, 30]] = [0.9, 0.8, 0.9, 0.5]  # a run 10-11 (one event), a rebound 3 frames later, one at 30
    assert pick_events(c, 25.0, floor=0.3, min_gap_s=0.12).tolist() == [10, 13, 30]  # gap 3 frames: kept
    assert pick_events(c, 25.0, floor=0.3, min_gap_s=0.16).tolist() == [10, 30]  # 4-frame gap: the first wins
    assert pick_events(c, 25.0, floor=0.6, min_gap_s=0.16).tolist() == [10]  # 0.5 is under the floor
    assert pick_events(np.ones(20), 25.0, floor=0.3).tolist() == [1]  # one run from t = 1 (start)


# ------------------------------------------------------------------------------------------ video: CLIP patches, flow
def test_patch_change_curve_golden():
    f = np.array([[[1, 0], [0, 1]], [[1, 0], [0, 1]], [[0, 1], [0, 1]]], dtype=float)  # [T=3, P=2, D=2]
    assert patch_change_curve(f).tolist() == pytest.approx([1.0, 0.0, 0.5])  # d_0 = 1; patch 0 turns 90 deg
    # per-patch mean, not the flattened cosine: a big unchanged patch must not hide a small patch that turned
    g = np.array([[[10, 0], [1, 0]], [[10, 0], [0, 1]]], dtype=float)
    assert patch_change_curve(g)[1] == pytest.approx(0.5)
    flat = 1 - g[0].ravel() @ g[1].ravel() / (np.linalg.norm(g[0]) * np.linalg.norm(g[1]))
    assert flat < 0.01
    assert patch_change_curve(np.ones((1, 4, 8))).tolist() == [1.0]
    with pytest.raises(ValueError):
        patch_change_curve(np.ones((3, 8)))


def test_clip_patch_changes_wiring_with_untrained_vit(frames, demo):
    """Wiring only: an untrained open_clip ViT-B-32's patch tokens through ClipPatchChanges; a hard cut must
    still be the largest change of an 8-frame window and be the one event reported."""
    import cv2
    import open_clip
    import torch

    _, truth = demo
    torch.manual_seed(0)
    model, _, _ = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    model.eval()
    model.visual.output_tokens = True
    mean, std = np.array([0.48145466, 0.4578275, 0.40821073]), np.array([0.26862954, 0.26130258, 0.27577711])

    memo: dict[bytes, np.ndarray] = {}

    def encode(batch: np.ndarray) -> np.ndarray:  # patch tokens [T, 49, 768]; memoised (CPU ViT is slow)
        key = batch.tobytes()
        if key not in memo:
            x = (batch.astype(np.float32) / 255.0 - mean) / std
            with torch.no_grad():
                _, tokens = model.visual(torch.from_numpy(x.transpose(0, 3, 1, 2)).float())
            memo[key] = tokens.numpy()
        return memo[key]

    cid = "demo-000"
    cut = round(truth[cid].cut_times[0] * FPS)
    window = np.stack([cv2.resize(f, (224, 224), interpolation=cv2.INTER_CUBIC) for f in frames[cid][cut - 4 : cut + 4]])
    det = ClipPatchChanges(encode, backbone={"name": "open_clip ViT-B-32 (untrained)", "file": None, "sha256": None})
    d = det.curve(window)
    assert d.shape == (8,) and d[0] == 1.0 and int(np.argmax(d[1:])) + 1 == 4
    assert d[4] > 10 * np.delete(d[1:], 3).max()  # the cut stands far above frame-to-frame drift
    assert det(window, FPS).tolist() == pytest.approx([4 / FPS])
    assert len(memo) == 1 and next(iter(memo.values())).shape == (8, 49, 768)
    assert det.info.backbone["name"].startswith("open_clip") and det.info.size == (224, 224)


def test_flow_peaks(frames, demo):
    """Adaptive flow peaks catch every cut; the reference local-maximum rule fires several times a second on
    sub-pixel drift. The curve is computed once and both rules read it (checked against __call__ on a slice)."""
    _, truth = demo
    cid = "demo-002"
    curve = flow_magnitude_curve(frames[cid])
    adaptive, local = FlowPeaks(peaks="adaptive"), FlowPeaks()
    pa, pl = adaptive.peaks_from_curve(curve), local.peaks_from_curve(curve)
    dur = truth[cid].duration_s
    _, recall, _ = precision_recall_f(truth[cid].cut_times, pa, FRAME)
    assert recall == 1.0
    assert pl.size / dur > 3.0 and pa.size / dur < 2.0
    part = frames[cid][:30]
    assert np.array_equal(local(part, FPS), local.peaks_from_curve(flow_magnitude_curve(part)))
