"""`vm-eval study analyze`: a served study's votes -> statistics tables, plots and a summary.

Reads the votes of the study's CURRENT version (the manifest hash every vote carries, see studies.server) from
its database, runs :func:`studies.analysis.report` (Clopper-Pearson win rates, Bradley-Terry with two-way
raters x clips bootstrap CIs and rank ranges, position bias, catch-trial and headphone screening, Krippendorff's
alpha, split-half reliability, small-n warnings against the study config's `thresholds`) and writes
``STUDY_DIR/analysis/``:

    votes.csv / .parquet          the votes as stored (practice trial marked, before exclusion), one per answer
    raters.csv / .parquet         catch-trial accuracy and screening per rater, excluded or kept with the reason
    win_rates.csv / .parquet      per question and system pair
    bradley_terry.csv / .parquet  per question and system: log-strength, CI, rank range, votes
    arena.csv                     per question: system, votes, strength, 95% CI, rank range (best first)
    summary.json                  the report's summary (warnings included) plus the study's identity
    bt-<question>.png, winrate-<question>.png   plots (when matplotlib is installed)

and registers the summary in the results folder of the study's runs (``studies.results``), where `vm-eval
results` and the leaderboard show it beside the runs' objective metrics.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from studies.analysis import AnalysisConfig, StudyReport, report, votes_frame
from studies.config import load_config
from studies.layout import verify_study
from vm_eval.fsutil import atomic_write_json
from vm_eval.errors import UserError

ANALYSIS_DIR = "analysis"
SUMMARY_FILE = "summary.json"


class StudyAnalyzeError(UserError, ValueError):
    """The study cannot be analysed (incomplete study, no votes for its current version, bad settings)."""


@dataclass
class AnalyzeRequest:
    study_dir: Path
    db: str | None = None  # SQLAlchemy URL; default STUDY_DIR/votes.sqlite
    out: Path | None = None  # default STUDY_DIR/analysis
    settings: dict[str, Any] | None = None  # AnalysisConfig fields (ties, resamples, exclusion, seed, ...)
    plots: bool = True
    results: Path | None = None  # results folder to register the summary in; default: the one holding the runs
    register: bool = True


@dataclass
class AnalyzeResult:
    report: StudyReport
    out: Path
    registered: Path | None  # the summary's entry in the results folder


def load_votes(study_dir: Path, db: str | None = None) -> tuple[pd.DataFrame, str]:
    """The votes of the study's current version as the analysis' votes table, and that version's hash."""
    from studies.design import Design
    from studies.server.app import default_db_url
    from studies.server.crowd import vote_records
    from studies.server.storage import Repository

    manifest = verify_study(study_dir)["content_sha256"]
    url = db or default_db_url(study_dir)
    if db is None and not (Path(study_dir) / "votes.sqlite").is_file():
        raise StudyAnalyzeError(f"no votes database in {study_dir} (serve the study first: vm-eval study serve "
                                f"{study_dir}; or pass --db URL)")
    design = Design.from_json(json.loads((Path(study_dir) / "design.json").read_text()))
    # practice marks and screening results come with the rows (studies.server.crowd)
    rows = vote_records(Repository(url), design, manifest)
    if not rows:
        raise StudyAnalyzeError(f"no votes for this version of the study (manifest {manifest[:12]}) in {url}")
    return votes_frame(rows), manifest


def analysis_config(study_dir: Path, settings: dict[str, Any] | None = None) -> AnalysisConfig:
    """The analysis settings of a study: its config's system order, thresholds and screening rule, then
    `settings` (AnalysisConfig fields) on top."""
    config = load_config(study_dir)
    merged = {"system_order": list(config.systems), "min_raters": config.thresholds.raters,
              "min_votes_per_pair": config.thresholds.votes_per_pair, **(settings or {})}
    if config.screening is not None and config.screening.exclude_failed:
        merged["exclusion"] = {**dict(merged.get("exclusion") or {}), "exclude_failed_screening": True}
    try:
        return AnalysisConfig(**merged)
    except Exception as e:  # pydantic lists every bad field
        raise StudyAnalyzeError(f"analysis settings: {e}") from None


def analyze_study(req: AnalyzeRequest) -> AnalyzeResult:
    study_dir = Path(req.study_dir)
    votes, manifest = load_votes(study_dir, req.db)
    cfg = analysis_config(study_dir, req.settings)
    rep = report(votes, cfg)
    if len(rep.raters) and bool(rep.raters["excluded"].all()):
        reasons = sorted(set(rep.raters["reason"].astype(str)))
        raise StudyAnalyzeError(f"the catch-trial rule excluded all {len(rep.raters)} raters ({'; '.join(reasons)}); "
                                "loosen it (--min-catch-trials, --min-catch-accuracy) or collect more votes")
    out = Path(req.out) if req.out else study_dir / ANALYSIS_DIR
    out.mkdir(parents=True, exist_ok=True)
    tables = {"votes": votes, "raters": rep.raters, "win_rates": rep.win_rates, "bradley_terry": rep.bradley_terry}
    for name, table in tables.items():
        table.to_csv(out / f"{name}.csv", index=False)
        table.to_parquet(out / f"{name}.parquet", index=False)
    rep.arena.to_csv(out / "arena.csv", index=False)
    systems = json.loads((study_dir / "systems.json").read_text())
    summary = {**rep.summary, "study": {"dir": str(study_dir.resolve()), "manifest_sha256": manifest,
                                        "systems": {k: v.get("run_id") for k, v in systems.items()
                                                    if v.get("role", "compared") == "compared"}}}
    atomic_write_json(out / SUMMARY_FILE, summary)
    if req.plots:
        write_plots(rep, out)
    registered = None
    if req.register:
        from studies.results import register, runs_root
        from vm_eval import paths

        registered = register(req.results or runs_root(study_dir) or paths.results_dir(None), study_dir, summary)
    return AnalyzeResult(rep, out, registered)


def write_plots(rep: StudyReport, out: Path) -> list[Path]:
    """Per question: Bradley-Terry strengths with CIs, and a win-rate heatmap with n in every cell; [] without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    for q, qr in rep.questions.items():
        bt = qr.arena().iloc[::-1]  # best at the top
        fig, ax = plt.subplots(figsize=(7, 1.6 + 0.45 * len(bt)))
        defined = bt["ci_lo"].notna()
        ax.errorbar(bt["strength"], range(len(bt)), xerr=[(bt["strength"] - bt["ci_lo"]).fillna(0),
                                                          (bt["ci_hi"] - bt["strength"]).fillna(0)],
                    fmt="o", capsize=3)
        ax.set_yticks(range(len(bt)), [f"{s} (rank {r}, n={n})" for s, r, n in
                                       zip(bt["system"], bt["rank_range"], bt["votes"])])
        ax.axvline(0.0, color="0.8", lw=1)
        ax.set_xlabel("Bradley-Terry log-strength (mean 0 over systems)\nbars: 95% CI, raters x clips bootstrap")
        ax.set_ylabel("system")
        title = f"Question '{q}': system strengths from {qr.votes} votes of {qr.raters} raters"
        ax.set_title(title if defined.all() else f"{title}\n(CI undefined: {qr.ci_note or 'see summary'})",
                     fontsize=9)
        fig.tight_layout()
        written.append(out / f"bt-{q}.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
        fig = heatmap(qr.win_rates, list(bt["system"])[::-1], q, plt)
        written.append(out / f"winrate-{q}.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    return written


def heatmap(win_rates: pd.DataFrame, names: list[str], question: str, plt):
    """Figure: win rate of the row system against the column system, the pair's vote count n in every cell."""
    rate = pd.DataFrame(float("nan"), index=names, columns=names)
    n = pd.DataFrame(0, index=names, columns=names)
    for _, row in win_rates.iterrows():
        a, b = row["system"], row["opponent"]
        if a in rate.index and b in rate.columns:
            rate.loc[a, b], rate.loc[b, a] = row["win_rate"], 1.0 - row["win_rate"]
            n.loc[a, b] = n.loc[b, a] = int(row["n"])
    fig, ax = plt.subplots(figsize=(2.5 + 0.9 * len(names), 1.8 + 0.75 * len(names)))
    im = ax.imshow(rate.to_numpy(dtype=float), vmin=0, vmax=1, cmap="RdBu")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("opponent (column system)")
    ax.set_ylabel("system (row)")
    for i in range(len(names)):
        for j in range(len(names)):
            if i == j:
                continue
            v = rate.iat[i, j]
            ax.text(j, i, f"{v:.2f}\nn={n.iat[i, j]}" if v == v else f"-\nn={n.iat[i, j]}", ha="center",
                    va="center", fontsize=7)
    ax.set_title(f"Question '{question}': share of votes the row system won against the column system\n"
                 "(ties excluded; n = votes on the pair)", fontsize=9)
    fig.colorbar(im, ax=ax, label="win rate of the row system")
    fig.tight_layout()
    return fig


def _bound(x: float) -> str:
    return "  n/a " if x != x else f"{x:+.3f}"


def format_report(rep: StudyReport, question: str | None = None) -> str:
    """Terminal text: the arena table of `question` (default: "overall", else the first), a line per other
    question, position bias, exclusions and every small-n warning."""
    if question is not None and question not in rep.questions:
        raise StudyAnalyzeError(f"no question {question!r} in this study; it asks {', '.join(rep.questions)}")
    lines = []
    main = question or rep.default_question
    for q, qr in rep.questions.items():
        lines.append(f"== {q}: {qr.votes} votes from {qr.raters} raters")
        if q == main:
            lines.append(f"  {'system':<28s} {'votes':>5s}  {'strength':>8s}  {'95% CI':<17s}  rank")
            for _, r in qr.arena().iterrows():
                lines.append(f"  {r['system']:<28s} {int(r['votes']):5d}  {r['strength']:+8.3f}  "
                             f"[{_bound(r['ci_lo'])}, {_bound(r['ci_hi'])}]  {r['rank_range']}")
        else:
            best = qr.arena().head(3)
            lines.append("  top: " + ", ".join(f"{s} (rank {rr})" for s, rr in zip(best["system"], best["rank_range"])))
        pb = qr.position_bias
        lines.append(f"  side A chosen {pb.share_a:.2f} of non-tie votes (p = {pb.p_value:.3g})")
    excluded = rep.raters[rep.raters["excluded"]] if "excluded" in rep.raters else rep.raters.iloc[0:0]
    lines.append(f"raters excluded (catch trials, headphone screening): {len(excluded)} of {len(rep.raters)}")
    if rep.summary.get("practice_votes"):
        lines.append(f"practice-trial votes left out: {rep.summary['practice_votes']}")
    lines.append("strength: Bradley-Terry log-strength (mean 0); 95% CI: raters x clips bootstrap; rank: best-worst "
                 "rank the CIs allow")
    for w in rep.summary.get("warnings", []):
        lines.append(f"warning: {w}")
    return "\n".join(lines)
