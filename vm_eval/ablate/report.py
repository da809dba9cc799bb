"""The ablation table: every variant against the reference, metric by metric, as paired differences over the
clips both runs scored (bootstrap 95% CI), with a two-sided bootstrap p-value Holm-corrected across the whole
family (variants x metrics), as in the paper's ablation table but with intervals and an honest multiplicity rule.

Per-clip metrics only: set-level metrics (FAD) have no per-clip pairing; they are listed per variant with their
own intervals. Descriptive metrics (no better direction, e.g. loudness) are shown but not tested.
"""
from __future__ import annotations

import math

from vm_eval.results import compare_runs
from vm_eval.store.run import Run

ALPHA = 0.05


def compare(variant: Run, reference: Run, seed: int = 0) -> dict[str, dict]:
    """{metric: paired difference variant - reference + p + clip counts}, metrics with at least 2 shared clips."""
    return {m: e for m, e in compare_runs(variant, reference, seed).items() if e["n"] >= 2}


def build_report(runs: dict[str, Run], reference: str, labels: dict[str, str], seed: int = 0) -> dict:
    """``runs``: variant -> its run (reference included). Returns the report dict stored as report.json."""
    ref_meta = runs[reference].meta()
    aggs = ref_meta.get("aggregates", {})
    tested = [m for m, a in aggs.items() if a.get("kind") != "set" and a.get("higher_is_better") is not None
              and not a.get("paired_null")]
    rows, family = {}, []
    for name, run in runs.items():
        if name == reference:
            continue
        diffs = compare(run, runs[reference], seed)
        rows[name] = diffs
        family += [(name, m) for m in tested if m in diffs and math.isfinite(diffs[m]["p"])]
    from metrics.stats import holm

    adjusted = holm([rows[v][m]["p"] for v, m in family])
    for (v, m), p_adj in zip(family, adjusted):
        rows[v][m]["p_holm"] = float(p_adj)
        rows[v][m]["significant"] = bool(p_adj < ALPHA)
    metrics = sorted({m for d in rows.values() for m in d} | set(tested))
    return {
        "reference": reference, "labels": labels, "alpha": ALPHA, "family_size": len(family),
        "correction": "Holm (1979) over variants x metrics with a better direction",
        "test": "two-sided shifted bootstrap of the mean paired difference over shared clips (2000 resamples)",
        "metrics": {m: {k: aggs.get(m, {}).get(k) for k in ("units", "higher_is_better", "kind", "backbone")}
                    for m in metrics},
        "reference_aggregates": {m: aggs[m] for m in metrics if m in aggs},
        "set_metrics": {name: {m: a for m, a in run.meta().get("aggregates", {}).items() if a.get("kind") == "set"}
                        for name, run in runs.items()},
        "differences": rows,
        "runs": {name: str(run.dir) for name, run in runs.items()},
    }


def _num(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def format_report(report: dict, order: list[str]) -> str:
    """Rows = variants (reference first, absolute values), columns = per-clip metrics with a direction; variant
    cells are 'Δ [95% CI]' with '*' when the Holm-adjusted p < alpha."""
    from vm_eval.results import grid_lines

    ref = report["reference"]
    metrics = [m for m, d in report["metrics"].items() if d.get("higher_is_better") is not None
               and d.get("kind") != "set" and m in report["reference_aggregates"]]
    arrow = {True: " ↑", False: " ↓"}
    header = ["variant"] + [m + arrow.get(report["metrics"][m]["higher_is_better"], "") for m in metrics]
    body = []
    for name in order:
        label = report["labels"].get(name, name)
        if name == ref:
            cells = [f"{_num(report['reference_aggregates'][m]['mean'])} [{_num(report['reference_aggregates'][m]['lo'])}, "
                     f"{_num(report['reference_aggregates'][m]['hi'])}]" for m in metrics]
            body.append([f"{label} (reference)"] + cells)
            continue
        d = report["differences"].get(name, {})
        cells = []
        for m in metrics:
            e = d.get(m)
            cells.append("-" if e is None else
                         f"{e['mean']:+.3f} [{_num(e['lo'])}, {_num(e['hi'])}]{'*' if e.get('significant') else ''}")
        body.append([label] + cells)
    notes = (f"reference row: mean [95% CI]; other rows: mean paired difference vs the reference over shared clips "
             f"[95% bootstrap CI]; * = Holm-adjusted p < {report['alpha']} (family of {report['family_size']} tests)")
    return "\n".join(grid_lines(header, body) + [notes])
