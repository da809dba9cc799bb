"""A model's identity (its ModelInfo and checkpoint identities, what names a run) without loading its weights.

A model factory (class or function) may offer a hook ``factory.identify(**kwargs) -> (ModelInfo, checkpoints)``
taking the factory's own keyword arguments and returning exactly what ``factory(**kwargs)`` would give as
``model.info`` and ``model.checkpoints()``, from files and metadata alone (VidMusician, musicgen-text and
``dir:`` have one). :func:`describe` calls it when it is there and otherwise builds the model (cheap for the
reference systems and the external adapters) and hands that model back for reuse.
"""
from __future__ import annotations

import typing as tp
from dataclasses import dataclass, field
from pathlib import Path

from vm_eval.models.api import ModelInfo
from vm_eval.errors import UserError, UserFileNotFound

Identify = tp.Callable[..., tuple[ModelInfo, list[dict]]]


@dataclass(frozen=True)
class ModelIdentity:
    info: ModelInfo
    checkpoints: list[dict]  # {name, path, sha256, ...} per checkpoint, in the model's order
    # the model the fallback had to build to learn its identity (None when a hook answered): reuse it, don't rebuild
    model: tp.Any = field(default=None, compare=False, repr=False)


def describe(name: str, model_args: dict | None = None, context: dict | None = None) -> ModelIdentity:
    """The identity ``MODELS.create(name, **model_args, **context)`` would have, loading no weights where the
    factory has an ``identify`` hook (see the module docstring). Raises what building the model would raise for a
    missing checkpoint, unknown arguments or an unknown name."""
    from vm_eval.registries import MODELS
    from vm_eval.registry import check_kwargs

    model_args, context = dict(model_args or {}), dict(context or {})
    entry = MODELS.get(name)
    factory = entry.load()
    hook = getattr(factory, "identify", None)
    if not callable(hook):
        model = MODELS.create(name, **model_args, **context)
        return ModelIdentity(model.info, [dict(c) for c in model.checkpoints()], model)
    kwargs = {**({"spec": name[len(entry.name):]} if entry.prefix else {}), **model_args, **context}
    check_kwargs(factory, kwargs, f"model {name!r}")
    info, checkpoints = hook(**kwargs)
    return ModelIdentity(info, [dict(c) for c in checkpoints])


def identified_by(hook: Identify) -> tp.Callable[[tp.Callable], tp.Callable]:
    """Decorator giving a factory function its ``identify`` hook (classes define an ``identify`` classmethod)."""
    def mark(factory: tp.Callable) -> tp.Callable:
        factory.identify = hook  # type: ignore[attr-defined]
        return factory

    return mark


# ------------------------------------------------------------------------------------------------ MusicGen files
def _xp_cfg(path: Path) -> dict:
    """The ``xp.cfg`` of an audiocraft checkpoint file ({'xp.cfg', 'best_state'}), as a plain dict.

    torch.load memory-maps the file (``mmap=True``), so the tensors of ``best_state`` are never read; files in
    torch's pre-1.6 format cannot be mapped and are read whole (still no module is built)."""
    import torch

    from vidmusician.backbone import _plain

    if not path.is_file():
        raise UserFileNotFound(f"MusicGen checkpoint file {path} not found")
    try:
        pkg = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    except RuntimeError as e:
        if "mmap" not in str(e):
            raise
        pkg = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(pkg, dict) or "xp.cfg" not in pkg:
        raise UserError(f"{path} is not in audiocraft's checkpoint layout {{'xp.cfg': ..., 'best_state': ...}}")
    return _plain(pkg["xp.cfg"])


def musicgen_scale(lm_file: Path):
    """The LM size (vidmusician.config.BackboneScale) a MusicGen ``state_dict.bin`` declares, as load_backbone
    reads it, without its weights."""
    from vidmusician.backbone import _scale_from_lm_cfg

    return _scale_from_lm_cfg(_xp_cfg(Path(lm_file)))


def encodec_sample_rate(compression_file: Path) -> int:
    """Output rate (Hz) of the EnCodec a ``compression_state_dict.bin`` declares, without its weights: audiocraft's
    get_compression_model gives EncodecModel ``encodec.sample_rate`` of the config."""
    return int(_xp_cfg(Path(compression_file))["encodec"]["sample_rate"])
