"""The leaderboard's loaded tables as the summary core's records (vm_eval.summary), for a filter.

No second read of the folder: records come from `Results` (stored aggregates, run identity, skip reasons) and the
per-clip matrix (per-clip scores, already keyed by metric identity). Under a clip filter (category, source) a
per-clip metric's aggregate is the leaderboard's recomputation over the kept clips (table.cells) and its per-clip
scores are the kept clips only, so the summary's like-with-like ranks use the same clips; a set metric (FAD) has
no value on a subset and is left out. The backbone filter drops metric identities, as in the full table.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from leaderboard.data import Results
from leaderboard.table import ClipMatrix, Filters, _keep, cells, filter_columns, filter_runs
from vm_eval.summary import MetricAgg, RunRecord, add_study, reference_role


def _num(x) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _int(x) -> int:
    v = _num(x)
    return 0 if v is None else int(v)


def _clip_scores(matrix: ClipMatrix, f: Filters, run_ids: set[str], columns: dict[str, str]) -> dict:
    """{run_id: {metric name: (clip ids, values)}} from the matrix, kept clips only under a clip filter."""
    if matrix.values.size == 0:
        return {}
    keep = (_keep(matrix.clips["category"], f.categories) & _keep(matrix.clips["source"], f.sources)).to_numpy()
    ids = np.asarray(matrix.clips["clip_id"], dtype=str)  # fixed-width strings: object arrays sort slowly
    run_of = matrix.pairs["run_id"].astype(str).to_numpy()
    col_of = matrix.pairs["column"].astype(str).to_numpy()
    take = np.flatnonzero(np.isin(run_of, list(run_ids)) & np.isin(col_of, list(columns)))
    have = ~np.isnan(matrix.values[:, take]) & keep[:, None]
    out: dict[str, dict] = {}
    for j, p in enumerate(take):
        rows = np.flatnonzero(have[:, j])
        out.setdefault(run_of[p], {})[columns[col_of[p]]] = (ids[rows], matrix.values[rows, p])
    return out


def records(res: Results, f: Filters, matrix: ClipMatrix, with_studies: bool = True) -> list[RunRecord]:
    """One RunRecord per run the filter keeps, aggregates over the metric identities it keeps (see module
    docstring); listening-study preference added as "preference:<question>" for question "overall"."""
    runs = filter_runs(res, f)
    cols = filter_columns(res, f)
    names = dict(zip(cols["column"], cols["name"]))
    stored = res.aggregates[res.aggregates["run_id"].isin(runs["run_id"]) & res.aggregates["column"].isin(names)]
    if f.clip_filter:
        long = cells(res, f, matrix)
        vals = long.set_index(["run_id", "column"])[["mean", "lo", "hi", "n", "missing"]]
        stored = stored[stored["kind"] != "set"].drop(columns=["mean", "lo", "hi", "n", "missing"]) \
            .join(vals, on=["run_id", "column"])
    per_run: dict[str, dict[str, MetricAgg]] = {}
    for a in stored.to_dict("records"):
        per_run.setdefault(a["run_id"], {})[a["name"]] = MetricAgg(
            mean=_num(a["mean"]), lo=_num(a["lo"]), hi=_num(a["hi"]), n=_int(a["n"]), key=a["key"],
            units=a["units"] or "", higher_is_better=None if pd.isna(a["higher_is_better"]) else
            bool(a["higher_is_better"]), kind=a["kind"] or "clip", standard=bool(a["standard"]),
            missing=_int(a["missing"]), skip_reasons=dict(a["skip_reasons"] or {}), backbone=a["backbone"] or "",
            paired_null=a["paired_null"])
    clip = _clip_scores(matrix, f, set(runs["run_id"]), names)
    out = []
    for r in runs.to_dict("records"):
        out.append(RunRecord(
            run_id=r["run_id"], label=short_label(r["label"]), model=r["model"], family=r["family"],
            trained=bool(r["trained"]), role=reference_role(r["model"], r["family"], r["extra"]),
            dataset=str(r["dataset"]), split=str(r["split"]), status=str(r["status"]),
            aggregates=per_run.get(r["run_id"], {}), clip_scores=clip.get(r["run_id"], {}),
            skipped_metrics=dict(r["skipped_metrics"] or {}), skip_reasons=dict(r["gen_skips"] or {})))
    if with_studies:
        for s in res.studies:
            out = add_study(out, s, "overall")
    return out


def short_label(label: str) -> str:
    """A system's display name: a `dir:` folder of outputs by its folder name, not its full path."""
    text = str(label)
    if text.startswith("dir:"):
        return "dir:" + text[4:].rstrip("/").rsplit("/", 1)[-1]
    return text
