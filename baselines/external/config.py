"""Where each published system lives on this machine: its checkout, its interpreter, its checkpoints.

The upstream programs need their own, old environments (python 3.7-3.9, torch 1.9-2.1), so vm-eval never
imports them: the user points the suite at a checkout and an interpreter per system, in a TOML file or in
environment variables (which win over the file, so one run can override one value).

File (first found): ``--config PATH``, ``$VM_EVAL_CONFIG``, ``./vm-eval.toml``, ``~/.config/vm-eval/vm-eval.toml``::

    [baselines.vidmuse]
    checkout = "/opt/VidMuse"                    # a clone of the upstream repository
    python = "/opt/conda/envs/vidmuse/bin/python" # the interpreter of its environment
    timeout_s = 3600                              # per clip
    device = "cuda:0"
    [baselines.vidmuse.checkpoints]
    model = "/models/VidMuse"                     # one entry per checkpoint role the adapter declares
    [baselines.vidmuse.env]                       # extra environment for the subprocess
    HF_HOME = "/models/hf"

    [midi]
    soundfont = "/usr/share/sounds/sf2/FluidR3_GM.sf2"

Environment: ``VM_EVAL_<SYSTEM>_CHECKOUT``, ``_PYTHON``, ``_TIMEOUT_S``, ``_DEVICE``, ``_CKPT_<ROLE>`` (system
and role upper-cased, ``-`` -> ``_``) and ``VM_EVAL_SOUNDFONT``. Relative paths in the file are relative to it.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from vm_eval.errors import UserError

DEFAULT_SOUNDFONTS = (Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"), Path("/usr/share/sounds/sf2/default-GM.sf2"))


class ConfigError(UserError, ValueError):
    """The configuration file exists but cannot be used (bad TOML, wrong types, unknown keys)."""


@dataclass
class SystemConfig:
    """One system's settings; `origin` says where each set value came from (file path or env var name)."""

    name: str
    checkout: Path | None = None
    python: Path | None = None
    checkpoints: dict[str, Path] = field(default_factory=dict)
    timeout_s: float | None = None
    device: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    soundfont: Path | None = None
    config_file: Path | None = None
    origin: dict[str, str] = field(default_factory=dict)


def env_prefix(system: str) -> str:
    return "VM_EVAL_" + system.upper().replace("-", "_") + "_"


def find_config_file(explicit: str | Path | None = None) -> Path | None:
    """The configuration file in use, or None when there is none (an explicit path must exist)."""
    if explicit is not None:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise ConfigError(f"configuration file {p} does not exist")
        return p
    env = os.environ.get("VM_EVAL_CONFIG")
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise ConfigError(f"$VM_EVAL_CONFIG points to {p}, which does not exist")
        return p
    for p in (Path.cwd() / "vm-eval.toml", Path.home() / ".config" / "vm-eval" / "vm-eval.toml"):
        if p.is_file():
            return p
    return None


def read_config_file(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


_KEYS = {"checkout", "python", "checkpoints", "timeout_s", "device", "env"}


def _path(value, base: Path | None, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a non-empty path string, got {value!r}")
    p = Path(value).expanduser()
    return p if p.is_absolute() or base is None else (base / p)


def load_system_config(system: str, config_file: str | Path | None = None) -> SystemConfig:
    """Merge the file's ``[baselines.<system>]`` table with the environment (environment wins)."""
    path = find_config_file(config_file)
    data = read_config_file(path)
    base = path.parent if path else None
    cfg = SystemConfig(name=system, config_file=path)
    table = (data.get("baselines") or {}).get(system) or {}
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [baselines.{system}] must be a table")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise ConfigError(f"{path}: [baselines.{system}] has unknown keys {unknown}; known: {sorted(_KEYS)}")
    where = f"{path}: baselines.{system}"
    for key in ("checkout", "python"):
        if key in table:
            setattr(cfg, key, _path(table[key], base, f"{where}.{key}"))
            cfg.origin[key] = str(path)
    for role, value in (table.get("checkpoints") or {}).items():
        cfg.checkpoints[role] = _path(value, base, f"{where}.checkpoints.{role}")
        cfg.origin[f"checkpoint:{role}"] = str(path)
    if "timeout_s" in table:
        if not isinstance(table["timeout_s"], (int, float)) or table["timeout_s"] <= 0:
            raise ConfigError(f"{where}.timeout_s must be a positive number of seconds")
        cfg.timeout_s, cfg.origin["timeout_s"] = float(table["timeout_s"]), str(path)
    if "device" in table:
        cfg.device, cfg.origin["device"] = str(table["device"]), str(path)
    env_table = table.get("env") or {}
    if not isinstance(env_table, dict) or not all(isinstance(v, str) for v in env_table.values()):
        raise ConfigError(f"{where}.env must be a table of strings")
    cfg.env.update(env_table)
    midi = data.get("midi") or {}
    if "soundfont" in midi:
        cfg.soundfont, cfg.origin["soundfont"] = _path(midi["soundfont"], base, f"{path}: midi.soundfont"), str(path)

    pre = env_prefix(system)
    for key in ("checkout", "python"):
        if os.environ.get(pre + key.upper()):
            setattr(cfg, key, Path(os.environ[pre + key.upper()]).expanduser())
            cfg.origin[key] = "$" + pre + key.upper()
    for var, value in os.environ.items():
        if var.startswith(pre + "CKPT_") and value:
            role = var[len(pre + "CKPT_"):].lower()
            cfg.checkpoints[role], cfg.origin[f"checkpoint:{role}"] = Path(value).expanduser(), "$" + var
    if os.environ.get(pre + "TIMEOUT_S"):
        try:
            cfg.timeout_s = float(os.environ[pre + "TIMEOUT_S"])
        except ValueError:
            raise ConfigError(f"${pre}TIMEOUT_S must be a number of seconds") from None
        cfg.origin["timeout_s"] = "$" + pre + "TIMEOUT_S"
    if os.environ.get(pre + "DEVICE"):
        cfg.device, cfg.origin["device"] = os.environ[pre + "DEVICE"], "$" + pre + "DEVICE"
    if os.environ.get("VM_EVAL_SOUNDFONT"):
        cfg.soundfont, cfg.origin["soundfont"] = Path(os.environ["VM_EVAL_SOUNDFONT"]).expanduser(), "$VM_EVAL_SOUNDFONT"
    if cfg.soundfont is None:
        cfg.soundfont = next((p for p in DEFAULT_SOUNDFONTS if p.is_file()), None)
        if cfg.soundfont is not None:
            cfg.origin["soundfont"] = "Debian fluid-soundfont-gm (default)"
    return cfg
