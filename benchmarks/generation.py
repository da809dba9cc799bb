"""Generation speed: our MusicGen-backbone decoder (vidmusician.decoder via generate_codes) against audiocraft's own
``LMModel.generate`` on the same random weights and sampling settings (top_k 250, temperature 1, CFG 3.0, batch 1
plus the CFG row, a fixed ``--cond-len``-token cross-attention condition), in one process, runs alternating.

Cases (each at every ``--threads`` setting; min and median of ``--repeats`` runs per side):
- ``full``: ``--seconds`` of audio from scratch (50 frames/s + 3 delay steps);
- ``late``: continue a ``--late-prompt``-frame prompt for ``--late-steps`` steps on both sides; the figure is the
  mean cost of a step after the prompt (timed between progress callbacks), i.e. the cost near step
  ``late-prompt`` of a window;
- ``medium``: the late-step cost at MusicGen-medium width (1536, 24 heads) from MEASURED per-layer costs: models of
  ``--medium-layers`` (default 2 and 4) layers are timed, per-layer = slope, fixed = the rest; 48 layers reported.

    .venv/bin/python benchmarks/generation.py                      # everything (long: audiocraft is slow)
    .venv/bin/python benchmarks/generation.py --cases late --threads 1

Random weights are built on the meta device and filled from one generator (audiocraft's own init is slow); timing
does not depend on the values. Prints one line per measurement and a JSON summary at the end.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # first: benchmarks/vidmusician.py must not shadow the package

import vm_eval  # noqa: F401,E402  compat hook first (audiocraft on a CPU machine)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import typing as tp  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

from vidmusician.backbone import random_lm  # noqa: E402
from vidmusician.config import SCALES, BackboneScale, GenerationConfig  # noqa: E402
from vidmusician.generate import generate_codes  # noqa: E402

GEN = GenerationConfig(top_k=250, top_p=0.0, temperature=1.0, cfg_coef=3.0)




class FixedCondition(nn.Module):
    """A model for generate_codes whose condition is a fixed source [1, S, dim] (MusicGen's null rows: zeros)."""

    def __init__(self, lm: nn.Module, source: torch.Tensor):
        super().__init__()
        self.lm, self.source = lm, source

    def condition(self, inputs, mask=None):
        return self.source, torch.ones(self.source.shape[:2], dtype=torch.long)

    def null_condition(self, batch, length):
        return torch.zeros_like(self.source), torch.zeros(self.source.shape[:2], dtype=torch.long)

    def window(self, inputs_per_clip, t0_s, t1_s):
        return list(inputs_per_clip)


class _StubProvider(nn.Module):
    """Stands in for audiocraft's ConditioningProvider: the same condition rows generate_codes builds."""

    def __init__(self, source: torch.Tensor):
        super().__init__()
        self.source = source

    def tokenize(self, conditions):
        return len(conditions)

    def forward(self, n_rows):
        src = torch.cat([self.source, torch.zeros_like(self.source)])  # [cond; null] as audiocraft orders them
        mask = torch.cat([torch.ones(self.source.shape[:2]), torch.zeros(self.source.shape[:2])]).long()
        assert src.shape[0] == n_rows
        return {"description": (src, mask)}


class Ticks:
    """Progress callback recording a timestamp per decoding step."""

    def __init__(self):
        self.times: tp.List[float] = []

    def __call__(self, done: int, total: int) -> None:
        self.times.append(time.perf_counter())

    def per_step_after_first(self) -> float:
        t = self.times
        return (t[-1] - t[0]) / max(1, len(t) - 1)


def run_audiocraft(lm, source, n_frames: int, prompt: tp.Optional[torch.Tensor]) -> tp.Tuple[float, Ticks]:
    from audiocraft.modules.conditioners import ConditioningAttributes

    saved = lm.condition_provider
    lm.condition_provider = _StubProvider(source)
    ticks = Ticks()
    try:
        t0 = time.perf_counter()
        with torch.no_grad():
            lm.generate(prompt=prompt, conditions=[ConditioningAttributes(text={"description": "x"})],
                        max_gen_len=n_frames, use_sampling=True, temp=GEN.temperature, top_k=GEN.top_k,
                        top_p=GEN.top_p, cfg_coef=GEN.cfg_coef, callback=ticks)
        return time.perf_counter() - t0, ticks
    finally:
        lm.condition_provider = saved


def run_ours(holder, n_frames: int, prompt: tp.Optional[torch.Tensor]) -> tp.Tuple[float, Ticks]:
    ticks = Ticks()
    t0 = time.perf_counter()
    generate_codes(holder, [None], n_frames, [0], GEN, prompt=prompt, progress=ticks)
    return time.perf_counter() - t0, ticks


def alternate(repeats: int, runs: tp.Dict[str, tp.Callable[[], float]], label: str) -> tp.Dict[str, dict]:
    """Run each side ``repeats`` times, alternating which goes first; min / median seconds per side."""
    got: tp.Dict[str, tp.List[float]] = {k: [] for k in runs}
    names = list(runs)
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            got[name].append(runs[name]())
            print(f"  {label} {name} run {r + 1}: {got[name][-1]:.4f} s", flush=True)
    return {k: {"min": min(v), "median": statistics.median(v), "runs": v} for k, v in got.items()}


def ratio(res: dict) -> dict:
    return {"min": res["audiocraft"]["min"] / res["ours"]["min"],
            "median": res["audiocraft"]["median"] / res["ours"]["median"]}


def bench_model(lm, cond_len: int, args, cases: tp.Sequence[str], threads: int, label: str) -> dict:
    g = torch.Generator().manual_seed(1)
    source = torch.randn(1, cond_len, lm.dim, generator=g)
    holder = FixedCondition(lm, source).eval()
    out = {}
    torch.set_num_threads(threads)
    os.environ["VIDMUSICIAN_DECODE_THREADS"] = str(threads)  # both sides at the same count (no automatic choice)
    if "full" in cases:
        n = int(round(args.seconds * 50))
        res = alternate(args.repeats, {"audiocraft": lambda: run_audiocraft(lm, source, n, None)[0],
                                       "ours": lambda: run_ours(holder, n, None)[0]},
                        f"{label} full {args.seconds:g}s threads={threads}")
        out["full"] = {**res, "ratio": ratio(res), "frames": n}
        print(f"{label} full {args.seconds:g}s threads={threads}: audiocraft min {res['audiocraft']['min']:.2f} s "
              f"median {res['audiocraft']['median']:.2f} s | ours min {res['ours']['min']:.2f} s median "
              f"{res['ours']['median']:.2f} s | ratio min {out['full']['ratio']['min']:.2f}x median "
              f"{out['full']['ratio']['median']:.2f}x", flush=True)
    if "late" in cases:
        p = args.late_prompt
        prompt = torch.randint(0, lm.card, (1, lm.num_codebooks, p), generator=g)
        n = p + args.late_steps
        res = alternate(args.repeats, {"audiocraft": lambda: run_audiocraft(lm, source, n, prompt)[1]
                                       .per_step_after_first(),
                                       "ours": lambda: run_ours(holder, n, prompt)[1].per_step_after_first()},
                        f"{label} late step~{p} threads={threads} (s/step)")
        out["late"] = {**res, "ratio": ratio(res), "prompt": p, "steps": args.late_steps}
        print(f"{label} late (~step {p}) threads={threads}: audiocraft min {1e3 * res['audiocraft']['min']:.1f} "
              f"ms/step median {1e3 * res['audiocraft']['median']:.1f} | ours min {1e3 * res['ours']['min']:.1f} "
              f"median {1e3 * res['ours']['median']:.1f} | ratio min {out['late']['ratio']['min']:.2f}x median "
              f"{out['late']['ratio']['median']:.2f}x", flush=True)
    return out


def main(argv: tp.Optional[tp.Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", default="small")
    ap.add_argument("--cases", default="full,late,medium", help="comma list of full, late, medium")
    ap.add_argument("--threads", default="1,2", help="comma list of torch thread counts")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--late-prompt", type=int, default=700)
    ap.add_argument("--late-steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cond-len", type=int, default=30)
    ap.add_argument("--medium-layers", default="2,4")
    ap.add_argument("--json", default=None, help="also write the summary to this file")
    args = ap.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    threads = [int(t) for t in args.threads.split(",")]
    summary: dict = {"args": vars(args), "torch": torch.__version__, "cores": len(os.sched_getaffinity(0)),
                     "loadavg_start": os.getloadavg()}
    if {"full", "late"} & set(cases):
        lm = random_lm(args.scale)
        for t in threads:
            summary[f"{args.scale}/threads={t}"] = bench_model(lm, args.cond_len, args, cases, t, args.scale)
        del lm
    if "medium" in cases:
        spec = SCALES["medium"]
        layers = [int(x) for x in args.medium_layers.split(",")]
        for t in threads:
            per = {}
            for n_layers in layers:
                lm = random_lm(BackboneScale(f"medium-{n_layers}l", spec.dim, n_layers, spec.num_heads))
                per[n_layers] = bench_model(lm, args.cond_len, args, ["late"], t, f"medium-{n_layers}l")["late"]
                del lm
            lo, hi = min(layers), max(layers)
            est = {}
            for side in ("audiocraft", "ours"):
                slope = (per[hi][side]["median"] - per[lo][side]["median"]) / (hi - lo)
                fixed = per[lo][side]["median"] - lo * slope
                est[side] = {"per_layer_s": slope, "fixed_s": fixed, "step_s_48_layers": fixed + 48 * slope}
            est["ratio"] = est["audiocraft"]["step_s_48_layers"] / est["ours"]["step_s_48_layers"]
            summary[f"medium-estimate/threads={t}"] = {"measured": per, "estimate": est}
            print(f"medium (48 layers, from measured {lo}- and {hi}-layer medians) late step threads={t}: "
                  f"audiocraft {1e3 * est['audiocraft']['step_s_48_layers']:.0f} ms/step "
                  f"(per layer {1e3 * est['audiocraft']['per_layer_s']:.2f} ms) | ours "
                  f"{1e3 * est['ours']['step_s_48_layers']:.0f} ms/step (per layer "
                  f"{1e3 * est['ours']['per_layer_s']:.2f} ms) | ratio {est['ratio']:.2f}x", flush=True)
    summary["loadavg_end"] = os.getloadavg()
    text = json.dumps(summary, indent=1, default=str)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
