"""Reading stored ablation groups (the read side: `vm-eval results` and the leaderboard import this, never the
runner). Layout: ``<results>/ablations/<grid>-<preset>-<hash>/`` with ``ablation.json`` and ``report.json``."""
from __future__ import annotations

import json
from pathlib import Path

from vm_eval import paths

ABLATIONS_DIR = "ablations"


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def list_groups(results: Path | None = None) -> list[dict]:
    """Every stored ablation group: its ablation.json plus the report when present (None when absent or
    unreadable: an interrupted group, or a damaged file). A group whose ablation.json is unreadable is left out."""
    root = paths.results_dir(results) / ABLATIONS_DIR
    out = []
    for state in sorted(root.glob("*/ablation.json")) if root.is_dir() else []:
        data = _read(state)
        if data is None:
            continue
        data["folder"] = str(state.parent)
        data["report"] = _read(state.with_name("report.json"))
        out.append(data)
    return out
