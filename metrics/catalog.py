"""Named compositions of backbones and metric definitions: the targets of the metric registry.

Each factory takes the checkpoint path(s) the harness resolved (vm_eval.weights) and returns a built metric whose
identity carries the backbone's name, file and sha256. Imports happen inside the factories, so listing the
registry never loads torch.
"""
from __future__ import annotations

from pathlib import Path


def fad_logmel_nonstandard():
    """FAD on log-mel statistics: a NON-STANDARD stand-in that needs no weights (so the demo scores offline)."""
    from metrics.backbones.logmel import LogMelStats
    from metrics.fad import FrechetAudioDistance

    return FrechetAudioDistance(LogMelStats(), name="fad-logmel-nonstandard")


def fad_vggish(checkpoint: Path):
    from metrics.backbones.vggish import VGGishEmbedding
    from metrics.fad import FrechetAudioDistance

    return FrechetAudioDistance(VGGishEmbedding(checkpoint), name="fad-vggish")


def fad_pann(checkpoint: Path):
    from metrics.backbones.pann import PannEmbedding
    from metrics.fad import FrechetAudioDistance

    return FrechetAudioDistance(PannEmbedding(checkpoint), name="fad-pann-cnn14-16k")


def fad_encodec(checkpoint: Path):
    from metrics.backbones.encodec_emb import EncodecEmbedding
    from metrics.fad import FrechetAudioDistance

    return FrechetAudioDistance(EncodecEmbedding(checkpoint), name="fad-encodec-24khz")


def _fad_clap(checkpoint: Path, name: str):
    from metrics.backbones.clap import ClapAudio
    from metrics.fad import FrechetAudioDistance

    return FrechetAudioDistance(ClapAudio(checkpoint), name=name)


def fad_clap_music(checkpoint: Path):
    return _fad_clap(checkpoint, "fad-clap-music")


def fad_clap_630k(checkpoint: Path):
    return _fad_clap(checkpoint, "fad-clap-630k-audioset")


def _kl(classifier, label: str, direction: str, activation: str = "softmax"):
    """KL on 10 s windows, named kl-[sigmoid-]<label>-<direction>-w10s as registered (label: passt, pann)."""
    from metrics.kl import KLDivergence

    return KLDivergence(classifier, direction=direction, window_s=10.0, label=label, activation=activation)


def kl_passt_ref_gen(checkpoint: Path):
    from metrics.backbones.passt import PasstClassifier

    return _kl(PasstClassifier(checkpoint, window_s=10.0), "passt", "ref-gen")


def kl_passt_gen_ref(checkpoint: Path):
    from metrics.backbones.passt import PasstClassifier

    return _kl(PasstClassifier(checkpoint, window_s=10.0), "passt", "gen-ref")


def kl_pann_ref_gen(checkpoint: Path):
    from metrics.backbones.pann import PannClassifier

    return _kl(PannClassifier(checkpoint, window_s=10.0), "pann", "ref-gen")


def kl_pann_gen_ref(checkpoint: Path):
    from metrics.backbones.pann import PannClassifier

    return _kl(PannClassifier(checkpoint, window_s=10.0), "pann", "gen-ref")


def _semantic(checkpoints: dict):
    from metrics.backbones.clap import ClapAudio, ClapText
    from metrics.backbones.clip import ClipVisual
    from metrics.backbones.clip_text import ClipTextEncoder
    from metrics.semantic import VideoDescriptors

    clap = checkpoints["clap-music"]
    audio = ClapAudio(clap)
    text = ClapText(clap, tokenizer=checkpoints["roberta-base-tokenizer"])
    clip = checkpoints["clip-vit-b-32"]
    return audio, text, VideoDescriptors(ClipVisual(clip), ClipTextEncoder(clip))


def clap_caption(checkpoints: dict):
    from metrics.backbones.clap import ClapAudio, ClapText
    from metrics.semantic import ClapCaptionScore

    clap = checkpoints["clap-music"]
    return ClapCaptionScore(ClapAudio(clap), ClapText(clap, tokenizer=checkpoints["roberta-base-tokenizer"]))


def clap_video_prompt(checkpoints: dict):
    from metrics.semantic import ClapVideoPromptScore

    return ClapVideoPromptScore(*_semantic(checkpoints))


def clap_video_retrieval(checkpoints: dict):
    from metrics.semantic import ClapVideoRetrieval

    return ClapVideoRetrieval(*_semantic(checkpoints))


def beat_visual_f1_clip(checkpoint: Path):
    """Beats against VidMusician's own visual-change signal: 1 - cos of CLIP patch features between frames."""
    from metrics.alignment import BeatVisualF1
    from metrics.backbones.clip import ClipVisual
    from metrics.visual_change import ClipPatchChanges

    visual = ClipVisual(checkpoint)
    return BeatVisualF1(ClipPatchChanges(visual.patch_features, visual.backbone), "clip")


# Frechet distances on further backbones, each with the audio handling of the toolkit that defines it (issue 15).
def fd_passt(checkpoint: Path):
    """FD-PaSST as hkchengrex/av-benchmark computes it: one 768-d PaSST-S embedding per clip (its first 10 s)."""
    from metrics.backbones.passt import PasstEmbedding
    from metrics.fad import FrechetAudioDistance

    return FrechetAudioDistance(PasstEmbedding(checkpoint), name="fd-passt",
                                definition="Frechet distance on PaSST-S clip embeddings (768-d, first 10 s; "
                                           "av-benchmark FD-PaSST)")


def fd_openl3(checkpoint: Path):
    """FD-OpenL3 as Stability-AI/stable-audio-metrics computes it for Stable Audio (stereo, 44.1 kHz, hop 0.5 s)."""
    from metrics.backbones.openl3 import OpenL3Embedding
    from metrics.fad import FrechetAudioDistance

    return FrechetAudioDistance(OpenL3Embedding(checkpoint), name="fd-openl3-music-mel256-512",
                                definition="Frechet distance on OpenL3 music/mel256/512 embeddings of the left and "
                                           "right channels (1024-d every 0.5 s; stable-audio-metrics FD-OpenL3)")


def fad_mert(checkpoint: Path):
    """FAD on MERT-v1-95M as microsoft/fadtk computes it (layer 12, every 75 Hz frame)."""
    from metrics.backbones.mert import MertEmbedding
    from metrics.fad import FrechetAudioDistance

    return FrechetAudioDistance(MertEmbedding(checkpoint), name="fad-mert-v1-95m",
                                definition="Frechet Audio Distance on MERT-v1-95M layer-12 frames (768-d, 75 Hz; "
                                           "fadtk MERT-v1-95M)")


# --- issue 15, the metrics the field reports: Density / Coverage, Inception Score, KL on sigmoid ---------------
def _density_coverage_clap(checkpoint: Path, statistic: str):
    """On one CLAP-music embedding per clip: the L2-normalised mean of its 10 s windows (ClapAudio.embed_clip)."""
    from metrics.backbones.clap import ClapAudio, pool_windows
    from metrics.density_coverage import DensityCoverage

    return DensityCoverage(ClapAudio(checkpoint), statistic, f"{statistic}-clap-music",
                           pooling="L2-normalised mean of the 10 s window embeddings (ClapAudio.embed_clip)",
                           pool=pool_windows)


def _density_coverage_vggish(checkpoint: Path, statistic: str):
    """On one VGGish embedding per clip: the mean of its 0.96 s frame embeddings."""
    from metrics.backbones.vggish import VGGishEmbedding
    from metrics.density_coverage import DensityCoverage

    return DensityCoverage(VGGishEmbedding(checkpoint), statistic, f"{statistic}-vggish",
                           pooling="mean of the 0.96 s frame embeddings")


def density_clap_music(checkpoint: Path):
    return _density_coverage_clap(checkpoint, "density")


def coverage_clap_music(checkpoint: Path):
    return _density_coverage_clap(checkpoint, "coverage")


def density_vggish(checkpoint: Path):
    return _density_coverage_vggish(checkpoint, "density")


def coverage_vggish(checkpoint: Path):
    return _density_coverage_vggish(checkpoint, "coverage")


def is_pann(checkpoint: Path):
    """Inception Score on PANN Cnn14 (32 kHz) logits of the whole clip, 10 splits (audioldm_eval)."""
    from metrics.backbones.pann import PannClassifier
    from metrics.inception import InceptionScore

    return InceptionScore(PannClassifier(checkpoint, window_s=None), "is-pann-cnn14")


def kl_sigmoid_passt_ref_gen(checkpoint: Path):
    from metrics.backbones.passt import PasstClassifier

    return _kl(PasstClassifier(checkpoint, window_s=10.0), "passt", "ref-gen", "sigmoid")


def kl_sigmoid_pann_ref_gen(checkpoint: Path):
    from metrics.backbones.pann import PannClassifier

    return _kl(PannClassifier(checkpoint, window_s=10.0), "pann", "ref-gen", "sigmoid")


def imagebind_score(checkpoint: Path):
    """ImageBind score (av-benchmark IB-Score, 0-1 scale): one ImageBind-huge network for video and audio."""
    from metrics.backbones.imagebind import ImageBind, ImageBindAudio, ImageBindVideo
    from metrics.imagebind_score import ImageBindScore

    model = ImageBind(checkpoint)
    return ImageBindScore(ImageBindAudio(model), ImageBindVideo(model))
