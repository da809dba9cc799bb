"""The view's state in the URL, so a view can be shared: ?view=summary&dataset=demo&category=promo,commercial&...

Filters are comma-separated lists (empty or absent = everything); values that do not exist in the loaded
results are dropped rather than filtering everything out.
"""
from __future__ import annotations

from collections.abc import Mapping

from leaderboard.table import Filters

VIEWS = {"summary": "Summary", "runs": "Full table", "breakdowns": "Breakdowns", "ablations": "Ablations",
         "studies": "Listening tests", "clips": "Clip drill-down", "provenance": "Provenance",
         "definitions": "Metric definitions"}
DEFAULT_VIEW = "summary"  # the view a bare URL opens
FILTER_PARAMS = {"dataset": "datasets", "split": "splits", "category": "categories", "source": "sources",
                 "family": "families", "backbone": "backbones"}


def parse_list(value: str | list[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    return tuple(dict.fromkeys(x for item in items for x in str(item).split(",") if x != ""))


def filters_from_params(params: Mapping[str, str | list[str]], options: Mapping[str, list[str]]) -> Filters:
    """Filters from query parameters, keeping only values among `options` (param name -> known values)."""
    chosen = {}
    for param, attr in FILTER_PARAMS.items():
        known = set(options.get(param, []))
        chosen[attr] = tuple(v for v in parse_list(params.get(param)) if v in known)
    return Filters(**chosen)


def params_from_filters(f: Filters, view: str) -> dict[str, str]:
    """Query parameters for a view (empty filters left out)."""
    out = {"view": view}
    for param, attr in FILTER_PARAMS.items():
        values = getattr(f, attr)
        if values:
            out[param] = ",".join(values)
    return out
