"""The leaderboard's numbers for a filter: one row per run, one cell per metric identity, with CI ranks.

Without a clip filter (every category, real and AI-generated) the cells are the runs' STORED aggregates: the
scoring's percentile bootstrap (metrics.stats.bootstrap_mean), exactly what `vm-eval results` prints. A clip
filter recomputes per-clip metrics over the clips it keeps: the mean of those clips, and a 95% CI from a Poisson
bootstrap (each clip weighted by a Poisson(1) count per resample; Hanley & MacGibbon 2006, Chamandy et al.
2012), which is one matrix product for every run and metric at once, so a filter change stays fast with
hundreds of runs. A clip's weights depend only on its id, so every run is resampled with the same clip weights.
Set metrics (FAD and the like) have no per-clip values: under a clip filter their cells are empty and say so.

Rank (the studies issue's rule, vm_eval.summary.ranks): 1 + the number of runs whose interval is entirely better
than this one's (lower bound above this upper bound when higher is better; upper bound below this lower bound
otherwise). Only trained, non-reference runs are ranked and count for each other's ranks (ranked_runs): references
(ground truth, random retrieval, anchors) and untrained backbones are shown, never ranked.
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from leaderboard.data import Results, clip_table

RESAMPLES = 1000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Filters:
    """A view's filters; an empty tuple means everything. Clip filters: categories, sources."""

    datasets: tuple[str, ...] = ()
    splits: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    families: tuple[str, ...] = ()
    backbones: tuple[str, ...] = ()  # metric backbones shown ("none" = metrics without a backbone)

    @property
    def clip_filter(self) -> bool:
        return bool(self.categories or self.sources)


def _keep(values: pd.Series, chosen: tuple[str, ...]) -> pd.Series:
    return values.isin(chosen) if chosen else pd.Series(True, index=values.index)


def filter_runs(res: Results, f: Filters) -> pd.DataFrame:
    r = res.runs
    return r[_keep(r["dataset"], f.datasets) & _keep(r["split"], f.splits) & _keep(r["family"], f.families)]


def filter_columns(res: Results, f: Filters) -> pd.DataFrame:
    c = res.columns
    return c[_keep(backbone_names(c["backbone"]), f.backbones)]


def backbone_names(backbones: pd.Series) -> pd.Series:
    """A metric's backbone as the filters name it: "none" for metrics computed without one."""
    return backbones.fillna("").replace("", "none")


@dataclass
class ClipMatrix:
    """Per-clip scores as a dense matrix: rows = (dataset, clip) with category / source, columns = (run, metric
    column) pairs; NaN where a run has no score. Built once per loaded results folder."""

    clips: pd.DataFrame  # dataset, clip_id, category, source (row order of `values`)
    pairs: pd.DataFrame  # run_id, column (column order of `values`)
    values: np.ndarray  # float64 [clips, pairs]
    _weights: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, res: Results) -> ClipMatrix:
        t = clip_table(res)
        if t.empty:
            return cls(pd.DataFrame(columns=["dataset", "clip_id", "category", "source"]),
                       pd.DataFrame(columns=["run_id", "column"]), np.zeros((0, 0)))
        t["row"] = t["dataset"].astype(str) + "\x00" + t["clip_id"].astype(str)
        t["pair"] = t["run_id"].astype(str) + "\x00" + t["column"].astype(str)
        rows = t.drop_duplicates("row")[["row", "dataset", "clip_id", "category", "source"]].sort_values("row")
        pairs = pd.Index(sorted(t["pair"].unique()))
        ri = pd.Index(rows["row"]).get_indexer(t["row"])
        pi = pairs.get_indexer(t["pair"])
        values = np.full((len(rows), len(pairs)), np.nan)
        values[ri, pi] = t["value"].to_numpy(np.float64)
        split = pairs.str.split("\x00")
        pair_df = pd.DataFrame({"run_id": [p[0] for p in split], "column": [p[1] for p in split]})
        return cls(rows.drop(columns="row").reset_index(drop=True), pair_df, values)

    def weights(self, rows: np.ndarray, resamples: int = RESAMPLES) -> np.ndarray:
        """Poisson(1) bootstrap weights [resamples, len(rows)], float32; each clip's column seeded by its id."""
        out = np.empty((resamples, len(rows)), np.float32)
        for j, i in enumerate(rows):
            key = f"{self.clips.at[i, 'dataset']}/{self.clips.at[i, 'clip_id']}"
            w = self._weights.get(key)
            if w is None or len(w) != resamples:
                seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
                w = np.random.default_rng(seed).poisson(1.0, resamples).astype(np.float32)
                self._weights[key] = w
            out[:, j] = w
        return out

    def aggregate(self, categories: tuple[str, ...] = (), sources: tuple[str, ...] = (),
                  resamples: int = RESAMPLES, confidence: float = CONFIDENCE) -> pd.DataFrame:
        """(run_id, column, mean, lo, hi, n) over the clips with the given categories / sources (empty = all)."""
        keep = _keep(self.clips["category"], categories) & _keep(self.clips["source"], sources)
        rows = np.flatnonzero(keep.to_numpy())
        x = self.values[rows]
        have = ~np.isnan(x)
        n = have.sum(axis=0)
        xz = np.where(have, x, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: runs with no clip in the filter
            mean = xz.sum(axis=0) / n
            w = self.weights(rows, resamples).astype(np.float64)
            boot = (w @ xz) / (w @ have)
            a = (1.0 - confidence) / 2.0
            lo, hi = np.nanquantile(boot, [a, 1.0 - a], axis=0) if len(rows) else (mean, mean)
        small = n < 2
        lo, hi = np.where(small, np.nan, lo), np.where(small, np.nan, hi)
        return pd.DataFrame({"run_id": self.pairs["run_id"], "column": self.pairs["column"], "mean": mean,
                             "lo": lo, "hi": hi, "n": n})


def cells(res: Results, f: Filters, matrix: ClipMatrix | None = None) -> pd.DataFrame:
    """Long table of the view: run_id, column, mean, lo, hi, n, missing, recomputed, note."""
    runs = filter_runs(res, f)
    cols = filter_columns(res, f)
    stored = res.aggregates[res.aggregates["run_id"].isin(runs["run_id"]) & res.aggregates["column"].isin(cols["column"])]
    base = stored[["run_id", "column", "mean", "lo", "hi", "n", "missing", "kind"]].copy()
    base["recomputed"], base["note"] = False, ""
    if not f.clip_filter:
        return base.drop(columns="kind").reset_index(drop=True)
    matrix = matrix or ClipMatrix.build(res)
    agg = matrix.aggregate(f.categories, f.sources)
    out = base[["run_id", "column", "kind"]].merge(agg, on=["run_id", "column"], how="left")
    # clips of the run's split that the filter keeps, whether scored or not
    split_clips = res.clips[_keep(res.clips["category"], f.categories) & _keep(res.clips["source"], f.sources)]
    per_split = split_clips.groupby(["dataset", "split"]).size().rename("wanted").reset_index()
    wanted = out[["run_id"]].merge(runs[["run_id", "dataset", "split"]], on="run_id", how="left") \
        .merge(per_split, on=["dataset", "split"], how="left")["wanted"].to_numpy(float)
    out["n"] = out["n"].fillna(0).astype(int)
    out["missing"] = (pd.Series(wanted, index=out.index) - out["n"]).clip(lower=0)
    out["recomputed"] = True
    out["note"] = np.where(out["kind"] == "set", "set metric: not defined on a clip subset", "")
    out.loc[out["kind"] == "set", ["mean", "lo", "hi"]] = np.nan
    return out.drop(columns="kind").reset_index(drop=True)


def ranked_runs(runs: pd.DataFrame) -> set[str]:
    """Run ids that take part in ranks and "best": trained and not of family "reference"."""
    keep = runs["trained"].astype(bool) & (runs["family"] != "reference")
    return set(runs.loc[keep, "run_id"])


def ci_ranks(long: pd.DataFrame, columns: pd.DataFrame, ranked: set[str] | None = None) -> pd.Series:
    """Rank per (run, column) row of `long` by the CI rule (module docstring); NaN without a direction or CI, and
    for runs outside `ranked` (None = every run is ranked)."""
    from vm_eval.summary import ci_ranks as rule

    hib = columns.set_index("column")["higher_is_better"]
    ranks = pd.Series(np.nan, index=long.index)
    if ranked is not None:
        long = long[long["run_id"].isin(ranked)]
    for col, g in long.groupby("column"):
        better = hib.get(col)
        if better is None or pd.isna(better):
            continue
        best, _ = rule(g["lo"].to_numpy(float), g["hi"].to_numpy(float), bool(better))
        ranks.loc[g.index] = best
    return ranks


def wide(res: Results, long: pd.DataFrame, runs: pd.DataFrame, nulls: bool = True) -> pd.DataFrame:
    """The main table: one row per run of `runs` (identity columns first, runs without scores included), then per
    metric column 'mean', 'lo', 'hi', 'n', 'missing' and 'rank' as a MultiIndex (header, field); columns grouped
    per metric (its sub-scores after it); null sub-scores (':vs-shift', ':vs-other') only with `nulls`."""
    cols = res.columns.set_index("column")
    if not nulls:
        long = long[~long["column"].map(cols["null"]).fillna(False).astype(bool)]
    long = long.assign(rank=ci_ranks(long, res.columns, ranked_runs(runs)))
    fields = ["mean", "lo", "hi", "n", "missing", "rank"]
    order = [c for c in cols.index if c in set(long["column"])]
    piv = long.pivot(index="run_id", columns="column", values=fields).swaplevel(0, 1, axis=1)
    piv = piv.reindex(index=list(runs["run_id"]), columns=pd.MultiIndex.from_product([order, fields]))
    piv.columns = pd.MultiIndex.from_tuples([(cols.at[c, "header"], fld) for c, fld in piv.columns])
    ident = runs.set_index("run_id")[["label", "model", "family", "checkpoint", "dataset", "split", "status",
                                      "trained", "failed", "extra"]]
    ident.columns = pd.MultiIndex.from_tuples([("run", c) for c in ident.columns])
    return pd.concat([ident, piv], axis=1)
