"""Import-time workarounds (vm_eval.compat), each checked in a fresh interpreter."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "numpy", "torchvision", "madmom", "pandas", "scipy", "open_clip")


def run_py(code: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"subprocess failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc


def last_json(proc: subprocess.CompletedProcess):
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_vm_eval_is_light():
    proc = run_py(
        "import sys, json\n"
        "import vm_eval\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    assert last_json(proc) == []


def test_torchvision_and_open_clip_import_after_vm_eval():
    if importlib.util.find_spec("open_clip") is None:  # no import here: this process has no shims
        pytest.skip("open_clip is not installed")
    proc = run_py(
        "import json, vm_eval\n"
        "import torchvision, open_clip, torch\n"
        "from torchvision import transforms\n"
        "model, _, preprocess = open_clip.create_model_and_transforms('ViT-B-32', pretrained=None)\n"
        "model.eval()\n"
        "with torch.no_grad():\n"
        "    emb = model.encode_image(torch.zeros(1, 3, 224, 224))\n"
        "print(json.dumps({'model': type(model).__name__, 'shape': list(emb.shape),\n"
        "                  'finite': bool(torch.isfinite(emb).all()), 'tv': torchvision.__version__}))\n"
    )
    out = last_json(proc)
    assert out["model"] == "CLIP"
    assert out["shape"] == [1, 512]  # ViT-B-32 embeds into 512 dimensions
    assert out["finite"]


def test_madmom_imports_after_vm_eval():
    if importlib.util.find_spec("madmom") is None:
        pytest.skip("madmom is not installed")
    proc = run_py(
        "import json, vm_eval\n"
        "import madmom\n"
        "from madmom.features.beats import RNNBeatProcessor, DBNBeatTrackingProcessor\n"
        "import collections, numpy as np\n"
        "print(json.dumps({'version': madmom.__version__, 'proc': RNNBeatProcessor.__name__,\n"
        "                  'ms': hasattr(collections, 'MutableSequence'), 'npfloat': np.float is float}))\n"
    )
    out = last_json(proc)
    assert out["proc"] == "RNNBeatProcessor"
    assert out["ms"] and out["npfloat"]


def test_shims_run_only_when_their_package_is_imported():
    """The hook is installed by `import vm_eval`, but numpy is untouched until madmom is looked up."""
    proc = run_py(
        "import sys, json, vm_eval\n"
        "from vm_eval import compat\n"
        "hooked = any(isinstance(f, compat._ShimFinder) for f in sys.meta_path)\n"
        "before = sorted(compat._APPLIED)\n"
        "import numpy as np\n"
        "untouched = 'float' not in np.__dict__\n"
        "import madmom\n"
        "print(json.dumps({'hooked': hooked, 'before': before, 'untouched': untouched,\n"
        "                  'after': sorted(compat._APPLIED), 'patched': np.__dict__.get('float') is float}))\n"
    )
    out = last_json(proc)
    assert out == {"hooked": True, "before": [], "untouched": True, "after": ["madmom"], "patched": True}


def test_laion_clap_imports_without_hub_calls_and_restores_online_mode():
    """laion_clap fetches tokenizers at import; without a network that used to retry for minutes."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    code = ("import vm_eval, laion_clap\n"
            "from huggingface_hub import constants\n"
            "print('offline', constants.HF_HUB_OFFLINE)\n")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "offline False" in r.stdout  # the user's hub mode is back once laion_clap is imported
    assert "huggingface.co" not in r.stderr  # no request was attempted


def test_transformers_bars_off_hub_bars_left_alone(tmp_path):
    """Saving a model draws transformers' own tqdm bar ("Writing model shards") into our logs; after vm_eval's
    import it is gone, while the hub's download bars stay as the user set them."""
    code = (
        "import json\n"
        "import vm_eval\n"
        "from transformers import T5Config, T5EncoderModel\n"
        "from huggingface_hub.utils import are_progress_bars_disabled\n"
        "cfg = T5Config(vocab_size=32, d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2)\n"
        f"T5EncoderModel(cfg).save_pretrained({str(tmp_path / 't5')!r})\n"
        "print(json.dumps({'hub_bars_disabled': are_progress_bars_disabled()}))\n"
    )
    proc = run_py(code)
    assert (tmp_path / "t5" / "model.safetensors").is_file()
    assert "Writing model shards" not in proc.stderr, proc.stderr[-2000:]
    assert last_json(proc) == {"hub_bars_disabled": False}
