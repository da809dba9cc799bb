"""OpenL3 audio embeddings (music, mel256, 512-d) as stable-audio-metrics computes FD-OpenL3.

Definition: Cramer et al. 2019, "Look, Listen and Learn More: Design Choices for Deep Audio Embeddings" (OpenL3).
The network and front end are those of openl3 0.4.2 (``openl3/models.py``: ``_construct_mel256_audio_network`` and
kapre 0.3.7's ``get_melspectrogram_layer`` with openl3's kapre-0.1.4 dB scaling); the audio handling is that of
Stability-AI/stable-audio-metrics ``src/openl3_fd.py`` ``extract_embeddings`` (the batched path of its Stable Audio
examples: ``channels=2, samplingrate=44100, content_type='music', openl3_hop_size=0.5``).

``OpenL3Embedding(checkpoint)(audio, sample_rate) -> float32 [frames, 1024]`` on native audio [channels, n]:

1. peak-normalise the clip to -1 dBFS over all its channels (``pyloudnorm.normalize.peak(audio, -1.0)``);
2. resample to 44.1 kHz (``soxr.resample``, quality "HQ"): stable-audio-metrics' evaluation bandwidth;
3. ``channels=2``: left and right are embedded separately and concatenated, [frames, 512 L | 512 R]; a mono clip is
   duplicated into both halves and channels past the second are ignored, as stable-audio-metrics does
   (``channels=1``: the mean of the channels, [frames, 512]). Its unbatched path (``batching=False``, the
   function's default, not its examples') loads every file as mono (``librosa.load`` without ``mono=False``) and so
   duplicates the mono embedding even for stereo files, which doubles a mono FD; this module follows the batched
   path, which embeds the two channels;
4. per channel, as ``openl3.get_audio_embedding(hop_size=0.5, center=True)``: ``resampy.resample(filter=
   "kaiser_best")`` to 48 kHz, 24 000 zeros in front (frame centres on the hop grid), zeros at the end so every
   sample is covered, 1 s frames every 0.5 s (a clip of at most 0.5 s gives one zero-padded frame);
5. per frame, the kapre 0.3.7 front end: |STFT| (2048-point periodic Hann window, hop 242, zero-padded at the end:
   ``pad_end=True``) -> 256 Slaney mel bands 0-24 kHz (``librosa.filters.mel``, norm "slaney") ->
   ``10 log10(max(x, 1e-10))`` minus the frame's maximum, floored at -80 dB: a [256, 199] image;
6. the network: batch norm, then four blocks of two 3x3 "same" convolutions (64, 128, 256, 512 filters), each
   followed by batch norm (eps 1e-3) and ReLU, with 2x2 max pooling after the first three blocks; the last
   convolution (``audio_embedding_layer``) has neither; max pooling over its whole (32, 24) map gives 512 values.

Packages: openl3 itself does not install here (its setup.py downloads the weights from GitHub while building, and it
needs TensorFlow and resampy<0.3). torchopenl3 installs but ports openl3 0.3.x, whose front end differs from 0.4.2's
(HTK mel scale, centred padding), so the network is written here from openl3 0.4.2's definition; the tests check it
layer for layer against torchopenl3's port on the same weights, and the front end against librosa.

Checkpoint: openl3's own Keras weights ``openl3_audio_mel256_music.h5`` (models branch
``openl3_audio_mel256_music-v0_4_0.h5.gz``; gzip or not), an HDF5 ``save_weights`` file whose root attribute
``layer_names`` lists the layers in model order and whose layers with weights hold, in order, gamma, beta,
moving mean, moving variance (batch norm) or kernel [3, 3, in, out], bias (convolution). Like Keras's
``load_weights``, weights are matched by order among the layers that have any; every shape is checked.
"""
from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np

from metrics.backbones import channels_first, checkpoint_identity, resolve_device
from metrics.base import ExtractorInfo, MetricError

CHECKPOINT_NAME = "openl3-mel256-music"
CHECKPOINT_FILES = ("openl3_audio_mel256_music-v0_4_0.h5.gz", "openl3_audio_mel256_music.h5")
MODEL_SR = 48_000
EVAL_SR = 44_100  # stable-audio-metrics samplingrate for Stable Audio comparisons
PEAK_DB = -1.0
HOP_S = 0.5
N_FFT = 2048
STFT_HOP = 242
N_MELS = 256
DB_AMIN = 1e-10
DB_RANGE = 80.0
EMBEDDING = 512
FILTERS = (64, 64, 128, 128, 256, 256, 512, 512)  # the eight 3x3 convolutions; the last is audio_embedding_layer
POOL_AFTER = (1, 3, 5)  # 2x2 max pooling after these convolutions (end of blocks 1-3)
BN_EPS = 1e-3  # tf.keras BatchNormalization default


def resolve_openl3_checkpoint(checkpoint: str | Path) -> Path:
    """The weights file: `checkpoint` itself, or the published file (gzip or plain) inside a folder."""
    p = Path(checkpoint).expanduser()
    if p.is_dir():
        found = [p / f for f in CHECKPOINT_FILES if (p / f).is_file()]
        p = found[0] if found else p / CHECKPOINT_FILES[0]
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {p} (expected openl3's {' or '.join(CHECKPOINT_FILES)})")
    return p


def read_keras_weights(path: Path) -> list[list[np.ndarray]]:
    """Weights of each layer that has any, in model order, from a Keras HDF5 weights file (gzip allowed)."""
    import h5py

    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    with h5py.File(io.BytesIO(raw), "r") as f:
        root = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
        if "layer_names" not in root.attrs:
            raise ValueError(f"{path.name} is not a Keras weights file (no layer_names attribute)")
        layers = []
        for name in root.attrs["layer_names"]:
            g = root[name.decode() if isinstance(name, bytes) else name]
            names = [n.decode() if isinstance(n, bytes) else n for n in g.attrs.get("weight_names", [])]
            if names:
                layers.append([np.asarray(g[n]) for n in names])
    return layers


def build_network():
    """The mel256 audio network of openl3 0.4.2, uninitialised: [B, 1, 256, 199] log-mel images -> [B, 512]."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class OpenL3Mel256(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.input_norm = nn.BatchNorm2d(1, eps=BN_EPS)
            ins = (1,) + FILTERS[:-1]
            self.convs = nn.ModuleList(nn.Conv2d(i, o, 3, padding=1) for i, o in zip(ins, FILTERS))
            self.norms = nn.ModuleList(nn.BatchNorm2d(o, eps=BN_EPS) for o in FILTERS[:-1])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.input_norm(x)
            for i, conv in enumerate(self.convs):
                x = conv(x)
                if i < len(self.norms):
                    x = F.relu(self.norms[i](x))
                if i in POOL_AFTER:
                    x = F.max_pool2d(x, 2, 2)
            if x.shape[-2:] != (32, 24):
                raise ValueError(f"unexpected embedding map {tuple(x.shape[-2:])}, expected (32, 24)")
            return F.max_pool2d(x, (32, 24)).flatten(1)

    return OpenL3Mel256()


def load_network(layers: list[list[np.ndarray]]):
    """The network with Keras weights (read_keras_weights) copied in, kernels [kh, kw, in, out] -> [out, in, kh, kw]."""
    import torch

    net = build_network()
    norms = [net.input_norm, *net.norms]
    modules = [m for pair in zip(norms, net.convs) for m in pair]  # BN, conv, BN, conv, ...: Keras order
    if len(layers) != len(modules):
        raise ValueError(f"expected {len(modules)} layers with weights (OpenL3 mel256), found {len(layers)}")
    with torch.no_grad():
        for k, (m, w) in enumerate(zip(modules, layers)):
            if isinstance(m, torch.nn.BatchNorm2d):
                targets, values = (m.weight, m.bias, m.running_mean, m.running_var), w
            else:
                targets, values = (m.weight, m.bias), [np.transpose(w[0], (3, 2, 0, 1)), *w[1:]]
            if len(values) != len(targets) or any(v.shape != tuple(t.shape) for v, t in zip(values, targets)):
                raise ValueError(f"layer {k} ({type(m).__name__}): weights of shapes {[v.shape for v in values]}, "
                                 f"expected {[tuple(t.shape) for t in targets]}")
            for t, v in zip(targets, values):
                t.copy_(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)))
    return net.eval().requires_grad_(False)


class Kapre037MelFrontEnd:
    """openl3 0.4.2's kapre front end: 1 s frames at 48 kHz [B, 48000] -> dB mel images [B, 1, 256, 199] (float32).

    Computed in float64, then rounded: the dB image spans 80 dB of MAGNITUDE (10 log10 |X|, 8 decades), so in bands
    without content (above 22.05 kHz of 44.1 kHz audio) an STFT's float32 round-off can move it by over 1 dB
    (torch.stft in float32 did, measured here; librosa's float32 STFT stays within 1e-4 dB of float64). Upstream
    runs TensorFlow's float32 STFT, whose round-off nothing else reproduces; float64 keeps ours the same on every
    FFT library and device.
    """

    def __init__(self, device: str = "cpu") -> None:
        import librosa
        import torch

        self.window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64, device=device)  # tf hann_window
        basis = librosa.filters.mel(sr=MODEL_SR, n_fft=N_FFT, n_mels=N_MELS, fmin=0.0, fmax=None, htk=False,
                                    norm="slaney").astype(np.float32)  # kapre: .astype(K.floatx())
        self.basis = torch.from_numpy(basis).to(device=device, dtype=torch.float64)

    def __call__(self, frames):
        import torch

        # tf.signal.stft(pad_end=True): frames every hop from sample 0, the last ones zero-filled past the end
        x = torch.nn.functional.pad(frames.to(torch.float64), (0, N_FFT - 1))
        mag = torch.stft(x, N_FFT, hop_length=STFT_HOP, window=self.window, center=False, return_complex=True).abs()
        db = 10.0 * torch.log10(torch.clamp(self.basis @ mag, min=DB_AMIN))
        db = torch.clamp(db - db.amax(dim=(1, 2), keepdim=True), min=-DB_RANGE)  # kapre 0.1.4 scaling
        return db.unsqueeze(1).to(torch.float32)


def frame_audio(y48: np.ndarray, hop: int) -> np.ndarray:
    """openl3 0.4.2 ``_preprocess_audio_batch`` framing (center=True): [n] at 48 kHz -> [frames, 48000]."""
    frame = MODEL_SR
    x = np.pad(y48, (frame // 2, 0))
    n = x.size
    pad = frame - n if n < frame else int(np.ceil((n - frame) / hop)) * hop - (n - frame)
    x = np.pad(x, (0, max(pad, 0)))
    count = 1 + (x.size - frame) // hop
    return np.stack([x[i * hop:i * hop + frame] for i in range(count)])


class OpenL3Embedding:
    """OpenL3 (music, mel256, 512) embeddings per 1 s frame every 0.5 s, stable-audio-metrics' audio handling
    (module docstring): [frames, 1024] for ``channels=2`` (L | R), [frames, 512] for ``channels=1``."""

    def __init__(self, checkpoint: str | Path, device: str | None = None, channels: int = 2,
                 eval_sample_rate: int = EVAL_SR, hop_s: float = HOP_S, batch_size: int = 16) -> None:
        if channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, got {channels}")
        if not 0 < eval_sample_rate <= MODEL_SR:
            raise ValueError(f"eval_sample_rate must be in (0, {MODEL_SR}] Hz, got {eval_sample_rate}")
        path = resolve_openl3_checkpoint(checkpoint)
        self.path = path
        self.device = resolve_device(device)
        self.net = load_network(read_keras_weights(path)).to(self.device)
        self.front = Kapre037MelFrontEnd(self.device)
        self.channels = channels
        self.eval_sr = int(eval_sample_rate)
        self.hop = int(hop_s * MODEL_SR)  # openl3: hop_len = int(hop_size * TARGET_SR)
        self.batch_size = max(1, int(batch_size))
        self.info = ExtractorInfo(
            name="openl3-music-mel256-512", version=1,
            params={"content_type": "music", "input_repr": "mel256", "embedding_size": EMBEDDING,
                    "output": f"[frames, {EMBEDDING * channels}]"
                              + (": left | right embeddings, mono duplicated" if channels == 2 else ": channel mean"),
                    "peak_normalise_db": PEAK_DB, "eval_sample_rate": self.eval_sr,
                    "resampler": f"soxr.resample HQ to {self.eval_sr} Hz, then resampy kaiser_best to {MODEL_SR} Hz",
                    "frame_s": 1.0, "hop_s": float(hop_s), "center": True,
                    "front_end": "kapre 0.3.7 (openl3 0.4.2): |STFT| n_fft 2048 periodic hann hop 242 pad_end, "
                                 "256 slaney mels, 10log10(max(x,1e-10)) - frame max, floor -80 dB",
                    "reference": "stable-audio-metrics src/openl3_fd.py extract_embeddings (batched path)"},
            sample_rate=None, mono=False,
            backbone=checkpoint_identity(CHECKPOINT_NAME, path),
        )

    def prepare(self, audio: np.ndarray, sample_rate: int) -> list[np.ndarray]:
        """Native [channels, n] (or [n]) -> the 48 kHz float32 signals openl3 embeds: [L, R], or one signal (a mono
        clip, or ``channels=1``)."""
        import pyloudnorm
        import resampy
        import soxr

        x = channels_first(audio)
        if not np.any(x):
            raise MetricError("silent audio: peak normalisation to -1 dBFS is undefined")
        y = pyloudnorm.normalize.peak(x.T, PEAK_DB).astype(np.float32)  # [n, channels], as librosa.load(...).T
        y = soxr.resample(y, int(sample_rate), self.eval_sr)
        if self.channels == 1 or y.shape[1] == 1:
            signals = [y.mean(axis=1)]  # openl3 downmixes [n, C] by the mean; a mono clip is one signal
        else:
            signals = [y[:, 0], y[:, 1]]
        return [resampy.resample(np.ascontiguousarray(s), self.eval_sr, MODEL_SR, filter="kaiser_best")
                for s in signals]

    def embed_frames(self, frames: np.ndarray) -> np.ndarray:
        """[B, 48000] 48 kHz frames -> [B, 512]."""
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(frames), self.batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(frames[i:i + self.batch_size], np.float32))
                out.append(self.net(self.front(batch.to(self.device))).float().cpu().numpy())
        return np.concatenate(out)

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        per_channel = [self.embed_frames(frame_audio(s, self.hop)) for s in self.prepare(audio, sample_rate)]
        if self.channels == 2 and len(per_channel) == 1:  # mono clip: stable-audio-metrics copies it to L and R
            per_channel *= 2
        return np.concatenate(per_channel, axis=1)
