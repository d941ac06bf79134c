"""bench.sweep: its reading of `dvc exp show --json` (only finished experiments count) and its table of the labels
each seed keeps, and the settings a queued run gets."""

import numpy as np
import pyarrow as pa
import pytest

from affect.schema import AUS, LABELS, PARTITION, TASKS
from bench import sweep


def _metrics(criterion: float) -> dict:
    """Student and teacher metrics with `criterion` for every task."""
    return {model: {task: {"criterion": criterion} for task in sweep.TASKS} for model in sweep.MODELS}


def _experiment(name: str, state: str, expr: float) -> dict:
    return {"executor": {"state": state}, "name": name,
            "revs": [{"name": name, "data": {"metrics": {sweep.METRICS: {"data": _metrics(expr)}}}}]}


def test_running_and_queued_experiments_are_left_out():
    """A running experiment shows its baseline's metrics in `dvc exp show`; it must not enter the curve."""
    show = [{"rev": "workspace", "data": {}},
            {"rev": "abc", "data": {}, "experiments": [
                _experiment("sweep-supervised-f0.1-s0", "success", 0.2),
                _experiment("sweep-supervised-f0.1-s1", "running", 0.9),
                _experiment("sweep-supervised-f0.1-s2", "queued", 0.9),
                _experiment("sweep-supervised-f0.1-s3", "failed", 0.9)]}]
    results = sweep.curve(sweep.experiments(show))
    assert results[("supervised", 0.1, "teacher")]["expr"] == [0.2]


def test_variants_are_reported_beside_their_method():
    """`sweep-<method>-f<fraction>-s<seed>-<variant>` is the method `<method>/<variant>`; other names are ignored."""
    show = [{"rev": "abc", "data": {}, "experiments": [
        _experiment("sweep-mean_teacher-f0.1-s0", "success", 0.2),
        _experiment("sweep-mean_teacher-f0.1-s0-soft", "success", 0.4),
        _experiment("sweep-mean_teacher-f0.1-s1-soft", "success", 0.6),
        _experiment("sweep-mean_teacher-f0.1-s1-Soft!", "success", 0.9),
        _experiment("my-run", "success", 0.9)]}]
    results = sweep.curve(sweep.experiments(show))
    assert sorted({method for method, _, _ in results}) == ["mean_teacher", "mean_teacher/soft"]
    assert results[("mean_teacher/soft", 0.1, "teacher")]["expr"] == [0.4, 0.6]
    lines = sweep.table(results).splitlines()
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| mean_teacher"] * 2 + ["| mean_teacher/soft"] * 2
    assert sweep.experiment_name("mean_teacher", 0.1, 2, "soft") == "sweep-mean_teacher-f0.1-s2-soft"


def test_kept_rows_survive_and_a_rerun_replaces_its_row():
    """The kept file's rows are reported with this checkout's experiments; an experiment of the same name
    replaces its kept row (criteria only, with the commit and the demo size it ran on); other experiments
    are not kept."""
    stored = [{"name": "sweep-supervised-f0.1-s0", "commit": "old", "videos": 32, "metrics": _metrics(0.1)},
              {"name": "sweep-supervised-f0.1-s1", "commit": "old", "videos": 32, "metrics": _metrics(0.3)}]
    rerun = _experiment("sweep-supervised-f0.1-s1", "success", 0.5)
    rerun["revs"][0]["data"]["params"] = {"params.yaml": {"data": {"demo": {"n_videos": 32}}}}
    show = [{"rev": "new", "data": {}, "experiments": [rerun, _experiment("my-run", "success", 0.9)]}]
    rows = sweep.kept(sweep.experiments(show), stored)
    assert [(row["name"], row["commit"]) for row in rows] == [("sweep-supervised-f0.1-s0", "old"),
                                                              ("sweep-supervised-f0.1-s1", "new")]
    assert rows[1]["videos"] == 32  # the demo size it ran on, which the report selects by
    again = sweep.kept(sweep.experiments(show), [*rows, {**stored[0], "videos": 64}])
    assert [(row["name"], row["videos"]) for row in again] == [  # a name on another demo size is another row
        ("sweep-supervised-f0.1-s0", 32), ("sweep-supervised-f0.1-s0", 64), ("sweep-supervised-f0.1-s1", 32)]
    assert rows[1]["metrics"]["teacher"] == {task: {"criterion": 0.5} for task in sweep.TASKS}
    assert sweep.curve(rows)[("supervised", 0.1, "teacher")]["expr"] == [0.1, 0.5]


def test_trivial_predictors_are_a_row_of_their_own_once_per_seed():
    """Evaluate's trivial predictors depend on the labels kept (the seed), not on the method: one value per
    (fraction, seed), however many methods ran it, reported as the method "trivial"."""
    def with_trivial(name: str, trivial: float) -> dict:
        experiment = _experiment(name, "success", 0.3)
        experiment["revs"][0]["data"]["metrics"][sweep.METRICS]["data"]["trivial"] = {
            task: {"criterion": trivial} for task in sweep.TASKS}
        return experiment

    show = [{"rev": "abc", "data": {}, "experiments": [
        with_trivial("sweep-supervised-f0.1-s0", 0.1), with_trivial("sweep-mean_teacher-f0.1-s0", 0.1),
        with_trivial("sweep-supervised-f0.1-s1", 0.2)]}]
    rows = sweep.kept(sweep.experiments(show), [])
    results = sweep.curve(rows)
    assert results[("trivial", 0.1, "trivial")]["expr"] == [0.1, 0.2]
    assert results[("supervised", 0.1, "teacher")]["expr"] == [0.3, 0.3]
    assert sweep.table(results).splitlines()[-1].startswith("| trivial | 0.1 | trivial | 2 |")


def test_paired_differences_are_per_seed_against_supervised():
    """Each method's teacher minus supervised's teacher on the same seed and fraction, only on the seeds both
    have; the table gives the mean difference, its standard error and the seeds where the method is ahead."""
    show = [{"rev": "abc", "data": {}, "experiments": [
        _experiment("sweep-supervised-f0.1-s0", "success", 0.30),
        _experiment("sweep-supervised-f0.1-s1", "success", 0.50),
        _experiment("sweep-mean_teacher-f0.1-s0-soft", "success", 0.40),
        _experiment("sweep-mean_teacher-f0.1-s1-soft", "success", 0.45),
        _experiment("sweep-mean_teacher-f0.1-s2-soft", "success", 0.90),
        _experiment("sweep-mean_teacher-f1-s0-soft", "success", 0.90)]}]
    differences = sweep.paired(sweep.experiments(show))
    assert list(differences) == [("mean_teacher/soft", 0.1)]
    mean = differences[("mean_teacher/soft", 0.1)]["mean"]
    assert sorted(mean) == [0, 1]
    assert abs(mean[0] - 0.10) < 1e-9 and abs(mean[1] + 0.05) < 1e-9
    row = sweep.paired_table(differences).splitlines()[2]
    assert row.startswith("| mean_teacher/soft | 0.1 | 0,1 | +0.025 ± 0.075 (1/2) |"), row
    assert row.endswith("| +0.100, -0.050 |"), row


def test_kept_labels_are_the_training_labels_of_the_videos_that_keep_them():
    """`sweep.kept_labels` joins the rows `keep_labels` keeps to their labels: ten one-track videos of two frames,
    video i labelled valence i/10, arousal -i/10, expression i mod 7, every AU i mod 2, plus a validation video
    whose labels must not count."""
    videos = [f"v{i}" for i in range(10)] + ["val"]
    labels = pa.Table.from_pylist([
        {"track": v, "frame": f, "valence": i / 10, "arousal": -i / 10, "expr": i % 7, "au": [i % 2] * len(AUS),
         "va_set": "", "expr_set": "", "au_set": ""} for i, v in enumerate(videos) for f in (0, 1)], schema=LABELS)
    partition = pa.Table.from_pylist([
        {"track": v, "frame": f, "task": task, "side": "val" if v == "val" else "train"}
        for task in TASKS for v in videos for f in (0, 1)], schema=PARTITION)

    everything = sweep.kept_labels(partition, labels, 1.0, seed=0)
    assert {task: (everything[task]["tracks"], everything[task]["frames"]) for task in TASKS} == {
        task: (10, 20) for task in TASKS}
    assert np.allclose(everything["va"]["valence"], (0.45, np.std(np.arange(10) / 10)))
    assert np.allclose(everything["va"]["arousal"], (-0.45, np.std(np.arange(10) / 10)))
    assert everything["expr"]["classes"] == [4, 4, 4, 2, 2, 2, 2]
    assert np.allclose(everything["au"]["positive"], 0.5)

    fifth = sweep.kept_labels(partition, labels, 0.2, seed=0)
    assert {task: (fifth[task]["tracks"], fifth[task]["frames"]) for task in TASKS} == {task: (2, 4) for task in TASKS}
    assert sum(fifth["expr"]["classes"]) == 4
    table = sweep.labels_table(partition, labels, 0.2, [0, 1])
    assert table.count("| 2 / 4 |") == 6 and "label fraction 0.2" in table
    assert "| validation | 1 / 2 | +1.00 ± 0.00 | -1.00 ± 0.00 | 1 / 2 | 0 0 0 2 0 0 0 | 1 / 2 | 0.000 |" in table


def test_a_train_seed_apart_is_named_and_paired_with_supervised_on_the_same_two_seeds():
    """`--train-seed`: the run's settings change `train.seed` only, its name carries `-t<seed>`, and the paired
    table sets it against the supervised run of the same label seed and training seed."""
    default = sweep.settings("mean_teacher", 0.1, 4)
    apart = sweep.settings("mean_teacher", 0.1, 4, train_seed=0, extra=("train.batch_size=32",))
    assert "train.seed=4" in default and "partition.label_seed=4" in default
    assert "train.seed=0" in apart and "partition.label_seed=4" in apart and "train.seed=4" not in apart
    assert apart[-1] == "train.batch_size=32"
    name = sweep.experiment_name("mean_teacher", 0.1, 4, "b32", train_seed=0)
    assert name == "sweep-mean_teacher-f0.1-s4-t0-b32"
    show = [{"rev": "abc", "data": {}, "experiments": [
        _experiment("sweep-supervised-f0.1-s4", "success", 0.20),
        _experiment("sweep-supervised-f0.1-s4-t0", "success", 0.40),
        _experiment("sweep-mean_teacher-f0.1-s4-b32", "success", 0.30),
        _experiment(name, "success", 0.35)]}]
    differences = sweep.paired(sweep.experiments(show))
    assert sorted(differences) == [("mean_teacher/b32", 0.1), ("mean_teacher/b32 (train.seed 0)", 0.1)]
    assert abs(differences[("mean_teacher/b32", 0.1)]["mean"][4] - 0.10) < 1e-9
    assert abs(differences[("mean_teacher/b32 (train.seed 0)", 0.1)]["mean"][4] + 0.05) < 1e-9
    table = sweep.table(sweep.curve(sweep.experiments(show)))
    assert "| supervised (train.seed 0) | 0.1 | teacher | 1 |" in table
    with pytest.raises(ValueError, match="training seed"):
        sweep.queue(("supervised",), (0.1,), (4,), variant="t0")


def test_a_variant_can_be_the_baseline_of_a_paired_table():
    """`report --baseline supervised mean_teacher/b32_w0`: one paired table per baseline, each run minus the
    baseline's run on the same seed; a baseline without runs is refused with the methods there."""
    show = [{"rev": "abc", "data": {}, "experiments": [
        _experiment("sweep-supervised-f0.1-s0", "success", 0.30),
        _experiment("sweep-mean_teacher-f0.1-s0-b32_w0", "success", 0.40),
        _experiment("sweep-mean_teacher-f0.1-s0-b32_all", "success", 0.45),
        _experiment("sweep-mean_teacher-f0.1-s1-b32_all", "success", 0.90)]}]
    rows = sweep.experiments(show)
    text = sweep.tables(rows, ("supervised", "mean_teacher/b32_w0"))
    against_w0 = text.split("| method minus mean_teacher/b32_w0 |")[1].splitlines()
    assert [line.split(" | ")[0] for line in against_w0[2:]] == ["| supervised", "| mean_teacher/b32_all"]
    assert against_w0[3].startswith("| mean_teacher/b32_all | 0.1 | 0 | +0.050 ± 0.000 (1/1) |"), against_w0[3]
    assert against_w0[2].startswith("| supervised | 0.1 | 0 | -0.100 ± 0.000 (0/1) |"), against_w0[2]
    with pytest.raises(sweep.UnknownMethod,
                       match="--baseline mean_teacher/b32: .*mean_teacher/b32_all, mean_teacher/b32_w0"):
        sweep.tables(rows, ("mean_teacher/b32",))


@pytest.mark.parametrize("count", [3, 10, 11, 20, 21, 24])
def test_no_two_methods_of_the_plot_look_alike(count):
    methods = [f"mean_teacher/v{k}" for k in range(count)]
    looks = sweep.method_looks(methods)
    assert list(looks) == methods
    assert len(set(looks.values())) == count
    assert {marker for _, marker in looks.values()} == ({"o"} if count <= 20 else {"o", "s"})


def test_the_plot_shows_the_methods_named_and_refuses_one_without_runs(tmp_path):
    """`report --plot-methods trivial supervised`: the plot draws those two only (the tables keep every method),
    each method with the model it yields, the trivial predictors as their own line; a method with no run is
    refused with the methods there, trivial predictors included."""
    show = [{"rev": "abc", "data": {}, "experiments": [
        _experiment("sweep-supervised-f0.1-s0", "success", 0.30),
        _experiment("sweep-mean_teacher-f0.1-s0", "success", 0.40),
        _experiment("sweep-mean_teacher-f0.1-s0-b32_all", "success", 0.45)]}]
    for experiment in show[0]["experiments"]:
        experiment["revs"][0]["data"]["metrics"][sweep.METRICS]["data"][sweep.TRIVIAL] = _metrics(0.1)[sweep.MODELS[0]]
    results = sweep.curve(sweep.experiments(show))
    assert sweep.plot(results, tmp_path / "all.png") == [
        "supervised (student)", "mean_teacher (teacher)", "mean_teacher/b32_all (teacher)", "trivial predictors"]
    assert sweep.plot(results, tmp_path / "two.png", ("trivial", "supervised")) == [
        "supervised (student)", "trivial predictors"]
    assert (tmp_path / "two.png").stat().st_size > 0
    sweep.check_methods(("trivial", "mean_teacher/b32_all"), results, "--plot-methods", trivial=True)
    with pytest.raises(sweep.UnknownMethod, match="--plot-methods mean_teacher/b32: .*mean_teacher/b32_all, trivial"):
        sweep.check_methods(("mean_teacher/b32",), results, "--plot-methods", trivial=True)
    with pytest.raises(sweep.UnknownMethod, match="--baseline trivial: "):
        sweep.check_methods(("trivial",), results, "--baseline")
