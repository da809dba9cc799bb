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


def badge(trained, family: str, model: str = "", extra: dict | None = None) -> str:
    """" [untrained]" for a run on an untrained / random backbone, " [reference: role]" for a reference system."""
    from vm_eval.summary import reference_role

    if not bool(trained):
        return " [untrained]"
    role = reference_role(str(model), str(family), extra if isinstance(extra, dict) else None)
    return f" [reference: {role}]" if role else ""


def run_names(runs: pd.DataFrame, with_id: bool = True, badges: bool = True) -> dict[str, str]:
    """run id -> its label for pickers ("label [badge] (id prefix)"), built once per render."""
    from leaderboard.records import short_label

    out = {}
    for r in runs.to_dict("records"):
        b = badge(r.get("trained", True), r.get("family", ""), r.get("model", ""), r.get("extra")) if badges else ""
        out[r["run_id"]] = f"{short_label(r['label'])}{b}" + (f" ({r['run_id'][:8]})" if with_id else "")
    return out


def num(x, fmt: str = ".3f") -> str:
    try:
        return "-" if x is None or math.isnan(float(x)) else format(float(x), fmt)
    except (TypeError, ValueError):
        return str(x)


def errorbar_plot(df: pd.DataFrame, y: str, x: str = "mean", lo: str = "lo", hi: str = "hi", hue: str | None = None,
                  xlabel: str = "", zero_line: bool = False, n: str | None = "n", width_in: float = 6.0):
    """Horizontal points with CI whiskers, one row per `y` value (grouped by `hue` when given); a matplotlib
    figure, or None when there is nothing finite to draw. With an `n` column each point is labelled with its n;
    a point without a CI (a single clip) is drawn hollow and labelled "no CI", so it never looks certain. The
    legend sits below the axes, never over a point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    d = df.dropna(subset=[x]).copy()
    if d.empty:
        return None
    groups = list(dict.fromkeys(d[hue])) if hue else [None]
    labels = list(dict.fromkeys(d[y]))
    has_n = n is not None and n in d
    fig, ax = plt.subplots(figsize=(width_in, 0.9 + 0.28 * len(labels) * max(1, len(groups))),
                           layout="constrained")
    step = 0.8 / max(1, len(groups))
    for k, g in enumerate(groups):
        part = d if g is None else d[d[hue] == g]
        pos = np.array([labels.index(v) for v in part[y]]) + (k - (len(groups) - 1) / 2) * step
        m = part[x].to_numpy(float)
        lo_, hi_ = part[lo].to_numpy(float), part[hi].to_numpy(float)
        sure = ~(np.isnan(lo_) | np.isnan(hi_))
        err = np.vstack([m - lo_, hi_ - m])
        line = ax.errorbar(m[sure], pos[sure], xerr=err[:, sure], fmt="o", capsize=3, ms=5,
                           label=None if g is None else str(g))
        color = line[0].get_color()
        if (~sure).any():  # no CI (one clip): hollow, so it does not read as a certain value
            ax.plot(m[~sure], pos[~sure], "o", ms=5, markerfacecolor="white", color=color,
                    label=None if g is None or sure.any() else str(g))
        if has_n:
            for xm, yp, nn, ok in zip(m, pos, part[n].to_numpy(), sure):
                ax.annotate(f"n={int(nn)}" + ("" if ok else ", no CI"), (xm, yp), xytext=(4, 3),
                            textcoords="offset points", fontsize=6, color="0.35")
    ax.set_yticks(range(len(labels)), [str(v) for v in labels], fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.invert_yaxis()
    if zero_line:
        ax.axvline(0.0, color="0.6", lw=1)
    ax.set_xlabel(xlabel + ("; hollow = no CI (fewer than 2 clips)" if has_n else ""), fontsize=8)
    if hue:
        fig.legend(loc="outside lower center", fontsize=7, frameon=False, ncol=min(4, len(groups)))
    return fig


def show_figure(fig, width: str = "content") -> None:
    """Show a figure at its own size ("content", shrunk to the column when wider) rather than stretched to the
    page, so a small plot never fills the screen; "stretch" fills the column."""
    if fig is None:
        st.info("nothing to plot for this selection")
        return
    import matplotlib.pyplot as plt

    st.pyplot(fig, clear_figure=True, width=width)
    plt.close(fig)
