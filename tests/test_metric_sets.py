"""Named metric sets (vm_eval/metric_sets.py): the published tables' columns, `--metrics @NAME` expansion in
`run` and `ablate`, and the errors for an unknown set or a set naming metrics that are not registered."""
from __future__ import annotations

import pytest

from vm_eval import commands
from vm_eval.cli import build_parser, main
from vm_eval.metric_sets import SETS, Column, MetricSet, expand_metric_names, unregistered
from vm_eval.registry import RegistryError

PUBLISHED = {"vidmuse": ["FAD", "FD", "KL", "Density", "Coverage", "ImageBind score"],
             "muvi": ["FAD", "KL", "IS", "FD", "BCS", "BHS", "SIM"]}
TOY = MetricSet("toy", "a test paper", "Table 9", (Column("Dur", "duration-error"), Column("SIM", None, "no model"),
                                                  Column("LUFS", "loudness-lufs", "BS.1770-4")))
BROKEN = MetricSet("broken", "a test paper", "Table 9", (Column("Dur", "duration-error"),
                                                         Column("New", "no-such-metric"), Column("Newer", "nor-this")))


@pytest.fixture
def toy_sets(monkeypatch):
    monkeypatch.setitem(SETS, "toy", TOY)
    monkeypatch.setitem(SETS, "broken", BROKEN)


def test_sets_have_the_published_columns_and_every_column_a_metric_or_a_reason():
    assert [c.header for c in SETS["vidmuse"].columns] == PUBLISHED["vidmuse"]
    assert [c.header for c in SETS["muvi"].columns] == PUBLISHED["muvi"]
    assert [c.header for c in SETS["muvi"].unavailable()] == ["SIM"]
    assert set(SETS["v2m-core"].metric_names()) >= {"fad-vggish", "kl-passt-ref-gen-w10s", "imagebind-score"}
    for s in SETS.values():
        assert s.paper and s.table and all(c.metric or c.note for c in s.columns)


def test_expansion_keeps_order_drops_repeats_and_reports_unavailable_columns(toy_sets):
    notes: list[str] = []
    assert expand_metric_names("@toy", notes.append) == ["duration-error", "loudness-lufs"]
    assert notes == ["metric set toy: column SIM is not available: no model"]
    assert expand_metric_names(" loudness-lufs, @toy,,", notes.append) == ["loudness-lufs", "duration-error"]
    assert expand_metric_names("a,b") == ["a", "b"] and expand_metric_names("") is None
    assert expand_metric_names(None) is None


def test_unknown_set_and_unregistered_members_are_user_errors(toy_sets, capsys):
    with pytest.raises(RegistryError, match="did you mean toy"):
        expand_metric_names("@tyo")
    with pytest.raises(RegistryError) as e:
        expand_metric_names("@broken")
    assert "no-such-metric (New), nor-this (Newer)" in str(e.value) and "duration-error" not in str(e.value)
    assert main(["run", "--model", "ground-truth", "--metrics", "@broken"]) == 2  # one line, no traceback
    err = capsys.readouterr().err
    assert err.startswith("error: metric set 'broken'") and "no-such-metric" in err and "Traceback" not in err


class Captured(Exception):
    """Raised by the stand-in for the command's work: carries what the command built from its arguments."""


def test_run_and_ablate_expand_sets_the_same_way(toy_sets, monkeypatch):
    def capture(request, *args, **kwargs):
        raise Captured(request)

    monkeypatch.setattr("vm_eval.runner.execute", capture)
    monkeypatch.setattr("vm_eval.ablate.run.run_ablation", capture)
    for argv, command in ((["run", "--model", "ground-truth"], commands.cmd_run), (["ablate"], commands.cmd_ablate)):
        with pytest.raises(Captured) as e:
            command(build_parser().parse_args([*argv, "--metrics", "@toy,duration-error"]))
        assert e.value.args[0].metrics == ["duration-error", "loudness-lufs"]


def test_metrics_set_lists_each_column(toy_sets, capsys):
    assert main(["metrics", "--set", "toy"]) == 0
    out = capsys.readouterr().out
    assert "a test paper" in out and "Table 9" in out and "--metrics @toy" in out
    assert "note: BS.1770-4" in out and "not available" in out and "duration-error" in out
    assert main(["metrics", "--set", "muvi"]) == 0
    out = capsys.readouterr().out
    assert all(h in out for h in PUBLISHED["muvi"]) and "MuVi's own" in out
    assert main(["metrics", "--set", "nope"]) == 2


@pytest.mark.parametrize("name", sorted(SETS))
def test_published_set_expands_or_names_every_missing_metric(name):
    s, missing = SETS[name], unregistered(SETS[name])
    if missing:
        with pytest.raises(RegistryError) as e:
            expand_metric_names(f"@{name}", lambda line: None)
        assert all(m in str(e.value) for m in missing)
    else:
        assert expand_metric_names(f"@{name}", lambda line: None) == s.metric_names()


def test_every_set_member_is_registered():
    """Fails until every metric the sets name is registered (issue 15 part 5 adds ImageBind, Density, Coverage,
    IS...): then `--metrics @NAME` runs every set."""
    assert {name: unregistered(s) for name, s in SETS.items()} == {name: [] for name in SETS}
