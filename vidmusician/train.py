"""Training loop for VidMusician (frozen MusicGen backbone; semantic and rhythm branches train).

``train(model, examples, out_dir, identities)`` runs the stage(s) of ``model.config.train`` (or the ``stage`` /
``steps`` arguments) and leaves in ``out_dir``:

- ``checkpoint.safetensors`` -- the trainable weights (:func:`vidmusician.checkpoint.save_checkpoint`), written
  only once *all* requested stages are done;
- ``train.json`` -- a human-readable summary (config, identities, stages, steps, wall time, first/last loss);
- ``run.json`` -- what the run is (config, identities, stage, steps, number and order of the clip ids); a later
  call into the same folder with anything different is refused;
- ``state-<stage>.pt`` -- resumable state, written atomically every ``save_every`` steps and at the end of the
  stage (trainable weights, optimizer, scheduler, step, batch-generator state, losses);
- ``stage-<stage>.done.json`` -- marks a completed stage; completed stages are skipped (their final weights are
  reloaded from their state file) when the same call is repeated.

Schedule: ``"both"`` = stage ``"1"`` (semantic module) for ``steps`` steps, then ``model.set_stage("2")`` (rhythm
adapter) for ``steps`` steps, starting from the stage-1 weights; ``"1"``, ``"2"``, ``"joint"`` are single stages.
Stage ``"2"`` on its own trains only the rhythm adapter on top of whatever semantic weights the model holds:
load the stage-1 checkpoint first (``checkpoint.load_into``), otherwise the semantic module stays at its
random initialisation.

Per stage: AdamW (``lr``, ``weight_decay``) over ``model.trainable_parameters()`` of that stage only; linear
warm-up over ``warmup_steps`` then cosine decay to 0 at the last step (constant after warm-up when ``cosine`` is
false); gradient-norm clipping at ``clip_grad`` (off when <= 0); classifier-free-guidance dropout: each example's
conditions (semantic and rhythm) are dropped with probability ``cfg_dropout``; bf16 autocast on CUDA (none on
CPU); optional activation checkpointing of the LM (``grad_checkpointing``).

Reproducibility: segments, example order and cfg-dropout draws come from a ``torch.Generator`` seeded from
``(config.train.seed, stage)``; the model's own randomness (LoRA / T5 dropout) is reseeded per step from
``(seed, stage, step)`` inside ``torch.random.fork_rng`` (the caller's global RNG is left as it was). Together
with the saved generator/optimizer/scheduler states, a resumed run reproduces an uninterrupted one exactly on the
same machine and device.

Depends on torch, tqdm and safetensors (via ``checkpoint``); no vm_eval imports.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import time
import typing as tp
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .checkpoint import atomic_write_bytes, save_checkpoint, trainable_state
from .data import TrainExample, collate, segment
from .decoder import cpu_threads, decode_threads

__all__ = ["train", "TrainResult", "TrainStateMismatch", "stage_plan", "lr_multiplier", "STATE_FORMAT"]

STATE_FORMAT = "vidmusician-train-state/1"
RUN_FORMAT = "vidmusician-run/1"


class TrainStateMismatch(ValueError):
    """``out_dir`` holds a run made with a different config, identities, stage or step count."""


@dataclass
class TrainResult:
    checkpoint: Path
    stages: tp.List[str]
    losses: tp.Dict[str, tp.List[float]]
    resumed_from: tp.Optional[int] = None  # see train()
    skipped: tp.List[str] = field(default_factory=list)  # completed stages found in out_dir
    summary: tp.Optional[Path] = None  # train.json
    wall_time_s: float = 0.0  # of this call


def stage_plan(stage: str) -> tp.List[str]:
    stage = str(stage)
    if stage == "both":
        return ["1", "2"]
    if stage in ("1", "2", "joint"):
        return [stage]
    raise ValueError(f"stage must be '1', '2', 'joint' or 'both', got {stage!r}")


def lr_multiplier(step: int, total: int, warmup: int, cosine: bool = True) -> float:
    """Learning-rate factor for the 0-based ``step`` of a stage of ``total`` steps: linear warm-up
    ``(step + 1) / warmup`` for the first ``warmup`` steps, then ``0.5 * (1 + cos(pi * p))`` with
    ``p = (step - warmup) / (total - warmup)`` (reaches 0 at ``step == total``), or 1 when not ``cosine``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if not cosine:
        return 1.0
    span = max(total - warmup, 1)
    p = min(max((step - warmup) / span, 0.0), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * p))


def _seed(*parts: tp.Any) -> int:
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:15], 16)


class _Sampler:
    """Example indices in shuffled epochs (each example once per epoch), drawn from the stage generator."""

    def __init__(self, n: int):
        self.n = n
        self.perm: tp.List[int] = []
        self.pos = 0

    def next(self, g: torch.Generator) -> int:
        if self.pos >= len(self.perm):
            self.perm = torch.randperm(self.n, generator=g).tolist()
            self.pos = 0
        i = self.perm[self.pos]
        self.pos += 1
        return i

    def state(self) -> dict:
        return {"perm": list(self.perm), "pos": self.pos}

    def load(self, state: dict) -> None:
        self.perm = [int(i) for i in state["perm"]]
        self.pos = int(state["pos"])


def _json_norm(x: tp.Any) -> tp.Any:
    return json.loads(json.dumps(x, sort_keys=True, default=str))


def _atomic_torch_save(obj: tp.Any, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _atomic_json(obj: tp.Any, path: Path) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8"))


def _load_state(path: Path, device: torch.device) -> dict:
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        raise TrainStateMismatch(f"cannot read training state {path} ({type(e).__name__}: {e}); delete it (and "
                                 f"the stage's .done.json) to restart that stage") from e
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise TrainStateMismatch(f"{path} is not a VidMusician training state ({STATE_FORMAT})")
    return state


def _load_weights(model: nn.Module, weights: tp.Mapping[str, torch.Tensor], path: Path) -> None:
    target = trainable_state(model)
    if set(target) != set(weights):
        raise TrainStateMismatch(f"{path}: its weights do not match the model's trainable parameters")
    with torch.no_grad():
        for name, t in target.items():
            t.copy_(weights[name].to(dtype=t.dtype, device=t.device))


def _diff_keys(a: tp.Any, b: tp.Any, prefix: str = "") -> tp.List[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')}: saved {a!r}, now {b!r}"]


def _check_run(out_dir: Path, run: dict) -> bool:
    """Compare with ``out_dir/run.json``; True when resuming. Raises TrainStateMismatch on any difference."""
    path = out_dir / "run.json"
    if not path.exists():
        leftovers = sorted(p.name for p in out_dir.glob("state-*.pt")) + sorted(
            p.name for p in out_dir.glob("stage-*.done.json"))
        if (out_dir / "checkpoint.safetensors").exists():
            leftovers.append("checkpoint.safetensors")
        if leftovers:
            raise TrainStateMismatch(f"{out_dir} holds training files ({', '.join(leftovers)}) but no run.json; "
                                     f"refusing to mix runs -- use an empty folder")
        return False
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except Exception as e:
        raise TrainStateMismatch(f"{path} is unreadable ({e}); use a new out_dir") from e
    diffs = []
    for key in ("config", "identities", "stage", "steps", "num_examples", "examples_sha256"):
        diffs += _diff_keys(saved.get(key), run.get(key), f"{key}.")
    if diffs:
        shown = "; ".join(diffs[:8]) + (f" (+{len(diffs) - 8} more)" if len(diffs) > 8 else "")
        raise TrainStateMismatch(f"refusing to resume into {out_dir}: it was trained with a different setup ({shown}). "
                                 f"Use a new out_dir or the original config/identities.")
    return True


def _holds_weights(path: Path, model: nn.Module) -> bool:
    """True when ``path`` is a readable checkpoint holding exactly the model's trainable weights."""
    if not path.exists():
        return False
    try:
        from .checkpoint import read_checkpoint

        tensors = read_checkpoint(path).tensors
    except Exception:
        return False
    mine = trainable_state(model)
    return set(tensors) == set(mine) and all(torch.equal(tensors[n], mine[n].to("cpu")) for n in mine)


def train(model: nn.Module, examples: tp.Sequence[TrainExample], out_dir: tp.Union[str, os.PathLike],
          identities: tp.Optional[tp.Mapping[str, tp.Any]] = None, stage: tp.Optional[str] = None,
          steps: tp.Optional[int] = None, device: tp.Union[str, torch.device, None] = None,
          progress: tp.Union[bool, tp.Callable[..., tp.Any]] = True,
          save_every: int = 50, log: tp.Optional[tp.Callable[[dict], None]] = None,
          extra: tp.Optional[tp.Mapping[str, tp.Any]] = None) -> TrainResult:
    """Train ``model`` (a :class:`~vidmusician.model.VidMusician`) in place; see the module docstring.

    Args:
        examples: training clips (a random window of ``config.train.segment_s`` seconds per draw).
        out_dir: run folder (created). Re-running the same call continues an interrupted run.
        identities: identities of the frozen parts, e.g. ``{"backbone": {"name": ..., "sha256": ...}}``; stored
            in the checkpoint and compared on resume.
        stage: ``"1"``, ``"2"``, ``"joint"`` or ``"both"`` (default ``config.train.stage``).
        steps: optimizer steps per stage (default ``config.train.steps``).
        device: where to train (the model is moved there); default the model's current device.
        progress: a bar per stage showing the loss: True for tqdm, False for none, or a factory called as
            ``progress(total=..., initial=..., desc=...)`` that returns an object with tqdm's ``update``,
            ``set_postfix`` and ``close`` (vm_eval passes one that prints plain lines off a terminal).
        save_every: write ``state-<stage>.pt`` every this many steps (and always at the stage end).
        log: called after every step with ``{"stage", "step" (1-based), "steps", "loss", "lr"}``; an exception
            it raises (e.g. KeyboardInterrupt) stops training, leaving the last saved state for a resume.
        extra: caller's JSON-able notes (e.g. data provenance), stored in the checkpoint's ``extra`` (the
            trainer's keys stages/steps/losses/seed take precedence) and as ``extra`` in ``train.json``; not part
            of the resume comparison.

    Returns a :class:`TrainResult`. ``resumed_from`` is None when nothing was taken from ``out_dir``; otherwise
    the step (within the first stage trained by this call) that training continued from -- 0 when that stage
    starts fresh after skipped completed stages, ``steps`` when every stage was already complete. A repeat of a
    finished run trains nothing and leaves ``checkpoint.safetensors`` untouched when it still holds exactly the
    final weights. The model is left in eval mode, in the last stage of the plan, holding the final weights.
    """
    from tqdm.auto import tqdm

    t_call = time.time()
    cfg = model.config  # type: ignore[attr-defined]
    tc = cfg.train
    stage = str(tc.stage if stage is None else stage)
    plan = stage_plan(stage)
    steps = int(tc.steps if steps is None else steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    examples = list(examples)
    if not examples:
        raise ValueError("train: no examples")
    save_every = max(int(save_every), 1)
    identities = _json_norm(dict(identities or {}))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    if device is not None:
        model.to(device)
    dev = next(model.parameters()).device
    if any(p.requires_grad for p in model.lm.parameters()):  # type: ignore[attr-defined]
        raise RuntimeError("the backbone LM must be frozen (vidmusician.backbone.freeze)")

    run = {"format": RUN_FORMAT, "config": cfg.to_dict(), "identities": identities, "stage": stage,
           "steps": steps, "num_examples": len(examples),
           "examples_sha256": hashlib.sha256("\n".join(e.clip_id for e in examples).encode()).hexdigest()}
    resuming = _check_run(out_dir, _json_norm(run))
    if not resuming:
        _atomic_json(run, out_dir / "run.json")

    segment_frames = max(1, int(round(tc.segment_s * cfg.backbone.frame_rate)))
    token_rate = float(cfg.backbone.frame_rate)
    use_cuda = dev.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_cuda else contextlib.nullcontext
    fork_devices = [dev.index if dev.index is not None else torch.cuda.current_device()] if use_cuda else []

    transformer = model.lm.transformer  # type: ignore[attr-defined]
    old_ckpt = transformer.checkpointing
    if tc.grad_checkpointing:
        transformer.checkpointing = "torch"

    losses: tp.Dict[str, tp.List[float]] = {}
    elapsed: tp.Dict[str, float] = {}
    skipped: tp.List[str] = []
    resumed_from: tp.Optional[int] = None
    # CPU threads by backbone size, as decoding (one for the tiny presets: a second OpenMP thread only spins on
    # small matrices and collapses when another process holds the other core); restored afterwards
    threads = contextlib.ExitStack()
    if dev.type == "cpu":
        threads.enter_context(cpu_threads(decode_threads(model.lm)))  # type: ignore[attr-defined]
    try:
        for st in plan:
            state_path = out_dir / f"state-{st}.pt"
            done_path = out_dir / f"stage-{st}.done.json"
            model.set_stage(st)  # type: ignore[attr-defined]
            if done_path.exists():
                if not state_path.exists():
                    raise TrainStateMismatch(f"{done_path} exists but {state_path.name} is missing; cannot restore "
                                             f"stage {st}'s weights -- delete {done_path.name} to retrain it")
                state = _load_state(state_path, dev)
                _load_weights(model, state["model"], state_path)
                losses[st] = [float(x) for x in state["losses"]]
                elapsed[st] = float(state.get("elapsed_s", 0.0))
                skipped.append(st)
                continue

            params = model.trainable_parameters()  # type: ignore[attr-defined]
            opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
            warmup, cosine = int(tc.warmup_steps), bool(tc.cosine)
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s: lr_multiplier(s, steps, warmup, cosine))
            gen = torch.Generator().manual_seed(_seed("batches", tc.seed, st))
            sampler = _Sampler(len(examples))
            step = 0
            stage_losses: tp.List[float] = []
            stage_elapsed = 0.0
            if state_path.exists():
                state = _load_state(state_path, dev)
                if state.get("stage") != st or int(state.get("steps", -1)) != steps:
                    raise TrainStateMismatch(f"{state_path} belongs to another schedule "
                                             f"(stage {state.get('stage')}, {state.get('steps')} steps)")
                _load_weights(model, state["model"], state_path)
                opt.load_state_dict(state["optimizer"])
                sched.load_state_dict(state["scheduler"])
                gen.set_state(state["generator"].cpu())
                sampler.load(state["sampler"])
                step = int(state["step"])
                stage_losses = [float(x) for x in state["losses"]]
                stage_elapsed = float(state.get("elapsed_s", 0.0))
                if resumed_from is None:
                    resumed_from = step
            elif resumed_from is None and skipped:
                resumed_from = 0

            def save_state() -> None:
                _atomic_torch_save({
                    "format": STATE_FORMAT, "stage": st, "step": step, "steps": steps,
                    "model": {k: v.detach().to("cpu").clone() for k, v in trainable_state(model).items()},
                    "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "generator": gen.get_state(), "sampler": sampler.state(), "losses": list(stage_losses),
                    "elapsed_s": stage_elapsed, "seed": tc.seed,
                }, state_path)

            model.train()
            if callable(progress):
                bar = progress(total=steps, initial=step, desc=f"stage {st}")
            else:
                bar = tqdm(total=steps, initial=step, desc=f"stage {st}", disable=not progress, dynamic_ncols=True)
            try:
                while step < steps:
                    t0 = time.time()
                    idx = [sampler.next(gen) for _ in range(tc.batch_size)]
                    segs = [segment(examples[i], segment_frames, gen, token_rate_hz=token_rate) for i in idx]
                    batch = collate(segs, clip_ids=[examples[i].clip_id for i in idx]).to(dev)
                    drop = (torch.rand(len(idx), generator=gen) < float(tc.cfg_dropout)).to(dev)
                    lr_now = opt.param_groups[0]["lr"]
                    with torch.random.fork_rng(devices=fork_devices):
                        torch.manual_seed(_seed("step", tc.seed, st, step))
                        with contextlib.ExitStack() as hold:
                            with autocast():
                                if tc.grad_checkpointing:
                                    # checkpointed layers re-run the rhythm pre-hooks while recomputing in the
                                    # backward pass: keep the (identical, same-dtype) rhythm features set until
                                    # backward is done, or the recomputation would miss the rhythm addition.
                                    hold.enter_context(model.rhythm_conditioning(batch.d, drop))  # type: ignore
                                loss = model.loss(batch.codes, batch.cls, batch.cls_mask,  # type: ignore
                                                  batch.d, valid=batch.valid, drop=drop)
                            if not torch.isfinite(loss):
                                raise FloatingPointError(f"stage {st} step {step + 1}: loss is {loss.item()}")
                            opt.zero_grad(set_to_none=True)
                            loss.backward()
                    if tc.clip_grad and tc.clip_grad > 0:
                        torch.nn.utils.clip_grad_norm_(params, float(tc.clip_grad))
                    opt.step()
                    sched.step()
                    step += 1
                    value = float(loss.detach().float().item())
                    stage_losses.append(value)
                    stage_elapsed += time.time() - t0
                    if step % save_every == 0 or step == steps:
                        save_state()
                    bar.set_postfix(loss=f"{value:.4f}", refresh=False)  # before update: a line shows this step's
                    bar.update(1)
                    if log is not None:
                        log({"stage": st, "step": step, "steps": steps, "loss": value, "lr": lr_now})
            finally:
                bar.close()
            _atomic_json({"stage": st, "steps": steps, "first_loss": stage_losses[0], "last_loss": stage_losses[-1],
                          "train_time_s": stage_elapsed}, done_path)
            losses[st] = stage_losses
            elapsed[st] = stage_elapsed
    finally:
        transformer.checkpointing = old_ckpt
        threads.close()
        model.eval()

    if resumed_from is None and skipped:
        resumed_from = steps  # everything was already complete
    summary = {st: {"first": losses[st][0], "last": losses[st][-1]} for st in plan}
    user_extra = _json_norm(dict(extra or {}))
    ck_extra = {**user_extra, "stages": plan, "steps": steps, "losses": summary, "seed": tc.seed}
    ckpt = out_dir / "checkpoint.safetensors"
    nothing_trained = len(skipped) == len(plan)
    if not (nothing_trained and _holds_weights(ckpt, model)):
        save_checkpoint(model, ckpt, identities=identities, extra=ck_extra)
    wall = time.time() - t_call
    if nothing_trained and (out_dir / "train.json").exists():
        return TrainResult(checkpoint=ckpt, stages=plan, losses=losses, resumed_from=resumed_from, skipped=skipped,
                           summary=out_dir / "train.json", wall_time_s=wall)
    _atomic_json({
        "checkpoint": ckpt.name, "config": cfg.to_dict(), "identities": identities, "stage": stage, "stages": plan,
        "steps_per_stage": steps, "batch_size": tc.batch_size, "num_examples": len(examples),
        "segment_frames": segment_frames, "device": str(dev), "grad_checkpointing": bool(tc.grad_checkpointing),
        "loss": {st: {"first": losses[st][0], "last": losses[st][-1], "min": min(losses[st])} for st in plan},
        "train_time_s": {st: round(elapsed[st], 3) for st in plan},
        "wall_time_s_this_call": round(wall, 3), "skipped_stages": skipped, "resumed_from": resumed_from,
        "extra": user_extra,
    }, out_dir / "train.json")
    return TrainResult(checkpoint=ckpt, stages=plan, losses=losses, resumed_from=resumed_from, skipped=skipped,
                       summary=out_dir / "train.json", wall_time_s=wall)
