"""EnCodec 24 kHz encoder embeddings ("encodec-emb" in microsoft/fadtk): the continuous encoder output before
the residual vector quantiser, 128-d at 75 frames per second.

Checkpoint: ``encodec_24khz-d7cc33bc.th`` (known name "encodec-24khz"), the plain state dict the encodec
package publishes for its whole 24 kHz model (encoder, quantizer, decoder; weight-norm ``weight_g`` /
``weight_v`` keys). The network is the encodec package's own, built offline
(``EncodecModel.encodec_model_24khz(pretrained=False)``: causal SEANet, weight norm, mono). The whole
published state dict is loaded into it strictly (which checks that the file is the 24 kHz model); only the
encoder is kept.

Audio path, as ``encodec.utils.convert_audio`` (the package's documented preprocessing, used by fadtk's
loader): mean of the channels, then torchaudio's ``transforms.Resample`` with its defaults (windowed sinc,
``sinc_interp_hann``, 6 zero crossings, rolloff 0.99; kernel computed in float64, applied in float32) to
24 kHz, then the encoder on the whole clip at once (its LSTM carries state along the clip, so the clip is not
cut into short pieces). Clips longer than ``chunk_s`` (default 180 s; fadtk truncates at 3 minutes instead)
are encoded as consecutive independent chunks of ``chunk_s`` (whole frames) and the frames concatenated.

Output: float32 ``[frames, 128]``, frames = ceil(n / 320) for n samples at 24 kHz: the encoder pads the last
partial frame itself (as upstream), so any non-empty audio gives at least one frame; empty audio raises
:class:`metrics.base.MetricError`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from metrics.backbones import checkpoint_identity, resolve_checkpoint, resolve_device
from metrics.base import ExtractorInfo, MetricError

KNOWN_NAME = "encodec-24khz"
CHECKPOINT_FILE = "encodec_24khz-d7cc33bc.th"
MODEL_RATE = 24_000
HOP = 320  # encoder stride 2 * 4 * 5 * 8: 75 frames per second
EMBEDDING_DIM = 128
RESAMPLER = ("torchaudio.transforms.Resample defaults (sinc_interp_hann, width 6, rolloff 0.99, "
             "float64 kernel applied in float32), as encodec.utils.convert_audio")


class EncodecEmbedding:
    """AudioExtractor: EnCodec 24 kHz encoder output before quantisation, [frames, 128] float32 at 75 Hz.

    ``checkpoint``: ``encodec_24khz-d7cc33bc.th`` or a folder holding it (what
    ``vm_eval.weights.require("encodec-24khz")`` returns). Takes native-rate audio with any channel count
    (``sample_rate=None``): it downmixes and resamples itself.
    """

    def __init__(self, checkpoint: str | Path, device: str | None = None, chunk_s: float = 180.0) -> None:
        path = resolve_checkpoint(checkpoint, CHECKPOINT_FILE)
        if chunk_s <= 0 or round(chunk_s * MODEL_RATE) % HOP:
            frame_ms = 1000 * HOP / MODEL_RATE
            raise ValueError(f"chunk_s must be a positive whole number of {frame_ms:.3f} ms frames")
        from encodec import EncodecModel

        state = torch.load(path, map_location="cpu", weights_only=True)
        model = EncodecModel.encodec_model_24khz(pretrained=False)  # architecture only, nothing downloaded
        model.load_state_dict(state, strict=True)
        self.device = resolve_device(device)
        self.encoder = model.encoder.to(self.device).eval()
        self.chunk = int(round(chunk_s * MODEL_RATE))
        self._resamplers: dict[int, torch.nn.Module] = {}  # one per input rate: the kernel is built once
        self.info = ExtractorInfo(
            name="encodec-24khz-emb", version=1, sample_rate=None, mono=True,
            params={
                "model_rate": MODEL_RATE, "downmix": "mean of channels", "resampler": RESAMPLER,
                "frame_rate_hz": MODEL_RATE / HOP, "hop_samples": HOP, "chunk_s": chunk_s,
                "partial_window": "last partial frame padded by the encoder (as upstream)",
                "layer": "SEANet encoder output (continuous, before the residual vector quantiser)",
                "dim": EMBEDDING_DIM,
            },
            backbone=checkpoint_identity(KNOWN_NAME, path),
        )

    def resampled(self, audio: np.ndarray, sample_rate: int) -> torch.Tensor:
        """Mono [1, n] float32 tensor at 24 kHz, as encodec.utils.convert_audio prepares it."""
        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
        x = x[None] if x.ndim == 1 else x.mean(0, keepdim=True)
        if sample_rate != MODEL_RATE:
            if sample_rate not in self._resamplers:
                import torchaudio

                self._resamplers[sample_rate] = torchaudio.transforms.Resample(sample_rate, MODEL_RATE)
            x = self._resamplers[sample_rate](x)
        return x

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        if np.asarray(audio).shape[-1] == 0:
            raise MetricError("empty audio has no EnCodec frames")
        x = self.resampled(audio, sample_rate)
        out = []
        with torch.inference_mode():
            for start in range(0, x.shape[-1], self.chunk):
                piece = x[None, :, start:start + self.chunk].to(self.device)  # [1, 1, n]
                out.append(self.encoder(piece)[0].T.float().cpu())  # [frames, 128]
        return torch.cat(out).numpy().astype(np.float32, copy=False)
