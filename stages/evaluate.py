"""DVC stage `evaluate`: teacher and student on the validation side -> data/evaluate/ (metrics, plots, predictions)."""

import json

from affect.data import loader_options
from affect.evaluate import evaluate
from stages import load_params

params = load_params()
p = params["evaluate"]
metrics = evaluate({"teacher": "data/train/teacher.pt", "student": "data/train/student.pt"}, "data/interim",
                   "data/processed/labels.parquet", "data/processed/partition.parquet", "data/evaluate",
                   loader_options(params), batch_size=p["batch_size"],
                   timeline_tracks=p["timeline_tracks"], predict_with=p["predict_with"])
print(json.dumps({model: {task: round(r["criterion"], 4) for task, r in tasks.items()}
                  for model, tasks in metrics.items()}))
