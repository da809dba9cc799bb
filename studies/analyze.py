"""`vm-eval study analyze`: a served study's votes -> statistics tables, plots and a summary.

Reads the votes of the study's CURRENT version (the manifest hash every vote carries, see studies.server) from
its database, runs :func:`studies.analysis.report` (Clopper-Pearson win rates, Bradley-Terry with bootstrap CIs
and CI ranks, position bias, catch-trial screening, Krippendorff's alpha, split-half reliability) and writes
``STUDY_DIR/analysis/``:

    votes.csv / .parquet          the votes as analysed (before exclusion), one row per answer
    raters.csv / .parquet         catch-trial accuracy per rater, excluded or kept with the reason
    win_rates.csv / .parquet      per question and system pair
    bradley_terry.csv / .parquet  per question and system: log-strength, CI, rank, votes
    summary.json                  the report's summary plus the study's identity (manifest hash, systems -> runs)
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
    from studies.server.admin import vote_record
    from studies.server.app import default_db_url
    from studies.server.storage import Repository

    manifest = verify_study(study_dir)["content_sha256"]
    url = db or default_db_url(study_dir)
    if db is None and not (Path(study_dir) / "votes.sqlite").is_file():
        raise StudyAnalyzeError(f"no votes database in {study_dir} (serve the study first: vm-eval study serve "
                                f"{study_dir}; or pass --db URL)")
    rows = [vote_record(v) for v in Repository(url).votes(manifest)]
    if not rows:
        raise StudyAnalyzeError(f"no votes for this version of the study (manifest {manifest[:12]}) in {url}")
    return votes_frame(rows), manifest


def analyze_study(req: AnalyzeRequest) -> AnalyzeResult:
    study_dir = Path(req.study_dir)
    votes, manifest = load_votes(study_dir, req.db)
    config = load_config(study_dir)
    settings = {"system_order": list(config.systems), **(req.settings or {})}
    try:
        cfg = AnalysisConfig(**settings)
    except Exception as e:  # pydantic lists every bad field
        raise StudyAnalyzeError(f"analysis settings: {e}") from None
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
    """Bradley-Terry strengths with CIs and a win-rate heatmap per question; [] without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    for q, qr in rep.questions.items():
        bt = qr.bradley_terry.sort_values("strength")
        fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * len(bt)))
        ax.errorbar(bt["strength"], range(len(bt)), xerr=[bt["strength"] - bt["ci_lo"], bt["ci_hi"] - bt["strength"]],
                    fmt="o", capsize=3)
        ax.set_yticks(range(len(bt)), [f"{s} (rank {r})" for s, r in zip(bt["system"], bt["rank"])])
        ax.axvline(0.0, color="0.8", lw=1)
        ax.set_xlabel("Bradley-Terry log-strength (mean 0), 95% bootstrap CI")
        ax.set_title(q)
        fig.tight_layout()
        written.append(out / f"bt-{q}.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
        wr = qr.win_rates
        names = list(bt["system"])[::-1]
        grid = pd.DataFrame(float("nan"), index=names, columns=names)
        for _, row in wr.iterrows():
            grid.loc[row["system"], row["opponent"]] = row["win_rate"]
            grid.loc[row["opponent"], row["system"]] = 1.0 - row["win_rate"]
        fig, ax = plt.subplots(figsize=(1.2 + 0.8 * len(names), 1.0 + 0.7 * len(names)))
        im = ax.imshow(grid.to_numpy(dtype=float), vmin=0, vmax=1, cmap="RdBu")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_yticks(range(len(names)), names)
        for (i, j), v in pd.DataFrame(grid.to_numpy(dtype=float)).stack().items():
            if v == v:  # NaN on the diagonal
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
        ax.set_title(f"{q}: win rate, row vs column", fontsize=10)
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        written.append(out / f"winrate-{q}.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    return written


def format_report(rep: StudyReport) -> str:
    lines = []
    for q, qr in rep.questions.items():
        bt = qr.bradley_terry.sort_values("rank")
        lines.append(f"== {q}: {qr.votes} votes from {qr.raters} raters")
        for _, r in bt.iterrows():
            lines.append(f"  {int(r['rank']):2d}  {r['system']:<28s} {r['strength']:+.3f} "
                         f"[{r['ci_lo']:+.3f}, {r['ci_hi']:+.3f}]")
        pb = qr.position_bias
        lines.append(f"  side A chosen {pb.share_a:.2f} of non-tie votes (p = {pb.p_value:.3g})")
    excluded = rep.raters[rep.raters["excluded"]] if "excluded" in rep.raters else rep.raters.iloc[0:0]
    lines.append(f"raters excluded by the catch-trial rule: {len(excluded)} of {len(rep.raters)}")
    return "\n".join(lines)
