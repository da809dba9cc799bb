"""A published system through `vm-eval run`, as a user runs it: configured by environment, one clip failing upstream."""
from __future__ import annotations

import json
import subprocess
import sys

from baseline_fakes import checkpoint_dir, fake_checkout
from vm_eval.data.manifest import load_manifest


def vm(env, *args):
    return subprocess.run([sys.executable, "-m", "vm_eval.cli", *args], env=env, capture_output=True, text=True,
                          timeout=600)


def test_run_records_upstream_failure_per_clip_and_provenance(cli_env, data_dir, tmp_path):
    clips = sorted(load_manifest(data_dir / "demo").split("test"), key=lambda c: c.id)[:2]
    env = dict(cli_env, VM_EVAL_CONFIG="")
    r = vm(env, "run", "--model", "vidmuse", "--limit", "2", "--metrics", "duration-error", "--quiet")
    assert r.returncode == 2 and "VidMuse (vidmuse) is not ready" in r.stderr and "checkout: not configured" in r.stderr

    checkout = fake_checkout(tmp_path / "VidMuse", {"infer.py": "vidmuse_infer.py"})
    ckpt = checkpoint_dir(tmp_path / "model", ("state_dict.bin", "compression_state_dict.bin"))
    (tmp_path / "vm-eval.toml").write_text(
        f'[baselines.vidmuse]\ncheckout = "{checkout}"\npython = "{sys.executable}"\ndevice = "cpu"\n'
        f'[baselines.vidmuse.checkpoints]\nmodel = "{ckpt}"\n')
    env.update(VM_EVAL_CONFIG=str(tmp_path / "vm-eval.toml"), FAKE_UPSTREAM_FAIL_ON=clips[1].id.replace("/", "_"))
    r = vm(env, "run", "--model", "vidmuse", "--limit", "2", "--metrics", "duration-error", "--quiet")
    assert r.returncode == 1 and "1 done, 1 failed" in r.stdout + r.stderr  # the run goes on past the failed clip
    (row,) = [x for x in json.loads(vm(env, "results", "--format", "json").stdout) if x["model"] == "vidmuse"]
    assert row["counts"]["done"] == 1 and row["counts"]["failed"] == 1
    from vm_eval.store.run import Run

    run = Run(row["path"])
    recs = {rec["clip_id"]: rec for rec in run.generation}
    assert recs[clips[0].id]["status"] == "done" and recs[clips[0].id]["sample_rate"] == 32000
    assert "exited with code 1" in recs[clips[1].id]["reason"] and "CUDA out of memory (fake)" in recs[clips[1].id]["reason"]
    names = [c["name"] for c in row["provenance"]["checkpoints"]]
    assert names == ["vidmuse:model", "vidmuse:upstream-code"]
    assert run.meta()["model_info"]["extra"]["upstream_commit"] == "1e9296e78a85c4a3f291be37a2d6de42c1d26222"

    env.pop("FAKE_UPSTREAM_FAIL_ON")  # the failed clip is retried by the same command; the done one is kept
    r = vm(env, "run", "--model", "vidmuse", "--limit", "2", "--metrics", "duration-error", "--quiet")
    assert r.returncode == 0, r.stderr
    recs = [rec for rec in Run(row["path"]).generation]
    assert [rec["clip_id"] for rec in recs].count(clips[0].id) == 1 and recs[-1]["status"] == "done"
