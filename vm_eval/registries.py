"""The model and metric registries and their entries. Targets are imported only when an entry is used.

Other packages add rows here: `vidmusician` and `baselines` adapters to MODELS, `metrics` modules to METRICS.
"""
from __future__ import annotations

from vm_eval.registry import Entry, Registry

MODELS = Registry("model")
METRICS = Registry("metric")

# --- models ---------------------------------------------------------------------------------------------
MODELS.add(Entry("ground-truth", "baselines.reference:GroundTruth",
                 "the clip's own reference music (upper anchor for paired metrics)", family="reference"))
MODELS.add(Entry("random-retrieval", "baselines.reference:RandomRetrieval",
                 "music of another clip of the same split, drawn with the clip's seed (chance level)",
                 family="reference"))
MODELS.add(Entry("beat-sync", "baselines.beat_sync:BeatSync",
                 "procedural drums, bass and chords on a beat grid locked to the video's cuts and flashes "
                 "(rhythm-only lower bound, no weights)", family="reference", packages=("cv2",)))
MODELS.add(Entry("anchor-beat-shift", "baselines.anchors:ShiftedBeatAnchor",
                 "listening-test catch trial: the clip's own music shifted by 1.5 beats (its beats fall between the "
                 "cuts)", family="reference", packages=("madmom",), extra={"anchor": "rhythm"}))
MODELS.add(Entry("anchor-other-category", "baselines.anchors:OtherCategoryAnchor",
                 "listening-test catch trial: music of a clip of another category, drawn with the clip's seed",
                 family="reference", extra={"anchor": "content"}))
MODELS.add(Entry("dir:", "vm_eval.models.directory:DirectoryOutputs",
                 "score a folder of existing outputs: dir:PATH, files named <clip id>.wav|.mp4|...",
                 family="external", prefix=True))
_VIDM_PKGS = ("audiocraft", "transformers", "peft", "open_clip", "safetensors")
MODELS.add(Entry("vidmusician", "vm_eval.models.vidmusician:VidMusicianModel",
                 "VidMusician from a `vm-eval train` checkpoint (checkpoint=PATH, cfg=3.0, top_k, top_p, temperature, "
                 "stride_s)", family="vidmusician", packages=_VIDM_PKGS, extra={"needs_training": True, "gpu": True}))
MODELS.add(Entry("vidmusician-tiny-random", "vm_eval.models.vidmusician:tiny_random",
                 "VidMusician tiny preset on a RANDOM backbone, briefly trained by `vm-eval demo` (mechanics only)",
                 family="vidmusician", packages=_VIDM_PKGS, extra={"needs_training": True}))

_MGT_PKGS = ("audiocraft", "transformers", "sentencepiece", "safetensors")
MODELS.add(Entry("musicgen-text", "baselines.musicgen_text:MusicGenText",
                 "MusicGen on a per-clip text prompt: the caption, else CLIP zero-shot video descriptors (scale=medium|"
                 "small|large or backbone=DIR, t5, clip, prompt=auto|caption|descriptors, template, cfg, top_k, top_p, "
                 "temperature, stride_s)", family="baseline", packages=(*_MGT_PKGS, "open_clip"),
                 weights=("musicgen-medium", "t5-base", "clip-vit-b-32"), extra={"gpu": True}))
MODELS.add(Entry("musicgen-text-tiny-random", "baselines.musicgen_text:tiny_random",
                 "musicgen-text on a tiny RANDOM MusicGen + T5 + tokenizer written under the results folder, caption "
                 "prompts (mechanics only)", family="baseline", packages=_MGT_PKGS, extra={"uses_results": True}))

# Published systems: upstream code runs in the user's own environment for it (vm-eval.toml or VM_EVAL_<SYSTEM>_*
# variables); `vm-eval baselines check` says what each needs. Options: config=PATH, timeout_s (per clip), device.
_EXT = {"external": True, "gpu": True}  # upstream programs run on a GPU: Ray places them on one
for _name, _target, _summary in (
    ("cmt", "baselines.cmt:CMT", "CMT (Di et al. 2021): controllable music transformer, 5-track MIDI at the video's "
     "visual tempo, rendered with FluidSynth"),
    ("video2music", "baselines.video2music:Video2Music",
     "Video2Music (Kang et al. 2024): affective multimodal transformer, chords -> MIDI rendered with FluidSynth, "
     "<= 300 s (primer, key)"),
    ("diff-bgm", "baselines.diffbgm:DiffBGM",
     "Diff-BGM (Li et al. 2024): diffusion piano MIDI; only clips of BGM909 songs with precomputed features "
     "(id_from=video-stem|clip-id, uncond_scale=5.0, data_dir)"),
    ("m2ugen", "baselines.m2ugen:M2UGen", "M2UGen (Liu et al. 2023): LLaMA-2 7B + MusicGen-medium, 32 kHz mono "
     "(prompt, default 'Generate a music for the video.')"),
    ("vidmuse", "baselines.vidmuse:VidMuse", "VidMuse (Tian et al. 2025): audiocraft-based, 32 kHz audio "
     "(top_k, top_p, temperature, cfg_coef)"),
    ("gvmgen", "baselines.gvmgen:GVMGen", "GVMGen (Zuo et al. 2025): general video-to-music, AAC of its muxed video -> 32 kHz "
     "mono, <= 30 s"),
):
    MODELS.add(Entry(_name, _target, _summary, family="baseline", extra=_EXT))

# --- metrics --------------------------------------------------------------------------------------------
METRICS.add(Entry("duration-error", "metrics.duration:DurationError",
                  "|generated duration - video duration| in seconds (lower is better)", family="sanity"))
METRICS.add(Entry("loudness-lufs", "metrics.loudness:IntegratedLoudness",
                  "integrated loudness, ITU-R BS.1770-4, LUFS (descriptive)", family="level",
                  packages=("pyloudnorm",)))

# Audio quality and distribution (set-level FAD against the reference set; per-pair KL on AudioSet classifiers).
_FAD = "Frechet audio distance to the reference set"
METRICS.add(Entry("fad-vggish", "metrics.catalog:fad_vggish", f"{_FAD}, VGGish 16 kHz 128-d (no PCA, no ReLU)",
                  family="fad", packages=("torch", "resampy"), weights=("vggish",)))
METRICS.add(Entry("fad-pann-cnn14-16k", "metrics.catalog:fad_pann", f"{_FAD}, PANN Cnn14 16 kHz 2048-d",
                  family="fad", packages=("torch", "resampy"), weights=("pann-cnn14-16k",)))
METRICS.add(Entry("fad-encodec-24khz", "metrics.catalog:fad_encodec", f"{_FAD}, EnCodec 24 kHz encoder 128-d",
                  family="fad", packages=("torch", "encodec", "torchaudio"), weights=("encodec-24khz",)))
METRICS.add(Entry("fad-clap-music", "metrics.catalog:fad_clap_music", f"{_FAD}, LAION-CLAP music checkpoint",
                  family="fad", packages=("torch", "laion_clap"), weights=("clap-music",)))
METRICS.add(Entry("fad-clap-630k-audioset", "metrics.catalog:fad_clap_630k",
                  f"{_FAD}, LAION-CLAP 630k-audioset checkpoint", family="fad", packages=("torch", "laion_clap"),
                  weights=("clap-630k-audioset",)))
METRICS.add(Entry("fad-logmel-nonstandard", "metrics.catalog:fad_logmel_nonstandard",
                  f"{_FAD}, NON-STANDARD log-mel statistics (offline stand-in; not comparable with papers)",
                  family="fad"))
_KL = "KL divergence of AudioSet label distributions (softmax), per 10 s window"
for _bb, _w, _pk in (("passt", "passt", ("torch", "hear21passt")), ("pann", "pann-cnn14", ("torch", "resampy"))):
    METRICS.add(Entry(f"kl-{_bb}-ref-gen-w10s", f"metrics.catalog:kl_{_bb}_ref_gen",
                      f"{_KL}, KL(ref || gen) (audiocraft / audioldm_eval convention), {_bb}", family="kl",
                      packages=_pk, weights=(_w,)))
    METRICS.add(Entry(f"kl-{_bb}-gen-ref-w10s", f"metrics.catalog:kl_{_bb}_gen_ref",
                      f"{_KL}, KL(gen || ref) (stable-audio-metrics convention), {_bb}", family="kl",
                      packages=_pk, weights=(_w,)))

# Semantic alignment with CLAP (music checkpoint) and CLIP zero-shot video descriptors.
_SEM = ("clap-music", "roberta-base-tokenizer")
METRICS.add(Entry("clap-caption", "metrics.catalog:clap_caption", "CLAP music-caption cosine (clips with a caption)",
                  family="semantic", packages=("torch", "laion_clap", "transformers"), weights=_SEM))
METRICS.add(Entry("clap-video-prompt", "metrics.catalog:clap_video_prompt",
                  "CLAP cosine of the music and a prompt from CLIP zero-shot video descriptors (no caption needed)",
                  family="semantic", packages=("torch", "laion_clap", "open_clip"), weights=(*_SEM, "clip-vit-b-32")))
METRICS.add(Entry("clap-video-retrieval", "metrics.catalog:clap_video_retrieval",
                  "recall@1 of each clip's own video among the split's, by CLAP music-prompt similarity",
                  family="semantic", packages=("torch", "laion_clap", "open_clip"), weights=(*_SEM, "clip-vit-b-32")))

# Beat-to-visual-change alignment: madmom beats/onsets against visual events; each also reported against two nulls
# (the same music circularly shifted, another clip's music) as paired differences `name:vs-shift`, `name:vs-other`.
_ALIGN_PKGS = ("madmom", "scenedetect", "cv2")
for _name, _cls, _summary in (
    ("beat-visual-f1-cuts", "BeatVisualF1Cuts", "F-measure of music beats vs hard cuts (PySceneDetect adaptive), ±70 ms"),
    ("beat-visual-f1-framediff", "BeatVisualF1FrameDiff",
     "F-measure of music beats vs colour/edge frame-difference changes, ±70 ms"),
    ("beat-align-framediff", "BeatAlignFrameDiff", "Beat Align Score (Bailando), sigma 0.12 s, per visual change"),
    ("bhs-cuts-200ms", "BeatHitCuts", "beat hit score (LORIS form) of cuts by music beats, 0.2 s bins"),
    ("bcs-cuts-200ms", "BeatCoverageCuts", "beat coverage score (LORIS form) of music beats by cuts, 0.2 s bins"),
    ("av-align-adaptive", "AVAlignAdaptive", "AV-Align IoU of music onsets and optical-flow peaks (adaptive), ±1 frame"),
):
    METRICS.add(Entry(_name, f"metrics.alignment:{_cls}", _summary, family="alignment", packages=_ALIGN_PKGS))
METRICS.add(Entry("beat-visual-f1-clip", "metrics.catalog:beat_visual_f1_clip",
                  "F-measure of music beats vs peaks of 1 - cos of CLIP patch features (VidMusician's signal), ±70 ms",
                  family="alignment", packages=(*_ALIGN_PKGS, "open_clip"), weights=("clip-vit-b-32",)))

# The metrics recent video-to-music papers report (issue 15): Density and Coverage (prdc, k = 5, one embedding per
# clip, vs the reference set), the Inception Score (audioldm_eval: PANN logits, softmax, 10 splits, no reference) and
# av-benchmark's KL on sigmoid outputs (named apart from the softmax KL above).
for _stat, _what in (("density", "fidelity: reference k-NN balls holding each generated clip, / k, mean"),
                     ("coverage", "diversity: share of reference k-NN balls holding some generated clip")):
    METRICS.add(Entry(f"{_stat}-clap-music", f"metrics.catalog:{_stat}_clap_music",
                      f"{_stat.capitalize()} (Naeem et al. 2020, prdc, k=5) vs the reference set, {_what}; CLAP music, "
                      "one embedding per clip", family="prdc", packages=("torch", "laion_clap", "prdc"),
                      weights=("clap-music",)))
    METRICS.add(Entry(f"{_stat}-vggish", f"metrics.catalog:{_stat}_vggish",
                      f"{_stat.capitalize()} (Naeem et al. 2020, prdc, k=5) vs the reference set, {_what}; VGGish, "
                      "clip mean of frame embeddings", family="prdc", packages=("torch", "resampy", "prdc"),
                      weights=("vggish",)))
METRICS.add(Entry("is-pann-cnn14", "metrics.catalog:is_pann",
                  "Inception Score (audioldm_eval): PANN Cnn14 32 kHz logits of the whole clip, softmax, 10 splits; "
                  "generated clips only", family="inception", packages=("torch", "resampy"), weights=("pann-cnn14",)))
for _bb, _w, _pk in (("passt", "passt", ("torch", "hear21passt")), ("pann", "pann-cnn14", ("torch", "resampy"))):
    METRICS.add(Entry(f"kl-sigmoid-{_bb}-ref-gen-w10s", f"metrics.catalog:kl_sigmoid_{_bb}_ref_gen",
                      "av-benchmark's KL on SIGMOID AudioSet outputs (sum_c s log(s/s'), not renormalised), "
                      f"KL(ref || gen), per 10 s window, {_bb}", family="kl", packages=_pk, weights=(_w,)))


# Frechet distances on further backbones (issue 15), each with the audio handling of the toolkit that defines it.
_FD = "Frechet distance to the reference set"
METRICS.add(Entry("fd-passt", "metrics.catalog:fd_passt",
                  f"{_FD}, PaSST-S 768-d clip embedding of the first 10 s (av-benchmark FD-PaSST)", family="fad",
                  packages=("torch", "hear21passt", "torchaudio"), weights=("passt",)))
METRICS.add(Entry("fd-openl3-music-mel256-512", "metrics.catalog:fd_openl3",
                  f"{_FD}, OpenL3 music mel256 512-d of L and R (1024-d every 0.5 s, 44.1 kHz; stable-audio-metrics)",
                  family="fad", packages=("torch", "h5py", "librosa", "pyloudnorm", "resampy", "soxr"),
                  weights=("openl3-mel256-music",)))
METRICS.add(Entry("fad-mert-v1-95m", "metrics.catalog:fad_mert",
                  f"{_FAD}, MERT-v1-95M layer-12 frames, 768-d at 75 Hz (fadtk)", family="fad",
                  packages=("torch", "transformers", "torchaudio"), weights=("mert-v1-95m",)))

# Video-music correspondence in ImageBind's joint space (issue 15; VidMuse, VMB, Diff-V2M report it as "IB").
METRICS.add(Entry("imagebind-score", "metrics.catalog:imagebind_score",
                  "cosine of ImageBind-huge embeddings of the clip's video and the music (av-benchmark IB-Score), "
                  "0-1 scale (papers printing x100 report 100 x this)", family="semantic",
                  packages=("torch", "torchaudio", "torchvision", "imagebind", "pytorchvideo"),
                  weights=("imagebind-huge",)))


def weightless_models() -> list[Entry]:
    """Models that run without any downloaded weights or training (what `vm-eval demo` runs first)."""
    return [e for e in MODELS.entries()
            if not e.prefix and not e.weights and not e.extra.get("needs_training") and not e.extra.get("external")
            and e.availability()[0]]


def load_plugins() -> None:
    """Import the modules named in $VM_EVAL_PLUGINS (comma-separated); each may add entries to MODELS / METRICS.

    How a user registers a model or metric of their own without editing the suite (and how tests register
    test systems for subprocess runs).
    """
    import importlib
    import os

    for mod in filter(None, (m.strip() for m in os.environ.get("VM_EVAL_PLUGINS", "").split(","))):
        importlib.import_module(mod)


load_plugins()
