"""`vm-eval baselines check`: per published system, what is configured, what is missing and how to get it."""
from __future__ import annotations

import importlib
from pathlib import Path

from baselines.external.adapter import Status, UpstreamSpec, inspect
from baselines.external.config import load_system_config
from vm_eval.registry import RegistryError

# registry name -> module holding SPEC (importing one loads no upstream code)
SYSTEMS = {
    "cmt": "baselines.cmt",
    "video2music": "baselines.video2music",
    "diff-bgm": "baselines.diffbgm",
    "m2ugen": "baselines.m2ugen",
    "vidmuse": "baselines.vidmuse",
    "gvmgen": "baselines.gvmgen",
}


def spec_of(name: str) -> UpstreamSpec:
    if name not in SYSTEMS:
        raise RegistryError(f"unknown system {name!r}; known: {', '.join(SYSTEMS)}")
    return importlib.import_module(SYSTEMS[name]).SPEC


def check(names: list[str] | None = None, config: str | Path | None = None) -> list[Status]:
    return [inspect(spec_of(n), load_system_config(n, config)) for n in (names or list(SYSTEMS))]


def _shown(cfg_value, origin: str | None) -> str:
    return f"{cfg_value}  [{origin}]" if origin else str(cfg_value)


def format_status(st: Status, verbose: bool = True) -> str:
    spec, cfg = st.spec, st.config
    head = "ready" if st.ready else "NOT READY"
    lines = [f"{spec.name:12s} {head:9s} {spec.title} — github.com/{spec.repo} @ {spec.commit[:12]}, {spec.licence}, "
             f"{spec.output}" + (f", {spec.sample_rate} Hz" if spec.sample_rate else "")
             + (f", max {spec.max_duration_s:g} s" if spec.max_duration_s else "")]
    if not verbose:
        return lines[0]
    o = cfg.origin
    lines.append(f"    environment: {spec.environment}")
    if cfg.checkout:
        lines.append(f"    checkout:    {_shown(cfg.checkout, o.get('checkout'))}"
                     + (f" (at {st.checkout_commit[:12]})" if st.checkout_commit else ""))
    if cfg.python:
        lines.append(f"    python:      {_shown(cfg.python, o.get('python'))}")
    for role, path in cfg.checkpoints.items():
        lines.append(f"    checkpoint {role}: {_shown(path, o.get('checkpoint:' + role))}")
    if spec.output == "midi" and cfg.soundfont:
        lines.append(f"    soundfont:   {_shown(cfg.soundfont, o.get('soundfont'))}")
    for p in st.problems:
        lines.append(f"    {'missing' if p.fatal else 'warning'}: {p.what}\n        -> {p.fix}")
    for n in spec.notes:
        lines.append(f"    note: {n}")
    return "\n".join(lines)


def format_check(statuses: list[Status], config_file: Path | None, verbose: bool = True) -> str:
    head = f"configuration file: {config_file}" if config_file else (
        "configuration file: none (looked at $VM_EVAL_CONFIG, ./vm-eval.toml, ~/.config/vm-eval/vm-eval.toml; "
        "environment variables VM_EVAL_<SYSTEM>_CHECKOUT / _PYTHON / _CKPT_<ROLE> work too)")
    ready = sum(s.ready for s in statuses)
    body = ("\n\n" if verbose else "\n").join(format_status(s, verbose) for s in statuses)
    return f"{head}\n\n{body}\n\n{ready} of {len(statuses)} systems ready."
