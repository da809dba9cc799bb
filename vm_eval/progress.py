"""Progress display: a tqdm bar on a terminal, plain lines in a log file or a pipe.

tqdm redraws its bar with carriage returns, which a log file keeps as one unreadable line per update. Off a
terminal (stderr, where progress goes, is not a tty) a progress object prints a line at about every tenth of the
work and one at the end instead. Every caller in vm_eval uses `progress_bar`.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator


def is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stderr
        return False


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
                 enabled: bool = True, leave: bool = False, initial: int = 0):
    """tqdm (on a terminal) or LineProgress (elsewhere) with the same calls: iterate, update, close, postfix."""
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if is_terminal():
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not enabled, leave=leave, initial=initial,
                    dynamic_ncols=True)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, enabled=enabled, initial=initial)


class LineProgress:
    """Progress as lines on stderr: '<desc>: 3/10 clip (30%), 2.1 s' at each tenth of `total` and at the end."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, desc: str = "", unit: str = "it",
                 enabled: bool = True, initial: int = 0):
        self.iterable, self.total, self.desc, self.unit, self.enabled = iterable, total, desc, unit, enabled
        self.n = self._shown = initial
        self._t0 = time.monotonic()
        self._postfix = ""
        self._closed = False

    def __iter__(self) -> Iterator:
        for x in self.iterable or ():
            yield x
            self.update(1)
        self.close()

    def __len__(self) -> int:
        return self.total or 0

    def update(self, n: int = 1) -> None:
        self.n += n
        step = max((self.total or 0) // 10, 1)
        if self.n - self._shown >= step and (not self.total or self.n < self.total):
            self._show()

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self._postfix = s

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self._postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self) -> None:
        pass

    def _show(self) -> None:
        self._shown = self.n
        if not self.enabled:
            return
        of = f"/{self.total}" if self.total else ""
        pct = f" ({100 * self.n // self.total}%)" if self.total else ""
        tail = f", {self._postfix}" if self._postfix else ""
        print(f"{self.desc}: {self.n}{of} {self.unit}{pct}, {time.monotonic() - self._t0:.1f} s{tail}",
              file=sys.stderr, flush=True)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.n != self._shown:
                self._show()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
