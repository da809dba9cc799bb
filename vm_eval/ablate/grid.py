"""Ablation grids: named variants, each a set of overrides of the base VidMusician config (YAML).

The default grid is the paper's Table 3 (``paper_table3.yaml`` beside this module). Every variant states its
structural signature per preset (``vidmusician.params.structural_signature``); loading checks that overrides are
valid config keys, names are unique, the reference variant exists, the built models match the stated signatures
and that no two variants share a signature (two rows that build the same model would compare nothing).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from vm_eval.errors import UserError, UserFileNotFound

DEFAULT_GRID = Path(__file__).with_name("paper_table3.yaml")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


class GridError(UserError, ValueError):
    pass


@dataclass(frozen=True)
class Variant:
    name: str
    label: str
    overrides: dict = field(default_factory=dict)
    signature: dict = field(default_factory=dict)  # preset -> signature dict

    def config(self, preset: str):
        from vidmusician.config import preset as base

        return base(preset).with_overrides(self.overrides) if self.overrides else base(preset)


@dataclass(frozen=True)
class Grid:
    name: str
    reference: str
    variants: tuple[Variant, ...]
    path: Path | None = None

    def get(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise GridError(f"grid {self.name!r} has no variant {name!r} (variants: {', '.join(self.names)})")

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.variants]

    def select(self, names: list[str] | None) -> "Grid":
        """The chosen variants plus the reference (always needed for the comparison), in grid order."""
        if not names:
            return self
        for n in names:
            self.get(n)
        keep = set(names) | {self.reference}
        return Grid(self.name, self.reference, tuple(v for v in self.variants if v.name in keep), self.path)

    def to_dict(self) -> dict:
        return {"name": self.name, "reference": self.reference,
                "variants": [{"name": v.name, "label": v.label, "overrides": v.overrides, "signature": v.signature}
                             for v in self.variants]}


def load_grid(path: str | Path | None = None) -> Grid:
    """Read and validate a grid file (default: the paper's Table 3). Problems are reported all at once."""
    import yaml

    p = Path(path) if path else DEFAULT_GRID
    if not p.is_file():
        raise UserFileNotFound(f"grid file {p} not found")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise GridError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("variants"), list) or not data["variants"]:
        raise GridError(f"{p}: expected a mapping with a non-empty 'variants' list")
    problems: list[str] = []
    variants = []
    for i, raw in enumerate(data["variants"]):
        if not isinstance(raw, dict) or "name" not in raw:
            problems.append(f"variant #{i + 1}: needs at least a name")
            continue
        name = str(raw["name"])
        if not _NAME.match(name):
            problems.append(f"variant {name!r}: names are lower-case letters, digits, '.', '_' or '-'")
        unknown = sorted(set(raw) - {"name", "label", "overrides", "signature"})
        if unknown:
            problems.append(f"variant {name!r}: unknown field(s) {', '.join(unknown)}")
        overrides = raw.get("overrides") or {}
        if not isinstance(overrides, dict):
            problems.append(f"variant {name!r}: overrides must be a mapping of dotted keys")
            overrides = {}
        variants.append(Variant(name, str(raw.get("label") or name), dict(overrides),
                                dict(raw.get("signature") or {})))
    names = [v.name for v in variants]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(f"duplicate variant name(s): {', '.join(dupes)}")
    reference = str(data.get("reference", "full"))
    if reference not in names:
        problems.append(f"reference variant {reference!r} is not in the grid")
    for v in variants:
        try:
            v.config("tiny")
        except (KeyError, ValueError, TypeError) as e:
            problems.append(f"variant {v.name!r}: {e}")
    if problems:
        raise GridError(f"{p}: " + "; ".join(problems))
    return Grid(str(data.get("name") or p.stem), reference, tuple(variants), p)


def check_signatures(grid: Grid, preset: str) -> dict[str, dict]:
    """Each variant's signature at ``preset`` from its config (meta device, no weights); raises GridError when a
    stated signature differs or two variants share one. Returns {variant: signature}."""
    from vidmusician.params import structural_signature

    actual = {v.name: structural_signature(v.config(preset)) for v in grid.variants}
    problems = []
    for v in grid.variants:
        stated = v.signature.get(preset)
        if stated is not None and _canon(stated) != _canon(actual[v.name]):
            problems.append(f"variant {v.name!r} at preset {preset}: the grid states {stated} but the config builds "
                            f"{actual[v.name]}")
    seen: dict[str, str] = {}
    for name, sig in actual.items():
        key = _canon(sig)
        if key in seen:
            problems.append(f"variants {seen[key]!r} and {name!r} build the same model ({sig})")
        seen[key] = name
    if problems:
        raise GridError("; ".join(problems))
    return actual


def _canon(sig: dict) -> str:
    return json.dumps(sig, sort_keys=True, default=str)
