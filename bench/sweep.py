"""The semi-supervised curve: ABAW2 criteria against the share of training labels kept, per method, over seeds.

Queue the sweep in DVC's experiment queue, run it, then read the results back with `dvc exp show --json`:

    python -m bench.sweep queue                  # method x label fraction x seed, one queued experiment each
    dvc queue start -j 1                         # runs them (one at a time on a CPU machine)
    python -m bench.sweep report                 # table (stdout, BENCHMARKS.md) and data/readme/sweep.png
    python -m bench.sweep report --videos 64 --plot data/readme/sweep64.png   # the rows of another demo size
    python -m bench.sweep report --plot-methods trivial supervised mean_teacher   # a plot of these methods only
    python -m bench.sweep labels --fraction 0.1 --seeds 0 1 2 3 4   # the labels each seed keeps (after dvc repro)

DVC experiments live in the checkout that ran them, so the report also keeps every finished sweep
experiment's criteria in `bench/sweep_results.json` (committed): each row names the experiment and the
commit it ran on and the demo's size (`demo.n_videos`); a later report reads that file back and adds this
checkout's experiments, a rerun replacing the row of the same name and demo size. A fresh clone's report
thus shows the whole table. A curve is drawn on one demo: the report shows the rows of params.yaml's
`demo.n_videos`, or of `--videos N` (the rows kept before the size was recorded all ran on 64 videos and
carry 64).

Each experiment sets `train.method`, `partition.label_fraction` and the seed (`train.seed` and
`partition.label_seed`, so the seed picks both the model's initialisation and batches and which training
videos keep their labels); the validation side (`partition.seed`) is the same for every run, so every
number is scored on the same frames. The report gives, per method, label fraction, model (student, and
teacher = the EMA of the student, which both methods keep) and task, the mean and the spread (sample
standard deviation and min..max) of the criterion over the seeds found, and the mean criterion of the three
tasks (of those on the validation side). A second table pairs each method with `supervised` seed by seed
(the teacher's criterion minus supervised's teacher's, on the same labelled videos): the mean difference,
its standard error and on how many seeds the method is ahead. Experiments are named
`sweep-<method>-f<fraction>-s<seed>`; other experiments are ignored.

A variant of a method (other settings, say soft pseudo-labels) is queued with `--variant NAME` and its
`-S` settings; its experiments are named `sweep-<method>-f<fraction>-s<seed>-<NAME>` and reported as the
method `<method>/<NAME>`, beside the plain method:

    python -m bench.sweep queue --methods mean_teacher --variant soft -S train.consistency_targets=soft

`--train-seed N` fixes `train.seed` apart from the seed, which then picks the labelled videos only: the runs
are named `sweep-<method>-f<fraction>-s<seed>-t<N>[-<variant>]`, reported as the method `<method>[/<variant>]
(train.seed N)` and paired with `supervised (train.seed N)` on the same label seed:

    python -m bench.sweep queue --methods supervised mean_teacher --fractions 0.1 --seeds 4 --train-seed 0
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
import pyarrow as pa
import pyarrow.compute as pc
import yaml

METHODS = ("supervised", "mean_teacher")
FRACTIONS = (0.1, 0.25, 1.0)
SEEDS = (0, 1, 2)
TASKS = ("expr", "au", "va")
MODELS = ("student", "teacher")
TRIVIAL = "trivial"  # evaluate's trivial predictors, reported as a method of their own
METRICS = "data/evaluate/metrics.json"
RESULTS = "bench/sweep_results.json"  # the sweep's criteria, kept (relative to the project)
DVC = str(Path(sys.executable).parent / "dvc")  # the dvc of this environment, activated or not
VARIANT = r"[a-z0-9_.]+"  # characters of a variant's name
APART = " (train.seed "  # how a method's name says its runs set the training seed apart from the seed
NAME = re.compile(rf"^sweep-(?P<method>[a-z_]+)-f(?P<fraction>[0-9.]+)-s(?P<seed>\d+)(-t(?P<train_seed>\d+))?"
                  rf"(-(?P<variant>{VARIANT}))?$")


class UnknownMethod(ValueError):
    """A `--baseline` or `--plot-methods` with no sweep experiment among the rows: the command line prints it as
    one line."""


def experiment_name(method: str, fraction: float, seed: int, variant: str = "", train_seed: int | None = None
                    ) -> str:
    return (f"sweep-{method}-f{fraction:g}-s{seed}" + (f"-t{train_seed}" if train_seed is not None else "")
            + (f"-{variant}" if variant else ""))


def settings(method: str, fraction: float, seed: int, train_seed: int | None = None,
             extra: tuple[str, ...] = ()) -> list[str]:
    """The `-S key=value` settings of one sweep experiment: the method, the label fraction, the seed as
    `partition.label_seed` (which training videos keep their labels) and as `train.seed` (initialisation,
    batch order, teacher noise) unless `train_seed` fixes the latter apart, then `extra`."""
    return [f"train.method={method}", f"partition.label_fraction={fraction}",
            f"train.seed={seed if train_seed is None else train_seed}", f"partition.label_seed={seed}", *extra]


def queue(methods=METHODS, fractions=FRACTIONS, seeds=SEEDS, extra: tuple[str, ...] = (),
          cwd: str | Path = ".", variant: str = "", train_seed: int | None = None) -> list[str]:
    """Queue one `dvc exp run` per (method, fraction, seed) in the project at `cwd`; `extra` are more
    `-S key=value` settings for all, and `variant` names them (reported as the method `<method>/<variant>`).
    `train_seed` sets `train.seed` apart from the seed (then the label seed only), and the name says so."""
    if variant and (not re.fullmatch(VARIANT, variant) or re.fullmatch(r"t\d+", variant)):
        raise ValueError(f"sweep variant {variant!r}: use lower-case letters, digits, '_' and '.' (not t<digits>, "
                         "which names a training seed: --train-seed)")
    names = []
    for method, fraction, seed in itertools.product(methods, fractions, seeds):
        name = experiment_name(method, fraction, seed, variant, train_seed)
        run_settings = settings(method, fraction, seed, train_seed, extra)
        subprocess.run([DVC, "exp", "run", "--queue", "-n", name, *[a for s in run_settings for a in ("-S", s)]],
                       check=True, cwd=cwd)
        names.append(name)
    return names


def experiments(show: list) -> list[dict]:
    """Every finished experiment of `dvc exp show --json` output as {"name", "commit", "params", "metrics"}
    (committed rows too; "commit": the commit an experiment ran on); queued, running and failed ones are
    left out (a running one shows its baseline's metrics)."""
    rows = []

    def visit(entry: dict, commit: str) -> None:
        data = entry.get("data") or {}
        name = entry.get("name") or data.get("name") or entry.get("rev")
        params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
        metrics = ((data.get("metrics") or {}).get(METRICS) or {}).get("data") or {}
        rows.append({"name": name, "commit": commit, "params": params, "metrics": metrics})
        for child in entry.get("experiments") or []:
            state = ((child.get("executor") or {}).get("state")) or "success"
            if state != "success":  # queued or running: its metrics are still its baseline's
                continue
            for revision in child.get("revs") or []:
                visit(revision, commit)

    for entry in show:
        visit(entry, str(entry.get("rev", "")))
    return rows


def kept(rows: list[dict], stored: list[dict]) -> list[dict]:
    """The rows of `bench/sweep_results.json`: `stored` rows with this checkout's sweep experiments `rows`
    added, a row of the same name and demo size replaced (the same name on another demo size is another row);
    each {"name", "commit", "videos", "metrics": {model: {task: {"criterion"}}}} (the criteria only;
    "videos": the experiment's `demo.n_videos`, None if it has none), sorted by name and size."""
    merged = {(row["name"], row.get("videos")): row for row in stored}
    for row in rows:
        if NAME.match(str(row["name"])) and row["metrics"]:
            criteria = {model: {task: {"criterion": row["metrics"][model][task]["criterion"]}
                                for task in TASKS if task in row["metrics"][model]}
                        for model in (*MODELS, TRIVIAL) if model in row["metrics"]}
            videos = ((row.get("params") or {}).get("demo") or {}).get("n_videos")
            merged[(row["name"], videos)] = {"name": row["name"], "commit": row.get("commit", ""),
                                             "videos": videos, "metrics": criteria}
    return [merged[key] for key in sorted(merged, key=lambda key: (key[0], key[1] or 0))]


def _method(match: re.Match, method: str | None = None) -> str:
    """The reported method of a sweep experiment's name match: `<method>` or `<method>/<variant>`, followed by
    ` (train.seed N)` where the run set its training seed apart from its seed; `method` replaces the name's
    method and variant (the baseline a run is paired with)."""
    name = method or match["method"] + (f"/{match['variant']}" if match["variant"] else "")
    return name + (f"{APART}{match['train_seed']})" if match["train_seed"] is not None else "")


def _criteria(metrics: dict) -> dict[str, float]:
    """{task: criterion} of one model's metrics, for the tasks on the validation side, and their "mean"."""
    scores = {task: metrics[task]["criterion"] for task in TASKS if task in metrics}
    return scores | {"mean": float(np.mean(list(scores.values())))}


def curve(rows: list[dict]) -> dict:
    """{(method, fraction, model): {task and "mean": [criteria over seeds]}} from the sweep's experiments;
    the trivial predictors (evaluate's "trivial": the training side's majority, which depends on the labels
    kept) as the method and model "trivial", once per (fraction, seed)."""
    results: dict = {}
    trivial_seen = set()
    for row in rows:
        match = NAME.match(str(row["name"]))
        if not match or not row["metrics"]:
            continue
        method = _method(match)
        fraction = float(match["fraction"])
        cells = [(method, model) for model in MODELS]
        if TRIVIAL in row["metrics"] and (fraction, match["seed"]) not in trivial_seen:
            trivial_seen.add((fraction, match["seed"]))
            cells.append((TRIVIAL, TRIVIAL))
        for row_method, model in cells:
            cell = results.setdefault((row_method, fraction, model), {k: [] for k in (*TASKS, "mean")})
            for key, value in _criteria(row["metrics"][model]).items():
                cell[key].append(value)
    return results


def spread(values: list[float]) -> str:
    """mean ± sample standard deviation [min..max]; "–" for no values (a task absent from the validation side)."""
    if not values:
        return "–"
    v = np.asarray(values)
    sd = v.std(ddof=1) if len(v) > 1 else 0.0
    return f"{v.mean():.3f} ± {sd:.3f} [{v.min():.3f}..{v.max():.3f}]"


def _method_order(method: str) -> tuple[int, str, str]:
    """Sort key: the plain methods in METHODS order, each followed by its variants (and runs with a training
    seed apart after those of the same method and variant)."""
    named, _, train_seed = method.partition(APART)
    base, _, variant = named.partition("/")
    return (METHODS.index(base) if base in METHODS else len(METHODS), variant, train_seed)


def table(results: dict) -> str:
    """Markdown table of the curve, one row per (method, fraction, model)."""
    lines = ["| method | label fraction | model | seeds | expression | AU | VA | mean of the tasks |",
             "|---|---:|---|---:|---|---|---|---|"]
    for method, fraction, model in sorted(results, key=lambda k: (k[1], _method_order(k[0]), k[2])):
        cell = results[(method, fraction, model)]
        lines.append(f"| {method} | {fraction:g} | {model} | {len(cell['mean'])} | "
                     + " | ".join(spread(cell[key]) for key in (*TASKS, "mean")) + " |")
    return "\n".join(lines)


def paired(rows: list[dict], baseline: str = "supervised", model: str = "teacher") -> dict:
    """{(method, fraction): {task and "mean": {seed: difference}}}: each method's `model` criterion minus the
    `baseline` method's `model` criterion on the same seed (the same labelled videos, initialisation and
    batches) and fraction, for the seeds both have; a run with its training seed apart is paired with the
    baseline's run of the same label seed and training seed. Paired differences cancel what a seed does to both
    methods (which videos keep their labels moves every method alike), so they show a gap that the spread of
    two unpaired means hides."""
    scores: dict = {}
    baselines: dict = {}
    for row in rows:
        match = NAME.match(str(row["name"]))
        if not match or model not in row["metrics"]:
            continue
        key = (_method(match), float(match["fraction"]), int(match["seed"]))
        scores[key] = _criteria(row["metrics"][model])
        baselines[key] = (_method(match, baseline), *key[1:])
    differences: dict = {}
    for (method, fraction, seed), criteria in sorted(scores.items()):
        reference_key = baselines[(method, fraction, seed)]
        reference = scores.get(reference_key)
        if reference_key[0] == method or reference is None:
            continue
        cell = differences.setdefault((method, fraction), {})
        for key in criteria.keys() & reference.keys():
            cell.setdefault(key, {})[seed] = criteria[key] - reference[key]
    return differences


def paired_table(differences: dict, baseline: str = "supervised") -> str:
    """Markdown table of `paired`: per method and fraction, the mean difference ± its standard error, the
    seeds where the method is ahead, and each seed's difference of the mean of the tasks."""
    def cell(values: dict) -> str:
        v = np.asarray(list(values.values()))
        se = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0
        return f"{v.mean():+.3f} ± {se:.3f} ({int((v > 0).sum())}/{len(v)})"
    lines = [f"| method minus {baseline} | label fraction | seeds | expression | AU | VA | mean of the tasks | "
             "mean of the tasks per seed |", "|---|---:|---|---|---|---|---|---|"]
    for method, fraction in sorted(differences, key=lambda k: (k[1], _method_order(k[0]))):
        diff = differences[(method, fraction)]
        per_seed = ", ".join(f"{value:+.3f}" for _, value in sorted(diff["mean"].items()))
        lines.append(f"| {method} | {fraction:g} | {','.join(str(s) for s in sorted(diff['mean']))} | "
                     + " | ".join(cell(diff[key]) if key in diff else "–" for key in (*TASKS, "mean"))
                     + f" | {per_seed} |")
    return "\n".join(lines)


def check_methods(wanted: tuple[str, ...], results: dict, option: str, trivial: bool = False) -> None:
    """Raise UnknownMethod, naming `option` and the methods there, when a method of `wanted` has no row in the
    curve `results`; the trivial predictors count as a method when `trivial`."""
    methods = sorted({method for method, _, _ in results if trivial or method != TRIVIAL}, key=_method_order)
    for method in wanted:
        if method not in methods:
            raise UnknownMethod(f"{option} {method}: no sweep experiment of that method here; "
                                f"methods: {', '.join(methods)}")


def tables(rows: list[dict], baselines: tuple[str, ...] = ("supervised",), results: dict | None = None) -> str:
    """The curve's table of `rows` (or of their `curve`, `results`), then one paired table per method of
    `baselines` (`<method>` or `<method>/<variant>`). Raises UnknownMethod naming the methods there when a
    baseline has no run among `rows`."""
    results = curve(rows) if results is None else results
    check_methods(baselines, results, "--baseline")
    return "\n\n".join([table(results), *(paired_table(paired(rows, baseline), baseline) for baseline in baselines)])


def method_looks(methods: list[str]) -> dict[str, tuple[tuple[float, float, float], str]]:
    """Each method's colour (RGB in [0, 1]) and marker in the plot, in the order given: tab10's colours for up
    to 10 methods, tab20's beyond; past 20 a colour comes back with the next marker, so no two methods share
    both (up to 80)."""
    from matplotlib import colormaps

    colours = colormaps["tab10" if len(methods) <= 10 else "tab20"].colors
    markers = "os^D"
    return {method: (colours[k % len(colours)], markers[k // len(colours) % len(markers)])
            for k, method in enumerate(methods)}


def plot(results: dict, path: str | Path, only: tuple[str, ...] = ()) -> list[str]:
    """Criterion against label fraction, one panel per task and the mean: mean over seeds, min..max as a bar
    at each fraction and a band between fractions; the methods' points are set slightly apart on the x axis.
    The methods of `only` (`<method>`, `<method>/<variant>` or "trivial"), or every method when it is empty;
    runs with a training seed apart from their seed are left out: they check a seed, they draw no curve.
    Returns the legend's labels: the methods drawn, each with the model its solid line shows."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {"expr": "Expression (0.67 F1 + 0.33 acc.)", "au": "Action units (0.5 F1 + 0.5 acc.)",
              "va": "Valence-arousal (mean CCC)", "mean": "Mean of the tasks"}
    methods = sorted({m for m, _, _ in results if APART not in m and (m in only or not only)}, key=_method_order)
    looks = method_looks(methods)
    main_model = {method: TRIVIAL if method == TRIVIAL else "teacher" if method.startswith("mean_teacher")
                  else "student" for method in methods}
    styles = {(method, model): (looks[method][0], "-" if model == main_model[method] else ":", k, looks[method][1])
              for k, method in enumerate(methods)
              for model in ((TRIVIAL,) if method == TRIVIAL else MODELS)}  # solid: the model the method yields
    step = 1.2 ** (1 / max(1, len(methods) - 1))  # the methods' x positions spread over a factor 1.2 around f
    legend_columns = -(-len(methods) // 12)  # 12 a column: the figure's height
    fig, axes = plt.subplots(1, 4, figsize=(11 + 4 * legend_columns, 4), sharex=True)  # panels as wide for any count
    for ax, key in zip(axes, titles):
        for (method, model), style in styles.items():
            points = sorted((f, results[(m, f, mo)][key]) for (m, f, mo) in results
                            if m == method and mo == model and results[(m, f, mo)][key])
            if not points:
                continue
            x = [f * step ** (style[2] - (len(methods) - 1) / 2) for f, _ in points]  # side by side (log axis)
            mean = [np.mean(v) for _, v in points]
            solid = style[1] == "-"
            ax.plot(x, mean, linestyle=style[1], color=style[0], marker=style[3] if solid else ".",
                    label=("trivial predictors" if model == TRIVIAL else f"{method} ({model})") if solid
                    else "_nolegend_")
            ax.vlines(x, [min(v) for _, v in points], [max(v) for _, v in points], color=style[0], alpha=0.5)
            ax.fill_between(x, [min(v) for _, v in points], [max(v) for _, v in points], color=style[0], alpha=0.12)
        ax.set_xscale("log")
        fractions = sorted({f for _, f, _ in results})
        ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlim(min(fractions) / 1.3, max(fractions) * 1.3)
        ax.set_title(titles[key])
        ax.set_xlabel("share of training videos with labels (log)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("criterion on the validation side")
    axes[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), ncol=legend_columns)  # hiding none
    fig.suptitle("Semi-supervised curve: mean over seeds, bar and band = min..max (methods side by side); "
                 "solid: the model each method yields, dotted: its other model")
    labels = axes[-1].get_legend_handles_labels()[1]
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return labels


def demo_videos(cwd: str | Path = ".") -> int:
    """`demo.n_videos` of the params.yaml at `cwd`: the demo size a report shows by default."""
    return int(yaml.safe_load((Path(cwd) / "params.yaml").read_text())["demo"]["n_videos"])


def report(out: str | Path = "data/readme/sweep.png", cwd: str | Path = ".", results: str | Path = RESULTS,
           videos: int | None = None, baselines: tuple[str, ...] = ("supervised",),
           plot_methods: tuple[str, ...] = ()) -> str:
    """Read `dvc exp show --json` in the project at `cwd` and the kept rows of `results` (relative to `cwd`),
    write the merged rows back there (atomically), print the table, one paired table per method of `baselines`
    (`<method>` or `<method>/<variant>`) and write the plot of the rows that ran on a demo of `videos` videos
    (default: params.yaml's `demo.n_videos`), of the `plot_methods` only when some are named; returns the
    tables. A baseline or plotted method with no run there is refused before anything is printed or plotted."""
    show = json.loads(subprocess.run([DVC, "exp", "show", "--json", "--all-commits"], check=True,
                                     capture_output=True, text=True, cwd=cwd).stdout)
    path = Path(cwd) / results
    rows = kept(experiments(show), json.loads(path.read_text()) if path.exists() else [])
    if not rows:
        message = (f"no sweep experiments found here nor in {path}: run `python -m bench.sweep queue` and "
                   "`dvc queue start` first")
        print(message)
        return message
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(rows, indent=1) + "\n")
    partial.replace(path)
    videos = demo_videos(cwd) if videos is None else videos
    rows = [row for row in rows if row.get("videos") == videos]
    if not rows:
        message = f"no sweep experiments on a demo of {videos} videos in {path}: `--videos N` shows another size"
        print(message)
        return message
    results = curve(rows)
    check_methods(plot_methods, results, "--plot-methods", trivial=True)
    text = tables(rows, baselines, results)
    print(f"sweep experiments on the demo of {videos} videos")
    print(text)
    plot(results, out, plot_methods)
    print(f"\nplot: {out}")
    return text


def kept_labels(partition: pa.Table, labels: pa.Table, fraction: float, seed: int, side: str = "train"
                ) -> dict[str, dict]:
    """What one seed keeps at one label fraction (`affect.partition.keep_labels` on `partition`, PARTITION rows at
    label fraction 1.0; `labels`: LABELS rows). Per task: {"tracks", "frames"} of the training rows that keep
    their labels (`side` "val": the validation rows, the same for every seed), and their labels: VA "valence"
    and "arousal" (mean, standard deviation), expression "classes" (frames per class 0-6), AU "positive" (share
    of positive frames per AU)."""
    from affect.partition import keep_labels
    from affect.schema import AUS, TASKS

    kept = keep_labels(partition, fraction, seed)
    rows_of = labels.select(["track", "frame"]).append_column("row", pa.array(np.arange(labels.num_rows)))
    out = {}
    for task in TASKS:
        train = kept.filter(pc.and_(pc.equal(kept.column("task"), task), pc.equal(kept.column("side"), side)))
        rows = labels.take(train.join(rows_of, ["track", "frame"]).column("row"))  # a join cannot carry `au`
        entry = {"tracks": len(set(train.column("track").to_pylist())), "frames": train.num_rows}
        if task == "va":
            for name in ("valence", "arousal"):
                values = rows.column(name).to_numpy()
                entry[name] = (float(values.mean()), float(values.std()))
        elif task == "expr":
            entry["classes"] = np.bincount(rows.column("expr").to_numpy(), minlength=7).tolist()
        else:
            au = np.asarray(rows.column("au").to_pylist(), dtype=float).reshape(-1, len(AUS))
            entry["positive"] = au.mean(axis=0).tolist()
        out[task] = entry
    return out


def labels_table(partition: pa.Table, labels: pa.Table, fraction: float, seeds: list[int]) -> str:
    """A markdown table of `kept_labels` per seed, and a last row of the validation side's labels."""
    lines = [f"| seed (label fraction {fraction:g}) | VA tracks / frames | valence | arousal | expression tracks / "
             "frames | frames per class (0-6) | AU tracks / frames | positive share, mean over AUs |",
             "|---:|---|---|---|---|---|---|---|"]
    rows = [(seed, kept_labels(partition, labels, fraction, seed)) for seed in seeds]
    rows.append(("validation", kept_labels(partition, labels, fraction, 0, side="val")))
    for name, kept in rows:
        va, expr, au = kept["va"], kept["expr"], kept["au"]
        lines.append(f"| {name} | {va['tracks']} / {va['frames']} | "
                     f"{va['valence'][0]:+.2f} ± {va['valence'][1]:.2f} | "
                     f"{va['arousal'][0]:+.2f} ± {va['arousal'][1]:.2f} | {expr['tracks']} / {expr['frames']} | "
                     f"{' '.join(map(str, expr['classes']))} | {au['tracks']} / {au['frames']} | "
                     f"{np.mean(au['positive']):.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sweep", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    q = sub.add_parser("queue", help="queue the sweep's experiments")
    q.add_argument("--methods", nargs="+", default=list(METHODS))
    q.add_argument("--fractions", nargs="+", type=float, default=list(FRACTIONS))
    q.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    q.add_argument("-S", dest="extra", action="append", default=[], help="another key=value for every run")
    q.add_argument("--variant", default="", help="name of these settings (experiments sweep-...-<variant>)")
    q.add_argument("--train-seed", type=int, default=None,
                   help="train.seed of every run (default: each run's seed, which is also its label seed)")
    r = sub.add_parser("report", help="table and plot of the finished experiments")
    r.add_argument("--plot", default="data/readme/sweep.png")
    r.add_argument("--results", default=str(RESULTS), help="the kept criteria, read and written back")
    r.add_argument("--videos", type=int, default=None, help="the demo size shown (default: params.yaml's)")
    r.add_argument("--baseline", nargs="+", default=["supervised"],
                   help="the methods each run is paired with, one paired table each (e.g. mean_teacher/b32_w0)")
    r.add_argument("--plot-methods", nargs="+", default=[],
                   help="the methods the plot shows (e.g. trivial supervised mean_teacher/b32; default: every one)")
    k = sub.add_parser("labels", help="the training labels each seed keeps at a label fraction")
    k.add_argument("--fraction", type=float, default=0.1)
    k.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    k.add_argument("--partition", default="data/processed/partition.parquet", help="made at label fraction 1.0")
    k.add_argument("--labels", default="data/processed/labels.parquet")
    args = parser.parse_args(argv or [])  # `python -m bench` calls main() without arguments: the report
    if args.command == "labels":
        import pyarrow.parquet as pq

        print(labels_table(pq.read_table(args.partition), pq.read_table(args.labels), args.fraction, args.seeds))
    elif args.command == "queue":
        for name in queue(args.methods, args.fractions, args.seeds, tuple(args.extra), variant=args.variant,
                          train_seed=args.train_seed):
            print(name)
    else:
        try:
            report(getattr(args, "plot", "data/readme/sweep.png"), results=getattr(args, "results", RESULTS),
                   videos=getattr(args, "videos", None), baselines=tuple(getattr(args, "baseline", ["supervised"])),
                   plot_methods=tuple(getattr(args, "plot_methods", [])))
        except UnknownMethod as error:  # one line, no traceback
            raise SystemExit(str(error)) from None


if __name__ == "__main__":
    main(sys.argv[1:])
