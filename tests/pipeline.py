"""A throw-away copy of the project in a temporary git repository, run with the real `dvc` program; and the
params and data layouts the tests build small trees with, through the pipeline's own steps."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from affect.index import build_index, write_index
from affect.pipeline import preprocess
from affect.schema import Layout

ROOT = Path(__file__).resolve().parents[1]
DVC = str(Path(sys.executable).parent / "dvc")
# Stage commands say `python -m stages.x`: the project's environment must come first on PATH, as after
# `source .venv/bin/activate`.
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}

# The smallest configuration that still exercises every stage: two parts, a few short demo videos
# (one of them two-person), a narrow model and a handful of training steps. `models.mirror` is the
# caller's (the tests' models folder: see tests/assets.py).
TINY = {
    "parts": [0, 1],
    "demo": {"n_videos": 8, "seconds": [3, 4]},
    "model": {"width": 0.125},
    "train": {"steps": 12, "batch_size": 4, "eval_every": 6, "checkpoint_every": 6},
}
# Small and fast preprocessing for the tests' own trees: the smallest detector at a small input, one process,
# and TSAV's 112 px crops (the ArcFace template's own size; params.yaml's 64 is the demo's CPU setting).
FAST = {"align": {"detector": "scrfd_500m", "det_size": 320, "crop_size": 112, "jobs": 1}, "split": {"jobs": 1},
        "landmarks": {"jobs": 1}, "mask": {"jobs": 1}, "mel": {"jobs": 1}}


def merge(base: dict, overrides: dict) -> dict:
    """`base` with `overrides` applied key by key, recursively."""
    out = dict(base)
    for key, value in overrides.items():
        out[key] = merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def params(*overrides: dict) -> dict:
    """The project's params.yaml with `overrides` applied in turn (`merge`)."""
    result = yaml.safe_load((ROOT / "params.yaml").read_text())
    for override in overrides:
        result = merge(result, override)
    return result


def build_tree(root: Path, layout: Layout, n_parts: int, overrides: dict | None = None) -> dict:
    """Index the ABAW2 tree at `root` into `layout` and run every per-part step on each part (FAST params with
    `overrides`); returns the params used."""
    used = params(FAST, {"dataset": {"root": str(root)}}, overrides or {})
    write_index(build_index(root, n_parts, jobs=1), layout.index)
    for part in range(n_parts):
        preprocess(part, used, layout)
    return used


def run(cwd: Path, *args: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run a command in `cwd`, capturing its output; on failure the assertion shows it. Past `timeout` seconds
    the command is killed and `subprocess.TimeoutExpired` raised."""
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=ENV, timeout=timeout)
    if check:
        assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def dvc(cwd: Path, *args: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
    """The real dvc command line in `cwd`."""
    return run(cwd, DVC, *args, check=check, timeout=timeout)


def make_project(folder: Path, overrides: dict | None = None) -> Path:
    """Copy the project's code, dvc.yaml, params, .gitignore, DVC config and report template into `folder`, as a
    fresh git + DVC repository."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("affect", "stages", "report"):
        shutil.copytree(ROOT / name, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "data/raw/unlabelled", folder / "data/raw/unlabelled")  # dataset.unlabelled: no corpus
    shutil.copy(ROOT / "dvc.yaml", folder / "dvc.yaml")
    shutil.copy(ROOT / ".gitignore", folder / ".gitignore")  # checkpoints stay out of git
    params = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), merge(TINY, overrides or {}))
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(folder, "git", "init", "-q")
    run(folder, "git", "config", "user.email", "test@example.com")
    run(folder, "git", "config", "user.name", "test")
    dvc(folder, "init", "-q")
    shutil.copy(ROOT / ".dvc/config", folder / ".dvc/config")  # analytics off, cache links, report template
    run(folder, "git", "add", "-A")
    run(folder, "git", "commit", "-qm", "project")
    return folder


def commit(folder: Path, message: str) -> None:
    """Commit everything (dvc.lock, .gitignore files, params) in the test repository."""
    run(folder, "git", "add", "-A")
    run(folder, "git", "commit", "-qm", message, check=False)


def copy_project(source: Path, folder: Path) -> Path:
    """A copy of a project, its git history and its DVC cache included."""
    shutil.copytree(source, folder, symlinks=True)
    dvc(folder, "checkout", "-q")
    return folder


def ran(output: str) -> set[str]:
    """Names of the stages a `dvc repro` ran, from its log."""
    return set(re.findall(r"Running stage '([^']+)'", output))
