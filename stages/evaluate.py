"""DVC stage `evaluate`: teacher and student on the validation side -> data/evaluate/ (metrics, plots, predictions)."""

import json

from affect.evaluate import evaluate
from affect.schema import Layout
from stages import load_params


def main() -> None:
    params, layout = load_params(), Layout()
    p = params["evaluate"]
    metrics = evaluate({name: layout.model(name) for name in ("teacher", "student")}, layout, params, layout.evaluate,
                       batch_size=p["batch_size"], timeline_tracks=p["timeline_tracks"], predict_with=p["predict_with"],
                       threads=p["threads"])
    print(json.dumps({model: {task: round(r["criterion"], 4) for task, r in tasks.items()}
                      for model, tasks in metrics.items()}))


if __name__ == "__main__":
    main()
