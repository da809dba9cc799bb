"""Per-clip drill-down: a clip's video with each system's soundtrack (switch between them) and every system's
scores on that clip; the worst clips of a run per metric."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import streamlit as st

from leaderboard.data import Results
from leaderboard.table import Filters, filter_columns, filter_runs
from leaderboard.views.common import downloads, run_names

CACHE = ".cache/leaderboard"


def soundtrack_video(res: Results, run_path: str, clip: pd.Series) -> Path:
    """The clip's picture with the run's audio for it, muxed once and cached under <results>/.cache/leaderboard."""
    from vm_eval.media import load_audio
    from vm_eval.media.video import cut_video, mux_audio

    audio = Path(run_path) / "audio" / f"{clip['clip_id']}.wav"
    if not audio.is_file():
        raise FileNotFoundError(f"no audio for clip {clip['clip_id']} in {run_path}")
    cache = res.root / CACHE
    cache.mkdir(parents=True, exist_ok=True)
    span = f"{clip['video']}|{clip['start']}|{clip['end']}"
    picture = cache / f"picture-{hashlib.sha256(span.encode()).hexdigest()[:16]}.mp4"
    if not picture.is_file():
        cut_video(clip["video"], picture, float(clip["start"]), float(clip["end"]))
    st_ = audio.stat()
    key = hashlib.sha256(f"{picture.name}|{audio}|{st_.st_size}|{st_.st_mtime_ns}".encode()).hexdigest()[:16]
    out = cache / f"muxed-{key}.mp4"
    if not out.is_file():
        mux_audio(picture, load_audio(audio), out)
    return out


def clip_scores(res: Results, f: Filters, clip_id: str, dataset: str) -> pd.DataFrame:
    """One row per run of the dataset, one column per metric header: that run's score on the clip."""
    runs = filter_runs(res, f)
    runs = runs[runs["dataset"] == dataset]
    cols = filter_columns(res, f).set_index("column")
    s = res.scores[(res.scores["clip_id"] == clip_id) & res.scores["run_id"].isin(runs["run_id"])
                   & res.scores["column"].isin(cols.index)]
    if s.empty:
        return pd.DataFrame()
    t = s.pivot_table(index="run_id", columns="column", values="value", aggfunc="first", observed=True)
    t.columns = [cols.at[c, "header"] for c in t.columns]
    names = run_names(runs)
    t.insert(0, "run", [names.get(r, f"? ({r[:8]})") for r in t.index])
    return t.reset_index(drop=True)


def worst_clips(res: Results, run_id: str, column: str, k: int = 10) -> pd.DataFrame:
    hib = res.columns.set_index("column").at[column, "higher_is_better"]
    s = res.scores[(res.scores["run_id"] == run_id) & (res.scores["column"] == column)]
    s = s.sort_values("value", ascending=bool(hib) if hib is not None else True)
    return s[["clip_id", "value"]].head(k).reset_index(drop=True)


def render(res: Results, f: Filters, matrix) -> None:
    runs = filter_runs(res, f)
    if runs.empty:
        st.info("no runs match these filters")
        return
    datasets = sorted(runs["dataset"].dropna().unique())
    dataset = st.selectbox("dataset", datasets, key="clip-dataset")
    clips = res.clips[(res.clips["dataset"] == dataset)]
    if f.categories:
        clips = clips[clips["category"].isin(f.categories)]
    if f.sources:
        clips = clips[clips["source"].isin(f.sources)]
    scored = set(res.scores.loc[res.scores["run_id"].isin(runs["run_id"]), "clip_id"].astype(str))
    clips = clips[clips["clip_id"].isin(scored)]
    if clips.empty:
        st.info("no scored clips with a known video for this selection (manifest missing or no scores)")
    else:
        cid = st.selectbox("clip", list(clips["clip_id"]), key="clip-id")
        clip = clips.set_index("clip_id").loc[cid].copy()
        clip["clip_id"] = cid
        st.caption(f"{clip['category']} · {clip['source']} · {clip['start']:.2f}-{clip['end']:.2f} s · "
                   f"{clip['caption'] or ''}")
        here = runs[(runs["dataset"] == dataset)]
        sound_names = run_names(here, with_id=False)
        choice = st.radio("soundtrack", list(sound_names), horizontal=True, key="clip-system",
                          format_func=sound_names.get)
        try:
            st.video(str(soundtrack_video(res, here.set_index("run_id").at[choice, "path"], clip)))
        except Exception as e:  # noqa: BLE001 - a missing or corrupt file is shown, the rest of the page stays
            st.warning(f"cannot show this soundtrack: {e}")
        table = clip_scores(res, f, cid, dataset)
        st.markdown("**every system's scores on this clip**")
        st.dataframe(table, hide_index=True, key="clip-scores")
        if len(table):
            downloads(table, f"clip-{cid}")
    st.markdown("#### worst clips of a run")
    names = run_names(runs)
    rid = st.selectbox("run", list(names), key="worst-run", format_func=names.get)
    have = set(res.scores.loc[res.scores["run_id"] == rid, "column"].astype(str))
    cols = filter_columns(res, f)
    cols = cols[cols["column"].isin(have)]
    if cols.empty:
        st.info("this run has no per-clip scores")
        return
    col = st.selectbox("metric", list(cols["column"]), key="worst-metric",
                       format_func=lambda c: cols.set_index("column").at[c, "header"])
    worst = worst_clips(res, rid, col)
    st.dataframe(worst, hide_index=True, key="worst-table")
    downloads(worst, f"worst-{rid[:8]}")
