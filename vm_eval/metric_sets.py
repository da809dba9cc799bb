"""Named metric sets that reproduce the columns of published tables: `vm-eval metrics --set NAME` lists one,
`vm-eval run --metrics @NAME` (and `ablate --metrics @NAME`) runs it.

Each set names its paper and table and, per column, the registered metric that computes it and a note wherever
the paper's backbone or convention is not certain, so a reader knows how far a number is comparable. A column
with no metric here (e.g. a paper's own learned model) is listed with the reason and never stood in for by
another metric under its name. A set naming a metric this version of vm-eval does not register fails when used,
naming every missing metric.

This module imports nothing heavy (the CLI's help lists the set names); the registry is read only when a set is
checked or expanded.
"""
from __future__ import annotations

import difflib
import sys
from collections.abc import Callable
from dataclasses import dataclass

from vm_eval.registry import RegistryError

SET_PREFIX = "@"  # `--metrics @vidmuse`: a set, expanded to its metrics in column order


@dataclass(frozen=True)
class Column:
    """One column of a published table."""

    header: str  # as the paper prints it
    metric: str | None  # the registered metric computing it; None: not available in vm-eval
    note: str = ""  # where the paper's backbone / convention is uncertain; for metric None, why it is unavailable


@dataclass(frozen=True)
class MetricSet:
    name: str
    paper: str
    table: str
    columns: tuple[Column, ...]

    def metric_names(self) -> list[str]:
        """The registered metric names of the columns, in column order, each once."""
        return list(dict.fromkeys(c.metric for c in self.columns if c.metric))

    def unavailable(self) -> list[Column]:
        return [c for c in self.columns if c.metric is None]


_FAD_VGGISH = "VGGish, the usual FAD backbone; the paper's FAD backbone is not confirmed here"
_FD_PANN = ("FD as audioldm_eval computes it (Frechet distance of PANN Cnn14 16 kHz 2048-d clip embeddings); "
            "if the paper's FD is on PaSST embeddings, fd-passt is that one")
_IB = "0-1 scale (cosine); papers that print x100 differ by that factor only"

SETS: dict[str, MetricSet] = {s.name: s for s in (
    MetricSet(
        "vidmuse",
        "VidMuse: A Simple Video-to-Music Generation Framework with Long-Short-Term Modeling (Tian et al., CVPR "
        "2025, arXiv:2406.04321)",
        "objective comparison with the baselines (main results table)",
        (Column("FAD", "fad-vggish", _FAD_VGGISH),
         Column("FD", "fad-pann-cnn14-16k", _FD_PANN),
         Column("KL", "kl-passt-ref-gen-w10s",
                "KL(ref || gen) of PaSST softmax labels per 10 s window (audiocraft's convention; VidMuse builds on "
                "audiocraft); the paper's classifier, direction and windowing are not confirmed here"),
         Column("Density", "density-clap-music",
                "prdc, k = 5, on LAION-CLAP music embeddings (as Diff-V2M); the paper's embedding is not confirmed "
                "here: density-vggish is the VGGish variant"),
         Column("Coverage", "coverage-clap-music", "as Density; coverage-vggish is the VGGish variant"),
         Column("ImageBind score", "imagebind-score", _IB)),
    ),
    MetricSet(
        "muvi",
        "MuVi: Video-to-Music Generation with Semantic Alignment and Rhythmic Synchronization (Li et al. 2024, "
        "arXiv:2410.12957)",
        "objective comparison with the baselines (main results table)",
        (Column("FAD", "fad-vggish", _FAD_VGGISH),
         Column("KL", "kl-pann-ref-gen-w10s",
                "audioldm_eval's convention assumed: KL(ref || gen) on PANN Cnn14 labels, softmax; audioldm_eval also "
                "reports the sigmoid form (kl-sigmoid-pann-ref-gen-w10s), and its windowing may differ from 10 s"),
         Column("IS", "is-pann-cnn14", "audioldm_eval's Inception Score assumed (PANN Cnn14 logits, 10 splits)"),
         Column("FD", "fad-pann-cnn14-16k", _FD_PANN),
         Column("BCS", "bcs-cuts-200ms",
                "LORIS form on madmom beats and PySceneDetect cuts in 0.2 s bins; the paper's music and visual "
                "events and bin width are not confirmed (LORIS: librosa onsets, 1 s bins): compare rankings, not "
                "absolute values"),
         Column("BHS", "bhs-cuts-200ms", "as BCS"),
         Column("SIM", None,
                "similarity under MuVi's own contrastive music-visual synchronisation model, which vm-eval does not "
                "have; no other metric is reported under its name")),
    ),
    MetricSet(
        "v2m-core",
        "vm-eval's compact core for video-to-music papers (no single paper)",
        "one column per family: distribution, classifier KL, semantics, rhythm, audio-visual embedding",
        (Column("FAD-VGGish", "fad-vggish"),
         Column("KL-PaSST", "kl-passt-ref-gen-w10s", "KL(ref || gen), audiocraft convention, 10 s windows"),
         Column("CLAP", "clap-video-prompt",
                "needs no caption (prompt from CLIP zero-shot video descriptors); clap-caption where every clip "
                "has a caption"),
         Column("Beat-visual F1", "beat-visual-f1-cuts", "with its vs-shift and vs-other nulls"),
         Column("ImageBind", "imagebind-score", _IB)),
    ),
)}


def get_set(name: str) -> MetricSet:
    """The named set; RegistryError (a user error) with close names for an unknown one."""
    if name in SETS:
        return SETS[name]
    close = difflib.get_close_matches(name, list(SETS), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise RegistryError(f"unknown metric set {name!r}{hint} (known: {', '.join(SETS)})")


def unregistered(s: MetricSet) -> list[str]:
    """The set's metric names that this version of vm-eval does not register (plugins included)."""
    from vm_eval.registries import METRICS

    return [m for m in s.metric_names() if m not in METRICS.names()]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def expand_metric_names(text: str | None, log: Callable[[str], None] | None = None) -> list[str] | None:
    """A `--metrics` value ("a,b,@set") -> metric names in order, each once; None for no value (every metric
    that can run). A set gives its columns' metrics; each column without one is reported through `log`
    (default: stderr). RegistryError for an unknown set or a set naming unregistered metrics, listing them."""
    if not text:
        return None
    names: list[str] = []
    for item in filter(None, (x.strip() for x in text.split(","))):
        if not item.startswith(SET_PREFIX):
            names.append(item)
            continue
        s = get_set(item[len(SET_PREFIX):])
        missing = unregistered(s)
        if missing:
            headers = {c.metric: c.header for c in s.columns}
            raise RegistryError(f"metric set {s.name!r} names metric(s) this version of vm-eval does not register: "
                                + ", ".join(f"{m} ({headers[m]})" for m in missing)
                                + f"; `vm-eval metrics --set {s.name}` lists the set")
        for c in s.unavailable():
            (log or _stderr)(f"metric set {s.name}: column {c.header} is not available: {c.note}")
        names += s.metric_names()
    return list(dict.fromkeys(names))


def describe_set(name: str) -> str:
    """The set as `vm-eval metrics --set NAME` prints it: each column, its metric, whether it can run here."""
    from vm_eval.registries import METRICS

    s = get_set(name)
    missing = unregistered(s)
    lines = [f"{s.name}: {s.paper}", f"  table: {s.table}", f"  run it: vm-eval run --metrics {SET_PREFIX}{s.name}"]
    for c in s.columns:
        if c.metric is None:
            state = "not available"
        elif c.metric in missing:
            state = "NOT REGISTERED in this version"
        else:
            ok, why = METRICS.get(c.metric).availability()
            state = "ok" if ok else f"cannot run here: {why}"
        lines.append(f"  {c.header:<16} {c.metric or '-':<28} {state}")
        if c.note:
            lines.append(f"  {'':<16} note: {c.note}")
    return "\n".join(lines)
