"""Shared fixtures: the demo dataset (generated once per session), a results folder, offline hub settings."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import vm_eval  # noqa: F401  first, as in production: installs the compat import hook (torchvision, madmom)

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))  # test-only systems live in tests/testsystems.py (also used via VM_EVAL_PLUGINS)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    from vm_eval.data.demo import make_demo

    root = tmp_path_factory.mktemp("data")
    make_demo(root / "demo")
    return root


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One feature cache (VM_EVAL_CACHE) for the tests that train the tiny model on the demo's train split: the
    cache is keyed by content and extractor identity, so they share EnCodec tokens and CLIP features as a user's
    runs do, and only the first pays for them (~25 s each)."""
    return tmp_path_factory.mktemp("shared-cache")


@pytest.fixture
def results(tmp_path) -> Path:
    return tmp_path / "results"


@pytest.fixture
def cli_env(data_dir, results) -> dict:
    """Environment for running `vm-eval` in a subprocess against the session's demo data."""
    env = dict(os.environ)
    env.update(VM_EVAL_DATA=str(data_dir), VM_EVAL_RESULTS=str(results), VM_EVAL_PLUGINS="testsystems",
               PYTHONPATH=os.pathsep.join([str(TESTS), str(REPO), env.get("PYTHONPATH", "")]))
    return env


@pytest.fixture(scope="module")
def one_blas_thread():
    """Small matrices in loops: BLAS threads only add contention on a shared 2-core machine (numbers unaffected)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        yield


TRAINED_STEPS = 6  # per stage: enough for both stages to run; the backbone is random anyway


@pytest.fixture(scope="session")
def trained(data_dir, tmp_path_factory, shared_cache):
    """The demo's tiny model, trained the way `vm-eval demo` does (fewer steps), in its own results folder, once per
    session for every module that reads it: (request, result, output folder, results folder)."""
    from vm_eval.models.vidmusician import DEMO_RUN, TRAIN_DIR
    from vm_eval.train.command import TrainRequest, run_training

    results = tmp_path_factory.mktemp("vidm-results")
    req = TrainRequest(preset="tiny", data="demo", split="train", out=results / TRAIN_DIR / DEMO_RUN,
                       steps=TRAINED_STEPS, results=results, data_dir=data_dir, cache=shared_cache, progress=False)
    result, out = run_training(req)
    return req, result, out, results
