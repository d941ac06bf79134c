"""Build `report/template.html`, the page `dvc plots show` and `dvc plots diff` fill (`.dvc/config`:
`plots.html_template`), with pinned copies of vega, vega-lite and vega-embed inlined, so the report draws
its charts with no network (DVC's own page loads them from a CDN).

    python report/vendor.py           # install the pinned npm packages in a temporary folder, write the
                                      # template and report/THIRD_PARTY_LICENSES.txt (needs npm, the registry)
    python report/vendor.py --check   # offline: the template's scripts are the pinned files, byte for byte

To update a library, change its version and sha256 in PINS (the sha256 of the file inside the npm tarball),
run the first command and commit both files. The rest of the page (title, style) is edited in the template
itself; the command replaces only the inlined libraries. DVC fills the template by replacing `{plot_divs}` (the charts
and images) and `{refresh_tag}`; leaving out `{scripts}` drops DVC's CDN script tags.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "template.html"
LICENSES = HERE / "THIRD_PARTY_LICENSES.txt"

# package -> (version, file in the npm tarball, sha256 of that file). vega 5 / vega-lite 5 / vega-embed 6:
# the major versions DVC's templates are written for ($schema vega-lite v5), at their last releases.
PINS = {
    "vega": ("5.33.1", "build/vega.min.js", "463f3db6a40b20e9747b4ed38f37ed0add508838f9141b1cf8366784b07b30c8"),
    "vega-lite": ("5.23.0", "build/vega-lite.min.js", "58c27358e26f2d319cf62f45bc17a4c8362f08645001df2ec8d341eee4097c7f"),
    "vega-embed": ("6.29.0", "build/vega-embed.min.js", "12d02acfbe3ec59ef9a37dd4822a2e04e2961b5bbb671bbe661d2221715b99da"),
}
# Third-party packages bundled inside those files (besides vega's own vega-* packages, same holder and
# licence as vega), whose licences travel with them. Packages that ship no licence file (vega,
# vega-interpreter) are under the Interactive Data Lab's BSD-3-Clause text, vega-lite's.
BUNDLED = {
    "vega": ["d3-array", "d3-color", "d3-delaunay", "d3-dispatch", "d3-dsv", "d3-force", "d3-format", "d3-geo",
             "d3-geo-projection", "d3-hierarchy", "d3-interpolate", "d3-path", "d3-quadtree", "d3-scale",
             "d3-scale-chromatic", "d3-shape", "d3-time", "d3-time-format", "d3-timer", "delaunator",
             "internmap", "robust-predicates", "topojson-client"],
    "vega-lite": ["tslib"],
    "vega-embed": ["fast-json-patch", "json-stringify-pretty-compact", "semver", "vega-themes", "vega-tooltip",
                   "vega-schema-url-parser", "vega-interpreter"],
}

def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# One inlined library: its comment line and its script element.
SCRIPT_BLOCK = re.compile(r'<!-- [^\n]* -->\n<script data-package="[^"]+" data-version="[^"]+">\n.*?\n</script>\n', re.S)


def script_tag(package: str, code: str) -> str:
    version, _, digest = PINS[package]
    return (f"<!-- {package} {version}, BSD-3-Clause (report/THIRD_PARTY_LICENSES.txt), sha256 {digest} -->\n"
            f'<script data-package="{package}" data-version="{version}">\n{code}\n</script>')


def inlined(template: str) -> dict[str, str]:
    """package -> the code of its inline script in `template`."""
    found = re.findall(r'<script data-package="([^"]+)" data-version="[^"]+">\n(.*?)\n</script>', template, re.S)
    return dict(found)


def check(template: str) -> list[str]:
    """Problems with `template`: a pinned library missing or not byte-identical, or a network script."""
    problems = []
    scripts = inlined(template)
    for package, (version, _, digest) in PINS.items():
        if package not in scripts:
            problems.append(f"{package} {version} is not inlined")
        elif sha256(scripts[package].encode()) != digest:
            problems.append(f"{package}: sha256 {sha256(scripts[package].encode())}, pinned {digest}")
    if re.search(r"<script[^>]*\bsrc=", template):
        problems.append("a <script src=...> would load code from elsewhere")
    if "{plot_divs}" not in template:
        problems.append("no {plot_divs} placeholder: DVC refuses the template")
    return problems


def npm_install(folder: Path) -> Path:
    """The pinned packages and their dependencies installed by npm into `folder`; returns its node_modules."""
    specs = [f"{package}@{version}" for package, (version, _, _) in PINS.items()]
    subprocess.run(["npm", "install", "--prefix", str(folder), "--no-save", "--ignore-scripts", "--no-audit",
                    "--no-fund", *specs], check=True, capture_output=True, text=True)
    return folder / "node_modules"


def licence_text(package: Path) -> str:
    """The licence file of an installed package ("" when it ships none)."""
    for name in ("LICENSE", "LICENSE.md", "LICENSE.txt", "LICENCE"):
        if (package / name).is_file():
            return (package / name).read_text()
    return ""


def build() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        modules = npm_install(Path(tmp))
        scripts = []
        for package, (version, path, digest) in PINS.items():
            code = (modules / package / path).read_text()
            assert sha256(code.encode()) == digest, f"{package} {version} {path}: sha256 {sha256(code.encode())}"
            # DVC fills the template with str.replace, and the HTML parser ends a script at "</script"
            assert "</script" not in code.lower() and "{plot_divs}" not in code and "{refresh_tag}" not in code
            scripts.append(script_tag(package, code))
        page = SCRIPT_BLOCK.sub("", TEMPLATE.read_text())  # the page around the libraries is edited by hand
        TEMPLATE.write_text(page.replace("</head>", "\n".join(scripts) + "\n</head>", 1))
        idl = licence_text(modules / "vega-lite")
        sections = ["Third-party code inlined in report/template.html, with its licences.\n"]
        for package, bundled in BUNDLED.items():
            version, path, _ = PINS[package]
            sections.append(f"{'=' * 78}\n{package} {version} ({path}), BSD-3-Clause\n{'=' * 78}\n"
                            f"{licence_text(modules / package) or idl}")
            for name in bundled:
                meta = json.loads((modules / name / "package.json").read_text())
                sections.append(f"{'-' * 78}\nbundled in {package}: {name} {meta['version']}, {meta['license']}\n"
                                f"{'-' * 78}\n{licence_text(modules / name) or idl}")
        LICENSES.write_text("\n".join(sections))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="verify the template offline, change nothing")
    args = parser.parse_args()
    if not args.check:
        build()
    problems = check(TEMPLATE.read_text())
    for problem in problems:
        print(f"{TEMPLATE}: {problem}", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
