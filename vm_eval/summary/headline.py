"""Which metrics a summary shows: one headline metric per family from what ran, or any metric asked for.

A metric's family is its registry entry's ("fad", "kl", "semantic", "alignment", ...); listening-study preference
("preference:<question>") is family "human". Within a family the headline is a standard metric before a non-standard
stand-in, then the one most runs have, then the first of a fixed preference order (the most-reported form first).
"""
from __future__ import annotations

from vm_eval.summary.records import PREFERENCE, RunRecord

HEADLINE_FAMILIES = ("fad", "kl", "semantic", "alignment", "human")

# Preference within a family (earlier = preferred); metrics not listed come after these, by name.
PREFERRED = {
    "fad": ("fad-vggish", "fad-clap-music", "fad-pann-cnn14-16k", "fd-passt", "fd-openl3-music-mel256-512",
            "fad-encodec-24khz", "fad-clap-630k-audioset", "fad-mert-v1-95m"),
    "kl": ("kl-passt-ref-gen-w10s", "kl-pann-ref-gen-w10s", "kl-passt-gen-ref-w10s", "kl-pann-gen-ref-w10s"),
    "semantic": ("imagebind-score", "clap-video-retrieval", "clap-video-prompt", "clap-caption"),
    # the main beat-to-visual score: VidMusician's own visual signal first, then the weightless forms
    "alignment": ("beat-visual-f1-clip", "beat-visual-f1-framediff", "beat-visual-f1-cuts", "bhs-cuts-200ms",
                  "bcs-cuts-200ms", "av-align-adaptive", "beat-align-framediff"),
    "human": (f"{PREFERENCE}:overall",),
}


def is_subscore(name: str) -> bool:
    """A null sub-score ("beat-visual-f1-cuts:vs-shift") or another derived value ("fad:per-clip")."""
    return ":" in name and not name.startswith(PREFERENCE + ":")


def base_name(name: str) -> str:
    return name if not is_subscore(name) else name.split(":", 1)[0]


def metric_family(name: str) -> str:
    """The registry family of a metric (a sub-score has its metric's), "human" for study preference."""
    if name.startswith(PREFERENCE + ":"):
        return "human"
    from vm_eval.registries import METRICS
    from vm_eval.registry import RegistryError

    try:
        return METRICS.get(base_name(name)).family or "unknown"
    except (RegistryError, KeyError, LookupError):
        return "unknown"


def all_metrics(records: list[RunRecord], nulls: bool = False) -> list[str]:
    """Every metric name some run has, by name; null sub-scores only with `nulls` (per-clip views never)."""
    names = {m for r in records for m in r.aggregates}
    return sorted(m for m in names if (nulls and not m.endswith(":per-clip")) or not is_subscore(m))


def headline_metrics(records: list[RunRecord], families: tuple[str, ...] = HEADLINE_FAMILIES) -> list[str]:
    """One metric per family (in `families` order) among the directional, non-sub-score metrics that ran."""
    count: dict[str, int] = {}
    standard: dict[str, bool] = {}
    for r in records:
        for m, a in r.aggregates.items():
            if is_subscore(m) or a.higher_is_better is None:
                continue
            count[m] = count.get(m, 0) + 1
            standard[m] = standard.get(m, True) and a.standard
    out = []
    for fam in families:
        cands = [m for m in count if metric_family(m) == fam]
        if not cands:
            continue
        order = PREFERRED.get(fam, ())
        cands.sort(key=lambda m: (not standard[m], -count[m], order.index(m) if m in order else len(order), m))
        out.append(cands[0])
    return out
