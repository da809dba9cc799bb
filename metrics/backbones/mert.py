"""MERT-v1-95M frame embeddings as microsoft/fadtk uses them for FAD-MERT.

Definition: Li et al. 2024, "MERT: Acoustic Music Understanding Model with Large-Scale Self-supervised Training";
FAD on it as microsoft/fadtk 1.1.0 computes it (``fadtk/model_loader.py`` ``MERTModel(size='v1-95M', layer=12)``,
audio prepared by ``fadtk/fad.py`` ``FrechetAudioDistance.load_audio`` and ``ModelLoader.load_wav``).

``MertEmbedding(checkpoint)(audio, sample_rate) -> float32 [frames, 768]`` on native audio [channels, n]:

1. mono: the mean of the channels; resample to 24 kHz with torchaudio's ``Resample(lowpass_filter_width=64,
   rolloff=0.9475937167399596, resampling_method="sinc_interp_kaiser", beta=14.769656459379492)`` (fadtk's
   ``TORCHAUDIO_RESAMPLING`` path);
2. a 16-bit round trip: fadtk writes the resampled audio to a PCM_S16 WAV (``torchaudio.save`` with the soundfile
   backend, so libsndfile 1.2 stores ``floor(32768 x)`` clipped to int16) and reads it back as int16 / 32768;
3. at most 6 minutes (``limit_minutes=6``: longer audio is cut);
4. the checkpoint's own ``Wav2Vec2FeatureExtractor`` (``preprocessor_config.json``; MERT normalises the clip to
   zero mean and unit variance);
5. the whole clip in one forward pass, ``hidden_states[12]``: the output of the 12th (last) transformer layer, the
   layer fadtk's "MERT-v1-95M" uses; 75 frames per second, 768-d, no pooling (every frame is a FAD sample);
6. rounded to float16, as ``ModelLoader.get_embedding`` stores fadtk's embeddings (the FAD statistics are then
   computed in float64; fadtk averages the float16 values in float16).

Model: MERT's own code lives in its hub repository (``modeling_MERT.py``, loaded with ``trust_remote_code``), which
is not reachable here. ``MERTModel`` there subclasses transformers' ``HubertModel``: with MERT-v1-95M's settings
(``feature_extractor_cqt`` false, ``deepnorm`` false, ``attention_relax`` -1) it builds ``HubertFeatureEncoder``,
``MERTFeatureProjection`` (the parameters and forward of ``HubertFeatureProjection`` with ``feat_proj_layer_norm``)
and ``HubertEncoder``, and its forward is ``HubertModel.forward``. So the checkpoint is loaded into transformers'
``HubertModel`` with a ``HubertConfig`` made from its ``config.json`` (``conv_pos_batch_norm`` false, as fadtk sets
it), without running remote code; every tensor of the file must be used and every parameter loaded. A config that
asks for the CQT branch, DeepNorm or attention relaxation, which HubertModel lacks, is refused.

Checkpoint: the hub folder of ``m-a-p/MERT-v1-95M`` with ``config.json``, ``preprocessor_config.json`` and
``pytorch_model.bin`` (the remote code files may be there too; they are not run).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from metrics.backbones import channels_first, checkpoint_identity, resolve_device
from metrics.base import ExtractorInfo, MetricError

CHECKPOINT_NAME = "mert-v1-95m"
FILES = ("config.json", "preprocessor_config.json", "pytorch_model.bin")
SAMPLE_RATE = 24_000
LAYER = 12  # fadtk MERTModel(layer=12): hidden_states[12]
LIMIT_S = 6 * 60  # fadtk MERTModel(limit_minutes=6)
RESAMPLE = {"lowpass_filter_width": 64, "rolloff": 0.9475937167399596, "resampling_method": "sinc_interp_kaiser",
            "beta": 14.769656459379492}  # fadtk.fad.FrechetAudioDistance.load_audio
# MERT-only options that HubertModel has no counterpart for, with the value that means "off"
MERT_ONLY = {"feature_extractor_cqt": False, "deepnorm": False}
NOT_CONFIG = ("model_type", "architectures", "auto_map", "transformers_version", "torch_dtype")


def resolve_mert_folder(checkpoint: str | Path) -> Path:
    p = Path(checkpoint).expanduser()
    if p.is_file():
        p = p.parent
    missing = [f for f in FILES if not (p / f).is_file()]
    if missing:
        raise FileNotFoundError(f"MERT checkpoint folder {p} lacks {', '.join(missing)} (expected the files of the "
                                f"m-a-p/MERT-v1-95M hub repository: {', '.join(FILES)})")
    return p


def hubert_config(folder: Path):
    """HubertConfig from a MERT config.json; refuses the MERT options HubertModel cannot reproduce."""
    from transformers import HubertConfig

    raw = json.loads((folder / "config.json").read_text())
    for key, off in MERT_ONLY.items():
        if raw.get(key, off) != off:
            raise NotImplementedError(f"{folder}/config.json sets {key}={raw[key]!r}: only MERT's remote code "
                                      f"implements it (MERT-v1-95M has {key}={off!r})")
    if float(raw.get("attention_relax", -1.0)) > 0:
        raise NotImplementedError(f"{folder}/config.json sets attention_relax={raw['attention_relax']}: only MERT's "
                                  "remote code implements it (MERT-v1-95M has -1)")
    cfg = HubertConfig(**{k: v for k, v in raw.items() if k not in NOT_CONFIG and k not in MERT_ONLY})
    cfg.conv_pos_batch_norm = False  # fadtk: cfg.conv_pos_batch_norm = False
    return cfg


def load_mert(folder: Path):
    """transformers HubertModel holding the MERT weights (module docstring), eval mode."""
    from transformers import HubertModel
    from transformers.utils import logging as hf_logging

    cfg = hubert_config(folder)
    hf_logging.disable_progress_bar()
    model, info = HubertModel.from_pretrained(str(folder), config=cfg, local_files_only=True, use_safetensors=False,
                                              output_loading_info=True)
    bad = {k: sorted(v) for k, v in info.items() if k != "error_msgs" and v}
    if bad or info.get("error_msgs"):
        raise ValueError(f"{folder / FILES[2]} does not load as MERT into HubertModel: {bad or info['error_msgs']}")
    return model.eval()


def receptive_field(config) -> int:
    """Samples the convolutional feature encoder needs for one frame (400 for MERT-v1: kernels 10,3,3,3,3,2,2)."""
    r = 1
    for k, s in zip(reversed(config.conv_kernel), reversed(config.conv_stride)):
        r = (r - 1) * s + k
    return r


def int16_round_trip(x: np.ndarray) -> np.ndarray:
    """fadtk's PCM_S16 WAV round trip: libsndfile writes floor(32768 x) clipped to int16; read back / 32768."""
    q = np.clip(np.floor(np.asarray(x, np.float64) * 32768.0), -32768, 32767)
    return q / 32768.0


class MertEmbedding:
    """MERT-v1-95M layer-12 frames [frames, 768] at 75 Hz, fadtk's audio handling (module docstring)."""

    def __init__(self, checkpoint: str | Path, device: str | None = None, layer: int = LAYER) -> None:
        from transformers import Wav2Vec2FeatureExtractor

        folder = resolve_mert_folder(checkpoint)
        self.device = resolve_device(device)
        self.model = load_mert(folder).to(self.device)
        n_layers = int(self.model.config.num_hidden_layers)
        if not 0 <= layer <= n_layers:
            raise ValueError(f"layer must be in 0..{n_layers} (hidden_states of a {n_layers}-layer model), got {layer}")
        self.layer = int(layer)
        self.processor = Wav2Vec2FeatureExtractor.from_pretrained(str(folder), local_files_only=True)
        if int(self.processor.sampling_rate) != SAMPLE_RATE:
            raise ValueError(f"{folder}/preprocessor_config.json: sampling_rate {self.processor.sampling_rate}, "
                             f"MERT-v1 takes {SAMPLE_RATE} Hz")
        self.min_samples = receptive_field(self.model.config)
        self._resamplers: dict[int, object] = {}
        self.info = ExtractorInfo(
            name="mert-frames", version=1,
            params={"layer": self.layer, "output": f"hidden_states[{self.layer}] [frames, "
                                                   f"{self.model.config.hidden_size}], 75 Hz, no pooling",
                    "model_sample_rate": SAMPLE_RATE, "downmix": "mean of channels before resampling",
                    "resampler": "torchaudio Resample " + ", ".join(f"{k}={v}" for k, v in RESAMPLE.items()),
                    "quantise": "PCM_S16 round trip: floor(32768 x) clipped, / 32768",
                    "limit_s": LIMIT_S, "normalise": f"Wav2Vec2FeatureExtractor do_normalize="
                                                    f"{bool(self.processor.do_normalize)}",
                    "stored": "float16", "reference": "fadtk 1.1.0 model_loader.MERTModel(size='v1-95M', layer=12)"},
            sample_rate=None, mono=False,
            backbone=checkpoint_identity(CHECKPOINT_NAME, folder / FILES[2]),
        )

    def prepare(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Native [channels, n] (or [n]) -> what fadtk feeds its processor: 24 kHz mono float64 on the int16 grid."""
        import torch
        import torchaudio

        x = channels_first(audio)
        mono = torch.from_numpy(np.ascontiguousarray(x)).mean(dim=0, keepdim=True)
        sr = int(sample_rate)
        if sr != SAMPLE_RATE:
            if sr not in self._resamplers:
                self._resamplers[sr] = torchaudio.transforms.Resample(sr, SAMPLE_RATE, **RESAMPLE)
            mono = self._resamplers[sr](mono)
        return int16_round_trip(mono[0].numpy())[:LIMIT_S * SAMPLE_RATE]

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        import torch

        y = self.prepare(audio, sample_rate)
        if len(y) < self.min_samples:
            raise MetricError(f"audio of {len(y) / SAMPLE_RATE:.4f} s is shorter than MERT's first frame "
                              f"({self.min_samples / SAMPLE_RATE:.4f} s)")
        inputs = self.processor(y, sampling_rate=SAMPLE_RATE, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            hidden = self.model(**inputs, output_hidden_states=True).hidden_states[self.layer]
        return hidden[0].float().cpu().numpy().astype(np.float16).astype(np.float32)
