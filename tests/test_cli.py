"""The command line end to end, in subprocesses, as a user runs it (the demo path included, with --limit); how
main() reports user errors and bugs, in this process."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vm_eval.cli import main
from vm_eval.data.manifest import load_manifest
from vm_eval.media import Audio, load_audio, write_video, write_wav

REPO = Path(__file__).resolve().parents[1]


def vm(env, *args, timeout=600):
    return subprocess.run([sys.executable, "-m", "vm_eval.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_demo_with_limit_then_results_json(cli_env, shared_cache):
    cli_env.pop("VM_EVAL_PLUGINS")  # the demo runs every weightless model: only the suite's own here
    cli_env["VM_EVAL_CACHE"] = str(shared_cache)  # the demo's training inputs, shared with the other training tests
    r = vm(cli_env, "demo", "--limit", "2")
    assert r.returncode == 0, r.stderr
    # Off a terminal progress is plain lines, ours only: no carriage-return bars (transformers' own included).
    assert "\r" not in r.stderr and "Writing model shards" not in r.stderr, r.stderr[-2000:]
    assert "stage 1: " in r.stderr and "generate vidmusician-tiny-random: " in r.stderr
    assert "ground-truth" in r.stdout and "random-retrieval" in r.stdout and "loudness-lufs" in r.stdout
    assert "vidmusician-tiny-random [untrained]" in r.stdout  # the demo's random-backbone model is flagged
    table = r.stdout[r.stdout.index("demo/test: 7 run(s)"):].splitlines()  # the summary closes the demo
    assert max(len(x) for x in table) <= 100, max(table, key=len)
    assert "references (never ranked)" in r.stdout and "ground-truth (ceiling)" in r.stdout
    assert r.stdout.count("metric(s) not run here") <= 1 and "metric(s) not run here" not in r.stderr
    r = vm(cli_env, "results", "--format", "json")
    rows = json.loads(r.stdout, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))
    assert {row["model"] for row in rows} == {"ground-truth", "random-retrieval", "beat-sync", "anchor-beat-shift",
                                              "anchor-other-category", "musicgen-text-tiny-random",
                                              "vidmusician-tiny-random"}
    assert [row["trained"] for row in rows if row["model"] == "vidmusician-tiny-random"] == [False]
    for row in rows:
        assert row["status"] == "partial" and row["counts"]["pending"] > 0  # --limit never looks complete
        assert row["provenance"]["code"]["git_sha"] and row["provenance"]["packages"]["numpy"]
        assert row["aggregates"]["duration-error"]["n"] >= 1
    csv = vm(cli_env, "results", "--format", "csv").stdout.splitlines()
    assert csv[0].startswith("run_id,status") and len(csv) == 1 + sum(len(row["aggregates"]) for row in rows)


def test_dir_model_scores_audio_and_video_outputs(cli_env, data_dir, tmp_path):
    manifest = load_manifest(data_dir / "demo")
    clips = manifest.split("test")
    out = tmp_path / "outputs"
    sr = 22050
    a = clips[0]
    write_wav(out / f"{a.id}.wav", Audio(0.2 * np.sin(np.arange(int(a.duration * sr)) * 0.05)[None], sr))
    b = clips[1]
    music = Audio(0.3 * np.sin(np.arange(int(b.duration * sr)) * 0.03)[None].repeat(2, 0), sr)
    write_video(out / f"{b.id}.mp4", (np.zeros((32, 32, 3), np.uint8) for _ in range(int(b.duration * 25))), 25, music)
    (out / "notes.txt").write_text("ignored")
    r = vm(cli_env, "run", "--model", f"dir:{out}", "--quiet")
    assert r.returncode == 0, r.stderr
    rows = json.loads(vm(cli_env, "results", "--format", "json").stdout)
    (row,) = [x for x in rows if x["model"].startswith("dir:")]
    assert row["status"] == "complete"
    assert row["counts"]["done"] == 2 and row["counts"]["skipped"] == len(clips) - 2
    from vm_eval.store.run import Run

    run = Run(row["path"])
    got = load_audio(run.audio_path(b.id))
    assert got.channels == 2 and np.corrcoef(got.samples[0, :20000], music.samples[0, :20000])[0, 1] > 0.99
    missing = [rec for rec in run.generation if rec["status"] == "skipped"]
    assert all("missing output" in rec["reason"] for rec in missing)
    assert row["provenance"]["checkpoints"][0]["sha256"]


def test_listing_commands(cli_env):
    models = vm(cli_env, "models").stdout
    assert "ground-truth" in models and "random-retrieval" in models and "dir:" in models
    metrics = vm(cli_env, "metrics").stdout
    assert "loudness-lufs" in metrics and "LUFS" in metrics and "key " in metrics
    weights = vm(cli_env, "weights")
    assert weights.returncode == 0 and "musicgen-medium" in weights.stdout and "absent" in weights.stdout
    assert "huggingface-cli download facebook/musicgen-medium" in weights.stdout


@pytest.mark.parametrize("args, words", [
    (("run", "--model", "ground-truht"), "did you mean ground-truth"),
    (("run", "--model", "ground-truth", "--model-args", "foo=1"), "does not take argument(s) foo"),
    (("run", "--model", "ground-truth", "--split", "nope"), "split 'nope' has no clips"),
    (("run", "--model", "ground-truth", "--dataset", "nothing-here"), "no dataset named 'nothing-here'"),
    (("run", "--model", "dir:/no/such/folder"), "no such folder"),
    (("run", "--model", "ground-truth", "--metrics", "fad"), "unknown metric 'fad'"),
])
def test_user_errors_are_one_clear_line(cli_env, args, words):
    r = vm(cli_env, *args, "--quiet")
    assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr


def test_an_internal_bug_prints_its_traceback_and_exits_1(monkeypatch, capsys):
    """A KeyError is a bug, not a user error (it used to print as one `error:` line with exit code 2)."""
    from vm_eval import commands

    def broken(args):
        return {}["oops"]

    monkeypatch.setattr(commands, "cmd_models", broken)
    assert main(["models"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "KeyError: 'oops'" in err and "in broken" in err
    assert "bug in vm-eval" in err and '"Reporting problems"' in err
    assert "\n## Reporting problems\n" in (REPO / "README.md").read_text()  # the section the message names


def test_a_user_error_is_one_line_and_debug_adds_its_traceback(results, capsys):
    args = ["compare", "nope-a", "nope-b", "--results", str(results)]
    line = (f"error: unknown run 'nope-a': no run id, id prefix, run folder or model name matches under {results} "
            "(stored models: none)")  # compare takes the selectors of `study create` (issue 17)
    assert main(args) == 2
    assert capsys.readouterr().err.splitlines() == [line]
    assert main(["--debug", *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "RunNotFound" in err
    assert err.splitlines()[-1] == line and "bug" not in err


def test_user_errors_of_modules_that_cannot_derive_from_user_error_are_recognised():
    """Each named class exists (a rename would silently make its errors print as bugs) and counts once loaded."""
    import importlib

    from vm_eval.errors import FOREIGN_USER_ERRORS, user_errors

    for module, name in FOREIGN_USER_ERRORS:
        cls = getattr(importlib.import_module(module), name)
        assert issubclass(cls, Exception) and cls in user_errors(), (module, name)


def test_failed_clip_gives_nonzero_exit(cli_env, data_dir):
    bad = load_manifest(data_dir / "demo").split("test")[0].id
    r = vm(cli_env, "run", "--model", "test-noise", "--model-args", f"fail_on={bad}", "--limit", "2", "--quiet")
    assert r.returncode == 1 and f"FAILED {bad}" in r.stderr and "upstream crashed" in r.stderr


def test_data_check_and_build_commands(cli_env, data_dir, tmp_path):
    r = vm(cli_env, "data", "check", "demo")
    assert r.returncode == 0 and "no problems" in r.stdout
    broken = tmp_path / "m.jsonl"
    broken.write_text((data_dir / "demo" / "manifest.jsonl").read_text().replace("videos/", "gone/", 1))
    r = vm(cli_env, "data", "check", str(broken))
    assert r.returncode == 1 and "missing" in r.stdout
    vids = tmp_path / "vids" / "promo"
    sr = 16000
    write_video(vids / "a.mp4", (np.full((32, 32, 3), i, np.uint8) for i in range(100)), 25,
                Audio(0.3 * np.sin(np.arange(4 * sr) * 0.1)[None], sr))
    r = vm(cli_env, "data", "build", str(tmp_path / "vids"), "--out", str(tmp_path / "built" / "manifest.jsonl"))
    assert r.returncode == 0, r.stderr
    m = load_manifest(tmp_path / "built" / "manifest.jsonl")
    assert [c.category for c in m.clips] == ["promo"] and m.clips[0].reference is not None


def test_model_info_paper_preset_needs_no_weights(cli_env):
    r = vm(cli_env, "model-info", "--preset", "paper")
    assert r.returncode == 0, r.stderr
    assert "backbone_lm" in r.stdout and "rhythm" in r.stdout and "vs the paper's 24,790,000" in r.stdout
    pct = float(r.stdout.rsplit(":", 1)[1].strip().rstrip("%"))
    assert abs(pct) <= 2.0
    no_rhythm = vm(cli_env, "model-info", "--preset", "paper", "--override", "train.stage=1")
    assert no_rhythm.returncode == 0
    rhythm_row = next(line for line in no_rhythm.stdout.splitlines() if line.startswith("rhythm"))
    assert rhythm_row.split()[1] == "0"  # stage 1 only: no rhythm module at all


def test_help_shows_defaults_and_one_pair_of_dataset_option_names(capsys):
    for cmd, want in ((["run"], ["--dataset NAME_OR_MANIFEST", "(default: demo)", "--datasets DIR"]),
                      (["train"], ["--dataset NAME_OR_MANIFEST", "(default: demo)", "--datasets DIR"]),
                      (["ablate"], ["--dataset NAME_OR_MANIFEST", "--datasets DIR"]),
                      (["results"], ["(default: table)", "--metrics", "--nulls", "--wide"]),
                      (["report"], ["--out", "--runs", "--study"])):
        with pytest.raises(SystemExit) as e:
            main([*cmd, "--help"])
        assert e.value.code == 0
        text = capsys.readouterr().out
        for w in want:
            assert w in text, (cmd, w)
        assert "--data " not in text and "--data," not in text  # the old spelling is hidden


def test_old_data_option_still_works_and_warns_once(capsys):
    from vm_eval import cli

    cli._WARNED.clear()
    p = cli.build_parser()
    assert p.parse_args(["run", "--model", "m", "--data", "D1"]).datasets == "D1"
    assert p.parse_args(["run", "--model", "m", "--data", "D2"]).datasets == "D2"
    assert p.parse_args(["train", "--data", "mine"]).dataset == "mine"
    assert p.parse_args(["data", "check", "--data", "D3"]).datasets == "D3"
    err = capsys.readouterr().err
    assert err.count("--data is deprecated") == 1 and "use --datasets" in err


def test_a_missing_dataset_lists_the_datasets_there(data_dir, tmp_path, capsys):
    args = ["run", "--model", "ground-truth", "--dataset", "nothing-here", "--datasets", str(data_dir),
            "--results", str(tmp_path / "r"), "--quiet"]
    assert main(args) == 2
    assert "no dataset named 'nothing-here'" in (err := capsys.readouterr().err) and "datasets there: demo" in err


def test_known_third_party_warnings_are_silenced_in_compat_only(caplog):
    import logging
    import warnings

    from vm_eval.compat import quiet_known_warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_known_warnings()
        warnings.warn("`torch.nn.utils.weight_norm` is deprecated in favor of ...", FutureWarning)
        warnings.warn("Importing from timm.models.layers is deprecated, please import via timm.layers",
                      FutureWarning)
        warnings.warn("something else is deprecated", FutureWarning)
    assert [str(w.message) for w in seen] == ["something else is deprecated"]
    with caplog.at_level(logging.WARNING, logger="xformers"):
        logging.getLogger("xformers").warning("WARNING[XFORMERS]: xFormers can't load C++/CUDA extensions. ...")
        logging.getLogger("xformers").warning("another xformers warning")
    assert [r.getMessage() for r in caplog.records] == ["another xformers warning"]
