"""The summary core (issue 17): headline metrics, reference roles, like-with-like CI ranks, forest plots.

Pure (no Streamlit): `vm-eval results`, `vm-eval report` and the leaderboard's summary view share it.
"""
from vm_eval.summary.headline import (HEADLINE_FAMILIES, all_metrics, base_name, headline_metrics, is_subscore,
                                      metric_family)
from vm_eval.summary.ranks import ci_ranks
from vm_eval.summary.records import (PREFERENCE, ROLES, MetricAgg, RunRecord, add_study, describe_skips,
                                     load_records, reference_role)
from vm_eval.summary.table import Cell, Column, Row, Summary, column_id, summarize

__all__ = ["HEADLINE_FAMILIES", "PREFERENCE", "ROLES", "Cell", "Column", "MetricAgg", "Row", "RunRecord", "Summary",
           "add_study", "all_metrics", "base_name", "ci_ranks", "column_id", "describe_skips", "headline_metrics",
           "is_subscore", "load_records", "metric_family", "reference_role", "summarize", "forest_figure"]


def forest_figure(*args, **kwargs):
    """See vm_eval.summary.forest.forest_figure (imported on first use: matplotlib is heavy)."""
    from vm_eval.summary.forest import forest_figure as f

    return f(*args, **kwargs)
