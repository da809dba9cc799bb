"""The alignment metrics on the demo, end to end through the runner: real music beats its null and chance."""
from __future__ import annotations

from vm_eval.registries import METRICS
from vm_eval.results import compare_runs
from vm_eval.runner import RunConfig, execute

ALIGNMENT = [e.name for e in METRICS.entries() if e.family == "alignment" and not e.weights]  # CLIP: wiring test elsewhere


def test_ground_truth_beats_random_retrieval_on_every_alignment_score(data_dir, tmp_path):
    runs = {}
    for model in ("ground-truth", "random-retrieval"):
        runs[model] = execute(RunConfig(model=model, data=data_dir, results=tmp_path, metrics=ALIGNMENT,
                                        progress=False))
    gt = runs["ground-truth"]
    assert gt.status == "complete" and len(ALIGNMENT) >= 5
    diffs = compare_runs(gt.run, runs["random-retrieval"].run)
    for name in ALIGNMENT:
        d = diffs[name]
        assert d["n"] == gt.counts["done"] and d["lo"] > 0, (name, d)  # paired 95% CI excludes 0
        # within the ground-truth run, the music also beats its own circular shift and another clip's music
        assert gt.aggregates[f"{name}:vs-other"]["mean"] > 0 and gt.aggregates[f"{name}:vs-shift"]["mean"] > 0
