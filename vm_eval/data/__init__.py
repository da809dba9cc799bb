"""Datasets: manifests, the synthetic demo dataset, building from a folder of videos, validation."""
from __future__ import annotations

from pathlib import Path

from vm_eval.data.manifest import Manifest, ManifestError, load_manifest


def resolve_dataset(name: str, data_root: Path) -> Manifest:
    """A dataset by name (a folder under the data root holding manifest.jsonl|parquet) or by manifest path.

    `demo` is materialised on first use (a few seconds, deterministic).
    """
    p = Path(name)
    if p.suffix in (".jsonl", ".parquet") or p.is_file():
        return load_manifest(p)
    folder = data_root / name
    if name == "demo":
        from vm_eval.data.demo import make_demo

        make_demo(folder)
    if not folder.is_dir():
        there = sorted(d.name for d in data_root.iterdir() if d.is_dir() and any(
            (d / f"manifest.{x}").is_file() for x in ("jsonl", "parquet"))) if data_root.is_dir() else []
        raise ManifestError(folder, [f"no dataset named {name!r} under {data_root} (datasets there: "
                                     f"{', '.join(there) or 'none'}; give a manifest path, or build one with "
                                     "`vm-eval data build`)"])
    m = load_manifest(folder)
    m.name = name
    return m
