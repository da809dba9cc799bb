"""Listening-study summaries in the results folder, beside the runs they rank.

`vm-eval study analyze` writes ``STUDY_DIR/analysis/summary.json`` and registers a copy as
``<results>/studies/<study name>-<hash of the study folder's path, 8 hex>.json`` (``{"study_dir", "registered",
"summary"}``), where <results> is the folder holding the study's runs (read from ``systems.json``). `vm-eval
results` and the leaderboard read these files only; a study analysed again replaces its entry. `vm-eval study
agree` adds ``"metric_agreement"`` (the agreement of objective metrics with the votes, studies.agree) to the
entry; re-registering the summary keeps it while it was computed on the same study version (manifest hash).
"""
from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path

from vm_eval.fsutil import atomic_write_json, json_sha256

STUDIES_DIR = "studies"


def runs_root(study_dir: str | Path) -> Path | None:
    """The results folder holding the study's runs (runs live at <results>/<dataset>/<split>/<model>/<run id>),
    or None when the runs disagree or the paths are unknown."""
    systems = json.loads((Path(study_dir) / "systems.json").read_text())
    roots = {Path(s["run_path"]).parents[3] if len(Path(s["run_path"]).parents) > 4 else None
             for s in systems.values()}
    return roots.pop() if len(roots) == 1 else None


def entry_path(results_dir: str | Path, study_dir: str | Path) -> Path:
    study = Path(study_dir).resolve()
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", study.name) or "study"
    return Path(results_dir) / STUDIES_DIR / f"{name}-{json_sha256(str(study))[:8]}.json"


def _read_entry(path: Path) -> dict | None:
    try:
        entry = json.loads(path.read_text())
        return entry if isinstance(entry, dict) else None
    except (OSError, ValueError):
        return None


def _manifest(d: dict | None) -> str | None:
    return ((d or {}).get("study") or {}).get("manifest_sha256")


def register(results_dir: str | Path, study_dir: str | Path, summary: dict,
             agreement: dict | None = None) -> Path:
    """Write (atomically) the study's entry in `results_dir`; returns its path. `agreement` (studies.agree's
    JSON) is stored as ``metric_agreement``; without it an existing one for the same study version is kept."""
    path = entry_path(results_dir, study_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"study_dir": str(Path(study_dir).resolve()), "summary": summary,
             "registered": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if agreement is None:
        old = (_read_entry(path) or {}).get("metric_agreement")
        if old is not None and _manifest(old) == _manifest(summary):
            agreement = old
    if agreement is not None:
        entry["metric_agreement"] = agreement
    atomic_write_json(path, entry)
    return path


def registered_summary(results_dir: str | Path, study_dir: str | Path) -> dict | None:
    """The summary registered for the study in `results_dir`, None when there is none (or it is unreadable)."""
    entry = _read_entry(entry_path(results_dir, study_dir))
    return entry.get("summary") if entry and isinstance(entry.get("summary"), dict) else None


def list_studies(results_dir: str | Path) -> list[dict]:
    """Registered study entries, by name; an unreadable entry comes back as ``{"file", "error"}``."""
    out = []
    for f in sorted((Path(results_dir) / STUDIES_DIR).glob("*.json")):
        try:
            entry = json.loads(f.read_text())
            entry["summary"]["questions"]  # noqa: B018 - the one part every reader needs
        except (OSError, ValueError, KeyError, TypeError) as e:
            out.append({"file": str(f), "error": f"{type(e).__name__}: {e}"})
            continue
        out.append({"file": str(f), "name": Path(entry["study_dir"]).name, **entry})
    return out


def _num(x, fmt: str = "+.3f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def format_studies(studies: list[dict], runs: dict[str, dict] | None = None) -> str:
    """Text for `vm-eval results`: per study and question, the Bradley-Terry ranking with CIs, each system's run
    (and its status in this results folder: a run that is gone is flagged), votes, raters, agreement."""
    runs = runs or {}
    lines: list[str] = []
    for st in studies:
        if "error" in st:
            lines.append(f"\nlistening study entry {st['file']} unreadable ({st['error']}): re-run vm-eval study analyze")
            continue
        s = st["summary"]
        info = s.get("study", {})
        lines.append(f"\nlistening study {st['name']} ({st['study_dir']}): {s['raters_kept']} of {s['raters']} "
                     f"raters kept by the catch-trial rule, {s['votes']} votes "
                     f"(version {info.get('manifest_sha256', '?')[:12]}, analysed {st.get('registered', '?')})")
        system_runs = info.get("systems", {})
        for q, qs in s["questions"].items():
            ag, rel = qs.get("agreement", {}), qs.get("reliability", {})
            lines.append(f"  {q}: {qs['votes']} votes from {qs['raters']} raters; Krippendorff's alpha "
                         f"{_num(ag.get('alpha'), '.2f')}, split-half rank reliability "
                         f"{_num(rel.get('corrected_mean'), '.2f')}" + ("" if qs.get("connected", True)
                                                                       else "; comparison graph NOT connected"))
            for r in qs["ranking"]:
                run_id = system_runs.get(r["system"]) or "?"
                status = runs[run_id]["status"] if run_id in runs else "run not in this results folder"
                rank = r.get("rank_range") or str(int(r["rank"]))
                lines.append(f"    {rank:>4s}  {r['system']:<28s} {_num(r['strength'])} "
                             f"[{_num(r['ci_lo'])}, {_num(r['ci_hi'])}]  n={r.get('votes', '?')}  run {run_id[:8]} "
                             f"({status})")
            for w in qs.get("warnings", []):
                lines.append(f"    warning: {w}")
    if lines:
        lines.append("study cells: rank range (best-worst rank the CIs allow), Bradley-Terry log-strength (mean 0) "
                     "[95% CI, raters x clips bootstrap; '-' where undefined], n = votes")
    return "\n".join(lines)
