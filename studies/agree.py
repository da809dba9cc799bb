"""`vm-eval study agree`: which objective metric agrees with the study's raters.

For each question and every metric stored for the study's compared runs on the study's clips
(:mod:`studies.analysis.metric_agreement`): how often the sign of the metric's per-clip difference between the two
soundtracks predicts the rater's choice (accuracy, two-way raters x clips bootstrap CI, chance 0.5, metric ties
apart), and Kendall's tau between the metric's system ranking and the Bradley-Terry ranking, with its CI.

Votes: those `vm-eval study analyze` uses (current study version, practice trial left out, raters excluded by
the same catch-trial and screening rules, catch trials dropped). Scores: ``systems.json`` names each system's run
folder; per-clip scores and each metric's direction come from the run store (vm_eval.results.clip_scores, the
run's aggregates). Writes into ``STUDY_DIR/analysis/``:

    agreement.csv, agreement.json     one row per question and metric, best first (strict JSON)
    agreement-<question>.png / .svg   accuracy and tau with CIs per metric, chance marked

and adds the JSON to the study's entry in the results folder, where the leaderboard's listening-test view shows it.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from studies.analysis import apply_exclusion, votes_frame
from studies.analysis.metric_agreement import CHANCE, AgreementConfig, metric_agreement
from studies.analysis.report import default_question
from studies.analyze import ANALYSIS_DIR, SUMMARY_FILE, StudyAnalyzeError, analysis_config, load_votes
from vm_eval.fsutil import atomic_write_json

AGREEMENT_VERSION = 1


class StudyAgreeError(StudyAnalyzeError):
    """The agreement cannot be computed (no scores stored for the study's runs, bad settings)."""


@dataclass
class AgreeRequest:
    study_dir: Path
    db: str | None = None  # SQLAlchemy URL; default STUDY_DIR/votes.sqlite
    out: Path | None = None  # default STUDY_DIR/analysis
    settings: dict[str, Any] | None = None  # AnalysisConfig fields: exclusion, cluster, resamples, seed, ties...
    plots: bool = True
    results: Path | None = None  # results folder whose study entry gets the agreement; default: the runs' folder
    register: bool = True
    #: per-clip scores (columns system, clip_id, metric, value) and directions to use instead of the run store
    scores: pd.DataFrame | None = None
    directions: dict[str, bool | None] | None = None


@dataclass
class AgreeResult:
    table: pd.DataFrame
    data: dict
    out: Path
    registered: Path | None
    problems: list[str] = field(default_factory=list)


def load_scores(study_dir: Path) -> tuple[pd.DataFrame, dict[str, bool | None], list[str]]:
    """(scores, directions, problems): the per-clip scores of every compared system's run, each metric's
    `higher_is_better` from the runs' aggregates, and a line per run that could not be read."""
    from vm_eval.results import clip_scores
    from vm_eval.store.run import Run

    systems = json.loads((Path(study_dir) / "systems.json").read_text())
    rows, directions, problems = [], {}, []
    for label, info in systems.items():
        if info.get("role", "compared") != "compared":
            continue
        run_dir = Path(info.get("run_path") or "")
        if not (run_dir / "run.json").is_file():
            problems.append(f"{label}: run folder {run_dir} not found (moved or deleted?)")
            continue
        try:
            run = Run(run_dir)
            meta = run.meta()
            stored = clip_scores(run)
        except Exception as e:  # a damaged run must not hide the others' agreement
            problems.append(f"{label}: run {run_dir} unreadable ({type(e).__name__}: {e})")
            continue
        for metric, agg in meta.get("aggregates", {}).items():
            if directions.get(metric) is None:
                directions[metric] = agg.get("higher_is_better")
        for (metric, clip), (value, _key) in stored.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                rows.append((label, str(clip), metric, float(value)))
    return pd.DataFrame(rows, columns=["system", "clip_id", "metric", "value"]), directions, problems


def _json_value(x: Any, p_value: bool = False) -> Any:
    """JSON-safe scalar: numpy/pandas to Python, NaN/NA to None; floats to 4 decimals (p-values to 4 digits)."""
    if x is None or x is pd.NA:
        return None
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if not math.isfinite(x):
            return None
        return float(f"{x:.4g}") if p_value else round(x, 4)
    return x


def agreement_json(table: pd.DataFrame, meta: dict) -> dict:
    """Strict-JSON form: {"version", ..meta, "chance", "questions": {question: [row, ...]}} (NaN as null)."""
    out: dict[str, Any] = {"version": AGREEMENT_VERSION, **meta, "chance": CHANCE, "questions": {}}
    for row in table.to_dict(orient="records"):
        rec = {k: _json_value(v, k == "p_value") for k, v in row.items() if k != "question"}
        out["questions"].setdefault(row["question"], []).append(rec)
    return out


def agree_study(req: AgreeRequest) -> AgreeResult:
    study_dir = Path(req.study_dir)
    raw, manifest = load_votes(study_dir, req.db)
    settings = dict(req.settings or {})
    agree_keys = {"resamples", "seed", "cluster", "min_units", "ties", "prior", "confidence"}
    cfg = analysis_config(study_dir, settings)
    votes = votes_frame(raw)
    votes = votes[~votes["is_practice"]].reset_index(drop=True)
    kept, raters = apply_exclusion(votes, cfg.exclusion, cfg.alpha)
    if len(raters) and bool(raters["excluded"].all()):
        raise StudyAgreeError(f"the rater screening excluded all {len(raters)} raters; loosen it "
                              "(--min-catch-trials, --min-catch-accuracy) or collect more votes")
    main = kept[~kept["is_catch"]].reset_index(drop=True)
    if req.scores is not None:
        scores, directions, problems = req.scores, dict(req.directions or {}), []
    else:
        scores, directions, problems = load_scores(study_dir)
    study_clips = set(main["clip_id"])
    scores = scores[scores["clip_id"].astype(str).isin(study_clips)]
    if not len(scores):
        raise StudyAgreeError("no per-clip metric scores stored for the study's runs on its clips"
                              + (f" ({'; '.join(problems)})" if problems else "")
                              + "; score the runs first (vm-eval run ... --metrics ...)")
    acfg = AgreementConfig(**{k: getattr(cfg, k) for k in agree_keys})
    table = metric_agreement(main, scores, directions, acfg, list(cfg.system_order or []) or None)
    meta = {"study": {"dir": str(study_dir.resolve()), "manifest_sha256": manifest},
            "votes": len(main), "raters": int(main["rater_id"].nunique()),
            "excluded_raters": int(raters["excluded"].sum()) if len(raters) else 0,
            "default_question": default_question(list(dict.fromkeys(main["question"]))),
            "config": {k: getattr(acfg, k) for k in agree_keys}, "problems": problems}
    data = agreement_json(table, meta)
    out = Path(req.out) if req.out else study_dir / ANALYSIS_DIR
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "agreement.csv", index=False)
    atomic_write_json(out / "agreement.json", data)
    if req.plots:
        write_agreement_plots(table, out)
    registered = None
    if req.register:
        registered = _register(req, study_dir, out, data)
    return AgreeResult(table, data, out, registered, problems)


def _register(req: AgreeRequest, study_dir: Path, out: Path, data: dict) -> Path | None:
    """Add the agreement to the study's results entry; the entry needs the summary `study analyze` wrote."""
    from studies.results import register, registered_summary, runs_root
    from vm_eval import paths

    results = req.results or runs_root(study_dir) or paths.results_dir(None)
    summary = registered_summary(results, study_dir)
    if summary is None and (out / SUMMARY_FILE).is_file():
        summary = json.loads((out / SUMMARY_FILE).read_text())
    if summary is None:
        return None  # nothing to attach to: `vm-eval study analyze` registers the study first
    return register(results, study_dir, summary, agreement=data)


def write_agreement_plots(table: pd.DataFrame, out: Path) -> list[Path]:
    """Per question, one figure (PNG and SVG): accuracy with its CI per metric (chance at 0.5), and Kendall's
    tau with its CI; [] without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    for q, part in table.groupby("question", sort=False):
        part = part[part["accuracy"].notna()].iloc[::-1]
        if not len(part):
            continue
        fig = agreement_figure(part, q, plt)
        for ext in ("png", "svg"):
            written.append(out / f"agreement-{q}.{ext}")
            fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    return written


def agreement_figure(part: pd.DataFrame, question: str, plt):
    """The figure of `write_agreement_plots` for one question's rows (best at the top); also the leaderboard's."""
    y = range(len(part))
    fig, (ax, bx) = plt.subplots(1, 2, sharey=True, figsize=(11, 1.9 + 0.42 * len(part)))
    acc = part["accuracy"].astype(float)
    ax.errorbar(acc, y, xerr=[(acc - part["ci_lo"].astype(float)).fillna(0), (part["ci_hi"].astype(float) - acc)
                              .fillna(0)], fmt="o", capsize=3)
    if "accuracy_ties_half" in part:  # what the ranking uses: a metric tie as a coin flip
        ax.plot(part["accuracy_ties_half"].astype(float), list(y), "x", color="C3", label="metric ties as half")
    ax.axvline(CHANCE, color="0.5", ls="--", lw=1, label="chance (0.5)")
    ax.set_yticks(list(y), [f"{m} ({'↑' if h else '↓'}, n={n}, ties {t})" for m, h, n, t in
                            zip(part["metric"], part["higher_is_better"], part["votes"], part["metric_ties"])])
    ax.set_xlabel("accuracy: share of votes the metric's\nper-clip difference predicts (95% CI)")
    ax.set_ylabel("metric (direction, votes, metric ties)")
    ax.legend(loc="lower right", fontsize=7)
    tau = part["kendall_tau"].astype(float)
    bx.errorbar(tau, y, xerr=[(tau - part["tau_lo"].astype(float)).fillna(0),
                              (part["tau_hi"].astype(float) - tau).fillna(0)], fmt="s", color="C1", capsize=3)
    bx.axvline(0.0, color="0.5", ls="--", lw=1)
    bx.set_xlim(-1.05, 1.05)
    bx.set_xlabel("Kendall's tau: metric's system ranking\nvs Bradley-Terry ranking (95% CI)")
    fig.suptitle(f"Question '{question}': agreement of objective metrics with the raters' choices", fontsize=10)
    fig.tight_layout()
    return fig


def _fmt(x: Any, spec: str = ".2f") -> str:
    return "-" if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def format_agreement(res: AgreeResult) -> str:
    """Terminal table per question: rank, metric, accuracy [CI], votes, metric ties, tau [CI]."""
    lines = []
    for q, rows in res.data["questions"].items():
        lines.append(f"== {q}: metric agreement with {res.data['votes']} votes of {res.data['raters']} raters "
                     f"(chance = {CHANCE})")
        lines.append(f"  {'#':>2s}  {'metric':<30s} {'accuracy [95% CI]':<20s} {'votes':>5s} {'ties':>5s}  "
                     f"{'tau [95% CI]':<21s}")
        for r in rows:
            if r.get("accuracy") is None:
                lines.append(f"  {r['rank']:2d}  {r['metric']:<30s} {r.get('note') or 'not computed'}")
                continue
            lines.append(f"  {r['rank']:2d}  {r['metric']:<30s} {_fmt(r['accuracy'])} [{_fmt(r['ci_lo'])}, "
                         f"{_fmt(r['ci_hi'])}]   {r['votes']:5d} {r['metric_ties']:5d}  "
                         f"{_fmt(r['kendall_tau'], '+.2f')} "
                         f"[{_fmt(r['tau_lo'], '+.2f')}, {_fmt(r['tau_hi'], '+.2f')}]"
                         + (f"  ({r['note']})" if r.get("note") else ""))
    lines.append("accuracy: share of decided votes the sign of the metric's per-clip difference predicts (metric "
                 "ties apart; ranked by accuracy with ties as half); tau: Kendall's tau-b between the metric's and "
                 "the Bradley-Terry system ranking; CIs: raters x clips bootstrap")
    for p in res.problems:
        lines.append(f"warning: {p}")
    return "\n".join(lines)
