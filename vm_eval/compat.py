"""Import-time workarounds for third-party packages: the only place in the suite that patches a library.

`install()` (run by ``import vm_eval``) adds an import hook; each shim runs just before its package is first
imported, so a command that never touches the package pays nothing (``vm-eval --help`` stays instant).

- torchvision: the registry's torchvision 0.28.0 is a CUDA build. On a CPU-only torch its compiled ops library
  cannot load, and torchvision's own import then fails registering fake kernels for ``torchvision::nms``
  ("operator torchvision::nms does not exist"), which takes down open_clip, laion_clap, frechet_audio_distance
  and transformers' model classes. If the compiled library really cannot load, we declare the two op schemas
  torchvision needs at import; its Python parts (transforms, models) then work, ``ops.nms`` stays unavailable.
  With a matching CUDA torch the library loads and nothing is done.
- laion_clap 1.1.7 loads three tokenizers from the Hugging Face hub when imported (for its own training data
  pipeline, which we never use), and audiocraft imports it whenever its model builders are imported. Without
  network each of those calls retries for minutes. We import laion_clap with the hub in offline mode and restore
  the previous mode afterwards; real downloads elsewhere are unaffected.
- madmom 0.16.1 uses ``collections.MutableSequence`` (moved to ``collections.abc`` in Python 3.10) and the
  ``np.float`` / ``np.int`` aliases (removed in NumPy 1.24). We restore those names before madmom imports, and
  silence the pkg_resources deprecation warning its import triggers.
- pytorchvideo 0.1.5 (its last release; ImageBind's data module imports it) imports
  ``torchvision.transforms.functional_tensor``, which torchvision 0.17 renamed ``_functional_tensor``. We register
  the old name for the new module before pytorchvideo imports; with a torchvision that still has it, nothing.
- transformers draws its own tqdm bars when it saves or loads a model ("Writing model shards" for a one-file
  random T5), carriage-return redraws that clutter a log and duplicate our own progress lines. Once
  ``transformers.utils.logging`` has loaded we switch off those bars only; the hub's download bars are left as
  the user has them (transformers' ``disable_progress_bar()`` would switch those off too).
- Known third-party warnings that tell a user of this suite nothing they can act on are silenced here, and only
  here (`quiet_known_warnings`, run by `install()`, stdlib only): xFormers' "can't load C++/CUDA extensions"
  (a CPU machine; audiocraft falls back to torch attention), timm's "Importing from timm.models.layers is
  deprecated" (raised by open_clip / laion_clap imports) and torch's "`torch.nn.utils.weight_norm` is deprecated"
  (EnCodec and PANN build their layers with it), transformers' own "`is_gradient_checkpointing` is deprecated"
  (raised inside its modeling code while training). Set VM_EVAL_SHOW_WARNINGS=1 to see them again.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

_APPLIED: set[str] = set()
_torchvision_lib: object = None  # keeps the schema library alive for the life of the process


def _torchvision_ops_loadable(spec) -> bool:
    import torch

    if not spec or not spec.submodule_search_locations:
        return True
    libs = sorted(Path(next(iter(spec.submodule_search_locations))).glob("_C*.so"))
    if not libs:
        return False
    try:
        torch.ops.load_library(str(libs[0]))
        return True
    except (OSError, RuntimeError):
        return False


def shim_torchvision() -> None:
    global _torchvision_lib
    spec = importlib.util.find_spec("torchvision")
    if _torchvision_ops_loadable(spec):
        return
    import torch

    _torchvision_lib = torch.library.Library("torchvision", "DEF")
    _torchvision_lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _torchvision_lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


def quiet_pkg_resources() -> None:
    """madmom and ImageBind import pkg_resources at import time; setuptools then warns on every import, telling
    users nothing."""
    import warnings

    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)


def shim_madmom() -> None:
    import collections
    import collections.abc

    quiet_pkg_resources()

    import numpy as np

    for name in ("MutableSequence", "MutableMapping", "Sequence", "Mapping", "Iterable", "Callable"):
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
    for name, typ in (("float", float), ("int", int), ("bool", bool), ("complex", complex), ("object", object)):
        if name not in np.__dict__:
            setattr(np, name, typ)


def shim_pytorchvideo() -> None:
    old = "torchvision.transforms.functional_tensor"
    try:
        if importlib.util.find_spec(old) is not None:
            return
    except ImportError:  # no torchvision at all: pytorchvideo's own import will say so
        return
    import torchvision.transforms
    from torchvision.transforms import _functional_tensor

    sys.modules[old] = _functional_tensor
    torchvision.transforms.functional_tensor = _functional_tensor


@contextlib.contextmanager
def hub_offline():
    """Hugging Face hub in offline mode for the duration (huggingface_hub's one switch), then as before."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def quiet_transformers_bars(module) -> None:
    """transformers' own tqdm bars off (its switch is a module global), the hub's left as they are."""
    if hasattr(module, "_tqdm_active"):
        module._tqdm_active = False


_SHIMS = {"torchvision": shim_torchvision, "madmom": shim_madmom, "pytorchvideo": shim_pytorchvideo,
          "imagebind": quiet_pkg_resources}
_AROUND = {"laion_clap": hub_offline}  # packages whose own import must run inside a context
_AFTER = {"transformers.utils.logging": quiet_transformers_bars}  # run on the module once it has loaded


class _ShimFinder(importlib.abc.MetaPathFinder):
    """Runs a package's shim the first time the package is looked up, then steps aside."""

    def find_spec(self, fullname, path=None, target=None):
        shim = _SHIMS.get(fullname)
        if shim is not None and fullname not in _APPLIED:
            _APPLIED.add(fullname)
            shim()
        around, after = _AROUND.get(fullname), _AFTER.get(fullname)
        if (around is not None or after is not None) and fullname not in _APPLIED:
            _APPLIED.add(fullname)
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            if spec is not None and spec.loader is not None:
                run = spec.loader.exec_module

                def exec_module(module, _run=run, _around=around or contextlib.nullcontext, _after=after):
                    with _around():
                        _run(module)
                    if _after is not None:
                        _after(module)

                spec.loader.exec_module = exec_module  # this loader object serves this one module only
                return spec
        return None  # the normal finders do the actual import


# (category name, message regex) of warnings.warn calls silenced; logger name -> message prefix of log records
KNOWN_WARNINGS = (
    ("FutureWarning", r"`torch\.nn\.utils\.weight_norm` is deprecated"),
    ("FutureWarning", r"Importing from timm\.models\.\w+ is deprecated"),
    ("UserWarning", r"xFormers can't load C\+\+/CUDA extensions"),
    ("FutureWarning", r"`is_gradient_checkpointing` is deprecated"),  # transformers 5, called by its own code
)
KNOWN_LOG_RECORDS = {"xformers": "WARNING[XFORMERS]: xFormers can't load C++/CUDA extensions"}


class _DropPrefix:
    """logging filter: drops records whose message starts with `prefix`."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def filter(self, record) -> bool:
        return not str(record.getMessage()).startswith(self.prefix)


def quiet_known_warnings() -> None:
    """Silence KNOWN_WARNINGS and KNOWN_LOG_RECORDS (module docstring), unless VM_EVAL_SHOW_WARNINGS is set."""
    import builtins
    import logging
    import os
    import warnings

    if os.environ.get("VM_EVAL_SHOW_WARNINGS"):
        return
    for category, message in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=getattr(builtins, category))
    for name, prefix in KNOWN_LOG_RECORDS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropPrefix) and f.prefix == prefix for f in logger.filters):
            logger.addFilter(_DropPrefix(prefix))


def install() -> None:
    quiet_known_warnings()
    if not any(isinstance(f, _ShimFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _ShimFinder())
    for name, shim in _SHIMS.items():  # a package imported before us still gets its shim
        if name in sys.modules and name not in _APPLIED:
            _APPLIED.add(name)
            shim()
    for name, after in _AFTER.items():
        if name in sys.modules and name not in _APPLIED:
            _APPLIED.add(name)
            after(sys.modules[name])
