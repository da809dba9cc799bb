"""VGGish embeddings, the classic FAD backbone, from the torchvggish port's published checkpoint.

Checkpoint: ``vggish-10086976.pth`` (known name "vggish"), a plain state dict with the keys ``features.<i>.*``
(the VGG conv stack) and ``embeddings.<i>.*`` (three Linear layers), as torchvggish publishes it. The network
is our own definition with that layout.

Pipeline (what torchvggish's ``vggish_input.waveform_to_examples`` followed by its ``VGG`` computes with the
PCA post-processing off and the final ReLU removed: FAD's ``use_pca=False, use_activation=False`` setting):

1. mean of the channels (float32), then resampy ``kaiser_best`` to 16 kHz (the resampler torchvggish uses);
2. |STFT| with a 25 ms (400-sample) periodic Hann window, 10 ms hop, 512-point FFT, no padding at either end;
3. 64 triangular mel bands on the HTK mel scale from 125 to 7500 Hz (DC bin excluded), ``log(mel + 0.01)``;
4. non-overlapping examples of 96 frames (0.96 s); a trailing partial example is dropped (as upstream);
5. the VGG conv stack, flattened in (height, width, channel) order, then the embeddings stack up to and
   including its LAST Linear layer (``embeddings.4``): 128 values per example; no ReLU, no PCA, no 8-bit
   quantisation.

Output: float32 ``[examples, 128]``, one row per 0.96 s. Audio too short for one example (0.975 s at 16 kHz:
400 + 95 * 160 samples) raises :class:`metrics.base.MetricError`; nothing is padded.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from metrics.backbones import checkpoint_identity, resolve_checkpoint, resolve_device
from metrics.base import ExtractorInfo, MetricError

KNOWN_NAME = "vggish"
CHECKPOINT_FILE = "vggish-10086976.pth"

MODEL_RATE = 16_000
STFT_WINDOW = 400  # 25 ms at 16 kHz
STFT_HOP = 160  # 10 ms
FFT_SIZE = 512  # the next power of two above the window
MEL_BANDS = 64
MEL_FMIN, MEL_FMAX = 125.0, 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96  # 0.96 s
EMBEDDING_DIM = 128
MIN_SAMPLES = STFT_WINDOW + (EXAMPLE_FRAMES - 1) * STFT_HOP  # 15600 at 16 kHz: one example
RESAMPLER = "resampy kaiser_best (as torchvggish.vggish_input)"


# --------------------------------------------------------------------------------------------- front end
def _htk_mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_weights(n_fft_bins: int = FFT_SIZE // 2 + 1, sample_rate: int = MODEL_RATE, bands: int = MEL_BANDS,
                fmin: float = MEL_FMIN, fmax: float = MEL_FMAX) -> np.ndarray:
    """[n_fft_bins, bands] triangles, linear in HTK mel between equally spaced mel edges; DC row zero."""
    bin_mel = _htk_mel(np.linspace(0.0, sample_rate / 2.0, n_fft_bins))[:, None]
    edges = np.linspace(_htk_mel(fmin), _htk_mel(fmax), bands + 2)
    left, centre, right = edges[:-2][None, :], edges[1:-1][None, :], edges[2:][None, :]
    up = (bin_mel - left) / (centre - left)
    down = (right - bin_mel) / (right - centre)
    w = np.maximum(np.minimum(up, down), 0.0)
    w[0, :] = 0.0
    return w


_MEL = mel_weights()
_WINDOW = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(STFT_WINDOW) / STFT_WINDOW)  # periodic Hann


def log_mel_examples(mono16k: np.ndarray) -> np.ndarray:
    """[examples, 96, 64] float64 log-mel patches of mono 16 kHz audio (no padding; partial tail dropped)."""
    x = np.asarray(mono16k)
    n_frames = 0 if x.shape[0] < STFT_WINDOW else 1 + (x.shape[0] - STFT_WINDOW) // STFT_HOP
    n_examples = n_frames // EXAMPLE_FRAMES
    if n_examples == 0:
        return np.zeros((0, EXAMPLE_FRAMES, MEL_BANDS))
    frames = np.lib.stride_tricks.sliding_window_view(x, STFT_WINDOW)[::STFT_HOP]
    frames = frames[: n_examples * EXAMPLE_FRAMES]
    magnitude = np.abs(np.fft.rfft(frames * _WINDOW, FFT_SIZE))  # float64: the window is float64
    logmel = np.log(magnitude @ _MEL + LOG_OFFSET)
    return logmel.reshape(n_examples, EXAMPLE_FRAMES, MEL_BANDS)


# --------------------------------------------------------------------------------------------- network
class VGGishNet(nn.Module):
    """VGGish with the torchvggish state-dict layout; ``forward`` gives the last Linear's output (no ReLU)."""

    # conv widths and 2x2 max-pools ("M"); the conv modules land at features.0, 3, 6, 8, 11, 13 as published
    PLAN = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = 1
        for item in self.PLAN:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(width, int(item), kernel_size=3, padding=1), nn.ReLU()]
                width = int(item)
        self.features = nn.Sequential(*layers)
        # embeddings.0 / 2 / 4 are the Linear layers; the published model's ReLU after .4 is left out
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 6 * 4, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(),
            nn.Linear(4096, EMBEDDING_DIM),
        )

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        """[batch, 1, 96, 64] log-mel patches -> [batch, 128]."""
        h = self.features(examples)  # [batch, 512, 6, 4]
        h = h.permute(0, 2, 3, 1).reshape(h.shape[0], -1)  # TensorFlow's (height, width, channel) order
        return self.embeddings(h)


class VGGishEmbedding:
    """AudioExtractor: VGGish 128-d embeddings (pre-ReLU, no PCA) per 0.96 s example, [examples, 128] float32.

    ``checkpoint``: ``vggish-10086976.pth`` or a folder holding it (what ``vm_eval.weights.require("vggish")``
    returns). Takes native-rate audio with any channel count (``sample_rate=None``): it downmixes and
    resamples itself, as torchvggish does.
    """

    def __init__(self, checkpoint: str | Path, device: str | None = None, batch_size: int = 64) -> None:
        path = resolve_checkpoint(checkpoint, CHECKPOINT_FILE)
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        state = {k: v for k, v in state.items() if not k.startswith("pproc.")}  # bundled PCA params: unused
        with torch.device("meta"):  # no random init: every tensor comes from the checkpoint
            net = VGGishNet()
        net.load_state_dict(state, strict=True, assign=True)
        self.device = resolve_device(device)
        self.net = net.to(self.device).eval()
        self.batch_size = int(batch_size)
        example_s = EXAMPLE_FRAMES * STFT_HOP / MODEL_RATE
        self.info = ExtractorInfo(
            name="vggish", version=1, sample_rate=None, mono=True,
            params={
                "model_rate": MODEL_RATE, "downmix": "mean of channels", "resampler": RESAMPLER,
                "window_s": example_s, "hop_s": example_s, "partial_window": "dropped",
                "min_duration_s": MIN_SAMPLES / MODEL_RATE,
                "stft": {"window": "periodic hann", "window_samples": STFT_WINDOW, "hop_samples": STFT_HOP,
                         "fft": FFT_SIZE, "center": False},
                "mel": {"bands": MEL_BANDS, "scale": "htk", "fmin": MEL_FMIN, "fmax": MEL_FMAX,
                        "log_offset": LOG_OFFSET},
                "layer": "embeddings.4 (last Linear; no final ReLU, no PCA, no quantisation)",
                "dim": EMBEDDING_DIM,
            },
            backbone=checkpoint_identity(KNOWN_NAME, path),
        )

    def examples(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """The [examples, 96, 64] log-mel patches the network sees (float64)."""
        x = np.asarray(audio, dtype=np.float32)
        mono = x if x.ndim == 1 else x.mean(axis=0)
        if sample_rate != MODEL_RATE and mono.shape[0]:
            import resampy

            mono = resampy.resample(mono, sample_rate, MODEL_RATE, filter="kaiser_best")
        return log_mel_examples(mono)

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        patches = self.examples(audio, sample_rate)
        if patches.shape[0] == 0:
            raise MetricError(
                f"audio lasts {np.asarray(audio).shape[-1] / sample_rate:.3f} s, shorter than one VGGish "
                f"example ({MIN_SAMPLES / MODEL_RATE:.3f} s)"
            )
        x = torch.from_numpy(patches.astype(np.float32))[:, None]
        out = []
        with torch.inference_mode():
            for i in range(0, x.shape[0], self.batch_size):
                out.append(self.net(x[i:i + self.batch_size].to(self.device)).float().cpu())
        return torch.cat(out).numpy().astype(np.float32, copy=False)
