"""The semi-supervised curve: ABAW2 criteria against the share of training labels kept, per method, over seeds.

Queue the sweep in DVC's experiment queue, run it, then read the results back with `dvc exp show --json`:

    python -m bench.sweep queue                  # method x label fraction x seed, one queued experiment each
    dvc queue start -j 1                         # runs them (one at a time on a CPU machine)
    python -m bench.sweep report                 # table (stdout, BENCHMARKS.md) and data/readme/sweep.png

Each experiment sets `train.method`, `partition.label_fraction` and the seed (`train.seed` and
`partition.label_seed`, so the seed picks both the model's initialisation and batches and which training
videos keep their labels); the validation side (`partition.seed`) is the same for every run, so every
number is scored on the same frames. The report gives, per method, label fraction, model (student, and
teacher = the EMA of the student, which both methods keep) and task, the mean and the spread (sample
standard deviation and min..max) of the criterion over the seeds found, and the mean criterion of the three
tasks (of those on the validation side). Experiments are named `sweep-<method>-f<fraction>-s<seed>`; other experiments are ignored.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

METHODS = ("supervised", "mean_teacher")
FRACTIONS = (0.1, 0.25, 1.0)
SEEDS = (0, 1, 2)
TASKS = ("expr", "au", "va")
MODELS = ("student", "teacher")
METRICS = "data/evaluate/metrics.json"
DVC = str(Path(sys.executable).parent / "dvc")  # the dvc of this environment, activated or not
NAME = re.compile(r"^sweep-(?P<method>[a-z_]+)-f(?P<fraction>[0-9.]+)-s(?P<seed>\d+)$")


def experiment_name(method: str, fraction: float, seed: int) -> str:
    return f"sweep-{method}-f{fraction:g}-s{seed}"


def queue(methods=METHODS, fractions=FRACTIONS, seeds=SEEDS, extra: tuple[str, ...] = (),
          cwd: str | Path = ".") -> list[str]:
    """Queue one `dvc exp run` per (method, fraction, seed) in the project at `cwd`; `extra` are more
    `-S key=value` settings for all."""
    names = []
    for method, fraction, seed in itertools.product(methods, fractions, seeds):
        name = experiment_name(method, fraction, seed)
        settings = [f"train.method={method}", f"partition.label_fraction={fraction}", f"train.seed={seed}",
                    f"partition.label_seed={seed}", *extra]
        subprocess.run([DVC, "exp", "run", "--queue", "-n", name, *[a for s in settings for a in ("-S", s)]],
                       check=True, cwd=cwd)
        names.append(name)
    return names


def experiments(show: list) -> list[dict]:
    """Every finished experiment of `dvc exp show --json` output as {"name", "params", "metrics"} (committed
    rows too); queued, running and failed ones are left out (a running one shows its baseline's metrics)."""
    rows = []

    def visit(entry: dict) -> None:
        data = entry.get("data") or {}
        name = entry.get("name") or data.get("name") or entry.get("rev")
        params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
        metrics = ((data.get("metrics") or {}).get(METRICS) or {}).get("data") or {}
        rows.append({"name": name, "params": params, "metrics": metrics})
        for child in entry.get("experiments") or []:
            state = ((child.get("executor") or {}).get("state")) or "success"
            if state != "success":  # queued or running: its metrics are still its baseline's
                continue
            for revision in child.get("revs") or []:
                visit(revision)

    for entry in show:
        visit(entry)
    return rows


def curve(rows: list[dict]) -> dict:
    """{(method, fraction, model): {task and "mean": [criteria over seeds]}} from the sweep's experiments."""
    results: dict = {}
    for row in rows:
        match = NAME.match(str(row["name"]))
        if not match or not row["metrics"]:
            continue
        method, fraction = match["method"], float(match["fraction"])
        for model in MODELS:
            scores = {task: row["metrics"][model][task]["criterion"] for task in TASKS if task in row["metrics"][model]}
            scores["mean"] = float(np.mean(list(scores.values())))  # of the tasks on the validation side
            cell = results.setdefault((method, fraction, model), {k: [] for k in (*TASKS, "mean")})
            for key, value in scores.items():
                cell[key].append(value)
    return results


def spread(values: list[float]) -> str:
    """mean ± sample standard deviation [min..max]; "–" for no values (a task absent from the validation side)."""
    if not values:
        return "–"
    v = np.asarray(values)
    sd = v.std(ddof=1) if len(v) > 1 else 0.0
    return f"{v.mean():.3f} ± {sd:.3f} [{v.min():.3f}..{v.max():.3f}]"


def table(results: dict) -> str:
    """Markdown table of the curve, one row per (method, fraction, model)."""
    lines = ["| method | label fraction | model | seeds | expression | AU | VA | mean of the tasks |",
             "|---|---:|---|---:|---|---|---|---|"]
    for method, fraction, model in sorted(results, key=lambda k: (k[1], METHODS.index(k[0]) if k[0] in METHODS
                                                                   else 9, k[2])):
        cell = results[(method, fraction, model)]
        lines.append(f"| {method} | {fraction:g} | {model} | {len(cell['mean'])} | "
                     + " | ".join(spread(cell[key]) for key in (*TASKS, "mean")) + " |")
    return "\n".join(lines)


def plot(results: dict, path: str | Path) -> None:
    """Criterion against label fraction, one panel per task and the mean, mean over seeds with min..max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {"expr": "Expression (0.67 F1 + 0.33 acc.)", "au": "Action units (0.5 F1 + 0.5 acc.)",
              "va": "Valence-arousal (mean CCC)", "mean": "Mean of the tasks"}
    fig, axes = plt.subplots(1, 4, figsize=(16, 4), sharex=True)
    for ax, key in zip(axes, titles):
        for (method, model), style in {("supervised", "student"): ("tab:blue", "-"),
                                       ("supervised", "teacher"): ("tab:blue", ":"),
                                       ("mean_teacher", "student"): ("tab:orange", ":"),
                                       ("mean_teacher", "teacher"): ("tab:orange", "-")}.items():
            points = sorted((f, results[(m, f, mo)][key]) for (m, f, mo) in results
                            if m == method and mo == model and results[(m, f, mo)][key])
            if not points:
                continue
            x = [f for f, _ in points]
            mean = [np.mean(v) for _, v in points]
            ax.plot(x, mean, linestyle=style[1], color=style[0], marker="o", label=f"{method}, {model}")
            ax.fill_between(x, [min(v) for _, v in points], [max(v) for _, v in points], color=style[0], alpha=0.12)
        ax.set_xscale("log")
        ax.set_title(titles[key])
        ax.set_xlabel("share of training videos with labels (log)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("criterion on the validation side")
    axes[-1].legend(fontsize=8)
    fig.suptitle("Semi-supervised curve: mean over seeds, band = min..max")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(out: str | Path = "data/readme/sweep.png", cwd: str | Path = ".") -> str:
    """Read `dvc exp show --json` in the project at `cwd`, print the table, write the plot; returns the table."""
    show = json.loads(subprocess.run([DVC, "exp", "show", "--json", "--all-commits"], check=True,
                                     capture_output=True, text=True, cwd=cwd).stdout)
    results = curve(experiments(show))
    if not results:
        message = "no sweep experiments found: run `python -m bench.sweep queue` and `dvc queue start` first"
        print(message)
        return message
    text = table(results)
    print(text)
    plot(results, out)
    print(f"\nplot: {out}")
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sweep", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    q = sub.add_parser("queue", help="queue the sweep's experiments")
    q.add_argument("--methods", nargs="+", default=list(METHODS))
    q.add_argument("--fractions", nargs="+", type=float, default=list(FRACTIONS))
    q.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    q.add_argument("-S", dest="extra", action="append", default=[], help="another key=value for every run")
    r = sub.add_parser("report", help="table and plot of the finished experiments")
    r.add_argument("--plot", default="data/readme/sweep.png")
    args = parser.parse_args(argv or [])  # `python -m bench` calls main() without arguments: the report
    if args.command == "queue":
        for name in queue(args.methods, args.fractions, args.seeds, tuple(args.extra)):
            print(name)
    else:
        report(getattr(args, "plot", "data/readme/sweep.png"))


if __name__ == "__main__":
    main(sys.argv[1:])
