"""How close a CPU decoding step is to its memory-bandwidth floor, and whether fewer weight bytes would help.

At batch 1 + the CFG row a MusicGen step is 2-row matrix-vector products: every weight used per step is read once
from memory (the model is far larger than the caches), plus the self-attention keys / values written so far. This
script measures, at one ``--scale`` and each ``--threads`` setting (min and median of ``--repeats`` single steps
or loops):

- ``step``: one decoder step (vidmusician.decoder, no sampling) after a ``--prompt``-frame prompt;
- ``linears``: only the step's weight products (the same tensors, 2 rows), nothing else;
- ``stream``: a plain read (``torch.sum``) of as many bytes as the step reads (weights + the KV cache);
- ``linears bf16`` / ``linears fp16``: the same products over bfloat16 / float16 copies of the weights (half the
  bytes): if a step were bandwidth-bound with kernels that stream at memory speed, these would take half the time.

    .venv/bin/python benchmarks/decoder_floor.py --threads 1,2

Prints one line per figure and a JSON summary. Not a test: timings on a shared VM swing by 20%.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import vm_eval  # noqa: F401,E402  compat hook first (audiocraft on a CPU machine)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import typing as tp  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from vidmusician.backbone import random_lm  # noqa: E402
from vidmusician.decoder import MusicGenDecoder  # noqa: E402


def timed(fn: tp.Callable[[], object], repeats: int) -> dict:
    fn()  # warm-up
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return {"min_ms": 1e3 * min(runs), "median_ms": 1e3 * statistics.median(runs)}


def step_weights(dec: MusicGenDecoder) -> tp.List[tp.Tuple[torch.Tensor, tp.Optional[torch.Tensor]]]:
    """(weight, bias) of every product of a single-token step, in order (cross-attention K / V are cached)."""
    out = []
    for lw in dec.layers:
        out += [(lw.w_in, lw.b_in), (lw.w_out, lw.b_out), (lw.w_q, lw.b_q), (lw.w_cout, lw.b_cout),
                (lw.w_ff1, lw.b_ff1), (lw.w_ff2, lw.b_ff2)]
    return out + list(zip(dec.heads_w, dec.heads_b))


def linears(weights, rows: int, dtype: torch.dtype) -> tp.Callable[[], None]:
    ws = [(w.to(dtype), None if b is None else b.to(dtype)) for w, b in weights]
    xs = {w.shape[1]: torch.randn(rows, 1, w.shape[1]).to(dtype) for w, _ in ws}

    def run() -> None:
        for w, b in ws:
            F.linear(xs[w.shape[1]], w, b)
    return run


def measure(scale: str, prompt: int, repeats: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    lm = random_lm(scale)
    dec = MusicGenDecoder(lm)
    rows = 2  # batch 1 + the CFG row
    g = torch.Generator().manual_seed(0)
    dec.begin(dec.cross_cache(torch.randn(rows, 30, dec.dim, generator=g)), prompt + repeats + 8)
    one = torch.randint(0, dec.card, (rows, dec.n_q, 1), generator=g)
    with torch.inference_mode():
        dec.step(torch.randint(0, dec.card, (rows, dec.n_q, prompt), generator=g))
        step = timed(lambda: dec.step(one), repeats)
        weights = step_weights(dec)
        w_bytes = sum(w.numel() * w.element_size() for w, _ in weights)
        kv_bytes = 2 * len(dec.layers) * rows * dec.dim * prompt * 4  # keys + values read by attention
        out = {"scale": scale, "threads": threads, "prompt": prompt, "weight_bytes": w_bytes, "kv_bytes": kv_bytes,
               "step": step, "linears": timed(linears(weights, rows, torch.float32), repeats)}
        flat = torch.ones((w_bytes + kv_bytes) // 4)
        out["stream"] = timed(lambda: flat.sum(), repeats)
        del flat
        out["linears bf16"] = timed(linears(weights, rows, torch.bfloat16), repeats)
        out["linears fp16"] = timed(linears(weights, rows, torch.float16), repeats)
    dec.release()
    return out


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", default="small")
    ap.add_argument("--threads", default="1,2", help="comma list of torch thread counts")
    ap.add_argument("--prompt", type=int, default=700, help="frames decoded before the timed steps")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--json", default=None, help="also write the summary to this file")
    args = ap.parse_args(argv)
    summary: dict = {"args": vars(args), "torch": torch.__version__, "loadavg_start": os.getloadavg(), "runs": []}
    for t in [int(x) for x in args.threads.split(",")]:
        r = measure(args.scale, args.prompt, args.repeats, t)
        summary["runs"].append(r)
        gb = (r["weight_bytes"] + r["kv_bytes"]) / 1e9
        rate = gb / (r["stream"]["min_ms"] / 1e3)
        print(f"{args.scale} threads={t}: reads {r['weight_bytes'] / 1e9:.2f} GB weights + {r['kv_bytes'] / 1e9:.2f} "
              f"GB KV per step; stream read of those bytes {r['stream']['min_ms']:.0f} ms ({rate:.1f} GB/s) | step "
              f"min {r['step']['min_ms']:.0f} med {r['step']['median_ms']:.0f} ms | linears only min "
              f"{r['linears']['min_ms']:.0f} med {r['linears']['median_ms']:.0f} ms | bf16 linears min "
              f"{r['linears bf16']['min_ms']:.0f} ms | fp16 linears min {r['linears fp16']['min_ms']:.0f} ms",
              flush=True)
    summary["loadavg_end"] = os.getloadavg()
    text = json.dumps(summary, indent=1)
    if args.json:
        Path(args.json).write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
