"""The model and metric registries and their entries. Targets are imported only when an entry is used.

Other packages add rows here: `vidmusician` and `baselines` adapters to MODELS, `metrics` modules to METRICS.
"""
from __future__ import annotations

from vm_eval.registry import Entry, Registry

MODELS = Registry("model")
METRICS = Registry("metric")

# --- models ---------------------------------------------------------------------------------------------
MODELS.add(Entry("ground-truth", "baselines.reference:GroundTruth",
                 "the clip's own reference music (upper anchor for paired metrics)", family="reference"))
MODELS.add(Entry("random-retrieval", "baselines.reference:RandomRetrieval",
                 "music of another clip of the same split, drawn with the clip's seed (chance level)",
                 family="reference"))
MODELS.add(Entry("dir:", "vm_eval.models.directory:DirectoryOutputs",
                 "score a folder of existing outputs: dir:PATH, files named <clip id>.wav|.mp4|...",
                 family="external", prefix=True))

# --- metrics --------------------------------------------------------------------------------------------
METRICS.add(Entry("duration-error", "metrics.duration:DurationError",
                  "|generated duration - video duration| in seconds (lower is better)", family="sanity"))
METRICS.add(Entry("loudness-lufs", "metrics.loudness:IntegratedLoudness",
                  "integrated loudness, ITU-R BS.1770-4, LUFS (descriptive)", family="level",
                  packages=("pyloudnorm",)))


def weightless_models() -> list[Entry]:
    """Models that run without any downloaded weights (what `vm-eval demo` runs)."""
    return [e for e in MODELS.entries() if not e.prefix and not e.weights and e.availability()[0]]


def load_plugins() -> None:
    """Import the modules named in $VM_EVAL_PLUGINS (comma-separated); each may add entries to MODELS / METRICS.

    How a user registers a model or metric of their own without editing the suite (and how tests register
    test systems for subprocess runs).
    """
    import importlib
    import os

    for mod in filter(None, (m.strip() for m in os.environ.get("VM_EVAL_PLUGINS", "").split(","))):
        importlib.import_module(mod)


load_plugins()
