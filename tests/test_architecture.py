"""Dependency direction and patching rules of the design, checked on the source tree."""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".venv", "venv", ".git", "__pycache__", "build", "dist", ".eggs", "node_modules", ".mypy_cache",
             ".pytest_cache", ".ruff_cache"}
HEAVY = ("numpy", "torch", "pandas", "scipy", "torchvision", "pyarrow", "av", "soundfile")


def py_files(folder: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        out.extend(Path(dirpath) / f for f in filenames if f.endswith(".py"))
    return sorted(out)


def package_of(path: Path) -> str:
    """Dotted package of a file relative to the repository root (for resolving relative imports)."""
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1])


def imported_modules(path: Path, package: str | None = None) -> set[str]:
    """Absolute names of every module a file imports (top of file or inside functions), relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = package_of(path) if package is None else package
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Call) and _is_dynamic_import(node):
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add(arg.value)
    return names


def _is_dynamic_import(node: ast.Call) -> bool:
    f = node.func
    return (isinstance(f, ast.Attribute) and f.attr == "import_module") or (
        isinstance(f, ast.Name) and f.id in ("__import__", "import_module"))


def violations(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in py_files(ROOT / folder):
        for mod in imported_modules(path):
            top = mod.split(".")[0]
            if top in forbidden:
                bad.append(f"{path.relative_to(ROOT)} imports {mod}")
    return sorted(set(bad))


# ------------------------------------------------------------------------------------------ self-checks
def test_import_scanner_sees_every_form(tmp_path):
    """The scanner must catch plain, from, relative, function-level and importlib imports."""
    src = (
        "import os\n"
        "from vm_eval.media import Audio\n"
        "def f():\n"
        "    import baselines.reference\n"
        "    import importlib\n"
        "    importlib.import_module('studies.server')\n"
        "    return __import__('leaderboard')\n"
        "from . import base\n"
    )
    probe = tmp_path / "probe.py"
    probe.write_text(src)
    found = imported_modules(probe, package="metrics")  # as if it lived in metrics/
    assert {"os", "vm_eval.media", "baselines.reference", "studies.server", "leaderboard", "metrics"} <= found


# ------------------------------------------------------------------------------------------ rules
def test_metrics_import_no_model_or_harness_code():
    files = py_files(ROOT / "metrics")
    assert files, "metrics/ should hold Python files"
    assert violations("metrics", ("vidmusician", "baselines", "vm_eval", "studies", "leaderboard")) == []


def test_vidmusician_imports_no_harness_code():
    if not py_files(ROOT / "vidmusician"):
        pytest.skip("vidmusician/ has no Python files yet")
    assert violations("vidmusician", ("vm_eval",)) == []


def test_only_compat_patches_third_party_modules():
    patterns = [re.compile(p) for p in (
        r"torch\.library\.Library\(", r"setattr\(\s*np\s*,", r"setattr\(\s*numpy\s*,", r"setattr\(\s*collections\s*,",
    )]
    allowed = {ROOT / "vm_eval" / "compat.py"}
    here = Path(__file__).resolve()
    offenders = []
    for path in py_files(ROOT):
        if path in allowed or path.resolve() == here:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        offenders += [f"{path.relative_to(ROOT)}: {p.pattern}" for p in patterns if p.search(text)]
    assert offenders == []
    compat = (ROOT / "vm_eval" / "compat.py").read_text()
    assert any(p.search(compat) for p in patterns)  # the patterns do match the real shims


def test_vm_eval_imports_compat_first():
    tree = ast.parse((ROOT / "vm_eval" / "__init__.py").read_text())
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    first = imports[0]
    assert isinstance(first, ast.ImportFrom)
    assert (first.module, first.names[0].name) == ("vm_eval", "compat") or first.module == "vm_eval.compat"


def test_cli_help_imports_nothing_heavy():
    code = (
        "import sys, json\n"
        "from vm_eval.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as e:\n"
        "    code = e.code\n"
        "else:\n"
        "    code = 'no exit'\n"
        f"print(json.dumps({{'code': code, 'heavy': sorted(m for m in {HEAVY!r} if m in sys.modules)}}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    out = json.loads(lines[-1])
    assert out["code"] == 0
    assert out["heavy"] == []
    assert "usage: vm-eval" in proc.stdout


def within(mod: str, prefixes: tuple[str, ...]) -> bool:
    """Whether the dotted module name `mod` is one of `prefixes` or a name inside one of them."""
    return any(mod == p or mod.startswith(p + ".") for p in prefixes)


def test_study_server_does_not_import_the_create_pipeline(tmp_path):
    """The server reads a study through studies.layout; studies.create is the write side (run store, runner,
    stimulus encoding) and must not be imported by anything under studies/server, directly or at import time."""
    forbidden = ("studies.create",)
    probe = tmp_path / "probe.py"
    probe.write_text("from .. import create\nfrom studies.create import verify_study\nimport studies.created_by\n")
    found = {m for m in imported_modules(probe, package="studies.server") if within(m, forbidden)}
    assert found == {"studies.create", "studies.create.verify_study"}  # a name that merely starts alike is not it
    files = py_files(ROOT / "studies" / "server")
    assert files, "studies/server/ should hold Python files"
    bad = sorted({f"{p.relative_to(ROOT)} imports {m}" for p in files for m in imported_modules(p)
                  if within(m, forbidden)})
    assert bad == []
    code = "import sys, studies.server\nprint(sorted(m for m in sys.modules if m == 'studies.create'))\n"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_leaderboard_reads_results_without_the_write_side():
    """The leaderboard only reads stored results: no runner, ablation runner or training code."""
    forbidden = ("vm_eval.runner", "vm_eval.ablate.run", "vm_eval.train", "vm_eval.scoring", "studies.create")
    files = py_files(ROOT / "leaderboard")
    assert files, "leaderboard/ should hold Python files"
    bad = sorted({f"{p.relative_to(ROOT)} imports {m}" for p in files for m in imported_modules(p)
                  if within(m, forbidden)})
    assert bad == []


def test_no_caller_branches_on_the_executor_name():
    """What differs between executors is asked of the executor (Executor.in_process, WorkerSpec.single), so a
    new executor needs no edits elsewhere."""
    pattern = re.compile(r"executor\w*\.name\b")
    offenders = [f"{p.relative_to(ROOT)}:{i}" for p in py_files(ROOT) if "executors" not in p.parts
                 and p.resolve() != Path(__file__).resolve()
                 for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert offenders == []
