"""PaSST AudioSet classifier (hear21passt, arch ``passt_s_swa_p16_128_ap476``): per-window AudioSet logits.

What goes in and what comes out:
    ``PasstClassifier(checkpoint)(audio, sample_rate)`` takes float32 audio ``[channels, n]`` at its native
    rate (``info.sample_rate is None``: we resample ourselves) and returns the classifier's LOGITS (before
    sigmoid or softmax) as float32 ``[windows, 527]``, one row per analysis window, in time order.

Audio handling (follows audiocraft's ``PasstKLDivergenceMetric``, audiocraft/metrics/kld.py):
    1. resample the whole clip to 32 kHz with ``julius.resample_frac(wav, sr, 32000)`` (julius defaults: 24
       zero crossings, rolloff 0.945), the resampler audiocraft's ``convert_audio`` uses;
    2. downmix by the mean of the channels (after resampling, as ``convert_audio`` does; both steps are
       linear, so the order only matters at float rounding level);
    3. split into consecutive, non-overlapping windows of ``window_s`` seconds (``torch.split``);
    4. the final, shorter window is KEPT and fed UNPADDED (PaSST cuts its time position embedding to the input
       length) when it is longer than 0.15 s (audiocraft's minimum); a shorter tail is dropped. Audio that is not
       longer than 0.15 s in total has no window and raises :class:`~metrics.base.MetricError`. Audio shorter
       than one window therefore gives exactly one (short, unpadded) window.

Front end:
    the log-mel front end is ours, equal to hear21passt's ``AugmentMelSTFT`` in eval mode as
    ``get_basic_model`` configures it (128 Kaldi-style mel bands 0-15 kHz over a 1024-point STFT of an
    800-sample symmetric Hann window, hop 320, pre-emphasis 0.97, ``(log(mel + 1e-5) + 4.5) / 5``). Writing it
    ourselves keeps two upstream habits out of the metric: the upstream module draws ``torch.randint`` numbers
    on every call (moving the caller's global RNG even in eval mode) and calls the deprecated
    ``torch.stft(return_complex=False)``. The tests compare it with the upstream module. The transformer is
    hear21passt's own ``PaSST`` ``nn.Module``.

Checkpoint:
    the published ``passt-s-f128-p16-s10-ap.476-swa.pt`` is the state dict of the PaSST network (keys such as
    ``patch_embed.proj.weight``, ``time_new_pos_embed``, ``head.1.weight``, ``head_dist.weight``); a dict that
    wraps it under ``"model"`` or ``"state_dict"`` (with or without a ``module.`` prefix) is accepted too.
    Loading is strict. Nothing is downloaded.
"""
from __future__ import annotations

import contextlib
import io
import math
import warnings
from pathlib import Path

import numpy as np

from metrics.backbones import (
    channels_first, checkpoint_identity, load_torch_checkpoint, resolve_checkpoint, resolve_device, unwrap_state_dict,
)
from metrics.base import ExtractorInfo, MetricError

CHECKPOINT_NAME = "passt"
CHECKPOINT_FILE = "passt-s-f128-p16-s10-ap.476-swa.pt"
ARCH = "passt_s_swa_p16_128_ap476"
SAMPLE_RATE = 32_000
NUM_CLASSES = 527
MAX_WINDOW_S = 10.0  # the time position embedding of this arch covers 10 s (998 mel frames)
MIN_WINDOW_S = 0.15  # audiocraft skips segments of at most this length (too short for the model)

# hear21passt.base.get_basic_model's front end (AugmentMelSTFT in eval mode)
N_FFT = 1024
WIN_LENGTH = 800
HOP = 320
N_MELS = 128
FMIN = 0.0
FMAX = SAMPLE_RATE // 2 - 2000 // 2  # fmax=None with fmax_aug_range=2000 -> 15000 Hz
PREEMPHASIS = 0.97


def kaldi_mel_banks(n_mels: int, n_fft: int, sample_rate: float, fmin: float, fmax: float):
    """Triangular mel filters in Kaldi's convention (mel = 1127 ln(1 + f / 700), triangles over the FFT bin
    frequencies k * sr / n_fft for k < n_fft / 2), with a zero column appended for the Nyquist bin:
    float32 tensor [n_mels, n_fft // 2 + 1]."""
    import torch

    n_bins = n_fft // 2
    nyquist = 0.5 * sample_rate
    high = fmax if fmax > 0 else fmax + nyquist
    if not 0.0 <= fmin < high <= nyquist:
        raise ValueError(f"bad mel range {fmin}-{high} Hz for {sample_rate} Hz audio")

    lo = 1127.0 * math.log(1.0 + fmin / 700.0)  # band edges: double-precision scalars
    hi = 1127.0 * math.log(1.0 + high / 700.0)
    step = (hi - lo) / (n_mels + 1)
    band = torch.arange(n_mels).unsqueeze(1)
    left, centre, right = lo + band * step, lo + (band + 1.0) * step, lo + (band + 2.0) * step
    bin_hz = (sample_rate / n_fft) * torch.arange(n_bins, dtype=torch.float32)
    bin_mel = (1127.0 * (1.0 + bin_hz / 700.0).log()).unsqueeze(0)
    rising = (bin_mel - left) / (centre - left)
    falling = (right - bin_mel) / (right - centre)
    banks = torch.clamp(torch.minimum(rising, falling), min=0.0)
    return torch.nn.functional.pad(banks, (0, 1))


class PasstMel:
    """hear21passt's eval-mode log-mel front end, without RNG draws: [B, n] 32 kHz -> [B, 128, frames]."""

    def __init__(self, device: str = "cpu"):
        import torch

        self.device = device
        self.preemphasis = torch.tensor([[[-PREEMPHASIS, 1.0]]], device=device)
        self.window = torch.hann_window(WIN_LENGTH, periodic=False, device=device)
        self.banks = kaldi_mel_banks(N_MELS, N_FFT, SAMPLE_RATE, FMIN, FMAX).to(device)

    def __call__(self, x):
        import torch

        x = torch.nn.functional.conv1d(x.unsqueeze(1), self.preemphasis).squeeze(1)
        spec = torch.stft(x, N_FFT, hop_length=HOP, win_length=WIN_LENGTH, window=self.window, center=True,
                          normalized=False, return_complex=True)
        power = torch.view_as_real(spec).pow(2).sum(dim=-1)  # [B, 513, frames]
        mel = torch.matmul(self.banks, power)
        return ((mel + 0.00001).log() + 4.5) / 5.0


def split_windows(n: int, window: int, min_len: int) -> list[tuple[int, int]]:
    """[start, end) of consecutive windows of `window` samples over n samples; a tail of at most `min_len`
    samples is dropped (audiocraft's rule), a longer tail is kept as a shorter window."""
    out = [(s, min(s + window, n)) for s in range(0, n, window)]
    return [(s, e) for s, e in out if e - s > min_len]


def _quiet():
    """Silence hear21passt's prints (model summary at build, shapes on its first forward)."""
    return contextlib.redirect_stdout(io.StringIO())


class PasstClassifier:
    """PaSST-S AudioSet tagger (mAP .476, SWA): audio -> per-window AudioSet logits [windows, 527].

    ``window_s`` (at most 10 s, the span the model was trained on) sets the non-overlapping analysis windows;
    see the module docstring for resampling, downmix and the final partial window. ``batch_size`` full windows
    are run together (the result does not depend on it beyond float rounding).
    """

    def __init__(self, checkpoint: str | Path, device: str | None = None, window_s: float = 10.0,
                 batch_size: int = 8):
        from hear21passt.models import passt as passt_module

        if not (MIN_WINDOW_S < window_s <= MAX_WINDOW_S):
            raise ValueError(f"window_s must be in ({MIN_WINDOW_S}, {MAX_WINDOW_S}] s for {ARCH}, "
                             f"got {window_s}")
        path = resolve_checkpoint(checkpoint, CHECKPOINT_FILE)
        self.path = path
        self.device = resolve_device(device)
        self.window_s = float(window_s)
        self.window = int(round(self.window_s * SAMPLE_RATE))
        self.min_len = int(MIN_WINDOW_S * SAMPLE_RATE)
        self.batch_size = max(1, int(batch_size))
        self._passt = passt_module

        state = unwrap_state_dict(load_torch_checkpoint(path), path)
        if "time_new_pos_embed" not in state:
            raise ValueError(f"{path.name} is not a PaSST AudioSet checkpoint (no time_new_pos_embed: an "
                             f"ImageNet ViT/DeiT state dict?)")
        with _quiet():
            net = passt_module.get_model(arch=ARCH, pretrained=False, n_classes=NUM_CLASSES, in_channels=1,
                                         fstride=10, tstride=10, input_fdim=N_MELS, input_tdim=998)
        net.load_state_dict(state, strict=True)
        self.net = net.eval().to(self.device)
        self.mel = PasstMel(self.device)
        self.info = ExtractorInfo(
            name="passt-logits", version=1,
            params={"arch": ARCH, "output": "logits [windows, 527], pre-sigmoid", "window_s": self.window_s,
                    "hop_s": self.window_s,
                    "tail": f"kept unpadded if longer than {MIN_WINDOW_S} s, else dropped",
                    "model_sample_rate": SAMPLE_RATE,
                    "resampler": "julius.resample_frac(zeros=24, rolloff=0.945) (audiocraft convert_audio)",
                    "downmix": "mean of channels after resampling",
                    "front_end": "hear21passt AugmentMelSTFT eval: 128 kaldi mels 0-15000 Hz, n_fft 1024, "
                                 "win 800, hop 320, preemphasis 0.97, (log(x+1e-5)+4.5)/5"},
            sample_rate=None, mono=False,
            backbone=checkpoint_identity(CHECKPOINT_NAME, path),
        )

    # ---------------------------------------------------------------------------------------- pieces
    def prepare(self, audio: np.ndarray, sample_rate: int):
        """Native audio [channels, n] (or [n]) -> 32 kHz mono float32 tensor [n32] (resample, then mean)."""
        import julius
        import torch

        x = channels_first(audio)
        wav = torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
        if int(sample_rate) != SAMPLE_RATE:
            wav = julius.resample_frac(wav, int(sample_rate), SAMPLE_RATE)
        return wav.mean(dim=0)

    def windows(self, n32: int) -> list[tuple[int, int]]:
        """Sample ranges at 32 kHz of the windows a clip of n32 samples gives."""
        return split_windows(n32, self.window, self.min_len)

    def logits_of(self, batch):
        """32 kHz mono [B, n] (n <= window) -> logits [B, 527]."""
        specs = self.mel(batch).unsqueeze(1)
        quiet = _quiet() if getattr(self._passt, "first_RUN", False) else contextlib.nullcontext()
        with quiet, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Input image size")  # short windows are expected
            logits, _ = self.net(specs)
        return logits

    # ---------------------------------------------------------------------------------------- call
    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        import torch

        with torch.inference_mode():
            wav = self.prepare(audio, sample_rate)
            spans = self.windows(wav.shape[-1])
            if not spans:
                raise MetricError(f"audio lasts {wav.shape[-1] / SAMPLE_RATE:.3f} s; PaSST needs more than "
                                  f"{MIN_WINDOW_S} s")
            out = []
            full = [s for s in spans if s[1] - s[0] == self.window]
            for i in range(0, len(full), self.batch_size):
                chunk = full[i:i + self.batch_size]
                out.append(self.logits_of(torch.stack([wav[s:e] for s, e in chunk])))
            tail = [s for s in spans if s[1] - s[0] != self.window]
            for s, e in tail:  # at most one, the last
                out.append(self.logits_of(wav[s:e][None]))
            logits = torch.cat(out, dim=0)
        return logits.float().cpu().numpy()

    def n_windows(self, n_samples: int, sample_rate: int) -> int:
        """Rows a clip of n_samples at sample_rate gives (julius keeps floor(n * 32000 / sr) samples)."""
        n32 = n_samples * SAMPLE_RATE // int(sample_rate)
        return len(self.windows(n32))


# ------------------------------------------------------------------------------------------------ embedding (FD)
EMBED_DIM = 768
AV_BENCH_RESAMPLE = "torchaudio Resample(sinc_interp_hann, lowpass_filter_width=6, rolloff=0.99)"


class PasstEmbedding(PasstClassifier):
    """PaSST-S clip embedding as hkchengrex/av-benchmark computes FD-PaSST: audio -> float32 [1, 768].

    Definition (av-benchmark ``av_bench/extract.py`` and ``av_bench/data/audio_dataset.py``): the clip is downmixed
    by the mean of its channels, its DC offset removed (``x - x.mean()``), resampled to 32 kHz by torchaudio's
    ``Resample`` with default settings, cut to its first ``audio_length_s`` seconds (av-benchmark's
    ``--audio_length``), then cut or zero-padded to exactly 10 s (320 000 samples, PaSST's input). The embedding is
    hear21passt ``PasstBasicWrapper(mode="all")`` output ``[:, 527:]``: the mean of the transformer's class and
    distillation tokens before the classification head (``PaSST.forward``'s ``features``), 768-d, one row per clip.
    The log-mel front end and network are those of PasstClassifier (same checkpoint); only the audio handling and
    the output differ.
    """

    def __init__(self, checkpoint: str | Path, device: str | None = None, audio_length_s: float = MAX_WINDOW_S):
        if not 0 < audio_length_s <= MAX_WINDOW_S:
            raise ValueError(f"audio_length_s must be in (0, {MAX_WINDOW_S}] s, got {audio_length_s}")
        super().__init__(checkpoint, device=device, window_s=MAX_WINDOW_S, batch_size=1)
        front_end, backbone = self.info.params["front_end"], self.info.backbone  # as PasstClassifier states them
        self.audio_length_s = float(audio_length_s)
        self.length = int(SAMPLE_RATE * self.audio_length_s)  # av-benchmark: audio[:int(sr * audio_length)]
        self._resamplers: dict[int, object] = {}
        self.info = ExtractorInfo(
            name="passt-embedding", version=1,
            params={"arch": ARCH, "output": f"[1, {EMBED_DIM}] per clip: mean of class and distillation tokens "
                                            "before the head (PasstBasicWrapper mode='all' [527:])",
                    "audio_length_s": self.audio_length_s, "input": "cut or zero-padded to 10 s",
                    "model_sample_rate": SAMPLE_RATE, "downmix": "mean of channels, then DC offset removed",
                    "resampler": AV_BENCH_RESAMPLE,
                    "front_end": front_end,
                    "reference": "av-benchmark av_bench/extract.py (FD-PaSST)"},
            sample_rate=None, mono=False,
            backbone=backbone,
        )

    def prepare(self, audio: np.ndarray, sample_rate: int):
        """Native [channels, n] (or [n]) -> the 32 kHz mono input [320000] av-benchmark feeds PaSST."""
        import torch
        import torchaudio

        x = channels_first(audio)
        wav = torch.from_numpy(np.ascontiguousarray(x)).mean(dim=0)
        wav = wav - wav.mean()
        sr = int(sample_rate)
        if sr != SAMPLE_RATE:
            if sr not in self._resamplers:
                self._resamplers[sr] = torchaudio.transforms.Resample(sr, SAMPLE_RATE)
            wav = self._resamplers[sr](wav)
        wav = wav[:self.length]
        return torch.nn.functional.pad(wav, (0, self.window - wav.shape[-1])).to(self.device)

    def embed(self, batch) -> np.ndarray:
        """32 kHz mono [B, n] (n <= 10 s) -> PaSST features [B, 768] (``PasstBasicWrapper(mode="all")[:, 527:]``)."""
        import torch

        with torch.inference_mode():
            specs = self.mel(batch).unsqueeze(1)
            quiet = _quiet() if getattr(self._passt, "first_RUN", False) else contextlib.nullcontext()
            with quiet, warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Input image size")  # 10 s: 1001 frames for 998 positions
                _, features = self.net(specs)
        return features.float().cpu().numpy()

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        return self.embed(self.prepare(audio, sample_rate)[None])
