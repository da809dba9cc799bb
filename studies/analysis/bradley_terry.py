"""Bradley-Terry strengths fitted by Hunter's MM algorithm, with seeded bootstrap intervals and CI-based ranks.

Model (Bradley & Terry 1952): P(i beats j) = g_i / (g_i + g_j). Fit: Hunter (2004), "MM algorithms for
generalized Bradley-Terry models", Ann. Statist. 32(1), eq. (3): g_i <- W_i / sum_{j != i} N_ij / (g_i + g_j),
with W_i the wins of i and N_ij the comparisons of i and j; every step increases the likelihood.

Ties (`ties`): "exclude" (default) drops them; "half" counts a tie as half a win for each system (Hunter's
W_i and N_ij then hold halves; the same MM step applies).

Prior (`prior`, default 1.0, must be > 0): every system plays `prior` pseudo-comparisons against a virtual
opponent of fixed strength 1, winning half of them and losing half. Without it the MLE exists only when the
directed win graph is strongly connected (Hunter 2004, assumption 1): a system that never wins would get
strength 0, and the scale between disconnected parts of the comparison graph would be free. With it every
strength is finite, shrunk slightly toward the virtual opponent (one pseudo-comparison per system is negligible
against the tens of votes per system of a study), and systems that were never compared with each other, even
indirectly, are related only through the prior: `component` in the table tells those parts apart.

Strengths are reported as natural log-strengths centred to mean 0 over the systems (log g_i - mean_j log g_j);
a difference d between two systems means P(win) = 1 / (1 + exp(-d)).

Intervals (`cluster`, default "two-way"): bootstrap standard errors clustered by raters and clips together,
combined as Cameron, Gelbach & Miller (2011) do and turned into t intervals (see `resample`), seeded. One rater's
votes are not independent, nor are the votes on one clip; a rater-only percentile bootstrap with 2 raters has 3
distinct resamples and gave +2.09 [+1.86, +2.29] where the pairwise Clopper-Pearson intervals were [0.29, 1].
`cluster="rater"` clusters by raters only (clips fixed), `cluster="vote"` treats votes as independent. With fewer
than `min_units` (default 5) raters or clips the interval is undefined (NaN; `ci_note` says why) instead of
falsely narrow.

Ranks: rank_i = 1 + #{j : lower bound_j > upper bound_i} (systems whose intervals overlap share a rank); the
rank range is [rank_i, k - #{j : upper bound_j < lower bound_i}], the best and worst rank the intervals allow
(an undefined interval allows every rank, 1 to k).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from .resample import MIN_UNITS, Cluster, crossed_interval, design
from .votes import system_index

TiePolicy = Literal["exclude", "half"]

BT_COLUMNS: tuple[str, ...] = (
    "system", "strength", "ci_lo", "ci_hi", "rank", "rank_worst", "votes", "wins", "losses", "ties", "component",
)


@dataclass(frozen=True)
class BTConfig:
    """Bradley-Terry settings; see the module docstring for each choice."""

    ties: TiePolicy = "exclude"
    prior: float = 1.0
    resamples: int = 1000
    cluster: Cluster = "two-way"
    min_units: int = MIN_UNITS
    confidence: float = 0.95
    seed: int = 0
    max_iter: int = 10_000
    tol: float = 1e-9

    def __post_init__(self) -> None:
        if self.ties not in ("exclude", "half"):
            raise ValueError(f"ties must be 'exclude' or 'half', got {self.ties!r}")
        if not self.prior > 0:
            raise ValueError(f"prior must be > 0 (pseudo-comparisons against a virtual opponent), got {self.prior}")
        if self.cluster not in ("two-way", "rater", "vote"):
            raise ValueError(f"cluster must be 'two-way', 'rater' or 'vote', got {self.cluster!r}")
        if self.min_units < 2:
            raise ValueError(f"min_units must be >= 2 (a bootstrap of one unit has no spread), got {self.min_units}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must lie in (0, 1), got {self.confidence}")
        if self.resamples < 0:
            raise ValueError(f"resamples must be >= 0, got {self.resamples}")


@dataclass
class BTResult:
    """A fitted model: centred log-strengths, bootstrap interval, ranks and the vote counts per system."""

    systems: list[str]
    strength: np.ndarray
    ci_lo: np.ndarray
    ci_hi: np.ndarray
    rank: np.ndarray
    rank_worst: np.ndarray
    votes: np.ndarray
    wins: np.ndarray
    losses: np.ndarray
    ties: np.ndarray
    component: np.ndarray
    config: BTConfig = field(default_factory=BTConfig)
    ci_note: str | None = None  # why the interval is undefined (too few raters or clips), None when defined

    @property
    def connected(self) -> bool:
        """Whether every system is linked to every other through compared pairs."""
        return len(set(self.component.tolist())) <= 1

    def table(self) -> pd.DataFrame:
        """One row per system in canonical order (columns BT_COLUMNS)."""
        return pd.DataFrame({
            "system": self.systems, "strength": self.strength, "ci_lo": self.ci_lo, "ci_hi": self.ci_hi,
            "rank": self.rank, "rank_worst": self.rank_worst, "votes": self.votes, "wins": self.wins,
            "losses": self.losses, "ties": self.ties,
            "component": self.component,
        }, columns=list(BT_COLUMNS))


def _encode(votes: pd.DataFrame, systems: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per vote: the index of the chosen (winner) and other system, and whether it was a tie."""
    pos = {s: i for i, s in enumerate(systems)}
    a = votes["system_a"].map(pos).to_numpy(dtype=np.int64)
    b = votes["system_b"].map(pos).to_numpy(dtype=np.int64)
    ans = votes["answer"].to_numpy()
    winner = np.where(ans == "B", b, a)
    loser = np.where(ans == "B", a, b)
    return winner, loser, ans == "tie"


def _contributions(winner: np.ndarray, loser: np.ndarray, tie: np.ndarray, k: int, ties: TiePolicy) -> np.ndarray:
    """(n_votes, k*k) matrix: row v adds to the win matrix W[i, j] (wins of i over j) what vote v contributes."""
    c = np.zeros((winner.size, k * k))
    rows = np.arange(winner.size)
    decisive = ~tie
    c[rows[decisive], winner[decisive] * k + loser[decisive]] = 1.0
    if ties == "half":
        c[rows[tie], winner[tie] * k + loser[tie]] = 0.5
        c[rows[tie], loser[tie] * k + winner[tie]] = 0.5
    return c


def _rescale(g: np.ndarray, steps: int = 8) -> np.ndarray:
    """Exact coordinate-ascent step on a common factor s of all strengths (rows of `g`, shape (B, k)).

    Only the pseudo-comparisons against the virtual opponent depend on s; their log-likelihood is maximal where
    sum_i s g_i / (s g_i + 1) = k / 2 (Newton on log s, steps clipped). The step cannot lower the likelihood,
    and it removes the slow drift of the overall scale that MM alone shows when the prior is the only link
    between the systems and the virtual opponent.
    """
    logg = np.log(g)
    t = np.zeros(g.shape[0])  # the previous MM step left the scale near its optimum: start there
    half = g.shape[1] / 2.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(logg + t[:, None])))
        f = p.sum(axis=1) - half
        d = (p * (1.0 - p)).sum(axis=1)
        step = np.clip(f / np.maximum(d, 1e-12), -2.0, 2.0)
        t = t - step
        if np.abs(step).max() < 1e-13:  # Newton has converged (quadratically): further steps change nothing
            break
    return g * np.exp(t)[:, None]


def mm_fit(wins: np.ndarray, prior: float = 1.0, max_iter: int = 10_000, tol: float = 1e-9) -> np.ndarray:
    """Hunter's (2004) MM iterations for one or a batch of win matrices; returns centred log-strengths.

    `wins` has shape (k, k) or (B, k, k), wins[..., i, j] = (possibly fractional) wins of i over j. Each system
    also plays `prior` pseudo-comparisons (half won) against a virtual opponent of fixed strength 1.
    """
    W = np.asarray(wins, dtype=np.float64)
    single = W.ndim == 2
    if single:
        W = W[None]
    if prior <= 0:
        raise ValueError("mm_fit needs prior > 0")
    N = W + np.swapaxes(W, 1, 2)
    w = W.sum(axis=2) + prior / 2.0
    g = np.ones(W.shape[:2])
    active = np.ones(W.shape[0], dtype=bool)
    for _ in range(max_iter):
        ga = g[active]
        denom = (N[active] / (ga[:, :, None] + ga[:, None, :])).sum(axis=2) + prior / (ga + 1.0)
        new = _rescale(w[active] / denom)
        change = np.abs(np.log(new) - np.log(ga)).max(axis=1)
        g[active] = new
        idx = np.flatnonzero(active)
        active[idx[change < tol]] = False
        if not active.any():
            break
    else:
        warnings.warn(f"Bradley-Terry MM did not converge to tol={tol} in {max_iter} iterations "
                      f"({int(active.sum())} of {W.shape[0]} fits)", RuntimeWarning, stacklevel=2)
    logg = np.log(g)
    out = logg - logg.mean(axis=1, keepdims=True)
    return out[0] if single else out


def _components(N: np.ndarray) -> np.ndarray:
    """Connected components (labels 0, 1, ...) of the comparison graph with adjacency N > 0."""
    k = N.shape[0]
    label = -np.ones(k, dtype=np.int64)
    current = 0
    for start in range(k):
        if label[start] >= 0:
            continue
        stack = [start]
        label[start] = current
        while stack:
            i = stack.pop()
            for j in np.flatnonzero((N[i] > 0) & (label < 0)):
                label[j] = current
                stack.append(int(j))
        current += 1
    return label


def ci_ranks(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """rank_i = 1 + the number of systems whose lower bound exceeds system i's upper bound (NaN bounds: rank 1)."""
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        better = lo[None, :] > hi[:, None]
    return 1 + better.sum(axis=1)


def ci_rank_worst(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Worst rank the intervals allow: k - the number of systems whose upper bound is below system i's lower."""
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        worse = hi[None, :] < lo[:, None]
    return lo.size - worse.sum(axis=1)


def fit_bradley_terry(votes: pd.DataFrame, config: BTConfig | None = None,
                      systems: Sequence[str] | None = None, system_order: Sequence[str] | None = None) -> BTResult:
    """Fit Bradley-Terry on a validated votes table of one question (catch trials already removed).

    `systems` fixes the systems (and their order) to report, e.g. to include one without votes; by default the
    systems in `votes`, in canonical order. Bootstrap replicates are drawn from `numpy.random.default_rng(seed)`.
    """
    cfg = config or BTConfig()
    if "question" in votes.columns and votes["question"].nunique() > 1:
        raise ValueError("fit_bradley_terry takes the votes of one question; split the table by question first")
    names = list(systems) if systems is not None else system_index(
        pd.concat([votes["system_a"], votes["system_b"]]), system_order)
    unknown = set(votes["system_a"]).union(votes["system_b"]) - set(names)
    if unknown:
        raise ValueError(f"votes name systems not in `systems`: {sorted(unknown)}")
    k = len(names)
    winner, loser, tie = _encode(votes, names)
    contrib = _contributions(winner, loser, tie, k, cfg.ties)
    W = contrib.sum(axis=0).reshape(k, k)
    strength = mm_fit(W, cfg.prior, cfg.max_iter, cfg.tol) if k else np.zeros(0)

    wins = np.bincount(winner[~tie], minlength=k)
    losses = np.bincount(loser[~tie], minlength=k)
    ties = np.bincount(np.concatenate([winner[tie], loser[tie]]), minlength=k)
    counted = wins + losses + ties
    linked = ~tie if cfg.ties == "exclude" else np.ones_like(tie)  # pairs linked by the data the fit uses
    N = np.zeros((k, k))
    np.add.at(N, (winner[linked], loser[linked]), 1.0)
    N = N + N.T
    component = _components(N)

    d = design(votes["rater_id"].to_numpy(), votes["clip_id"].to_numpy())

    def replicate(wv: np.ndarray, _wc: np.ndarray) -> np.ndarray:
        return mm_fit((wv @ contrib).reshape(len(wv), k, k), cfg.prior, cfg.max_iter, cfg.tol)

    if k >= 2:
        iv = crossed_interval(replicate, d, strength, cfg.resamples, cfg.confidence, cfg.seed, cfg.cluster,
                              cfg.min_units)
        lo, hi, note = iv.lo, iv.hi, iv.note
    else:
        lo, hi, note = np.full(k, math.nan), np.full(k, math.nan), "interval undefined: fewer than 2 systems"
    return BTResult(
        systems=names, strength=strength, ci_lo=lo, ci_hi=hi, rank=ci_ranks(lo, hi),
        rank_worst=ci_rank_worst(lo, hi), votes=counted, wins=wins, losses=losses, ties=ties, component=component,
        config=cfg, ci_note=note,
    )


def rater_win_matrices(votes: pd.DataFrame, systems: Sequence[str],
                       ties: TiePolicy = "exclude") -> tuple[list[str], np.ndarray]:
    """(rater ids sorted, array (R, k, k)): each rater's win matrix W[i, j] over `systems`, ties per `ties`."""
    k = len(systems)
    winner, loser, tie = _encode(votes, systems)
    contrib = _contributions(winner, loser, tie, k, ties)
    raters, inverse = np.unique(votes["rater_id"].to_numpy().astype(str), return_inverse=True)
    out = np.zeros((raters.size, k * k))
    np.add.at(out, inverse, contrib)
    return raters.tolist(), out.reshape(raters.size, k, k)


def bt_strengths(votes: pd.DataFrame, systems: Sequence[str], ties: TiePolicy = "exclude",
                 prior: float = 1.0) -> np.ndarray:
    """Point estimates only (no bootstrap): centred log-strengths of `systems`, in that order."""
    k = len(systems)
    winner, loser, tie = _encode(votes, systems)
    W = _contributions(winner, loser, tie, k, ties).sum(axis=0).reshape(k, k)
    return mm_fit(W, prior)
