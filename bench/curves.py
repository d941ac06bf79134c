"""Learning curves of the last `train` run as a PNG for the README, from dvclive's logs.

    python -m bench.curves [--out data/readme/learning_curves.png] [--dvclive dvclive]

Left: the supervised loss per task and the consistency loss (dvclive/plots/metrics/train/...), per logged
step. Right: the validation criteria of teacher and student per task (dvclive/plots/metrics/val/...), the
same numbers `dvc plots show` draws, in one picture.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

TASKS = {"expr": "expression", "au": "AU", "va": "VA"}


def read(path: Path) -> tuple[list[int], list[float]]:
    """(steps, values) of one dvclive .tsv (columns timestamp, step, <name>); empty when absent."""
    if not path.is_file():
        return [], []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    name = [k for k in rows[0] if k not in ("timestamp", "step")][0] if rows else ""
    return [int(r["step"]) for r in rows], [float(r[name]) for r in rows]


def draw(root: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = root / "plots" / "metrics"
    fig, (losses, criteria) = plt.subplots(1, 2, figsize=(12, 4))
    for k, (task, label) in enumerate(TASKS.items()):
        colour = f"C{k}"
        losses.plot(*read(metrics / "train" / "supervised" / f"{task}.tsv"), color=colour, label=f"{label}, supervised")
        losses.plot(*read(metrics / "train" / "consistency" / f"{task}.tsv"), color=colour, linestyle=":",
                    label=f"{label}, consistency")
        for model, style in (("teacher", "-"), ("student", ":")):
            criteria.plot(*read(metrics / "val" / model / f"{task}.tsv"), color=colour, linestyle=style, marker="o",
                          label=f"{label}, {model}")
    losses.set_title("training losses (mean since the previous entry)")
    losses.set_xlabel("step"); losses.set_ylabel("loss (no unit)"); losses.legend(fontsize=7); losses.grid(alpha=0.3)
    criteria.set_title("validation criteria (ABAW2)")
    criteria.set_xlabel("step"); criteria.set_ylabel("criterion"); criteria.legend(fontsize=7); criteria.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="data/readme/learning_curves.png")
    parser.add_argument("--dvclive", default="dvclive")
    args = parser.parse_args()
    draw(Path(args.dvclive), Path(args.out))
    print(args.out)


if __name__ == "__main__":
    main()
