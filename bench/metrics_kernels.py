"""Do the committed metrics come back on another processor? `train` + `evaluate` under other CPU kernels.

    python -m bench.metrics_kernels [CONFIG] [--steps N]   # CONFIG from tests/kernels.py, default avx2_cpu
                                                            # (~10 min on 2 cores; --steps: a shorter run, whose
                                                            # numbers compare with nothing committed)

Copies the code, params.yaml and the committed preprocessed data (`data/interim`, `data/processed`, as
`dvc pull` or `dvc repro` leave them) into a temporary folder, runs the `train` and `evaluate` stage scripts
there with CONFIG's environment (avx2_cpu: ATen, oneDNN and MKL capped at AVX2, numpy without AVX-512,
OpenBLAS Haswell kernels, as on a processor without AVX-512; the variables are read when the libraries load,
so they are set before Python starts), and prints each criterion beside the committed `metrics.json`'s,
with the difference and whether the teacher's weights are the same bytes. The thread count is params.yaml's
(`train.threads`, `evaluate.threads`), so only the kernels differ. The configs that cap torch set
`AFFECT_NATIVE_KERNELS=1`, so this measures what the pinned kernels (`affect.exact.pin_cpu_kernels`) guard
against: the committed run's metrics as an unpinned run on such a processor gives them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from tests.kernels import CONFIGS
from tests.pipeline import ROOT


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="avx2_cpu", choices=sorted(CONFIGS))
    parser.add_argument("--steps", type=int, default=None, help="train.steps of the rerun (default: params.yaml's)")
    args = parser.parse_args(argv)
    config = args.config
    committed = json.loads((ROOT / "data/evaluate/metrics.json").read_text())
    with tempfile.TemporaryDirectory(prefix="metrics-kernels-") as folder:
        work = Path(folder)
        for name in ("affect", "stages"):
            shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        if args.steps is not None:
            params["train"] |= {"steps": args.steps, "eval_every": args.steps, "checkpoint_every": args.steps,
                                "warmup": min(params["train"]["warmup"], args.steps)}
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        for name in ("interim", "processed"):
            shutil.copytree(ROOT / "data" / name, work / "data" / name)
        env = {**os.environ, **CONFIGS[config]["env"], "PYTHONPATH": str(work)}
        for stage in ("train", "evaluate"):
            print(f"running stages.{stage} under {config} kernels in {work}", flush=True)
            subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=work, env=env, check=True,
                           stdout=subprocess.DEVNULL)
        metrics = json.loads((work / "data/evaluate/metrics.json").read_text())
        same = (work / "data/train/teacher.pt").read_bytes() == (ROOT / "data/train/teacher.pt").read_bytes()
    print(f"\n| model | task | committed | {config} | difference |\n|---|---|---|---|---|")
    for model, tasks in committed.items():
        for task, result in tasks.items():
            mine = metrics[model][task]["criterion"]
            print(f"| {model} | {task} | {result['criterion']:.3f} | {mine:.3f} | {mine - result['criterion']:+.3f} |")
    print(f"\nteacher weights: {'the same bytes' if same else 'different bytes'} as data/train/teacher.pt")


if __name__ == "__main__":
    main()
