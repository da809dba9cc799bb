"""User errors versus bugs, as `vm-eval` reports them (vm_eval.cli.main).

A :class:`UserError` is a problem with the user's input, set-up or command: one line, exit code 2. Anything else
that reaches the command line is a bug in vm-eval: the traceback, where to report it, exit code 1. The suite's
own user-facing errors derive from UserError, keeping a builtin base where callers catch that (a RunNotFound is
still a LookupError). Nothing heavy is imported here: the command line imports this module on every start.
"""
from __future__ import annotations

import sys


class UserError(Exception):
    """A problem with the user's input, set-up or command: printed as one line, exit code 2."""


class UserFileNotFound(UserError, FileNotFoundError):
    """A file or folder the user named, or that the set-up needs, is missing."""


class BadArgument(UserError, ValueError):
    """A command-line option or --model-args value that is out of range or contradicts another."""


class MissingPackage(UserError, RuntimeError):
    """An optional package the command needs is not installed; the message says what to install."""


# User-facing errors that cannot derive from UserError: vidmusician/ must not import vm_eval (the model stands
# on its own). Named, not imported: see user_errors().
FOREIGN_USER_ERRORS: tuple[tuple[str, str], ...] = (
    ("vidmusician.checkpoint", "CheckpointError"),
    ("vidmusician.checkpoint", "CheckpointMismatch"),
    ("vidmusician.config", "ConfigError"),
    ("vidmusician.train", "TrainStateMismatch"),
)


def user_errors() -> tuple[type[BaseException], ...]:
    """UserError and the FOREIGN_USER_ERRORS whose modules are loaded.

    An exception of a class whose module was never imported cannot exist, so looking in sys.modules instead of
    importing costs nothing (importing vidmusician would load torch) and never fails inside an except clause."""
    found = (getattr(sys.modules.get(module), name, None) for module, name in FOREIGN_USER_ERRORS)
    return (UserError, *(cls for cls in found if isinstance(cls, type)))
