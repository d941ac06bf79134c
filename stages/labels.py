"""DVC stage `labels`: `python -m stages.labels` -> data/processed/labels.parquet (one row per track frame)."""

import logging

import pyarrow.parquet as pq

from affect.index import find_annotations
from affect.labels import build_labels
from affect.shards import write_parquet
from stages import load_params

params = load_params()
tracks = pq.read_table("data/interim/index/tracks.parquet")
labels = build_labels(tracks, find_annotations(params["dataset"]["root"]))
write_parquet(labels, "data/processed/labels.parquet")
logging.getLogger("stages.labels").info("%d tracks, %d frames", tracks.num_rows, labels.num_rows)
