"""DVC stage `labels`: `python -m stages.labels` -> data/processed/labels.parquet (one row per track frame)."""

import logging

import pyarrow.parquet as pq

from affect.index import find_annotations
from affect.labels import build_labels
from affect.schema import Layout
from affect.shards import write_parquet
from stages import load_params


def main() -> None:
    layout = Layout()
    tracks = pq.read_table(layout.tracks)
    labels = build_labels(tracks, find_annotations(load_params()["dataset"]["root"]))
    write_parquet(labels, layout.labels)
    logging.getLogger("stages.labels").info("%d tracks, %d frames", tracks.num_rows, labels.num_rows)


if __name__ == "__main__":
    main()
