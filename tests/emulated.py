"""Run a module here and under qemu emulating another processor (by default the other vendor's AVX2 one), at
once, and read the JSON line each prints (tests/test_reproducible.py compares the two bit for bit).

Under qemu the training comparison keeps one core busy for about four minutes, while most of the suite leaves
the second core of a 2-core machine idle. So a test marked `@pytest.mark.emulated(module, *args)` has its runs
started by conftest as soon as the session is collected (`start`), and collects them when it runs
(`results`); the rest of the suite runs meanwhile. The runs start at the lowest priority (nice 19), so they
take the cycles the other tests leave (the demo pipeline's `dvc repro` on both cores: 80 s beside them, 67 s
alone, 184 s beside them at normal priority).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO

from affect.exact import CPU_KERNELS

ROOT = Path(__file__).resolve().parents[1]
QEMU = shutil.which("qemu-x86_64")
AVAILABLE = platform.machine() == "x86_64" and QEMU is not None

_runs: dict[tuple[str | None, ...], dict[str, tuple[subprocess.Popen, IO[str], IO[str]]]] = {}


def start(module: str, *args: str, cpu: str | None = None) -> None:
    """Start `python -m module args` here and under `qemu-x86_64 -cpu CPU` (by default an AMD EPYC on an Intel
    host, an Intel Haswell on an AMD one), at nice 19, unless they are running already; their output goes to
    temporary files."""
    key = (module, *args, cpu)
    if key in _runs:
        return
    if cpu is None:
        cpu = "EPYC" if "GenuineIntel" in Path("/proc/cpuinfo").read_text() else "Haswell"
    # each run pins torch's kernels for its own processor when it imports affect, not by this one's
    env = {**{k: v for k, v in os.environ.items() if k not in CPU_KERNELS}, "PYTHONPATH": str(ROOT)}
    _runs[key] = {}
    for name, prefix in {"native": [], "emulated": [QEMU, "-cpu", cpu]}.items():
        stdout, stderr = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        process = subprocess.Popen(prefix + [sys.executable, "-m", module, *args], env=env, cwd=ROOT,
                                   stdout=stdout, stderr=stderr, text=True, preexec_fn=lambda: os.nice(19))
        _runs[key][name] = (process, stdout, stderr)


def results(module: str, *args: str, cpu: str | None = None, timeout: float = 900) -> tuple[dict, dict]:
    """The JSON line that the native and the emulated run of `python -m module args` printed last (started now
    if `start` did not start them), once both have finished."""
    start(module, *args, cpu=cpu)
    printed = {}
    for name, (process, stdout, stderr) in _runs.pop((module, *args, cpu)).items():
        process.wait(timeout=timeout)
        with stdout, stderr:
            stdout.seek(0)
            stderr.seek(0)
            assert process.returncode == 0, f"{name}: {stderr.read()[-2000:]}"
            printed[name] = json.loads(stdout.read().splitlines()[-1])
    return printed["native"], printed["emulated"]


def stop() -> None:
    """Kill the runs that no test collected (a deselected or interrupted test)."""
    for runs in _runs.values():
        for process, stdout, stderr in runs.values():
            process.kill()
            process.wait()
            stdout.close()
            stderr.close()
    _runs.clear()
