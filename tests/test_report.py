"""The report people open: `dvc plots show` with the project's HTML template, opened in real headless Chromium
(Debian's) with every non-file request refused. Every plot declared in dvc.yaml must draw (vega charts and
PNGs), with no console error and no request to the network.
"""

from __future__ import annotations

import csv
import runpy
import subprocess
from pathlib import Path

import pytest
import yaml
from dvc_render.base import Renderer

from report.render import open_offline, plots_show
from tests.pipeline import ROOT, dvc

TEMPLATE = ROOT / "report/template.html"


def test_template_inlines_the_pinned_libraries():
    """vega, vega-lite and vega-embed are in the template byte for byte as pinned, and nothing loads from
    elsewhere (the check `python report/vendor.py --check` runs)."""
    vendor = runpy.run_path(str(ROOT / "report/vendor.py"))
    template = TEMPLATE.read_text()
    assert vendor["check"](template) == []
    assert set(vendor["inlined"](template)) == {"vega", "vega-lite", "vega-embed"}
    tampered = template.replace("vegaEmbed", "vegaEmbeb", 1)
    assert vendor["check"](tampered), "a changed library is caught"


def test_dvc_uses_the_template():
    """The project's DVC config points `dvc plots show` at the template."""
    configured = dvc(ROOT, "config", "plots.html_template").stdout.strip()
    assert (ROOT / ".dvc" / configured).resolve() == TEMPLATE


def data_rows(path: Path) -> int:
    """Rows of a CSV / TSV plot file, header excluded (0 when the file is missing)."""
    if not path.is_file():
        return 0
    with open(path, newline="") as f:
        return max(sum(1 for _ in csv.reader(f, delimiter="\t" if path.suffix == ".tsv" else ",")) - 1, 0)


def declared_charts(project: Path) -> dict[str, int]:
    """Each named (vega) plot of dvc.yaml's top-level `plots:`, as DVC's HTML id -> its data rows."""
    charts = {}
    for entry in yaml.safe_load((project / "dvc.yaml").read_text())["plots"]:
        if isinstance(entry, dict):
            (name, props), = entry.items()
            files = props["y"] if isinstance(props.get("y"), dict) else {name: props.get("y")}
            charts[Renderer.remove_special_chars(name)] = sum(data_rows(project / f) for f in files)
    return charts


def declared_images(project: Path) -> set[str]:
    """DVC's HTML ids of every declared PNG plot: top-level paths (files, or folders of PNGs) and the stages'
    plots (QA galleries, one per part, as recorded in dvc.lock)."""
    pipeline = yaml.safe_load((project / "dvc.yaml").read_text())
    paths = [entry for entry in pipeline["plots"] if isinstance(entry, str)]
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    staged = {name.split("@")[0] for name, stage in pipeline["stages"].items() if stage.get("plots")}
    paths += [out["path"] for name, stage in lock.items() if name.split("@")[0] in staged
              for out in stage.get("outs", []) if out["path"].endswith(".png")]
    files = []
    for path in paths:
        folder = project / path
        files += sorted(p.relative_to(project).as_posix() for p in folder.rglob("*.png")) if folder.is_dir() else [path]
    return {Renderer.remove_special_chars(f) for f in files}


@pytest.mark.slow
def test_report_draws_every_declared_plot_offline(demo_pipeline, tmp_path):
    html = plots_show(demo_pipeline, tmp_path / "plots")
    page = html.read_text()
    assert "cdn.jsdelivr.net" not in page and "<script src=" not in page, "the page loads nothing from the network"

    report = open_offline(html, tmp_path / "report.png")
    assert report.refused == [] and report.console_errors == [], (report.refused, report.console_errors)
    drawn = {plot["id"]: plot for plot in report.plots}
    charts, images = declared_charts(demo_pipeline), declared_images(demo_pipeline)
    assert len(charts) >= 10 and len(images) >= 8, (charts, images)
    assert set(drawn) == set(charts) | images, "one block per declared plot, nothing else"
    assert {plot["kind"] for plot_id, plot in drawn.items() if plot_id in charts} == {"vega"}

    # A chart whose files hold no row (the tiny demo has no expression label on its validation side) has
    # nothing to draw; every other one drew its data.
    empty = {plot_id for plot_id, rows in charts.items() if rows == 0}
    assert report.not_drawn() == [f"{plot_id}: blank canvas (0 ink pixels)" for plot_id in drawn if plot_id in empty]
    assert len(empty) <= 2, empty
    for plot_id, rows in charts.items():
        if rows:
            assert drawn[plot_id]["items"] >= 1 and drawn[plot_id]["title"], drawn[plot_id]
    assert (tmp_path / "report.png").stat().st_size > 50_000, "a screenshot with content"
    assert subprocess.run(["pgrep", "-f", "chromium-profile-"], capture_output=True).stdout == b"", \
        "no Chromium left running"
