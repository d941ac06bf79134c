"""Render the project's plots with `dvc plots show` and open the page in headless Chromium with the network
off: what drew, what the console said, and a screenshot.

    .venv/bin/python -m report.render data/readme/report.png            # the README's screenshot
    .venv/bin/python -m report.render report.png --full-page --project /path/to/project

Chromium is Debian's (`chromium`, installed by `.ci/setup`), driven through Playwright; it starts with a new
empty profile and every request that is not a file is refused, so the page must carry everything it needs
(report/template.html inlines vega, vega-lite and vega-embed). A vega plot counts as drawn when its view was
created, its canvas is not blank, and its data marks number at least one when its data has rows.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Runs before the page's scripts: keep what each vegaEmbed call resolves to (DVC's page discards it), so
# that the views can be inspected once drawn.
CAPTURE_VIEWS = """
window.__embeds = {};
let embed;
Object.defineProperty(window, "vegaEmbed", {
  configurable: true,
  get() { return embed; },
  set(original) {
    embed = (target, spec, options) => {
      const id = String(target).replace(/^#/, "");
      const rows = (spec.data && spec.data.values) ? spec.data.values.length : null;
      const title = spec.title && typeof spec.title === "object" ? spec.title.text : spec.title;
      const entry = window.__embeds[id] = {state: "pending", rows: rows, title: title || ""};
      return original(target, spec, options).then(
        result => { entry.state = "done"; entry.view = result.view; return result; },
        error => { entry.state = "error"; entry.error = String(error); throw error; });
    };
  },
});
"""

# Every plot div DVC wrote, described once the vega views have settled.
DESCRIBE = """
() => {
  function countDataItems(node) {
    // items of the marks that draw data (role "mark"), not of axes, legends or titles
    let n = 0;
    const visit = (scene) => {
      if (!scene) return;
      if (scene.marktype && scene.role === "mark" && scene.items) n += scene.items.length;
      for (const item of scene.items || []) if (item.items) visit(item);
    };
    visit(node);
    return n;
  }
  function inkPixels(canvas) {
    if (!canvas.width || !canvas.height) return 0;
    const ctx = canvas.getContext("2d");
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    let ink = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (data[i + 3] > 0 && (data[i] < 245 || data[i + 1] < 245 || data[i + 2] < 245)) ink++;
    }
    return ink;
  }
  const plots = [];
  for (const div of document.querySelectorAll("body > div[id]")) {
    const embed = window.__embeds[div.id];
    if (embed) {
      const canvas = div.querySelector("canvas");
      const svg = div.querySelector("svg");
      plots.push({
        id: div.id, kind: "vega", state: embed.state, error: embed.error || null, rows: embed.rows,
        items: embed.view ? countDataItems(embed.view.scenegraph().root) : 0,
        ink: canvas ? inkPixels(canvas) : (svg ? svg.querySelectorAll("path,rect,line,text").length : 0),
        title: embed.title,
      });
    } else {
      const images = [...div.querySelectorAll("img")];
      plots.push({
        id: div.id, kind: "image", images: images.length,
        loaded: images.filter(img => img.complete && img.naturalWidth > 0).length,
        title: (div.querySelector("p") || {}).textContent || "",
      });
    }
  }
  return plots;
}
"""


@dataclass
class Report:
    """What the browser saw: each plot div, console errors, requests refused for not being files."""

    html: Path
    vega_specs: int = 0
    plots: list[dict] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def not_drawn(self) -> list[str]:
        """Plots that did not draw, each with the reason."""
        problems = []
        embedded = sum(plot["kind"] == "vega" for plot in self.plots)
        if embedded != self.vega_specs:
            problems.append(f"{self.vega_specs} vega specs in the page, {embedded} embedded")
        for plot in self.plots:
            if plot["kind"] == "image" and (plot["images"] == 0 or plot["loaded"] < plot["images"]):
                problems.append(f"{plot['id']}: {plot['loaded']} of {plot['images']} images loaded")
            if plot["kind"] == "vega":
                if plot["state"] != "done":
                    problems.append(f"{plot['id']}: vega view {plot['state']} {plot['error'] or ''}".strip())
                elif plot["ink"] < 500:
                    problems.append(f"{plot['id']}: blank canvas ({plot['ink']} ink pixels)")
                elif plot["rows"] and plot["items"] == 0:
                    problems.append(f"{plot['id']}: {plot['rows']} data rows but no mark drawn")
        return problems


def plots_show(project: Path, out: Path) -> Path:
    """`dvc plots show -o out` in `project` (with its configured HTML template); returns the page."""
    dvc = Path(sys.executable).parent / "dvc"
    result = subprocess.run([str(dvc), "plots", "show", "-o", str(out)], cwd=project, capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise RuntimeError(f"dvc plots show failed in {project}:\n{result.stdout}\n{result.stderr}")
    return out / "index.html"


def open_offline(html: Path, screenshot: Path | None = None, width: int = 1400, full_page: bool = False,
                 timeout_s: float = 60) -> Report:
    """Open `html` in headless Chromium with a new empty profile and only file:// requests allowed; wait
    until every vega view has settled; describe each plot; optionally save a screenshot."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "chromium is missing: `bash .ci/setup` installs Debian's chromium (as root)"
    report = Report(html, vega_specs=html.read_text().count("vegaEmbed('#"))

    def route(route):
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            report.refused.append(route.request.url)
            route.abort("internetdisconnected")

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS, offline=True,
            viewport={"width": width, "height": 900}, device_scale_factor=1)
        try:
            context.route("**/*", route)
            context.add_init_script(CAPTURE_VIEWS)
            page = context.new_page()
            page.on("console", lambda msg: msg.type == "error" and report.console_errors.append(msg.text))
            page.on("pageerror", lambda error: report.console_errors.append(str(error)))
            page.goto(html.resolve().as_uri(), wait_until="load", timeout=timeout_s * 1000)
            # the page's inline scripts have all called vegaEmbed by "load"; wait for the views to settle
            page.wait_for_function(
                "() => Object.values(window.__embeds).every(e => e.state !== 'pending')", timeout=timeout_s * 1000)
            page.wait_for_timeout(200)  # a frame for the last canvases to paint
            report.plots = page.evaluate(DESCRIBE)
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=full_page)
        finally:
            context.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description="dvc plots show, then a headless Chromium screenshot, offline")
    parser.add_argument("screenshot", type=Path, help="PNG to write")
    parser.add_argument("--project", type=Path, default=ROOT, help="DVC project to render (default: this one)")
    parser.add_argument("--width", type=int, default=1400, help="viewport width in CSS pixels")
    parser.add_argument("--full-page", action="store_true", help="the whole page, not the first screen")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        report = open_offline(plots_show(args.project, Path(out)), args.screenshot, args.width, args.full_page)
    problems = report.not_drawn() + [f"console: {e}" for e in report.console_errors]
    print(json.dumps({"plots": len(report.plots), "problems": problems, "refused": report.refused}, indent=1))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
