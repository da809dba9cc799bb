"""Test helpers for the published-system adapters: a fake upstream checkout, demo clips as ClipInputs."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

FAKES = Path(__file__).resolve().parent / "upstream_fakes"


def fake_checkout(root: Path, scripts: dict[str, str], extra_files: tuple[str, ...] = ()) -> Path:
    """A folder standing in for upstream's clone: `scripts` maps a path in the checkout to a fake in upstream_fakes/.

    fakelib.py is copied beside every fake so that it imports the way upstream's own modules would.
    """
    root.mkdir(parents=True, exist_ok=True)
    for dest, fake in scripts.items():
        target = root / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FAKES / fake, target)
        shutil.copyfile(FAKES / "fakelib.py", target.parent / "fakelib.py")
    for rel in extra_files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"fake")
    return root


def configure(monkeypatch, system: str, checkout: Path, checkpoints: dict[str, Path], python: str | None = None,
              timeout_s: float | None = None, mode: str = "ok") -> None:
    """Point vm-eval at the fake through environment variables (as a user may), failure mode included."""
    pre = "VM_EVAL_" + system.upper().replace("-", "_") + "_"
    monkeypatch.setenv("VM_EVAL_CONFIG", "")
    monkeypatch.setenv(pre + "CHECKOUT", str(checkout))
    monkeypatch.setenv(pre + "PYTHON", python or sys.executable)
    for role, path in checkpoints.items():
        monkeypatch.setenv(pre + "CKPT_" + role.upper(), str(path))
    if timeout_s is not None:
        monkeypatch.setenv(pre + "TIMEOUT_S", str(timeout_s))
    monkeypatch.setenv("FAKE_UPSTREAM_MODE", mode)


def adapter_factory(monkeypatch, system_class, checkout: Path, checkpoints: dict[str, Path], device: str = "cpu"):
    """make(mode="ok", timeout_s=None, **options) -> the adapter configured for the fake, in that failure mode."""
    def make(mode: str = "ok", timeout_s: float | None = None, **kw):
        configure(monkeypatch, system_class.spec.name, checkout, checkpoints, timeout_s=timeout_s, mode=mode)
        return system_class(**{"device": device, **kw})

    return make


def checkpoint_dir(root: Path, files: tuple[str, ...]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for f in files:
        (root / f).write_bytes(f"weights of {f}".encode())
    return root


def demo_clips(data_dir: Path, cache: Path, n: int = 2, split: str = "test", run_seed: int = 0) -> list:
    from vm_eval.data.manifest import load_manifest
    from vm_eval.models.api import ClipInput

    manifest = load_manifest(data_dir / "demo")
    clips = sorted(manifest.split(split), key=lambda c: c.id)[:n]
    return [ClipInput(c, manifest, run_seed, cache / "media") for c in clips]


def not_configured_message(monkeypatch, tmp_path: Path, system_class) -> str:
    """The NotConfigured message of `system_class` on a machine with no configuration for it at all."""
    import os

    import pytest

    from baselines.external.adapter import NotConfigured

    monkeypatch.chdir(tmp_path)  # no ./vm-eval.toml
    pre = "VM_EVAL_" + system_class.spec.name.upper().replace("-", "_") + "_"
    for var in [v for v in os.environ if v.startswith(pre)]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("VM_EVAL_CONFIG", "")
    with pytest.raises(NotConfigured) as e:
        system_class()
    return str(e.value)
