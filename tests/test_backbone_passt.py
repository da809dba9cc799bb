"""PaSST logits extractor against hear21passt's model and audiocraft's PaSST-KL pipeline, on random weights.

hear21passt's network is built with seeded random weights and saved, as the published file is (the network's
state dict), under its published file name in a temporary weights folder; `vm_eval.weights.require("passt")`
finds it and our class loads it. The upstream reference is the same random network inside hear21passt's
`PasstBasicWrapper` with the `AugmentMelSTFT` front end, configured as
`hear21passt.base.get_basic_model(mode="logits")` configures them (that function itself would fetch the real
weights). Both see the same 44.1 kHz stereo signal; the upstream path replays audiocraft's
`PasstKLDivergenceMetric._process_audio` (julius resample, mean downmix, split, drop <= 0.15 s) and
`_get_model_preds` step by step, since importing audiocraft.metrics pulls in laion_clap and torchaudio.
Relative error = max |ours - upstream| / max |upstream|.
"""
from __future__ import annotations

import contextlib
import io
import os
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("hear21passt")
pytest.importorskip("julius")

from backbone_helpers import isolate_weights, max_rel  # noqa: E402
from metrics.backbones import checkpoint_identity  # noqa: E402
from metrics.backbones import passt as P  # noqa: E402
from metrics.base import MetricError  # noqa: E402

RTOL = 1e-5
WINDOW_S = 0.5  # short windows keep the CPU test fast; the window logic is the same at 10 s
SR_IN = 44_100
SAVED: dict = {}


def stereo(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(round(seconds * SR_IN))
    t = np.arange(n) / SR_IN
    tone = 0.3 * np.sin(2 * np.pi * 440.0 * t) * (1 + np.sin(2 * np.pi * 0.5 * t))
    x = np.stack([tone, 0.5 * tone]) + 0.1 * rng.standard_normal((2, n))
    return x.astype(np.float32)


def random_passt(seed: int):
    """hear21passt's PaSST-S network with every parameter randomised (its init zeroes the heads)."""
    from hear21passt.models.passt import get_model

    torch.manual_seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):
        net = get_model(arch=P.ARCH, pretrained=False)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("passt")
    mp = pytest.MonkeyPatch()
    isolate_weights(mp, tmp)
    net = random_passt(0)
    folder = tmp / "weights" / "passt"
    folder.mkdir(parents=True)
    torch.save(net.state_dict(), folder / P.CHECKPOINT_FILE)
    SAVED["net"] = net.eval()
    yield tmp
    mp.undo()


@pytest.fixture(scope="module")
def ours(env):
    from vm_eval.weights import require

    return P.PasstClassifier(require("passt"), device="cpu", window_s=WINDOW_S)


@pytest.fixture(scope="module")
def upstream(env):
    """What hear21passt.base.get_basic_model(mode="logits") builds, around the saved random network."""
    from hear21passt.models.preprocess import AugmentMelSTFT
    from hear21passt.wrapper import PasstBasicWrapper

    with contextlib.redirect_stdout(io.StringIO()):
        mel = AugmentMelSTFT(n_mels=128, sr=32000, win_length=800, hopsize=320, n_fft=1024, freqm=48,
                             timem=192, htk=False, fmin=0.0, fmax=None, norm=1, fmin_aug_range=10,
                             fmax_aug_range=2000)
    return PasstBasicWrapper(mel=mel, net=SAVED["net"], mode="logits").eval()


def audiocraft_logits(model, audio: np.ndarray, sr: int, window_s: float) -> np.ndarray:
    """audiocraft PasstKLDivergenceMetric._process_audio + _get_model_preds (before its softmax)."""
    import julius

    wav = torch.from_numpy(audio)[None]  # [1, C, T]
    wav = julius.resample_frac(wav, sr, 32000)  # convert_audio: resample ...
    wav = wav.mean(dim=-2, keepdim=True)  # ... then downmix to 1 channel
    wav = wav.squeeze(0)
    segments = torch.split(wav, int(window_s * 32000), dim=-1)
    segments = [s[None] for s in segments if s.size(-1) > int(0.15 * 32000)]
    out = []
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        for s in segments:
            out.append(model(s.mean(dim=1)))  # _get_model_preds: [1, 1, T] -> [1, T]
    return torch.cat(out).numpy()


# ---------------------------------------------------------------------------------------- upstream parity
@pytest.mark.parametrize("seconds, windows", [(1.2, 3), (0.3, 1)])
def test_logits_match_upstream(ours, upstream, seconds, windows):
    audio = stereo(seconds, seed=1)
    mine = ours(audio, SR_IN)
    ref = audiocraft_logits(upstream, audio, SR_IN, WINDOW_S)
    assert mine.shape == ref.shape == (windows, 527)
    assert mine.dtype == np.float32
    err = max_rel(mine, ref)
    print(f"passt logits {seconds} s: max relative error {err:.2e}")
    assert err < RTOL


def test_front_end_matches_upstream_mel(ours, upstream):
    x = torch.from_numpy(stereo(1.0, seed=2)[0])[None]
    upstream.mel.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # upstream's deprecated stft / autocast calls
        ref = upstream.mel(x)
    mine = ours.mel(x)
    assert mine.shape == ref.shape
    err = max_rel(mine, ref)
    print(f"passt log-mel front end: max relative error {err:.2e}")
    assert err < RTOL


def test_resampling_is_audiocraft_julius(ours):
    import julius

    audio = stereo(0.5, seed=3)
    ref = julius.resample_frac(torch.from_numpy(audio), SR_IN, 32000).mean(dim=0)
    assert torch.equal(ours.prepare(audio, SR_IN), ref)
    assert ours.prepare(audio[:1], 32000).shape[-1] == audio.shape[-1]  # no resampling at 32 kHz


# ------------------------------------------------------------------------------------------------ behaviour
def test_deterministic_and_leaves_global_rng_alone(ours):
    audio = stereo(0.3, seed=4)
    state = torch.get_rng_state()
    a = ours(audio, SR_IN)
    assert torch.equal(state, torch.get_rng_state())  # hear21passt's front end draws torch.randint each call
    assert np.array_equal(a, ours(audio, SR_IN))


@pytest.mark.parametrize("seconds, expected", [
    (0.1, 0),  # nothing longer than 0.15 s: MetricError
    (0.2, 1),  # shorter than one window: one short, unpadded window
    (0.5, 1),  # exactly one window
    (1.1, 2),  # 0.1 s tail dropped (audiocraft: segments of <= 0.15 s are skipped)
    (1.2, 3),  # 0.2 s tail kept, unpadded
    (12.0, 24),
])
def test_window_counts(ours, seconds, expected):
    n = int(round(seconds * SR_IN))
    assert ours.n_windows(n, SR_IN) == expected


def test_shapes_for_several_durations(ours):
    for seconds in (0.2, 1.1):  # (1.2 s and 0.3 s: in the parity test)
        out = ours(stereo(seconds, seed=5), SR_IN)
        assert out.shape == (ours.n_windows(int(round(seconds * SR_IN)), SR_IN), 527)
        assert np.isfinite(out).all()
    mono = ours(stereo(0.3, seed=6)[0], SR_IN)  # [n] is read as one channel
    assert mono.shape == (1, 527)
    with pytest.raises(MetricError, match="0.15"):
        ours(stereo(0.1, seed=7), SR_IN)


def test_info_and_identity(env, ours):
    path = env / "weights" / "passt" / P.CHECKPOINT_FILE
    assert ours.info.sample_rate is None and ours.info.mono is False  # native audio: we resample ourselves
    assert ours.info.backbone == checkpoint_identity("passt", path)
    assert ours.info.backbone["file"] == P.CHECKPOINT_FILE
    assert ours.info.params["window_s"] == WINDOW_S
    other = env / "other" / P.CHECKPOINT_FILE
    other.parent.mkdir()
    state = dict(SAVED["net"].state_dict())  # the weights the fixture saved, one tensor changed
    state["head.1.bias"] = state["head.1.bias"] + 1.0
    torch.save(state, other)
    assert checkpoint_identity("passt", other)["sha256"] != ours.info.backbone["sha256"]


def test_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=P.CHECKPOINT_FILE.replace(".", r"\.")):
        P.PasstClassifier(tmp_path / "nowhere" / P.CHECKPOINT_FILE)
    with pytest.raises(FileNotFoundError, match=P.CHECKPOINT_FILE.replace(".", r"\.")):
        P.PasstClassifier(tmp_path)  # a folder without the file


def test_require_names_the_file_when_absent(tmp_path, monkeypatch):
    from vm_eval.weights import WeightsMissing, require

    for k in list(os.environ):
        if k.startswith("VM_EVAL_WEIGHT_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("VM_EVAL_WEIGHTS", str(tmp_path / "w"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "t"))
    with pytest.raises(WeightsMissing, match=P.CHECKPOINT_FILE.replace(".", r"\.")):
        require("passt")


def test_rejects_bad_window(env):
    with pytest.raises(ValueError, match="window_s"):
        P.PasstClassifier(env / "weights" / "passt", window_s=12.0)
