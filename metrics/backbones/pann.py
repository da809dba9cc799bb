"""PANN Cnn14 (Kong et al. 2020, audioset_tagging_cnn) as two audio extractors, from published checkpoints.

- :class:`PannEmbedding` ("pann-cnn14-16k-emb"): the 2048-d ``embedding`` output (ReLU of ``fc1``) of the
  16 kHz model (checkpoint ``Cnn14_16k_mAP=0.438.pth``, known name "pann-cnn14-16k"): the embedding
  frechet_audio_distance's PANN FAD uses. Default: one embedding for the whole clip, as there.
- :class:`PannClassifier` ("pann-cnn14"): AudioSet LOGITS (``fc_audioset`` output before the sigmoid, 527
  classes) of the 32 kHz model (checkpoint ``Cnn14_mAP=0.431.pth``, known name "pann-cnn14"), one row per
  window, for KL metrics (the KL metric applies its own softmax). Default: 10 s non-overlapping windows.

Checkpoint format as published: ``{"model": state_dict, "iteration": ..., "sampler": ...}`` (a bare state dict
loads too). The training-state entries hold numpy arrays, so the file is read by torch's weights-only
unpickler with numpy's array and scalar reconstruction functions allowlisted, never by full unpickling. The
state dict includes the front end (STFT kernels ``spectrogram_extractor.stft.conv_{real,imag}.weight`` and the
mel bank ``logmel_extractor.melW``); :class:`Cnn14` is our definition with exactly that layout, and the
checkpoint's own front end is what runs.

Audio path (frechet_audio_distance's ``load_audio_task`` then its model call): mean of the channels (float32),
resampy ``kaiser_best`` to the model rate, then the model on the waveform: reflect-padded centred STFT (Hann;
n_fft 512 / hop 160 at 16 kHz, 1024 / 320 at 32 kHz) -> power -> 64 mel bands (50 Hz to 8 / 16 kHz) ->
10 log10(max(., 1e-10)) -> bn0 -> six conv blocks -> mean over frequency -> max + mean over time ->
ReLU(fc1) = embedding -> fc_audioset = logits.

Windowing (``window_s`` set): the resampled clip is cut into consecutive non-overlapping windows of
``window_s``. A trailing partial window is scored at its own length (no padding: silence would shift the time
pooling) when it lasts at least ``min_window_s`` (default 1 s) and dropped otherwise; a clip shorter than one
window is a single window of its own length. A clip shorter than ``min_window_s`` raises
:class:`metrics.base.MetricError`.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from metrics.backbones import checkpoint_identity, resolve_checkpoint, resolve_device
from metrics.base import ExtractorInfo, MetricError

RESAMPLER = "resampy kaiser_best (as frechet_audio_distance load_audio_task)"
AUDIOSET_CLASSES = 527
EMBEDDING_DIM = 2048

# model rate -> (n_fft, hop, fmax); window length = n_fft, 64 mel bands from 50 Hz (audioset_tagging_cnn)
VARIANTS = {16_000: (512, 160, 8000.0), 32_000: (1024, 320, 16000.0)}
MEL_BANDS, MEL_FMIN = 64, 50.0


# --------------------------------------------------------------------------------------------- network
def frontend_kernels(sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A variant's default front end: windowed DFT kernels (real, imag [bins, 1, n_fft]), mel bank [bins, 64].

    A loaded checkpoint replaces them with its own values; these only make a bare :class:`Cnn14` meaningful.
    """
    n_fft, _, fmax = VARIANTS[sample_rate]
    t = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * t / n_fft)  # periodic Hann
    phase = 2.0 * np.pi * np.outer(np.arange(n_fft // 2 + 1), t) / n_fft
    real = (np.cos(phase) * window)[:, None, :]
    imag = (-np.sin(phase) * window)[:, None, :]
    import librosa

    mel = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=MEL_BANDS, fmin=MEL_FMIN, fmax=fmax).T
    return real.astype(np.float32), imag.astype(np.float32), mel.astype(np.float32)


class _Stft(nn.Module):
    def __init__(self, n_fft: int, hop: int) -> None:
        super().__init__()
        self.conv_real = nn.Conv1d(1, n_fft // 2 + 1, n_fft, stride=hop, bias=False)
        self.conv_imag = nn.Conv1d(1, n_fft // 2 + 1, n_fft, stride=hop, bias=False)


class _PowerSpectrogram(nn.Module):
    """Holds the STFT kernels under ``spectrogram_extractor.stft.*`` (the published key names)."""

    def __init__(self, n_fft: int, hop: int) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.stft = _Stft(n_fft, hop)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """[batch, n] -> power spectrogram [batch, 1, frames, bins] (centred frames, reflect padding)."""
        x = F.pad(wave[:, None, :], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        re, im = self.stft.conv_real(x), self.stft.conv_imag(x)  # [batch, bins, frames]
        return (re ** 2 + im ** 2)[:, None].transpose(2, 3)


class _LogMel(nn.Module):
    def __init__(self, bins: int) -> None:
        super().__init__()
        self.melW = nn.Parameter(torch.zeros(bins, MEL_BANDS), requires_grad=False)

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        return 10.0 * torch.log10(torch.clamp(power @ self.melW, min=1e-10))  # ref 1.0, no top_db


class _ConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, pool: bool) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, 2) if pool else x


class Cnn14(nn.Module):
    """Cnn14 in inference form (no SpecAugment, mixup or dropout) with the published state-dict layout.

    ``forward(wave [batch, n])`` returns ``(embedding [batch, 2048], logits [batch, 527])``.
    """

    def __init__(self, sample_rate: int = 32_000, classes: int = AUDIOSET_CLASSES) -> None:
        super().__init__()
        if sample_rate not in VARIANTS:
            raise ValueError(f"Cnn14 variants exist for {sorted(VARIANTS)} Hz, not {sample_rate}")
        n_fft, hop, _ = VARIANTS[sample_rate]
        self.sample_rate, self.hop = sample_rate, hop
        self.spectrogram_extractor = _PowerSpectrogram(n_fft, hop)
        self.logmel_extractor = _LogMel(n_fft // 2 + 1)
        if not self.logmel_extractor.melW.is_meta:  # built on the meta device to be loaded: nothing to fill
            real, imag, mel = frontend_kernels(sample_rate)
            with torch.no_grad():
                self.spectrogram_extractor.stft.conv_real.weight.copy_(torch.from_numpy(real))
                self.spectrogram_extractor.stft.conv_imag.weight.copy_(torch.from_numpy(imag))
                self.logmel_extractor.melW.copy_(torch.from_numpy(mel))
        for p in self.spectrogram_extractor.parameters():
            p.requires_grad_(False)
        self.bn0 = nn.BatchNorm2d(MEL_BANDS)
        widths = (1, 64, 128, 256, 512, 1024, 2048)
        for i in range(6):
            setattr(self, f"conv_block{i + 1}", _ConvBlock(widths[i], widths[i + 1]))
        self.fc1 = nn.Linear(2048, EMBEDDING_DIM)
        self.fc_audioset = nn.Linear(2048, classes)

    @property
    def min_samples(self) -> int:
        """Shortest input the network takes: five 2x2 poolings need 32 STFT frames."""
        return 31 * self.hop

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.logmel_extractor(self.spectrogram_extractor(wave))  # [batch, 1, frames, 64]
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)  # normalised per mel band
        for i in range(1, 7):
            x = getattr(self, f"conv_block{i}")(x, pool=i < 6)
        x = x.mean(dim=3)  # over frequency: [batch, 2048, frames]
        x = x.max(dim=2).values + x.mean(dim=2)
        embedding = F.relu(self.fc1(x))
        return embedding, self.fc_audioset(embedding)


# --------------------------------------------------------------------------------------------- loading
def _numpy_safe_globals() -> list:
    """What the released checkpoints' training state needs besides tensors: numpy arrays and scalars, under
    both the NumPy 1 (``numpy.core``) and NumPy 2 (``numpy._core``) module names."""
    try:
        from numpy._core import multiarray
    except ImportError:  # NumPy 1
        from numpy.core import multiarray
    out: list = [np.ndarray, np.dtype]
    out += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    for fn in (multiarray._reconstruct, multiarray.scalar):
        out += [(fn, f"numpy.core.multiarray.{fn.__name__}"), (fn, f"numpy._core.multiarray.{fn.__name__}")]
    return out


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The model state dict of a PANN checkpoint file ({"model": ...} as published, or a bare state dict)."""
    with torch.serialization.safe_globals(_numpy_safe_globals()):
        obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a PANN checkpoint (expected {{'model': state_dict}})")
    return {k.removeprefix("module."): v for k, v in obj.items()}


# --------------------------------------------------------------------------------------------- extractors
class _PannExtractor:
    known_name: str
    file_name: str
    model_rate: int
    output: str  # "embedding" or "logits"

    def __init__(self, checkpoint: str | Path, device: str | None, window_s: float | None,
                 min_window_s: float, batch_size: int, name: str) -> None:
        path = resolve_checkpoint(checkpoint, self.file_name)
        state = read_state_dict(path)
        with torch.device("meta"):  # no random init: every tensor comes from the checkpoint
            net = Cnn14(self.model_rate)
        try:
            net.load_state_dict(state, strict=True, assign=True)
        except RuntimeError as e:
            raise ValueError(
                f"{path} does not fit Cnn14 at {self.model_rate} Hz (expected {self.file_name}): {e}") from e
        self.device = resolve_device(device)
        self.net = net.to(self.device).eval()
        self.name, self.batch_size = name, int(batch_size)
        self.backbone = checkpoint_identity(self.known_name, path)
        self._set_windows(window_s, min_window_s)

    def with_window(self, window_s: float | None, min_window_s: float = 1.0):
        """The same loaded network with other windowing (and so another identity), without a second load."""
        other = copy.copy(self)
        other._set_windows(window_s, min_window_s)
        return other

    def _set_windows(self, window_s: float | None, min_window_s: float) -> None:
        if window_s is not None and window_s < min_window_s:
            raise ValueError(f"window_s ({window_s}) must be at least min_window_s ({min_window_s})")
        if min_window_s * self.model_rate < self.net.min_samples:
            raise ValueError(f"min_window_s must be at least {self.net.min_samples / self.model_rate:.3f} s")
        self.window_s, self.min_window_s = window_s, float(min_window_s)
        n_fft, hop, fmax = VARIANTS[self.model_rate]
        partial = (f"scored at its own length (no padding) if >= {self.min_window_s} s, else dropped"
                   if window_s is not None else "whole clip is one window")
        layer = ("embedding: relu(fc1), pooled over the window" if self.output == "embedding"
                 else "fc_audioset logits (pre-sigmoid), pooled over the window")
        self.info = ExtractorInfo(
            name=self.name, version=1, sample_rate=None, mono=True,
            params={
                "model_rate": self.model_rate, "downmix": "mean of channels", "resampler": RESAMPLER,
                "window_s": window_s, "hop_s": window_s, "partial_window": partial,
                "min_duration_s": self.min_window_s,
                "frontend": {"n_fft": n_fft, "hop": hop, "window": "hann", "center": "reflect",
                             "mel_bands": MEL_BANDS, "fmin": MEL_FMIN, "fmax": fmax,
                             "db": "10 log10, amin 1e-10, no top_db"},
                "layer": layer,
                "dim": EMBEDDING_DIM if self.output == "embedding" else AUDIOSET_CLASSES,
            },
            backbone=self.backbone,
        )

    def resampled(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Mono float32 audio at the model rate, as frechet_audio_distance prepares it."""
        x = np.asarray(audio, dtype=np.float32)
        mono = x if x.ndim == 1 else x.mean(axis=0)
        if sample_rate != self.model_rate:
            import resampy

            mono = resampy.resample(mono, sample_rate, self.model_rate, filter="kaiser_best")
        return np.ascontiguousarray(mono, dtype=np.float32)

    def windows(self, n: int) -> list[tuple[int, int]]:
        """(start, end) sample spans at the model rate for n samples (see the module docstring)."""
        min_len = int(round(self.min_window_s * self.model_rate))
        if n < min_len:
            return []
        if self.window_s is None:
            return [(0, n)]
        w = int(round(self.window_s * self.model_rate))
        spans = [(s, s + w) for s in range(0, n - w + 1, w)]
        tail = spans[-1][1] if spans else 0
        if n - tail >= min_len:
            spans.append((tail, n))
        return spans

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        n_in = np.asarray(audio).shape[-1]
        spans = self.windows(int(n_in * self.model_rate / sample_rate))  # early check, before resampling
        if spans:
            wave = self.resampled(audio, sample_rate)
            spans = self.windows(wave.shape[0])
        if not spans:
            raise MetricError(f"audio lasts {n_in / sample_rate:.3f} s, shorter than the "
                              f"{self.min_window_s} s minimum of {self.info.name}")
        which = 0 if self.output == "embedding" else 1
        x = torch.from_numpy(wave)
        full_len = spans[0][1] - spans[0][0]
        full = [s for s in spans if s[1] - s[0] == full_len]  # equal windows first, batched; then the tail
        rows = []
        with torch.inference_mode():
            for i in range(0, len(full), self.batch_size):
                batch = torch.stack([x[a:b] for a, b in full[i:i + self.batch_size]]).to(self.device)
                rows.append(self.net(batch)[which].float().cpu())
            for a, b in spans[len(full):]:
                rows.append(self.net(x[None, a:b].to(self.device))[which].float().cpu())
        return torch.cat(rows).numpy().astype(np.float32, copy=False)


class PannEmbedding(_PannExtractor):
    """AudioExtractor: Cnn14 16 kHz 2048-d embeddings, [windows, 2048] float32 (default [1, 2048]: the clip).

    ``checkpoint``: ``Cnn14_16k_mAP=0.438.pth`` or a folder holding it (``vm_eval.weights.require(
    "pann-cnn14-16k")``). Takes native-rate audio with any channel count (``sample_rate=None``).
    """

    known_name, file_name = "pann-cnn14-16k", "Cnn14_16k_mAP=0.438.pth"
    model_rate, output = 16_000, "embedding"

    def __init__(self, checkpoint: str | Path, device: str | None = None, window_s: float | None = None,
                 min_window_s: float = 1.0, batch_size: int = 8) -> None:
        super().__init__(checkpoint, device, window_s, min_window_s, batch_size, "pann-cnn14-16k-emb")


class PannClassifier(_PannExtractor):
    """AudioExtractor: Cnn14 32 kHz AudioSet logits (pre-sigmoid), [windows, 527] float32; 10 s windows.

    ``checkpoint``: ``Cnn14_mAP=0.431.pth`` or a folder holding it (``vm_eval.weights.require(
    "pann-cnn14")``).
    Takes native-rate audio with any channel count (``sample_rate=None``).
    """

    known_name, file_name = "pann-cnn14", "Cnn14_mAP=0.431.pth"
    model_rate, output = 32_000, "logits"

    def __init__(self, checkpoint: str | Path, device: str | None = None, window_s: float | None = 10.0,
                 min_window_s: float = 1.0, batch_size: int = 4) -> None:
        super().__init__(checkpoint, device, window_s, min_window_s, batch_size, "pann-cnn14")
