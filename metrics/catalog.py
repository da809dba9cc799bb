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


def _kl(classifier, label: str, direction: str):
    """KL on 10 s windows, named kl-<label>-<direction>-w10s as registered (label: passt, pann)."""
    from metrics.kl import KLDivergence

    return KLDivergence(classifier, direction=direction, window_s=10.0, label=label)


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
