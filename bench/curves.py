"""Learning curves of the last `train` run as a PNG for the README, from dvclive's logs.

    python -m bench.curves [--out data/readme/learning_curves.png] [--dvclive dvclive]
    python -m bench.curves --compare EXP [EXP ...] [--out data/readme/compare.png]

Left: the supervised loss per task and the consistency loss (dvclive/plots/metrics/train/...), per logged
step. Right: the validation criteria of teacher and student per task (dvclive/plots/metrics/val/...), the
same numbers `dvc plots show` draws, in one picture.
`--compare`: DVC experiments (or commits) of this project side by side (their dvclive logs, read with
`dvc.api` at each experiment's ref): the supervised expression loss on the training side and the teacher's
validation criterion per task. A training loss that falls while the validation criterion stays flat is memorisation.
"""

from __future__ import annotations

import argparse
import csv
import io
import subprocess
from pathlib import Path

TASKS = {"expr": "expression", "au": "AU", "va": "VA"}


def parse(text: str) -> tuple[list[int], list[float]]:
    """(steps, values) of the text of one dvclive .tsv (columns timestamp, step, <name>)."""
    rows = list(csv.DictReader(io.StringIO(text), delimiter="\t"))
    name = [k for k in rows[0] if k not in ("timestamp", "step")][0] if rows else ""
    return [int(r["step"]) for r in rows], [float(r[name]) for r in rows]


def read(path: Path) -> tuple[list[int], list[float]]:
    """(steps, values) of one dvclive .tsv file; empty when absent."""
    return parse(path.read_text()) if path.is_file() else ([], [])


def experiment_ref(name: str) -> str:
    """The git ref of the DVC experiment `name` in this repository (refs/exps/.../name), or of the commit
    `name` (a hash, branch or tag: the run committed there)."""
    refs = subprocess.run(["git", "for-each-ref", "refs/exps", "--format=%(refname)"], check=True,
                          capture_output=True, text=True).stdout.split()
    found = [ref for ref in refs if ref.rsplit("/", 1)[-1] == name]
    if found:
        return found[-1]
    commit = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}"],
                            capture_output=True, text=True)
    if commit.returncode != 0:
        raise SystemExit(f"bench.curves: no experiment or commit named {name!r} here (`dvc exp list --all-commits`)")
    return commit.stdout.strip()


def compare(names: list[str], out: Path, dvclive: str = "dvclive") -> None:
    """Experiments side by side: training expression loss and the teacher's validation criteria."""
    import dvc.api
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("train/supervised/expr", "expression loss, training side (supervised)")] + [
        (f"val/teacher/{task}", f"{label}, teacher, validation side") for task, label in TASKS.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.2), layout="constrained")
    for k, name in enumerate(names):
        ref = experiment_ref(name)
        for ax, (metric, _) in zip(axes, panels):
            try:
                steps, values = parse(dvc.api.read(f"{dvclive}/plots/metrics/{metric}.tsv", rev=ref))
            except FileNotFoundError:
                continue
            ax.plot(steps, values, color=f"C{k}", marker="o", label=name)
    for ax, (_, title) in zip(axes, panels):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("loss / criterion")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=min(3, len(names)),
               fontsize=8, frameon=False)      # under the panels: experiment names are long
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


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
    parser.add_argument("--compare", nargs="+", metavar="EXP", help="DVC experiments (or commits) to draw side by side")
    args = parser.parse_args()
    if args.compare:
        compare(args.compare, Path(args.out), args.dvclive)
    else:
        draw(Path(args.dvclive), Path(args.out))
    print(args.out)


if __name__ == "__main__":
    main()
