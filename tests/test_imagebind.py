"""ImageBind score: our extraction + pooling + cosine against ImageBind's own code and av-benchmark's pipeline.

A tiny `imagebind.models.imagebind_model.ImageBindModel` (all six towers, one block each, seeded random weights
perturbed so every parameter matters) is saved as the published checkpoint is, a plain state dict, under the
upstream file name `imagebind_huge.pth` in a temporary weights folder; `vm_eval.weights.require` finds it and our
`ImageBind` loads it (`model_kwargs` names the tiny shape; the registered metric builds `imagebind_huge()`).

Upstream references, run on the same inputs:
- audio: ImageBind's own `imagebind.data.load_and_transform_audio_data` on a WAV file of the signal (the code
  av-benchmark's `ImageBindAudioDataset` carries), then the upstream model's `forward` on the [1, 3, ...] batch;
- video: av-benchmark's extraction assembled from its parts: FFmpeg's `fps=0.5` filter (what torio's
  `add_basic_video_stream(frame_rate=0.5)` inserts) through PyAV, `int(0.5 x duration)` frames, the torchvision v2
  transform of `VideoDataset`, `imagebind.data.SpatialCrop(224, 3)`, consecutive frame pairs as in
  `encode_video_with_imagebind`, and the upstream `forward` on the [1, views, 3, 2, 224, 224] batch;
- the score: `torch.cosine_similarity(video, audio, dim=-1)` as `av_bench/evaluate.py` computes IB-Score.
Relative error = max |ours - upstream| / max |upstream|.
"""
from __future__ import annotations

import inspect
from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchaudio")
pytest.importorskip("pytorchvideo")
pytest.importorskip("imagebind")
av = pytest.importorskip("av")
sf = pytest.importorskip("soundfile")

from backbone_helpers import isolate_weights, max_rel  # noqa: E402
from metrics.backbones import checkpoint_identity  # noqa: E402
from metrics.backbones import imagebind as IB  # noqa: E402
from metrics.base import ClipContext, DoesNotApply, ExtractorInfo, MetricError  # noqa: E402
from metrics.imagebind_score import ImageBindScore, imagebind_cosine  # noqa: E402

RTOL = 1e-5
NAME = "imagebind-huge"
FILE = "imagebind_huge.pth"
TINY = dict(vision_embed_dim=32, vision_num_blocks=1, vision_num_heads=2, audio_embed_dim=32, audio_num_blocks=1,
            audio_num_heads=2, text_embed_dim=32, text_num_blocks=1, text_num_heads=2, depth_embed_dim=16,
            depth_num_blocks=1, depth_num_heads=2, thermal_embed_dim=16, thermal_num_blocks=1, thermal_num_heads=2,
            imu_embed_dim=16, imu_num_blocks=1, imu_num_heads=2, out_embed_dim=24)
CTX = ClipContext(clip_id="c", duration_s=7.0)
SAVED: dict = {}


def upstream_modules():
    from imagebind import data
    from imagebind.models import imagebind_model

    return imagebind_model, data


# ------------------------------------------------------------------------------------------------ media
def music(seconds: float, sr: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    tone = 0.3 * np.sin(2 * np.pi * 330.0 * t) * (1 + np.sin(2 * np.pi * 0.7 * t))
    chans = [tone * (1 - 0.4 * c) + 0.05 * rng.standard_normal(t.size) + 0.01 for c in range(channels)]
    return np.stack(chans).astype(np.float32)


def write_video(path, rate: Fraction, seconds: float, w: int, h: int) -> None:
    """Lossless (FFV1) moving gradients with noise, so decoded frames can be compared exactly."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=rate)
        s.width, s.height, s.pix_fmt = w, h, "bgr0"
        for i in range(int(round(seconds * float(rate)))):
            img = np.stack([xx + 0.01 * i, yy, 0.5 + 0.5 * np.sin(9 * xx + 0.1 * i)], -1) * 200
            img = np.clip(img + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def all_frames(path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def ffmpeg_fps_frames(path, seconds: float) -> np.ndarray:
    """av-benchmark's frames: FFmpeg's fps=0.5 filter (default rounding), the first int(0.5 x duration)."""
    out = []
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        g = av.filter.Graph()
        chain = [g.add_buffer(template=stream), g.add("fps", "fps=0.5"), g.add("format", "pix_fmts=rgb24"),
                 g.add("buffersink")]
        for a, b in zip(chain, chain[1:]):
            a.link_to(b)
        g.configure()
        for frame in [*c.decode(stream), None]:
            g.push(frame)
            while True:
                try:
                    out.append(g.pull().to_ndarray())
                except (av.BlockingIOError, av.EOFError):
                    break
    return np.stack(out[:int(IB.UPSTREAM_FPS * seconds)])


def av_benchmark_views(frames: np.ndarray):
    """[1, 3 x (T - 1), 3, 2, 224, 224]: VideoDataset's transform + crops, encode_video_with_imagebind's pairs."""
    from torchvision.transforms import v2

    _, data = upstream_modules()
    transform = v2.Compose([v2.Resize(224, interpolation=v2.InterpolationMode.BICUBIC), v2.ToImage(),
                            v2.ToDtype(torch.float32, scale=True),
                            v2.Normalize(mean=[0.48145466, 0.4578275, 0.40821073],
                                         std=[0.26862954, 0.26130258, 0.27577711])])
    x = transform(torch.from_numpy(frames).permute(0, 3, 1, 2))
    x = torch.stack(data.SpatialCrop(224, 3)([x]))[None]  # [B=1, crops, T, C, H, W]
    clips = torch.cat([x[:, :, i:i + 2] for i in range(x.shape[2] - 1)], dim=1)
    return clips.permute(0, 1, 3, 2, 4, 5)  # b n t c h w -> b n c t h w


# ------------------------------------------------------------------------------------------------ fixtures
NTSC_S = 7.0  # 29.97 fps landscape: 3 frames at 0.5 fps, 2 pairs x 3 crops = 6 views


@pytest.fixture(scope="module")
def ntsc(env):
    path = env / "ntsc.mkv"
    write_video(path, Fraction(30000, 1001), NTSC_S, 160, 120)
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    imagebind_model, _ = upstream_modules()
    tmp = tmp_path_factory.mktemp("imagebind")
    mp = pytest.MonkeyPatch()
    isolate_weights(mp, tmp)
    torch.manual_seed(0)
    ref = imagebind_model.ImageBindModel(**TINY)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.02 * torch.randn_like(p))
    folder = tmp / "weights" / NAME
    folder.mkdir(parents=True)
    torch.save(ref.state_dict(), folder / FILE)
    SAVED["ref"] = ref.eval()
    yield tmp
    mp.undo()


@pytest.fixture(scope="module")
def upstream(env):
    return SAVED["ref"]


@pytest.fixture(scope="module")
def ours(env):
    from vm_eval.weights import require

    return IB.ImageBind(require(NAME), device="cpu", batch_size=4, model_kwargs=TINY)


def up_embed(model, modality: str, x) -> np.ndarray:
    with torch.inference_mode():
        return model({modality: x})[modality].numpy()[0]


# ---------------------------------------------------------------------------------------------- audio
def test_audio_constants_are_imagebinds_defaults():
    _, data = upstream_modules()
    d = {k: p.default for k, p in inspect.signature(data.load_and_transform_audio_data).parameters.items()}
    assert (d["num_mel_bins"], d["target_length"], d["sample_rate"], d["clip_duration"], d["clips_per_video"],
            d["mean"], d["std"]) == (IB.NUM_MEL_BINS, IB.TARGET_LENGTH, IB.SAMPLE_RATE, IB.CLIP_DURATION_S,
                                     IB.CLIPS_PER_VIDEO, IB.MEL_MEAN, IB.MEL_STD)


@pytest.mark.parametrize("seconds, sr, channels", [
    (7.0, 44_100, 2),  # resampled; three disjoint clips
    (4.0, 48_000, 2),  # overlapping clips: upstream's in-place mean removal carries over, ours too
    (1.5, 16_000, 1),  # no resampling; shorter than a clip: fbanks zero-padded to 204 frames
])
def test_audio_matches_imagebind_pipeline(env, ours, upstream, seconds, sr, channels):
    _, data = upstream_modules()
    audio = music(seconds, sr, channels, seed=int(seconds * 10))
    wav = env / f"a{seconds}.wav"
    sf.write(wav, audio.T, sr, subtype="FLOAT")
    ref_in = data.load_and_transform_audio_data([str(wav)], "cpu")  # [1, 3, 1, 128, 204]
    assert torch.equal(ours.audio_views(audio, sr), ref_in[0])  # bit for bit
    ref = up_embed(upstream, "audio", ref_in)
    mine = IB.ImageBindAudio(ours)(audio, sr)
    assert mine.shape == (3, TINY["out_embed_dim"])
    np.testing.assert_allclose(np.linalg.norm(mine, axis=1), 20.0, rtol=1e-5)  # ImageBind's audio logit scale
    err = max_rel(mine.mean(axis=0), ref)
    print(f"imagebind audio {seconds} s {sr} Hz x{channels}: max relative error {err:.2e}")
    assert err < RTOL


def test_stereo_is_heard_through_the_left_channel(ours):
    """Upstream's Kaldi fbank reads channel 0 of what torchaudio.load gives; the right channel only enters the
    clip mean that is subtracted first, a constant the fbank's per-frame DC removal takes out again (up to float
    rounding)."""
    rng = np.random.default_rng(6)
    tone = music(6.0, 44_100, 1, seed=5)[0]
    noise_a, noise_b = (0.3 * rng.standard_normal((2, tone.size))).astype(np.float32)
    audio = np.stack([tone, noise_a])
    left = ours.audio_embeddings(audio, 44_100)
    same = max_rel(ours.audio_embeddings(np.stack([tone, noise_b]), 44_100), left)  # another right channel
    swapped = max_rel(ours.audio_embeddings(audio[::-1], 44_100), left)  # the noise on the left
    print(f"right channel replaced: {same:.1e}; channels swapped: {swapped:.1e}")
    assert same < 1e-3 and swapped > 0.1


def test_audio_input_is_not_modified(ours):
    audio = music(3.0, 16_000, 1, seed=7)  # 16 kHz: no resampling copy, the in-place mean removal would reach it
    before = audio.copy()
    ours.audio_embeddings(audio, 16_000)
    np.testing.assert_array_equal(audio, before)


def test_empty_audio_is_refused(ours):
    with pytest.raises(MetricError):
        ours.audio_embeddings(np.zeros((2, 0), np.float32), 44_100)
    with pytest.raises(MetricError, match="25 ms"):
        ours.audio_embeddings(np.zeros((1, 100), np.float32), 16_000)


# ---------------------------------------------------------------------------------------------- video
def test_video_matches_av_benchmark_pipeline(ntsc, ours, upstream):
    """29.97 fps landscape: the frames we are given at 1, 3, 5 s are exactly FFmpeg fps=0.5's."""
    from vm_eval.media.video import decode_frames

    ref_frames = ffmpeg_fps_frames(ntsc, NTSC_S)
    frames = decode_frames(ntsc, IB.DECODE_FPS)  # what the harness hands the extractor
    np.testing.assert_array_equal(frames[1::2], ref_frames)
    ref = up_embed(upstream, "vision", av_benchmark_views(ref_frames))
    extractor = IB.ImageBindVideo(ours)
    mine = extractor(frames, IB.DECODE_FPS)
    assert mine.shape == (3 * (len(ref_frames) - 1), TINY["out_embed_dim"]) == (6, 24)
    np.testing.assert_allclose(np.linalg.norm(mine, axis=1), 1.0, rtol=1e-5)
    err = max_rel(mine.mean(axis=0), ref)
    print(f"imagebind video 29.97 fps, {len(ref_frames)} frames, 6 views: max relative error {err:.2e}")
    assert err < RTOL


def test_integer_frame_rates_give_the_next_source_frame(env, ours, upstream):
    """25 fps portrait: FFmpeg keeps the frame before 2n+1 s, sample-and-hold the one at 2n+1 s (documented);
    given FFmpeg's frames, our views and embeddings (top/centre/bottom crops) equal av-benchmark's."""
    from vm_eval.media.video import decode_frames

    path, seconds = env / "pal.mkv", 6.0
    write_video(path, Fraction(25), seconds, 120, 200)
    every = all_frames(path)
    index = {frame.tobytes(): i for i, frame in enumerate(every)}
    ref_frames = ffmpeg_fps_frames(path, seconds)
    ours_frames = decode_frames(path, IB.DECODE_FPS)[1::2]
    assert [index[f.tobytes()] for f in ref_frames] == [24, 74, 124]
    assert [index[f.tobytes()] for f in ours_frames] == [25, 75, 125]
    held = np.repeat(ref_frames, 2, axis=0)  # FFmpeg's frames at the odd positions we read
    ref_views = av_benchmark_views(ref_frames)
    assert torch.equal(ours.video_views(held), ref_views[0])
    err = max_rel(ours.video_embeddings(held).mean(axis=0), up_embed(upstream, "vision", ref_views))
    assert err < RTOL


def test_short_video_is_skipped(ours):
    """av-benchmark's loader drops a video with fewer than two frames at 0.5 fps: the clip is not applicable."""
    frames = np.zeros((3, 64, 64, 3), np.uint8)  # 3 s at 1 fps: one frame at 0.5 fps, no pair
    with pytest.raises(DoesNotApply, match="4 s"):
        ours.video_embeddings(frames)
    with pytest.raises(ValueError):
        ours.video_embeddings(np.zeros((4, 64, 64), np.uint8))


# ---------------------------------------------------------------------------------------------- score
def test_score_is_av_benchmarks_cosine(env, ntsc, ours, upstream):
    from vm_eval.media.video import decode_frames

    _, data = upstream_modules()
    audio = music(NTSC_S, 44_100, 2, seed=11)
    wav = env / "score.wav"
    sf.write(wav, audio.T, 44_100, subtype="FLOAT")
    with torch.inference_mode():
        v = upstream({"vision": av_benchmark_views(ffmpeg_fps_frames(ntsc, NTSC_S))})["vision"]
        a = upstream({"audio": data.load_and_transform_audio_data([str(wav)], "cpu")})["audio"]
    ref = float(torch.cosine_similarity(v, a, dim=-1).mean())
    metric = ImageBindScore(IB.ImageBindAudio(ours), IB.ImageBindVideo(ours))
    feats = {"video": metric.inputs["video"](decode_frames(ntsc, IB.DECODE_FPS), IB.DECODE_FPS),
             "audio": metric.inputs["audio"](audio, 44_100)}
    value = metric.score_features(feats, CTX)
    print(f"imagebind-score ours {value:.7f} upstream {ref:.7f}")
    assert abs(value - ref) < 1e-5
    assert -1.0 <= value <= 1.0  # 0-1 scale, not x100


def test_cosine_pools_views_by_their_mean_then_compares():
    video = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # unit rows, as ImageBind's vision output
    audio = np.array([[20.0, 0.0, 0.0], [20.0, 0.0, 0.0], [0.0, 0.0, 20.0]])  # norm 20, as its audio output
    # means (0.5, 0.5, 0) and (40/3, 0, 20/3): cosine = 2 / sqrt(10); the mean of per-view cosines would be 0.2357
    assert imagebind_cosine(video, audio) == pytest.approx(2 / np.sqrt(10), rel=1e-12)
    assert imagebind_cosine(audio, audio) == pytest.approx(1.0)  # identical: 1.0, not 100
    assert imagebind_cosine(video, -video) == pytest.approx(-1.0)
    assert imagebind_cosine(video[:1], audio[2:]) == pytest.approx(0.0)
    stub = SimpleNamespace(info=ExtractorInfo("stub", 1))
    metric = ImageBindScore(stub, stub)  # the score itself needs no network
    assert metric.score_features({"video": video, "audio": audio}, CTX) == pytest.approx(2 / np.sqrt(10))


def test_metric_identity(env, ours):
    from vm_eval.media import RESAMPLER

    metric = ImageBindScore(IB.ImageBindAudio(ours), IB.ImageBindVideo(ours))
    info = metric.info
    assert (info.name, info.kind, info.higher_is_better) == ("imagebind-score", "clip", True)
    assert info.params["scale"] == "0-1" and "0-1" in info.units
    assert set(metric.inputs) == {"audio", "video"}
    backbone = checkpoint_identity(NAME, env / "weights" / NAME / FILE)
    assert info.backbone == backbone and backbone["file"] == FILE
    video, audio = metric.inputs["video"].info, metric.inputs["audio"].info
    assert (video.fps, video.size, video.backbone) == (IB.DECODE_FPS, None, backbone)
    assert (audio.sample_rate, audio.mono, audio.backbone) == (None, False, backbone)
    ident = info.identity(RESAMPLER, metric.inputs)
    assert ident["params"]["scale"] == "0-1" and ident["inputs"]["video"]["name"] == "imagebind-video"


# ---------------------------------------------------------------------------------------------- loading
def test_towers_other_than_vision_and_audio_are_dropped(ours):
    assert set(ours.model.modality_trunks) == set(IB.MODALITIES) == {"vision", "audio"}


def test_other_shapes_are_refused(env):
    with pytest.raises(ValueError, match=FILE):
        IB.ImageBind(env / "weights" / NAME, device="cpu", model_kwargs={**TINY, "out_embed_dim": 16})


def test_legacy_serialisation_loads(env, ours, tmp_path):
    """Files torch cannot memory-map (pre-zip format) load the ordinary way, to the same network."""
    torch.save(SAVED["ref"].state_dict(), tmp_path / FILE, _use_new_zipfile_serialization=False)
    old = IB.ImageBind(tmp_path, device="cpu", model_kwargs=TINY)
    audio = music(3.0, 16_000, 1, seed=12)
    np.testing.assert_array_equal(old.audio_embeddings(audio, 16_000), ours.audio_embeddings(audio, 16_000))


def test_registered_listed_and_built(env, capsys):
    """`vm-eval metrics` lists imagebind-score with its checkpoint; the registry builds it from the weights
    folder (imagebind_huge() swapped for the tiny network: the shape is the only difference)."""
    from vm_eval.cli import main
    from vm_eval.registries import METRICS
    from vm_eval.weights import KNOWN

    ck = KNOWN[NAME]
    assert ck.files == (FILE,) and ck.licence == "CC-BY-NC-4.0"
    assert ck.url == "https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth"
    entry = METRICS.get("imagebind-score")
    assert entry.weights == (NAME,) and "imagebind" in entry.packages
    imagebind_model, _ = upstream_modules()
    mp = pytest.MonkeyPatch()
    mp.setattr(imagebind_model, "imagebind_huge", lambda pretrained=False: imagebind_model.ImageBindModel(**TINY))
    try:
        from vm_eval.scoring.resolve import build

        bound = build(entry)
        assert bound.inputs["audio"].model is bound.inputs["video"].model  # one network for both extractors
        assert main(["metrics"]) == 0  # `vm-eval metrics`, in this process (so the tiny network is built)
    finally:
        mp.undo()
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "imagebind-score" in ln)
    assert line.startswith("ok ")
    assert "input video: imagebind-video v1 @ 1 fps" in out and "cosine (0-1 scale, not x100)" in out
