"""Scoring a run: resolve metrics, extract (cached) features, per-clip scores, set-level scores, aggregates.

Each score record carries the metric's identity key and the scored audio's sha256; a record counts only while
both match, so a new metric version, a new backbone or regenerated audio is rescored and never mixed in.
"""
from vm_eval.media import RESAMPLER
from vm_eval.scoring.clip_stage import score_clips
from vm_eval.scoring.resolve import BoundMetric, resolve_metrics
from vm_eval.scoring.set_stage import ReferenceSet, score_sets
from vm_eval.scoring.summary import summarise

__all__ = ["RESAMPLER", "BoundMetric", "ReferenceSet", "resolve_metrics", "score_clips", "score_sets", "summarise"]
