"""Ablation grids: the paper's Table 3 as config overrides whose built models match their stated signatures,
grid validation, the statistics (paired p-values, Holm), and a two-variant grid end to end on the demo."""
from __future__ import annotations

import vm_eval  # noqa: F401  compat hook first

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from metrics.stats import bootstrap_p_value, holm
from vm_eval.ablate.grid import DEFAULT_GRID, GridError, check_signatures, load_grid

PAPER_ROWS = {"t5-scratch", "no-rhythm", "no-zero-init", "one-stage", "rhythm-cls", "musicongen-no-init",
              "musicongen", "full"}


def built_signature(model, config) -> dict:
    """The signature read off a built model (not from the config arithmetic)."""
    from vidmusician.train import stage_plan

    stages = stage_plan(config.train.stage)
    rhythm = any(s in ("2", "joint") for s in stages)
    sem = model.semantic
    count = lambda params: sum(p.numel() for p in params)  # noqa: E731
    trainable = {"embedding_manager": count(sem.embedding_manager.parameters()),
                 "projector": count(sem.projector.parameters())}
    if sem.uses_lora:
        trainable["lora"] = count(sem.lora_parameters())
    else:
        trainable["t5_encoder"] = count(sem.t5.parameters())
    if rhythm:
        trainable["rhythm"] = count(model.rhythm.parameters())
    zero = None
    if rhythm:
        first = model.rhythm.zero_linear if model.rhythm.style == "vidmusician" else model.rhythm.projections[0]
        zero = "zero-identity" if bool((first.weight == 0).all()) else "default"
    return {"trainable": dict(sorted(trainable.items())), "t5": "lora" if sem.uses_lora else "scratch",
            "injection_layers": list(model.rhythm.injection_layers) if rhythm else None, "rhythm_init": zero,
            "rhythm_style": model.rhythm.style if rhythm else None,
            "rhythm_source": config.rhythm.source if rhythm else None, "stages": stages}


def test_default_grid_is_the_papers_table_and_every_variant_builds_as_stated():
    from vidmusician.model import VidMusician

    grid = load_grid()
    assert set(grid.names) == PAPER_ROWS and grid.reference == "full"
    check_signatures(grid, "paper")  # meta device: the stated paper-preset signatures hold
    sigs = check_signatures(grid, "tiny")
    for v in grid.variants:
        cfg = v.config("tiny")
        model = VidMusician(cfg, seed=0)
        assert built_signature(model, cfg) == v.signature["tiny"] == sigs[v.name], v.name
        assert {n for n, p in model.lm.named_parameters() if p.requires_grad} == set()  # backbone frozen
    assert len({json.dumps(s, sort_keys=True) for s in sigs.values()}) == len(sigs)


def _write(tmp_path, text: str):
    p = tmp_path / "grid.yaml"
    p.write_text(text)
    return p


def test_grid_errors_are_reported_together(tmp_path):
    bad = _write(tmp_path, """
name: bad
reference: missing
variants:
  - {name: a, overrides: {rhythm.nope: 1}}
  - {name: a, label: again}
  - {name: Bad Name, colour: red}
""")
    with pytest.raises(GridError) as e:
        load_grid(bad)
    msg = str(e.value)
    for part in ("duplicate variant name(s): a", "reference variant 'missing'", "rhythm.nope", "unknown field(s) colour",
                 "'Bad Name'"):
        assert part in msg, part
    with pytest.raises(FileNotFoundError):
        load_grid(tmp_path / "absent.yaml")


def test_two_variants_that_build_the_same_model_are_refused(tmp_path):
    same = _write(tmp_path, """
name: same
reference: full
variants:
  - {name: full}
  - {name: also-full, overrides: {train.lr: 0.001}}
""")
    with pytest.raises(GridError, match="build the same model"):
        check_signatures(load_grid(same), "tiny")
    wrong = _write(tmp_path, """
name: wrong
reference: full
variants:
  - name: full
    signature: {tiny: {stages: ['1']}}
""")
    with pytest.raises(GridError, match="the grid states"):
        check_signatures(load_grid(wrong), "tiny")


def test_holm_matches_a_hand_computation():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    assert np.isnan(holm([0.2, np.nan])[1]) and holm([0.2, np.nan])[0] == 0.2  # NaN is not counted in m
    np.testing.assert_allclose(holm([0.9, 0.8]), [1.0, 1.0])  # 0.8 x 2 capped at 1; the running max carries it


def test_bootstrap_p_value_separates_shift_from_noise():
    rng = np.random.default_rng(0)
    assert bootstrap_p_value(rng.normal(1.0, 1.0, 40)) < 0.01
    assert bootstrap_p_value(rng.normal(0.0, 1.0, 40)) > 0.05
    assert bootstrap_p_value(np.zeros(10)) == 1.0  # no difference at all
    assert np.isnan(bootstrap_p_value([1.0]))


def test_two_variant_grid_end_to_end_in_two_processes_and_resume(data_dir, tmp_path, shared_cache, monkeypatch):
    """Two variants against the full model: the reference alone first, then both variants in two worker processes;
    a second identical call retrains and regenerates nothing and reproduces the report."""
    from vm_eval.ablate.groups import list_groups
    from vm_eval.ablate.run import AblateRequest, run_ablation

    monkeypatch.setenv("VM_EVAL_CACHE", str(shared_cache))  # reaches the worker processes and Ray actors too
    req = AblateRequest(variants=["no-rhythm", "rhythm-cls"], data="demo", split="test", steps=4, limit=2, jobs=2,
                        data_dir=data_dir, results=tmp_path / "results", progress=False,
                        metrics=["duration-error", "beat-visual-f1-cuts"])
    out = run_ablation(req)
    assert out.order == ["full", "no-rhythm", "rhythm-cls"] and out.failed == 0
    rep = out.report
    diff = rep["differences"]["no-rhythm"]["beat-visual-f1-cuts"]
    assert diff["n"] == diff["clips"] == 2 and diff["lo"] <= diff["mean"] <= diff["hi"] and "p_holm" in diff
    assert rep["family_size"] == 4 and "Holm" in rep["correction"]  # 2 variants x 2 metrics with a direction
    for label in ("No rhythm (stage 1 only)", "Rhythm from [CLS] similarity", "Full model (reference)"):
        assert label in out.table
    state = json.loads((out.folder / "ablation.json").read_text())
    assert set(state["variants"]) == {"full", "no-rhythm", "rhythm-cls"} and state["status"] == "partial"  # --limit
    assert state["signatures"]["no-rhythm"]["stages"] == ["1"]
    assert state["signatures"]["rhythm-cls"]["rhythm_source"] == "cls"
    runs = {n: v["run"] for n, v in state["variants"].items()}
    assert len(set(runs.values())) == 3
    # resume: nothing is retrained or regenerated, the report is the same
    mtimes = {n: (out.folder / "variants" / n / "checkpoint.safetensors").stat().st_mtime_ns for n in runs}
    journals = {n: (Path(r) / "journal" / "generation.jsonl").read_text() for n, r in runs.items()}
    again = run_ablation(req)
    assert again.report["differences"] == rep["differences"]
    assert {n: (out.folder / "variants" / n / "checkpoint.safetensors").stat().st_mtime_ns for n in runs} == mtimes
    assert {n: (Path(r) / "journal" / "generation.jsonl").read_text() for n, r in runs.items()} == journals
    # a subset of the same grid is the same group: nothing retrained, its report holds just that variant
    # ... also when it runs on a Ray actor (resume across executors: the local results are reused there)
    import ray

    try:
        subset = run_ablation(replace(req, variants=["no-rhythm"], executor="ray"))
    finally:
        ray.shutdown()
    assert subset.folder == out.folder and set(subset.report["differences"]) == {"no-rhythm"}
    assert subset.report["differences"]["no-rhythm"] == rep["differences"]["no-rhythm"]
    assert {n: (out.folder / "variants" / n / "checkpoint.safetensors").stat().st_mtime_ns for n in runs} == mtimes
    groups = list_groups(tmp_path / "results")
    assert len(groups) == 1 and groups[0]["report"]["reference"] == "full"
    assert set(groups[0]["variants"]) == {"full", "no-rhythm", "rhythm-cls"}
