"""bench.sweep's reading of `dvc exp show --json`: only finished experiments count."""

from bench import sweep


def _experiment(name: str, state: str, expr: float) -> dict:
    metrics = {model: {task: {"criterion": expr} for task in sweep.TASKS} for model in sweep.MODELS}
    return {"executor": {"state": state}, "name": name,
            "revs": [{"name": name, "data": {"metrics": {sweep.METRICS: {"data": metrics}}}}]}


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
