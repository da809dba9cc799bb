"""Pieces every view uses: CSV / JSON downloads of a table, error-bar plots, number formatting."""
from __future__ import annotations

import math

import pandas as pd
import streamlit as st


def flat(df: pd.DataFrame) -> pd.DataFrame:
    """A copy with one-level column names ("header / field") and the index as columns, for downloads."""
    out = df.copy()
    if isinstance(out.columns, pd.MultiIndex):
        out.columns = [" / ".join(str(x) for x in c if str(x)) for c in out.columns]
    return out.reset_index() if out.index.name or isinstance(out.index, pd.MultiIndex) else out


def downloads(df: pd.DataFrame, name: str) -> None:
    """CSV and JSON download buttons for a table (keys unique per table name)."""
    data = flat(df)
    a, b = st.columns(2)
    a.download_button("CSV", data.to_csv(index=False), file_name=f"{name}.csv", mime="text/csv",
                      key=f"csv-{name}")
    b.download_button("JSON", data.to_json(orient="records", indent=1, default_handler=str),
                      file_name=f"{name}.json", mime="application/json", key=f"json-{name}")


def run_names(runs: pd.DataFrame, with_id: bool = True) -> dict[str, str]:
    """run id -> its label for pickers ("label (id prefix)"), built once per render."""
    return {r: f"{lab} ({r[:8]})" if with_id else str(lab) for r, lab in zip(runs["run_id"], runs["label"])}


def num(x, fmt: str = ".3f") -> str:
    try:
        return "-" if x is None or math.isnan(float(x)) else format(float(x), fmt)
    except (TypeError, ValueError):
        return str(x)


def errorbar_plot(df: pd.DataFrame, y: str, x: str = "mean", lo: str = "lo", hi: str = "hi", hue: str | None = None,
                  xlabel: str = "", zero_line: bool = False):
    """Horizontal points with CI whiskers, one row per `y` value (grouped by `hue` when given); a matplotlib
    figure, or None when there is nothing finite to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    d = df.dropna(subset=[x]).copy()
    if d.empty:
        return None
    groups = list(dict.fromkeys(d[hue])) if hue else [None]
    labels = list(dict.fromkeys(d[y]))
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.35 * len(labels) * max(1, len(groups))))
    step = 0.8 / max(1, len(groups))
    for k, g in enumerate(groups):
        part = d if g is None else d[d[hue] == g]
        pos = np.array([labels.index(v) for v in part[y]]) + (k - (len(groups) - 1) / 2) * step
        m = part[x].to_numpy(float)
        err = np.vstack([m - part[lo].to_numpy(float), part[hi].to_numpy(float) - m])
        ax.errorbar(m, pos, xerr=np.nan_to_num(err, nan=0.0), fmt="o", capsize=3, label=None if g is None else str(g))
    ax.set_yticks(range(len(labels)), [str(v) for v in labels])
    ax.invert_yaxis()
    if zero_line:
        ax.axvline(0.0, color="0.6", lw=1)
    ax.set_xlabel(xlabel)
    if hue:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def show_figure(fig) -> None:
    if fig is None:
        st.info("nothing to plot for this selection")
        return
    import matplotlib.pyplot as plt

    st.pyplot(fig, clear_figure=True)
    plt.close(fig)
