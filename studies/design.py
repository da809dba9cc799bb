"""Balanced, seeded design of a pairwise listening study: which rater hears which clip with which two systems.

A *cell* is (clip, unordered system pair); with C clips and S systems there are C * P cells, P = S(S-1)/2. The
comparison trials of all raters together form one sequence that walks the cells in a fixed cyclic order
(relabelled at random by the seed), repeated as often as the budget needs, and each rater receives a contiguous
stretch of it. The order is a diagonal walk of the C x P grid, the construction of cyclic (Latin-square-like)
designs (Cochran & Cox 1957, "Experimental Designs", ch. 4; Williams 1949 for counterbalanced orders):
position u of a round shows pair u mod P and clip (u + floor(u / L)) mod C, L = lcm(C, P). The g = gcd(C, P)
stretches of length L are disjoint (stretch b holds the cells with clip - pair = b mod g), so a round holds every
cell exactly once. Guarantees (tested):

- every cell is used floor(B / CP) or ceil(B / CP) times (B = comparison budget), and so is every pair within
  1 of every other pair, every clip within 1 of every other clip;
- a rater's stretch shows every pair within 1 as often as every other (pair = u mod P is periodic), clips within
  2 (within 1 when gcd(C, P) = 1), and no cell twice unless the rater has more comparison trials than cells;
- sides: the k-th occurrence of a pair within a round shows it in orientation (k + round) mod 2, so across the
  design each pair is shown in both orders equally often (within 1), and each cell too;
- each rater's trials are shuffled independently (seeded), catch trials included.

Catch trials (share `catch_rate` of all trials, spread over raters within 1) compare ``ground-truth`` with the
anchor of one catch kind, on clips where both exist; kinds alternate, clips cycle through a shuffled list, the
side of the ground truth alternates per kind. All questions are asked on every trial; a catch trial has a correct
answer (the ground truth's side) only for the questions whose ``catch`` equals the trial's catch kind, see
:meth:`Trial.expected_answer`.
"""
from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import combinations
from typing import Literal

import numpy as np

from studies.config import CATCH_ANCHORS, DEFAULT_QUESTIONS, GROUND_TRUTH, Question, StudyConfig
from vm_eval.errors import UserError

Side = Literal["left", "right"]


class DesignError(UserError, ValueError):
    """The inputs cannot give a sensible design; the message lists every problem."""


@dataclass(frozen=True)
class Trial:
    """One page a rater sees: one video (`clip_id`) with two soundtracks. `position` is the presentation order
    within the rater (0-based); `expected` is the side of the ground truth on catch trials."""

    trial_id: str
    rater: int
    position: int
    clip_id: str
    system_left: str
    system_right: str
    is_catch: bool = False
    catch_kind: str | None = None
    expected: Side | None = None
    is_practice: bool = False  # the practice trial: shown first, never analysed

    def expected_answer(self, question: Question) -> Side | None:
        """The correct side for `question` on this trial; None when the question has no correct answer here (not
        a catch trial, or the question's catch kind differs from this trial's)."""
        if self.is_catch and question.catch is not None and question.catch == self.catch_kind:
            return self.expected
        return None


@dataclass(frozen=True)
class Design:
    clips: tuple[str, ...]
    systems: tuple[str, ...]
    raters: int
    trials_per_rater: int
    catch_rate: float
    catch_kinds: tuple[str, ...]
    seed: int
    trials: tuple[tuple[Trial, ...], ...]  # per rater, in presentation order
    practice: bool = False  # each rater's first trial is a practice trial (beyond trials_per_rater)

    def all_trials(self) -> list[Trial]:
        return [t for rater in self.trials for t in rater]

    def to_records(self) -> list[dict]:
        """One flat dict per trial (for CSV/parquet/JSON storage)."""
        return [asdict(t) for t in self.all_trials()]

    def to_json(self) -> dict:
        """JSON-ready dict (settings + trial records); :meth:`from_json` restores an equal design."""
        meta = {k: getattr(self, k) for k in ("raters", "trials_per_rater", "catch_rate", "seed", "practice")}
        return {**meta, "clips": list(self.clips), "systems": list(self.systems),
                "catch_kinds": list(self.catch_kinds), "trials": self.to_records()}

    @classmethod
    def from_json(cls, data: Mapping) -> "Design":
        per_rater: list[list[Trial]] = [[] for _ in range(int(data["raters"]))]
        for rec in data["trials"]:
            per_rater[int(rec["rater"])].append(Trial(**rec))
        return cls(tuple(data["clips"]), tuple(data["systems"]), int(data["raters"]), int(data["trials_per_rater"]),
                   float(data["catch_rate"]), tuple(data["catch_kinds"]), int(data["seed"]),
                   tuple(tuple(sorted(ts, key=lambda t: t.position)) for ts in per_rater),
                   bool(data.get("practice", False)))


def _problems(clips: Sequence[str], systems: Sequence[str], raters: int, k: int, catch_rate: float) -> list[str]:
    out = []
    if len(clips) == 0:
        out.append("no clips to build trials on")
    if len(set(clips)) != len(clips):
        out.append(f"clip ids repeated: {sorted({c for c in clips if list(clips).count(c) > 1})}")
    if len(systems) < 2:
        out.append(f"needs at least 2 systems to compare, got {len(systems)}")
    if len(set(systems)) != len(systems):
        out.append(f"systems repeated: {sorted({s for s in systems if list(systems).count(s) > 1})}")
    if raters < 1:
        out.append(f"raters must be at least 1, got {raters}")
    if k < 1:
        out.append(f"trials per rater must be at least 1, got {k}")
    if not 0.0 <= catch_rate < 1.0:
        out.append(f"catch rate must be in [0, 1), got {catch_rate}")
    return out


def _trial_id(seed: int, rater: int, position: int, clip: str, left: str, right: str) -> str:
    key = f"vm-eval-study|{seed}|{rater}|{position}|{clip}|{left}|{right}"
    return "t" + hashlib.sha256(key.encode()).hexdigest()[:16]


def make_design(
    clips: Sequence[str],
    systems: Sequence[str],
    raters: int,
    trials_per_rater: int,
    *,
    catch_rate: float = 0.1,
    questions: Sequence[Question] = DEFAULT_QUESTIONS,
    catch_clips: Mapping[str, Sequence[str]] | None = None,
    seed: int = 0,
    practice: bool = False,
) -> Design:
    """Build the design (pure: same inputs and seed, same design).

    `catch_clips` maps a catch kind ("rhythm", "content") to the clips that have both ground-truth music and that
    kind's anchor; by default every clip. Catch trials number round(catch_rate * raters * trials_per_rater) in
    all, spread over raters within 1; they are part of each rater's `trials_per_rater`.

    With `practice`, each rater first sees one practice trial on top of `trials_per_rater` (position 0, the
    others follow): a comparison on a seeded random (clip, pair) cell that the rater's other trials do not show
    where there is one, so the rater learns the page on a real trial.
    Its votes are stored like any other and marked, and the analysis drops them; it is outside every balance
    guarantee above (:func:`design_report` skips it).
    """
    clips, systems = list(clips), list(systems)
    problems = _problems(clips, systems, raters, trials_per_rater, catch_rate)
    kinds = list(dict.fromkeys(q.catch for q in questions if q.catch))
    unknown = [kd for kd in kinds if kd not in CATCH_ANCHORS]
    if unknown:
        problems.append(f"unknown catch kinds {unknown}; known: {sorted(CATCH_ANCHORS)}")
    if catch_rate > 0 and not kinds:
        problems.append(f"catch rate is {catch_rate} but no question names a catch kind")
    if problems:
        raise DesignError("cannot build the study design:\n" + "\n".join(f"  - {p}" for p in problems))

    n_catch_total = math.floor(catch_rate * raters * trials_per_rater + 0.5) if kinds else 0
    eligible: dict[str, list[str]] = {}
    if n_catch_total:
        for kd in kinds:
            pool = list(catch_clips.get(kd, [])) if catch_clips is not None else list(clips)
            if not pool:
                problems.append(f"no clip has both {GROUND_TRUTH} and {CATCH_ANCHORS[kd]} music for {kd} catch trials")
            eligible[kd] = sorted(set(pool))
    base, extra = divmod(n_catch_total, raters)
    if base + (extra > 0) >= trials_per_rater:
        problems.append(f"{n_catch_total} catch trials over {raters} raters of {trials_per_rater} trials leave "
                        "some raters no comparison trial; lower catch_rate or raise trials_per_rater")
    if problems:
        raise DesignError("cannot build the study design:\n" + "\n".join(f"  - {p}" for p in problems))

    def rng(*tag: int) -> np.random.Generator:
        return np.random.default_rng([seed & 0xFFFFFFFF, seed >> 32 & 0xFFFFFFFF, *tag])

    # seeded relabelling: clip order, pair order, and which member of a pair is shown left in orientation 0
    r = rng(1)
    clip_of = [clips[i] for i in r.permutation(len(clips))]
    pairs = [(a, b) if r.integers(2) == 0 else (b, a) for a, b in combinations(systems, 2)]
    pair_of = [pairs[i] for i in r.permutation(len(pairs))]
    C, P = len(clip_of), len(pair_of)
    L = C * P // math.gcd(C, P)
    more = set(rng(2).permutation(raters)[:extra].tolist())  # raters with one catch trial more
    catch_counts = [base + (i in more) for i in range(raters)]

    # comparison trials: a contiguous stretch of the cyclic walk per rater
    per_rater: list[list[tuple]] = [[] for _ in range(raters)]
    t = 0
    for n in range(raters):
        for _ in range(trials_per_rater - catch_counts[n]):
            rnd, u = divmod(t, C * P)
            clip, (a, b) = clip_of[(u + u // L) % C], pair_of[u % P]
            left, right = (a, b) if (u // P + rnd) % 2 == 0 else (b, a)
            per_rater[n].append((clip, left, right, False, None, None))
            t += 1

    # catch trials: kinds alternate, clips cycle per kind, the ground truth's side alternates per kind
    rc = rng(3)
    kind_order = [kinds[(i + int(rc.integers(len(kinds)))) % len(kinds)] for i in range(len(kinds))] if kinds else []
    pools = {kd: [eligible[kd][i] for i in rc.permutation(len(eligible[kd]))] for kd in eligible}
    side0 = int(rc.integers(2))
    used: Counter[str] = Counter()
    j = 0
    for n in range(raters):
        for _ in range(catch_counts[n]):
            kd = kind_order[j % len(kind_order)]
            i = used[kd]
            used[kd] += 1
            clip = pools[kd][i % len(pools[kd])]
            gt_left = (i + side0 + kinds.index(kd)) % 2 == 0
            anchor = CATCH_ANCHORS[kd]
            left, right = (GROUND_TRUTH, anchor) if gt_left else (anchor, GROUND_TRUTH)
            per_rater[n].append((clip, left, right, True, kd, "left" if gt_left else "right"))
            j += 1

    trials = []
    for n, items in enumerate(per_rater):
        order = rng(4, n).permutation(len(items))
        first: list[Trial] = []
        if practice:  # drawn from its own stream: the rest of the design is the same with or without it
            rp = rng(5, n)
            seen = {(it[0], frozenset(it[1:3])) for it in items}
            cells = [(c, p) for c in clips for p in pairs if (c, frozenset(p)) not in seen] or \
                [(c, p) for c in clips for p in pairs]  # a cell the rater does not see again, where one is left
            clip, (a, b) = cells[int(rp.integers(len(cells)))]
            left, right = (a, b) if rp.integers(2) == 0 else (b, a)
            first.append(Trial(_trial_id(seed, n, 0, clip, left, right), n, 0, clip, left, right, is_practice=True))
        trials.append(tuple(first) + tuple(
            Trial(_trial_id(seed, n, pos, *items[i][:3]), n, pos, *items[i])
            for pos, i in enumerate(order, start=len(first))
        ))
    return Design(tuple(clips), tuple(systems), raters, trials_per_rater, catch_rate, tuple(kinds), seed,
                  tuple(trials), practice)


def design_for_config(config: StudyConfig, clips: Sequence[str],
                      catch_clips: Mapping[str, Sequence[str]] | None = None) -> Design:
    """The design of a validated study config over the split's `clips`."""
    return make_design(clips, config.systems, config.raters, config.trials_per_rater, catch_rate=config.catch_rate,
                       questions=config.questions, catch_clips=catch_clips, seed=config.seed,
                       practice=config.practice_trial)


@dataclass(frozen=True)
class RaterBalance:
    rater: int
    n_trials: int
    n_catch: int
    pair_spread: int  # max - min comparisons per pair within the rater (all pairs, zeros included)
    clip_spread: int  # max - min comparison trials per clip within the rater
    repeats: int  # comparison trials showing a (clip, pair) the rater already saw
    left_share: dict[str, float] = field(default_factory=dict)  # per system: share of its trials on the left


@dataclass(frozen=True)
class DesignReport:
    """Balance counts of a design; keys of pairs are (a, b) in the order of `design.systems`."""

    n_trials: int
    n_catch: int
    cell_counts: dict[tuple[str, str, str], int]  # (clip, a, b) -> comparison trials
    pair_counts: dict[tuple[str, str], int]
    clip_counts: dict[str, int]
    side_counts: dict[tuple[str, str], tuple[int, int]]  # (a, b) -> (a shown left, b shown left)
    catch_counts: dict[str, int]  # catch kind -> trials
    catch_sides: dict[str, tuple[int, int]]  # catch kind -> (ground truth left, ground truth right)
    raters: list[RaterBalance]

    @staticmethod
    def _spread(values) -> int:
        v = list(values)
        return max(v) - min(v) if v else 0

    def summary(self) -> dict[str, float | int]:
        """Headline numbers: spreads are max - min counts (0 or 1 is balanced)."""
        return {
            "trials": self.n_trials,
            "catch_trials": self.n_catch,
            "catch_share": self.n_catch / self.n_trials if self.n_trials else 0.0,
            "cells": len(self.cell_counts),
            "cell_spread": self._spread(self.cell_counts.values()),
            "pair_spread": self._spread(self.pair_counts.values()),
            "clip_spread": self._spread(self.clip_counts.values()),
            "side_imbalance": max((abs(x - y) for x, y in self.side_counts.values()), default=0),
            "catch_side_imbalance": abs(sum(x for x, _ in self.catch_sides.values())
                                        - sum(y for _, y in self.catch_sides.values())),
            "rater_pair_spread": max((r.pair_spread for r in self.raters), default=0),
            "rater_clip_spread": max((r.clip_spread for r in self.raters), default=0),
            "rater_repeats": max((r.repeats for r in self.raters), default=0),
        }


def design_report(design: Design) -> DesignReport:
    """Count what the design shows: per cell, pair, clip, side order, catch kind and side, and per rater."""
    rank = {s: i for i, s in enumerate(design.systems)}
    pairs = list(combinations(design.systems, 2))

    def key(left: str, right: str) -> tuple[str, str]:
        return (left, right) if rank[left] < rank[right] else (right, left)

    cells = {(c, a, b): 0 for c in design.clips for a, b in pairs}
    pair_counts = {p: 0 for p in pairs}
    clip_counts = {c: 0 for c in design.clips}
    sides = {p: [0, 0] for p in pairs}
    catch_counts: Counter[str] = Counter()
    catch_sides: dict[str, list[int]] = {}
    raters = []
    for n, all_trials in enumerate(design.trials):
        trials = [t for t in all_trials if not t.is_practice]  # outside the balanced design
        r_pairs, r_clips, r_cells = Counter(), Counter(), Counter()
        left, seen = Counter(), Counter()
        for t in trials:
            if t.is_catch:
                catch_counts[t.catch_kind] += 1
                catch_sides.setdefault(t.catch_kind, [0, 0])[0 if t.expected == "left" else 1] += 1
                continue
            p = key(t.system_left, t.system_right)
            cells[(t.clip_id, *p)] += 1
            pair_counts[p] += 1
            clip_counts[t.clip_id] += 1
            sides[p][0 if t.system_left == p[0] else 1] += 1
            r_pairs[p] += 1
            r_clips[t.clip_id] += 1
            r_cells[(t.clip_id, p)] += 1
            left[t.system_left] += 1
            seen[t.system_left] += 1
            seen[t.system_right] += 1
        n_catch = sum(t.is_catch for t in trials)
        raters.append(RaterBalance(
            rater=n, n_trials=len(trials), n_catch=n_catch,
            pair_spread=DesignReport._spread(r_pairs.get(p, 0) for p in pairs),
            clip_spread=DesignReport._spread(r_clips.get(c, 0) for c in design.clips),
            repeats=sum(v - 1 for v in r_cells.values()),
            left_share={s: left[s] / seen[s] for s in design.systems if seen[s]},
        ))
    return DesignReport(
        n_trials=sum(not t.is_practice for t in design.all_trials()), n_catch=sum(catch_counts.values()),
        cell_counts=cells,
        pair_counts=pair_counts, clip_counts=clip_counts, side_counts={p: (x, y) for p, (x, y) in sides.items()},
        catch_counts=dict(catch_counts), catch_sides={k: (x, y) for k, (x, y) in catch_sides.items()},
        raters=raters,
    )
