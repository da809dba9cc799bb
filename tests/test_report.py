"""`vm-eval report`: one self-contained HTML file, opened offline (file://) in headless Chromium, with the summary
table, forest plots, breakdowns, the listening test and provenance. The results folder is the demo-like one of
test_results_table (written directly, no model runs) with a listening study analysed by the real analysis code."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from browser import chrome
from leaderboard_results import register_synthetic_study
from test_results_table import write_demo_like
from vm_eval.cli import main


def _register_study(results: Path, runs: dict[str, Path]) -> None:
    """Synthetic votes (system-strong > ground-truth > system-weak) through the real analysis, registered."""
    strength = {"system-strong": 1.0, "ground-truth": 0.0, "system-weak": -1.0}
    register_synthetic_study(results, results.parent / "pilot", strength, {m: runs[m].name for m in strength})


@pytest.fixture(scope="module")
def report_file(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    results = root / "results"
    runs = write_demo_like(results)
    _register_study(results, runs)
    out = root / "report.html"
    assert main(["report", "--results", str(results), "--out", str(out)]) == 0
    return out


def test_report_is_self_contained(report_file):
    text = report_file.read_text()
    assert "<script" not in text and "<link" not in text and "@import" not in text and "<img" not in text
    for attr in re.findall(r'(?:src|href)="([^"]*)"', text):
        assert attr.startswith(("#", "data:")), attr  # no file or URL outside the page
    assert not re.search(r"url\((?!#)", text)
    assert "NaN" not in text


def test_report_in_a_browser_offline(report_file):
    from selenium.webdriver.common.by import By

    with chrome(1366, 1000) as d:
        d.get(report_file.as_uri())
        table = d.find_element(By.CSS_SELECTOR, "table.summary")
        ranked = [r.find_element(By.CSS_SELECTOR, "td.label").text
                  for r in table.find_elements(By.CSS_SELECTOR, "tr.system.ranked")]
        assert [x.split()[0] for x in ranked] == ["system-strong", "system-weak"]
        untrained = table.find_elements(By.CSS_SELECTOR, "tr.system.untrained")
        assert len(untrained) == 2 and all("untrained" in r.text for r in untrained)
        refs = {r.get_attribute("data-role") for r in table.find_elements(By.CSS_SELECTOR, "tr.reference")}
        assert refs == {"ceiling", "chance", "rhythm-only bound", "anchor (rhythm)", "anchor (content)"}
        headers = [h.text for h in table.find_elements(By.CSS_SELECTOR, "thead th")]
        assert headers[:2] == ["system", "rank"] and "preference:overall ↑" in headers
        # one forest plot per directional headline metric, drawn (a real size on the page)
        figures = d.find_elements(By.CSS_SELECTOR, "figure.forest svg")
        assert len(figures) == len(headers) - 2 == 3
        assert all(f.size["width"] > 200 and f.size["height"] > 100 for f in figures)
        legend_text = d.find_element(By.CSS_SELECTOR, "figure.forest").text
        assert "ground-truth (ceiling)" in legend_text  # references as labelled lines
        assert d.find_elements(By.CSS_SELECTOR, "table.breakdown[data-axis='category']")
        study = d.find_element(By.CSS_SELECTOR, "table.study[data-question='overall']")
        assert "system-strong" in study.text
        prov = d.find_element(By.ID, "provenance").text
        assert "0.1.0 000000000000" in prov and "numpy" in prov
        assert d.execute_script("return document.documentElement.scrollWidth") <= 1366


def test_report_of_selected_runs(tmp_path, capsys):
    results = tmp_path / "results"
    write_demo_like(results)
    out = tmp_path / "two.html"
    assert main(["report", "--results", str(results), "--out", str(out), "--runs", "system-weak", "ground-truth",
                 "--metrics", "beat-visual-f1-cuts"]) == 0
    text = out.read_text()
    assert "system-weak" in text and "ground-truth" in text and "system-strong" not in text
    assert 'data-column="beat-visual-f1-cuts@' in text and "fad-logmel" not in text.split('id="metrics"')[0]
    assert "no analysed listening study" in text
    assert main(["report", "--results", str(results), "--out", str(out), "--study", str(tmp_path / "nope")]) == 2
    assert "no study analysis" in capsys.readouterr().err
