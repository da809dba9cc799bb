"""describe(): a model's identity (info + checkpoint identities) without loading its weights. For VidMusician and
musicgen-text it equals, field for field, what the loaded model reports, while no torch module is built and no
weight is read; other models (external adapters, reference systems) are built and keep their identities; an
implicit VidMusician checkpoint choice is reported once and recorded in the info."""
from __future__ import annotations

import vm_eval  # noqa: F401  compat hook first (audiocraft / peft on a CPU machine)

import os
import shutil
import subprocess
import sys

import pytest
import torch

from baseline_fakes import checkpoint_dir, configure, fake_checkout
from test_musicgen_text import CORPUS, FakeDescriptors
from vm_eval.models.identity import describe
from vm_eval.models.vidmusician import CHECKPOINT, RANDOM_WEIGHTS, VidMusicianModel
from vm_eval.registries import MODELS
from vm_eval.registry import RegistryError

pytestmark = pytest.mark.usefixtures("one_blas_thread")


class Loaded(AssertionError):
    """Raised by the loading functions a weightless identity must never call."""


@pytest.fixture
def no_loading(monkeypatch):
    """Every weight loader refuses and every torch module construction is counted; yields the counters."""
    import vidmusician.backbone
    import vidmusician.checkpoint
    import vidmusician.semantic
    import vidmusician.visual
    import vm_eval.train.components
    from baselines import musicgen_text

    def refuse(*args, **kwargs):
        raise Loaded("a weight loader was called")

    for module, name in ((vidmusician.backbone, "load_backbone"), (vidmusician.semantic, "load_t5_encoder"),
                         (vidmusician.visual, "VisualEncoder"), (vidmusician.checkpoint, "read_checkpoint"),
                         (vm_eval.train.components, "resolve_components"),
                         (musicgen_text, "load_text_conditioner")):
        monkeypatch.setattr(module, name, refuse)
    counts = {"modules": 0, "torch.load": []}
    init = torch.nn.Module.__init__

    def counting_init(self, *args, **kwargs):
        counts["modules"] += 1
        init(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "__init__", counting_init)
    load = torch.load

    def recording_load(*args, **kwargs):
        counts["torch.load"].append(kwargs.get("mmap", False))
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    return counts


def _same_identity(ident, model) -> None:
    assert ident.info == model.info
    assert ident.checkpoints == model.checkpoints()


# ------------------------------------------------------------------------------------------------ VidMusician
def test_vidmusician_identity_equals_the_loaded_models(trained):
    req, result, out, results = trained
    for args in ({"checkpoint": str(out)}, {"checkpoint": str(out / CHECKPOINT), "cfg": 2.0, "top_k": 5,
                                            "label": "variant", "stride_s": 10.0}):
        ident = describe("vidmusician", args, {"results": results})
        model = MODELS.create("vidmusician", **args, results=results)
        _same_identity(ident, model)
        assert ident.model is None  # a hook answered: nothing was built
        assert [c["name"].split(":")[0] for c in ident.checkpoints] == ["vidmusician", "backbone", "clip",
                                                                          "encodec", "t5"]
    assert ident.info.extra["generation"]["cfg_coef"] == 2.0 and ident.info.name == "variant"
    tiny = describe("vidmusician-tiny-random", {}, {"results": results})
    _same_identity(tiny, MODELS.create("vidmusician-tiny-random", results=results))
    assert tiny.info.trained is False and tiny.info.sample_rate == 32000
    assert tiny.info.extra["checkpoint_choice"] == "vidmusician-tiny-random's folder (results/train/demo-tiny)"


def test_vidmusician_identity_loads_no_weights(trained, no_loading):
    req, result, out, results = trained
    ident = describe("vidmusician", {"checkpoint": str(out)}, {"results": results})
    assert no_loading["modules"] == 0
    assert no_loading["torch.load"] == [True]  # EnCodec's config only, memory-mapped: its tensors are not read
    assert ident.checkpoints[0]["path"] == str(out / CHECKPOINT)
    with pytest.raises(Loaded):  # the guard is real: building the model trips it
        VidMusicianModel(checkpoint=out, results=results)


def test_vidmusician_identity_refuses_other_frozen_parts(trained, tmp_path):
    """The checkpoint's random backbone swapped for other bytes: describe refuses as loading does, before a run
    folder would be opened."""
    from vidmusician.checkpoint import CheckpointMismatch

    req, result, out, results = trained
    moved = tmp_path / "moved"
    shutil.copytree(out / RANDOM_WEIGHTS, moved / RANDOM_WEIGHTS, symlinks=True,
                    copy_function=lambda src, dst: os.symlink(src, dst))
    shutil.copyfile(out / CHECKPOINT, moved / CHECKPOINT)
    (lm,) = (moved / RANDOM_WEIGHTS).glob("musicgen-*/state_dict.bin")
    lm.unlink()
    lm.write_bytes(b"other weights")
    with pytest.raises(CheckpointMismatch, match="backbone mismatch"):
        describe("vidmusician", {"checkpoint": str(moved)}, {"results": results})


def test_vidmusician_arguments_are_checked_as_the_constructor_does(trained):
    req, result, out, results = trained
    with pytest.raises(RegistryError, match="does not take argument"):
        describe("vidmusician", {"checkpoint": str(out), "bogus": 1}, {"results": results})
    with pytest.raises(RegistryError, match="does not take argument"):
        describe("vidmusician-tiny-random", {"cfgg": 1}, {"results": results})


def _train_folder(trained_out, root, mtime_s: float):
    """A training folder sharing the trained one's random weights (symlinked) with its own checkpoint file."""
    root.mkdir(parents=True)
    os.symlink(trained_out / RANDOM_WEIGHTS, root / RANDOM_WEIGHTS)
    shutil.copyfile(trained_out / CHECKPOINT, root / CHECKPOINT)
    os.utime(root / CHECKPOINT, (mtime_s, mtime_s))
    return root / CHECKPOINT


def test_implicit_checkpoint_choice_is_reported_once_and_recorded(trained, tmp_path, monkeypatch,
                                                                   capsys):
    req, result, out, results = trained
    monkeypatch.delenv("VM_EVAL_WEIGHTS", raising=False)
    other = tmp_path / "results"
    _train_folder(out, other / "train" / "older", 1_600_000_000)
    newest = _train_folder(out, other / "train" / "newer", 1_700_000_000)
    capsys.readouterr()
    ident = describe("vidmusician", {}, {"results": other})
    model = MODELS.create("vidmusician", results=other)  # the runner builds it to generate: it says nothing
    lines = [line for line in capsys.readouterr().err.splitlines() if "checkpoint" in line]
    assert len(lines) == 1, lines
    assert lines[0].startswith("vidmusician: no checkpoint= given; using the newest of 2 checkpoint(s) under ")
    assert str(newest) in lines[0] and "(modified 2023-11-" in lines[0]
    assert ident.info.extra["checkpoint_choice"] == "newest of results/train (2 found)"
    assert ident.info.extra["checkpoint"] == str(newest)
    _same_identity(ident, model)

    describe("vidmusician", {"checkpoint": str(newest)}, {"results": other})
    assert "checkpoint" not in capsys.readouterr().err  # explicit: nothing to say
    assert MODELS.create("vidmusician", checkpoint=newest).info.extra["checkpoint_choice"] == "explicit"

    weights = tmp_path / "weights"
    _train_folder(out, weights / "vidmusician", 1_650_000_000)
    monkeypatch.setenv("VM_EVAL_WEIGHTS", str(weights))
    ident = describe("vidmusician", {}, {"results": other})
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (f"vidmusician: no checkpoint= given; using $VM_EVAL_WEIGHTS/vidmusician/{CHECKPOINT}: "
                    f"{weights / 'vidmusician' / CHECKPOINT}")
    assert ident.info.extra["checkpoint_choice"] == "VM_EVAL_WEIGHTS"


# ------------------------------------------------------------------------------------------------ musicgen-text
@pytest.fixture(scope="module")
def mgt_parts(tmp_path_factory):
    from baselines import musicgen_text as mt

    return mt.write_random_parts(tmp_path_factory.mktemp("mgt-weights"), seed=0, t5=dict(d_model=24, d_ff=48,
                                                                                            d_kv=12), lines=CORPUS)


def test_musicgen_text_identity_equals_the_loaded_models(mgt_parts, tmp_path):
    bb, t5 = mgt_parts
    clip = tmp_path / "open_clip_pytorch_model.bin"
    clip.write_bytes(b"hashed for the identity; loaded only when a clip needs descriptors")
    for args in ({"backbone": str(bb), "t5": str(t5), "prompt": "caption"},
                 {"backbone": str(bb), "t5": str(t5), "clip": str(clip), "cfg": 2.0, "window_s": 0.3},
                 {"backbone": str(bb), "t5": str(t5), "descriptors": FakeDescriptors(), "template": "{prompt}, lofi",
                  "label": "mine", "device": "cpu"}):
        ident = describe("musicgen-text", args)
        _same_identity(ident, MODELS.create("musicgen-text", **args))
        assert ident.model is None
    assert ident.info.extra["scale"] == "tiny" and ident.info.sample_rate == 32000 and not ident.info.trained
    assert ident.checkpoints[-1]["name"] == "descriptors:fake-descriptors"
    results = tmp_path / "results"
    model = MODELS.create("musicgen-text-tiny-random", results=results)  # writes its random parts
    _same_identity(describe("musicgen-text-tiny-random", {}, {"results": results}), model)


def test_musicgen_text_identity_loads_no_weights(mgt_parts, no_loading):
    bb, t5 = mgt_parts
    ident = describe("musicgen-text", {"backbone": str(bb), "t5": str(t5), "prompt": "caption"})
    assert no_loading["modules"] == 0 and no_loading["torch.load"] == [True, True]  # the two configs, mmap'd
    assert [c["name"].split(":")[0] for c in ident.checkpoints] == ["backbone", "encodec", "t5", "tokenizer"]
    with pytest.raises(Loaded):
        MODELS.create("musicgen-text", backbone=str(bb), t5=str(t5), prompt="caption")


# ------------------------------------------------------------------------------------------------ the others
def test_external_adapter_identity_is_unchanged_with_its_upstream_commit(tmp_path, monkeypatch):
    checkout = fake_checkout(tmp_path / "VidMuse", {"infer.py": "vidmuse_infer.py"})
    git = ["git", "-C", str(checkout), "-c", "user.email=t@t", "-c", "user.name=t"]
    for cmd in (["init", "-q"], ["add", "."], ["commit", "-qm", "fake"]):
        subprocess.run([*git, *cmd], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    configure(monkeypatch, "vidmuse", checkout, {"model": checkpoint_dir(tmp_path / "model", (
        "state_dict.bin", "compression_state_dict.bin"))}, python=sys.executable)
    ident = describe("vidmuse", {"device": "cpu"})
    _same_identity(ident, MODELS.create("vidmuse", device="cpu"))
    assert ident.model is not None and ident.model.info == ident.info  # built (cheap) and handed back for reuse
    code = ident.checkpoints[-1]
    assert code["name"] == "vidmuse:upstream-code" and code["git_commit"] == head
    assert ident.info.extra["upstream_commit"] == ident.model.spec.commit


def test_reference_systems_are_built_and_handed_back():
    from baselines.reference import GroundTruth

    ident = describe("ground-truth")
    _same_identity(ident, MODELS.create("ground-truth"))
    assert isinstance(ident.model, GroundTruth) and ident.checkpoints == []
