"""Metric definitions, from the metrics' own metadata: what each measures, units, direction, null, reference
implementation and known caveats.

Sources, best first: the MetricInfo of a metric built here (only metrics that need no pretrained weights are built,
once per process), then the identity a run stored in run.json (description and, for runs scored since the
documentation fields exist, reference implementation, null and caveats), then the registry entry's summary. A
stored identity whose key differs from the one built here is listed apart: the scores were made by another
version or backbone of the metric.
"""
from __future__ import annotations

import functools

import pandas as pd
import streamlit as st

from leaderboard.data import Results

DIRECTION = {True: "higher is better", False: "lower is better", None: "descriptive (no better direction)"}


@functools.cache
def _built_info(name: str) -> dict | None:
    """The identity plus documentation of registered metric `name` built here, or None (needs weights or packages
    that are absent, or fails to build). Cached per process: building imports the metric's packages."""
    from vm_eval.media import RESAMPLER
    from vm_eval.registries import METRICS

    try:
        entry = METRICS.get(name)
    except LookupError:
        return None
    if entry.weights or not entry.availability()[0]:
        return None
    try:  # the registry's factory directly: the leaderboard never imports the scoring side (test_architecture)
        metric = entry.load()()
        return metric.info.stored_identity(RESAMPLER, dict(getattr(metric, "inputs", {}) or {}) or None)
    except Exception:  # noqa: BLE001 - a metric that cannot be built here is described from what is stored
        return None


def _stored(res: Results) -> dict[str, list[tuple[dict, int]]]:
    """metric name -> [(stored identity, runs that stored it)], one per identity key, most runs first."""
    seen: dict[str, dict[str, list]] = {}
    for prov in res.provenance.values():
        for name, ident in (prov.get("metrics") or {}).items():
            if isinstance(ident, dict):
                slot = seen.setdefault(name, {}).setdefault(str(ident.get("key")), [ident, 0])
                slot[1] += 1
    return {n: sorted(((i, c) for i, c in keys.values()), key=lambda t: -t[1]) for n, keys in seen.items()}


def _text(value) -> str:
    return "" if value is None else str(value)


def definitions(res: Results, include_unrun: bool = True) -> list[dict]:
    """One record per (metric, identity key): name, family, summary, description, units, direction, kind, null,
    reference implementation, caveats (list), backbone, key, runs (that stored this identity), source."""
    from vm_eval.registries import METRICS

    entries = {e.name: e for e in METRICS.entries() if not e.prefix}
    stored = _stored(res)
    names = list(stored) + ([n for n in entries if n not in stored] if include_unrun else [])
    out = []
    for name in sorted(names, key=lambda n: (entries[n].family if n in entries else "~", n)):
        entry = entries.get(name)
        built = _built_info(name) if entry is not None else None
        idents = stored.get(name) or ([(built, 0)] if built else [({}, 0)])
        for ident, runs in idents:
            same = built is not None and built.get("key") == ident.get("key")
            src = built if built is not None and (same or not ident) else ident
            docs = {k: src.get(k) or ident.get(k) for k in ("description", "reference_impl", "null_value", "caveats")}
            backbone = src.get("backbone") or {}
            out.append({
                "metric": name, "family": entry.family if entry else "unregistered here",
                "summary": entry.summary if entry else "", "description": _text(docs["description"]),
                "units": _text(src.get("units")) or "-", "direction": DIRECTION.get(src.get("higher_is_better"),
                                                                                     "unknown"),
                "kind": {"set": "one value per run (set)", "clip": "per clip, mean over clips"}.get(
                    src.get("kind"), _text(src.get("kind")) or "-"),
                "null": _text(docs["null_value"]), "reference implementation": _text(docs["reference_impl"]),
                "caveats": list(docs["caveats"] or []),
                "backbone": (f"{backbone.get('name') or backbone.get('file') or '?'} "
                             f"{str(backbone.get('sha256', ''))[:8]}".strip() if backbone else "none"),
                "standard": src.get("standard", True), "key": _text(src.get("key")) or "-", "runs": runs,
                "source": ("built here" if same or (built is not None and not ident) else
                           "stored in runs" if ident else "registry only"),
                "needs": ", ".join(entry.weights) if entry and entry.weights else "",
            })
    return out


def _block(d: dict) -> str:
    lines = [f"**{d['metric']}** · {d['family']} · {d['direction']} · units: {d['units']} · {d['kind']}",
             "", d["description"] or d["summary"] or "(no description stored)"]
    if d["null"]:
        lines += ["", f"**null / no skill:** {d['null']}"]
    if d["reference implementation"]:
        lines += ["", f"**reference implementation:** {d['reference implementation']}"]
    if d["caveats"]:
        lines += ["", "**caveats:**"] + [f"- {c}" for c in d["caveats"]]
    if not d["standard"]:
        lines += ["", "**NON-STANDARD** stand-in backbone: never comparable with published numbers."]
    extra = f"identity key `{d['key']}` · backbone {d['backbone']} · {d['runs']} run(s) here · from: {d['source']}"
    if d["source"] == "registry only":
        extra += (f" · not run in these results{'; needs weights ' + d['needs'] if d['needs'] else ''}: "
                  "its stored identity appears once a run has scored it")
    return "\n".join(lines + ["", extra])


def render(res: Results, f=None, matrix=None) -> None:
    st.caption("Each metric as it describes itself: the MetricInfo of the metric built here, else the identity "
               "its runs stored, else its registry entry. Sub-scores ':vs-shift' / ':vs-other' are paired "
               "differences against the nulls named under each metric.")
    unrun = st.toggle("include metrics not run in these results", value=False, key="def-unrun")
    defs = definitions(res, include_unrun=unrun)
    if not defs:
        st.info("no metric in these results (switch on 'include metrics not run')")
        return
    overview = pd.DataFrame([{k: d[k] for k in ("metric", "family", "direction", "units", "runs", "source")}
                             for d in defs])
    st.dataframe(overview, hide_index=True, key="def-table", width="stretch")
    for d in defs:
        with st.expander(f"{d['metric']} ({d['family']})" + (f" [{d['key']}]" if len(
                [x for x in defs if x["metric"] == d["metric"]]) > 1 else "")):
            st.markdown(_block(d))
