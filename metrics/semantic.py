"""Semantic video-music alignment with CLAP, with and without captions.

- ``clap-caption``: cosine between the CLAP audio embedding (L2-normalised mean of 10 s windows) and the CLAP text
  embedding of the clip's caption (clips without a caption are skipped with that reason).
- ``clap-video-prompt``: no caption needed. CLIP zero-shot tags the video (frames at 1 fps, L2-normalised mean of
  the image embeddings) with the best descriptor of each vocabulary category (mood, genre, tempo feel,
  instrumentation), the descriptors fill PROMPT_TEMPLATE, and the music is scored against that prompt with CLAP.
- ``clap-video-retrieval``: set-level; for every clip, the rank of its own video's prompt among all the run's
  clips' prompts when ranked by CLAP similarity to the clip's music (ties share ranks: 1 + greater + 0.5 x equal).
  Value recall@1 with a bootstrap CI over clips; recall@5, median rank and chance level in ``extra``. Robust to
  the checkpoint's similarity scale, which shifts raw CLAP scores a lot between checkpoints.
Vocabulary, templates and both checkpoints (CLAP audio+text, CLIP) are part of each metric's identity.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from metrics.base import ClipContext, DoesNotApply, ExtractorInfo, MetricInfo, SetScore
from metrics.stats import bootstrap_mean

VOCABULARY: dict[str, tuple[str, ...]] = {
    "mood": ("happy", "sad", "energetic", "calm", "tense", "romantic", "epic", "playful", "mysterious", "uplifting"),
    "genre": ("electronic", "rock", "pop", "orchestral", "hip hop", "jazz", "ambient", "folk", "cinematic", "funk"),
    "tempo": ("slow", "moderate", "fast"),
    "instrumentation": ("piano", "strings", "synthesizers", "electric guitar", "drums and bass", "acoustic guitar",
                        "brass"),
}
VISUAL_TEMPLATES: dict[str, str] = {
    "mood": "a {} video", "genre": "a video that suits {} music", "tempo": "a {}-paced video",
    "instrumentation": "a video that suits music played on {}",
}
PROMPT_TEMPLATE = "{mood} {genre} music with {instrumentation}, {tempo} tempo"
CATEGORIES = tuple(VOCABULARY)


def descriptor_prompt(indices: np.ndarray) -> str:
    """The CLAP prompt for descriptor indices [len(CATEGORIES)] (one per category, in CATEGORIES order)."""
    words = {c: VOCABULARY[c][int(i)] for c, i in zip(CATEGORIES, indices)}
    return PROMPT_TEMPLATE.format(**words)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def pooled(windows: np.ndarray) -> np.ndarray:
    """One unit vector per clip from per-window embeddings [windows, d]."""
    return _unit(np.asarray(windows, np.float64).reshape(-1, np.asarray(windows).shape[-1]).mean(axis=0))


def retrieval_ranks(sim: np.ndarray) -> np.ndarray:
    """Rank (1 = best) of the diagonal entry in each row of a similarity matrix, ties sharing: 1 + > + 0.5 x ==."""
    diag = np.diag(sim)[:, None]
    greater = (sim > diag).sum(axis=1)
    ties = (sim == diag).sum(axis=1) - 1
    return 1.0 + greater + 0.5 * ties


class VideoDescriptors:
    """VideoExtractor: CLIP zero-shot best descriptor per category -> float array of indices [categories]."""

    def __init__(self, visual: Any, text: Any, fps: float = 1.0):
        self.visual = visual
        self.prompts = {c: [VISUAL_TEMPLATES[c].format(w) for w in VOCABULARY[c]] for c in CATEGORIES}
        self.text_emb = {c: np.asarray(text(p), np.float64) for c, p in self.prompts.items()}
        self.info = ExtractorInfo(
            name="clip-zero-shot-descriptors", version=1, fps=fps, size=None,
            params={"vocabulary": VOCABULARY, "templates": VISUAL_TEMPLATES, "pooling": "mean of unit image embeddings",
                    "text_backbone": getattr(text, "backbone", None)},
            backbone=getattr(visual, "backbone", None))

    def __call__(self, frames: np.ndarray, fps: float) -> np.ndarray:
        img = np.asarray(self.visual.global_features(frames, normalize=True), np.float64)
        v = _unit(img.mean(axis=0))
        return np.array([float(np.argmax(self.text_emb[c] @ v)) for c in CATEGORIES])


class _ClapTextScore:
    def __init__(self, audio: Any, text: Any):
        self.audio, self.text = audio, text
        self._memo: dict[str, np.ndarray] = {}

    def text_embedding(self, prompt: str) -> np.ndarray:
        if prompt not in self._memo:
            self._memo[prompt] = _unit(np.asarray(self.text([prompt]), np.float64)[0])
        return self._memo[prompt]

    def _info(self, name: str, description: str, kind: str = "clip", extra: dict | None = None) -> MetricInfo:
        return MetricInfo(name=name, version=1, units="cosine" if kind == "clip" else "recall", kind=kind,
                          higher_is_better=True, description=description,
                          params={"text": getattr(self.text, "info", None) and self.text.info.params,
                                  "audio_pooling": "L2-normalised mean of window embeddings", **(extra or {})},
                          backbone=getattr(self.audio.info, "backbone", None),
                          reference_impl="LAION-CLAP (music checkpoint) audio-text cosine; CLIP zero-shot descriptors",
                          null_value=("1 / clips in the split (chance recall@1)" if kind != "clip" else
                                      "read against random retrieval (another clip's music)"),
                          caveats=("the CLAP checkpoint changes the score a lot (0.13 vs 0.31 on the same outputs): "
                                   "compare only within one checkpoint",))


class ClapCaptionScore(_ClapTextScore):
    def __init__(self, audio: Any, text: Any):
        super().__init__(audio, text)
        self.inputs = {"audio": audio}
        self.info = self._info("clap-caption", "CLAP cosine between the music and the clip's caption")

    def score_features(self, feats: dict, ctx: ClipContext) -> float:
        if not ctx.caption:
            raise DoesNotApply("clip has no caption")
        return float(pooled(feats["audio"]) @ self.text_embedding(ctx.caption))


class ClapVideoPromptScore(_ClapTextScore):
    def __init__(self, audio: Any, text: Any, descriptors: VideoDescriptors):
        super().__init__(audio, text)
        self.inputs = {"audio": audio, "video": descriptors}
        self.info = self._info("clap-video-prompt", "CLAP cosine between the music and a prompt built from CLIP "
                               "zero-shot descriptors of the video", extra={"prompt_template": PROMPT_TEMPLATE})

    def score_features(self, feats: dict, ctx: ClipContext) -> float:
        return float(pooled(feats["audio"]) @ self.text_embedding(descriptor_prompt(feats["video"])))


class ClapVideoRetrieval(_ClapTextScore):
    def __init__(self, audio: Any, text: Any, descriptors: VideoDescriptors, resamples: int = 2000):
        super().__init__(audio, text)
        self.resamples = resamples
        self.inputs = {"audio": audio, "video": descriptors}
        self.info = self._info("clap-video-retrieval", "recall@1 of each clip's own video prompt among the run's "
                               "clips, ranked by CLAP similarity to the clip's music", kind="set",
                               extra={"prompt_template": PROMPT_TEMPLATE, "ties": "1 + greater + 0.5 x equal"})

    def reference_statistics(self, ref_feats):  # pragma: no cover - retrieval uses no reference set
        raise NotImplementedError

    def score_set(self, gen_feats: dict, ref_stats, seed: int) -> SetScore:
        ids = sorted(gen_feats)
        audio = np.stack([pooled(gen_feats[c]["audio"]) for c in ids])
        text = np.stack([self.text_embedding(descriptor_prompt(gen_feats[c]["video"])) for c in ids])
        ranks = retrieval_ranks(audio @ text.T)
        est = bootstrap_mean((ranks <= 1).astype(float), seed=seed, resamples=self.resamples)
        return SetScore(est.mean, est.lo, est.hi, len(ids), 0, per_clip=dict(zip(ids, ranks.tolist())),
                        extra={"recall@5": float(np.mean(ranks <= 5)), "median_rank": float(np.median(ranks)),
                               "chance_recall@1": 1.0 / len(ids),
                               "distinct_prompts": float(len({tuple(gen_feats[c]["video"]) for c in ids}))})
