"""Reading stored runs: listing with aggregates, table/JSON/CSV output, paired comparison of two runs."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from vm_eval.store.run import Run, RunNotFound, RunStore
from vm_eval.store.schema import RunMetaDamaged
from vm_eval.store.status import Status


def run_summary(run: Run) -> dict:
    """What `vm-eval results` shows for a run: identity, status (live), counts, aggregates and provenance.

    An unfinished run (running or interrupted) shows the generation counts its journal holds so far. Raises
    RunMetaDamaged for a damaged run.json."""
    meta = run.meta()
    status = run.live_status(meta)
    counts = run.counts(meta, status)
    return {
        "run_id": meta.get("run_id", run.dir.name), "path": str(run.dir), "status": status.value,
        "dataset": meta.get("dataset"), "split": meta.get("split"), "model": meta.get("model"),
        "model_args": meta.get("identity", {}).get("model_args", {}), "seed": meta.get("seed"),
        "label": meta.get("model_info", {}).get("name") or meta.get("model"),
        "family": meta.get("model_info", {}).get("family", "unknown"),
        "trained": meta.get("model_info", {}).get("trained", True), "counts": counts,
        "aggregates": meta.get("aggregates", {}), "skipped_metrics": meta.get("skipped_metrics", {}),
        "provenance": {k: meta.get(k) for k in ("code", "packages", "environment", "checkpoints", "metrics",
                                                "resampler", "identity", "timings", "created", "updated",
                                                "recovered")},
    }


def list_runs(results_dir) -> tuple[list[dict], list[RunMetaDamaged]]:
    """Summaries of every stored run, and the runs left out because their run.json is damaged."""
    rows, damaged = [], []
    for r in RunStore(results_dir).runs():
        try:
            rows.append(run_summary(r))
        except RunMetaDamaged as e:
            damaged.append(e)
    return rows, damaged


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}"


def format_cell(agg: dict) -> str:
    """'mean [lo, hi] n=N (-M)': the 95% CI and sample size always travel with the mean."""
    cell = f"{_fmt(agg['mean'])} [{_fmt(agg['lo'])}, {_fmt(agg['hi'])}] n={agg['n']}"
    return cell + (f" (-{agg['missing']})" if agg.get("missing") else "")


def metric_header(name: str, agg: dict) -> str:
    arrow = {True: " ↑", False: " ↓"}.get(agg.get("higher_is_better"), "")
    return f"{name} ({agg.get('units', '')}){arrow}"


def grid_lines(header: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    fmt = lambda cells: "  ".join(str(x).ljust(w) for x, w in zip(cells, widths)).rstrip()  # noqa: E731
    return [fmt(header), fmt(["-" * w for w in widths])] + [fmt(b) for b in body]


def format_table(rows: list[dict]) -> str:
    """Runs as columns and metrics as rows (readable with many metrics); a footer explains the cells."""
    if not rows:
        return "no runs stored"
    metrics = sorted({m for r in rows for m in r["aggregates"]})
    header = ["metric"]
    for r in rows:
        header.append(f"{r.get('label') or r['model']}{'' if r['trained'] else ' [untrained]'} ({r['run_id'][:8]})")
    body = [["dataset/split"] + [f"{r['dataset']}/{r['split']}" for r in rows],
            ["status"] + [r["status"] for r in rows],
            ["clips ok/fail/skip"] + [f"{r['counts'].get('done', 0)}/{r['counts'].get('failed', 0)}/"
                                      f"{r['counts'].get('skipped', 0)} of {r['counts'].get('clips', '?')}" for r in rows]]
    for m in metrics:
        sample = next(r["aggregates"][m] for r in rows if m in r["aggregates"])
        label = metric_header(m, sample) + ("" if sample.get("standard", True) else " [non-standard]")
        if sample.get("backbone"):  # which checkpoint each number used, by name and hash
            label += f" [{sample['backbone'].get('file', sample['backbone'].get('name'))} {sample['backbone']['sha256'][:8]}]"
        body.append([label] + [format_cell(r["aggregates"][m]) if m in r["aggregates"] else "-" for r in rows])
    lines = grid_lines(header, body)
    lines.append("cells: mean [95% bootstrap CI] n=clips scored (-clips missing); ↑/↓ higher/lower is better; "
                 "name:vs-X = paired difference against null X")
    by_reason: dict[str, set[str]] = {}
    for r in rows:
        for name, why in r.get("skipped_metrics", {}).items():
            by_reason.setdefault(why.split(":")[0], set()).add(name)
    for why, names in sorted(by_reason.items()):
        lines.append(f"not run here ({why}; see `vm-eval metrics`): {', '.join(sorted(names))}")
    return "\n".join(lines)


def format_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["run_id", "status", "dataset", "split", "model", "metric", "mean", "lo", "hi", "n", "missing",
                "failed", "units", "metric_key", "path"])
    for r in rows:
        for m, a in sorted(r["aggregates"].items()):
            w.writerow([r["run_id"], r["status"], r["dataset"], r["split"], r["model"], m, a["mean"], a["lo"],
                        a["hi"], a["n"], a["missing"], a.get("failed", 0), a.get("units"), a.get("key"), r["path"]])
    return buf.getvalue()


def format_json(rows: list[dict]) -> str:
    """Strict JSON (NaN -> null): `json.loads` and every other parser read it."""
    return json.dumps(_clean_json(rows), indent=2, sort_keys=True, default=str, allow_nan=False)


def clip_scores(run: Run) -> dict[tuple[str, str], tuple[float, str]]:
    """{(metric, clip id): (value, metric identity key)} of every current per-clip score of a run."""
    meta = run.meta()
    keys = {m: a["key"] for m, a in meta.get("aggregates", {}).items()}
    out = {}
    for rec in run.scores.latest("clip_id", "metric_key").values():
        if rec.get("status") == Status.DONE and keys.get(rec["metric"]) == rec["metric_key"]:
            out[(rec["metric"], rec["clip_id"])] = (rec["value"], rec["metric_key"])
    return out


def compare_runs(a: Run, b: Run, seed: int = 0) -> dict[str, dict]:
    """Per metric, mean(a - b) over the clips both runs scored with the same metric identity: paired bootstrap CI,
    two-sided bootstrap p-value (H0: no difference), clip counts."""
    from metrics.stats import bootstrap_p_value, paired_difference

    sa, sb = clip_scores(a), clip_scores(b)
    out = {}
    for metric in sorted({m for m, _ in sa} & {m for m, _ in sb}):
        common = sorted(c for (m, c) in sa if m == metric and (metric, c) in sb and sa[(m, c)][1] == sb[(m, c)][1])
        if not common:
            continue
        x = np.array([sa[(metric, c)][0] for c in common])
        y = np.array([sb[(metric, c)][0] for c in common])
        est = paired_difference(x, y, seed=seed)
        out[metric] = {**est.as_dict(), "p": bootstrap_p_value(x - y, seed=seed), "clips": len(common),
                       "clips_a_only": sum(1 for (m, c) in sa if m == metric) - len(common),
                       "clips_b_only": sum(1 for (m, c) in sb if m == metric) - len(common)}
    return out


def _clean_json(x):
    """NaN and infinities -> None, recursively: strict JSON has no NaN."""
    if isinstance(x, float):
        return None if math.isnan(x) or math.isinf(x) else x
    if isinstance(x, dict):
        return {k: _clean_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean_json(v) for v in x]
    return x


# -- run selectors: one resolver for `compare`, `study create` and `report` --------------------------------------
def describe_run(run: Run) -> str:
    m = run.meta()
    return (f"{run.dir.name} (model {m.get('model')}, {m.get('dataset')}/{m.get('split')}, seed {m.get('seed')}, "
            f"{m.get('status')}, {m.get('counts', {}).get('done', '?')} clips done) at {run.dir}")


def _by_id_or_path(ref: str, store: RunStore, all_runs: list[Run], error: type[Exception]) -> Run | None:
    p = Path(ref)
    if (p / "run.json").is_file():
        return Run(p)
    if p.is_dir() and (p.is_absolute() or "/" in ref):
        raise error(f"{ref} is a folder but not a run folder (no run.json in it)")
    hits = [r for r in all_runs if r.dir.name.startswith(ref)]
    if len(hits) > 1:
        raise error(f"run id prefix {ref!r} is ambiguous under {store.root}; it matches:\n"
                    + "\n".join(f"  {describe_run(r)}" for r in hits))
    return hits[0] if hits else None


def resolve_runs(refs: list[str], store: RunStore, split: str | None = None,
                 error: type[Exception] = RunNotFound) -> list[Run]:
    """Runs for `refs`, in order. Each is a run id, a unique id prefix, a run folder, or a model name: the newest
    complete run of that model on the split (default: the split of the runs given by id, else test) and, when the
    runs given by id share one dataset, on that dataset; with no complete run, its only run. Raises `error` (a
    UserError) naming the problem and, for an ambiguity, the candidates. Cross-run checks are the caller's."""
    all_runs = store.runs()
    found: dict[int, Run] = {}
    for i, ref in enumerate(refs):
        run = _by_id_or_path(ref, store, all_runs, error)
        if run is not None:
            found[i] = run
    metas = [r.meta() for r in found.values()]
    datasets = {m.get("dataset") for m in metas}
    split = split or next((m.get("split") for m in metas), None) or "test"
    for i, ref in enumerate(refs):
        if i in found:
            continue
        same_model = [r for r in all_runs if r.meta().get("model") == ref or r.dir.parent.name == ref]
        if not same_model:
            known = sorted({r.meta().get("model") or "?" for r in all_runs})
            raise error(f"unknown run {ref!r}: no run id, id prefix, run folder or model name matches under "
                        f"{store.root} (stored models: {', '.join(known) or 'none'})")
        cands = [r for r in same_model if r.meta().get("split") == split
                 and (len(datasets) != 1 or r.meta().get("dataset") in datasets)]
        complete = [r for r in cands if r.live_status(r.meta()) == "complete"]
        if complete:  # the newest complete run: run.json's creation time, then the id
            found[i] = max(complete, key=lambda r: (str(r.meta().get("created") or ""), r.dir.name))
            continue
        if len(cands) != 1:
            why = "no stored run" if not cands else f"{len(cands)} stored runs, none complete"
            listed = cands or same_model
            raise error(f"model {ref!r} has {why} on split {split!r}"
                        + (f" of dataset {next(iter(datasets))!r}" if len(datasets) == 1 else "")
                        + "; give a run id instead. Candidates:\n" + "\n".join(f"  {describe_run(r)}" for r in listed))
        found[i] = cands[0]
    return [found[i] for i in range(len(refs))]


# -- the summary table (issue 17): systems x headline metrics, references apart -----------------------------------
def summary_tables(records, metrics: list[str] | None = None, nulls: bool = False, sort: str | None = None,
                   width: int = 100) -> str:
    """One summary table per dataset/split (runs on different clips are never ranked together), each line at most
    `width` characters. `metrics`: column names (default: the headline metrics); `nulls`: add the null sub-scores
    of the shown metrics. Raises UserError for a metric no run has."""
    from vm_eval.errors import UserError
    from vm_eval.summary import all_metrics, headline_metrics, summarize
    from vm_eval.summary.text import format_summary

    if not records:
        return "no runs stored"
    known = all_metrics(records, nulls=True)
    for m in metrics or []:
        if m not in known:
            raise UserError(f"no stored run has metric {m!r} (stored: {', '.join(known)})")
    groups: dict[tuple[str, str], list] = {}
    for r in records:
        groups.setdefault((r.dataset, r.split), []).append(r)
    out = []
    for (dataset, split), recs in sorted(groups.items()):
        names = list(metrics) if metrics else headline_metrics(recs)
        if nulls:
            have = all_metrics(recs, nulls=True)
            names = [x for m in names for x in [m] + [s for s in have if s.startswith(m + ":vs-")]]
        if sort and sort not in names:
            raise UserError(f"cannot sort by {sort!r}: not a column here ({', '.join(names)}); add it with --metrics")
        s = summarize(recs, names, sort_by=sort)
        title = f"{dataset}/{split}: {len(recs)} run(s)" + (f", sorted by {s.column(s.sort_by).label}"
                                                               if s.sort_by else "")
        text = format_summary(s, width, title=title)
        hidden = [m for m in all_metrics(recs) if m not in names]
        if hidden:
            import textwrap

            more = (f"{len(hidden)} more metric(s) stored, not shown (pick with --metrics, all with --wide): "
                    + ", ".join(hidden))
            text += "\n" + "\n".join(textwrap.wrap(more, width, subsequent_indent="  ", break_on_hyphens=False))
        out.append(text)
    return "\n\n".join(out)
