"""Lazy registries (lm-evaluation-harness style): an entry names its factory as "module:attr" and is imported only
when used, so listing entries and `vm-eval --help` never import torch or a model.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vm_eval.errors import UserError


class RegistryError(UserError, LookupError):
    """An unknown or ambiguous name, or arguments an entry does not take."""


@dataclass(frozen=True)
class Entry:
    """One registered name. `packages` and `weights` say what it needs; availability checks them without importing."""

    name: str
    target: str | Callable[..., Any]  # "module:attr" or a factory object (tests register those)
    summary: str
    family: str = ""
    packages: tuple[str, ...] = ()  # import names that must be installed
    weights: tuple[str, ...] = ()  # names in vm_eval.weights.KNOWN that must be present
    prefix: bool = False  # entry matches "name<anything>", e.g. "dir:" + a folder
    extra: dict = field(default_factory=dict)

    def availability(self) -> tuple[bool, str]:
        """(can run here, reason if not): checks packages by spec lookup and weights by file presence."""
        missing = [p for p in self.packages if not _installed(p)]
        if missing:
            return False, f"missing package(s) {', '.join(missing)}: run `make install` (scripts/install.sh)"
        if self.weights:
            from vm_eval.weights import locate

            absent = [w for w in self.weights if locate(w).path is None]
            if absent:
                return False, f"pretrained weights not found: {', '.join(absent)} (see `vm-eval weights`)"
        return True, ""

    def load(self) -> Callable[..., Any]:
        if callable(self.target):
            return self.target
        module, _, attr = self.target.partition(":")
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj


def _installed(package: str) -> bool:
    """Whether `package` (dotted names too) can be imported; find_spec raises when a parent package is absent."""
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def add(self, entry: Entry, replace: bool = False) -> Entry:
        if entry.name in self._entries and not replace:
            raise RegistryError(f"{self.kind} {entry.name!r} is already registered")
        self._entries[entry.name] = entry
        return entry

    def remove(self, name: str) -> None:
        self._entries.pop(name, None)

    def entries(self) -> list[Entry]:
        return [self._entries[k] for k in sorted(self._entries)]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> Entry:
        if name in self._entries and not self._entries[name].prefix:
            return self._entries[name]
        for e in self._entries.values():
            if e.prefix and name.startswith(e.name) and len(name) > len(e.name):
                return e
        if name in self._entries:  # a prefix entry named with nothing after the prefix
            raise RegistryError(f"{self.kind} {name!r} needs a value after the prefix, e.g. {name}PATH")
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise RegistryError(f"unknown {self.kind} {name!r}{hint} (known: {', '.join(self.names())})")

    def create(self, name: str, **kwargs: Any) -> Any:
        """Build the named object; prefix entries receive the rest of the name as `spec`."""
        entry = self.get(name)
        factory = entry.load()
        if entry.prefix:
            kwargs = {"spec": name[len(entry.name):], **kwargs}
        check_kwargs(factory, kwargs, f"{self.kind} {name!r}")
        return factory(**kwargs)


def check_kwargs(factory: Callable[..., Any], kwargs: dict, what: str) -> None:
    """Fail with the accepted argument names when `kwargs` holds one the factory does not take."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    params = sig.parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        accepted = ", ".join(n for n, p in params.items() if p.kind is not p.VAR_POSITIONAL) or "none"
        raise RegistryError(f"{what} does not take argument(s) {', '.join(unknown)}; it takes: {accepted}")


def parse_kv(text: str | None) -> dict[str, Any]:
    """Parse "k=v,k2=v2"; values are JSON when they parse (numbers, true/false, null), else strings."""
    import json

    out: dict[str, Any] = {}
    if not text:
        return out
    for item in text.split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise RegistryError(f"expected key=value, got {item!r} in {text!r}")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v.strip()
    return out
