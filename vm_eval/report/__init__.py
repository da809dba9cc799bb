"""`vm-eval report`: one self-contained HTML file of the results (summary, forest plots, breakdowns, listening
test, provenance) to attach to a paper or send to a colleague."""
from __future__ import annotations

from pathlib import Path


def write_report(results: str | Path, out: str | Path, runs: list | None = None, metrics: list[str] | None = None,
                 study: str | Path | None = None) -> Path:
    """Write the report of `runs` (default: every stored run) of `results` to `out` (atomically); returns it."""
    from vm_eval.fsutil import atomic_write_text
    from vm_eval.report.collect import collect
    from vm_eval.report.render import render

    data = collect(Path(results), runs, metrics, Path(study) if study else None)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, render(data))
    return out
