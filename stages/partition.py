"""DVC stage `partition`: `python -m stages.partition` -> data/processed/partition.{parquet,json}."""

import logging

import pyarrow.parquet as pq

from affect.partition import corpus_counts, keep_labels, partition, partition_counts, write_counts
from affect.schema import Layout
from affect.shards import write_parquet
from stages import load_params


def main() -> None:
    params, layout = load_params()["partition"], Layout()
    labels = pq.read_table(layout.labels)
    tracks = pq.read_table(layout.tracks, columns=["track", "video"])
    videos = dict(zip(tracks.column("track").to_pylist(), tracks.column("video").to_pylist()))
    table = partition(labels, params["mode"], params["ratio"], params["seed"], videos=videos)
    table = keep_labels(table, params["label_fraction"], params["label_seed"], videos=videos)
    write_parquet(table, layout.partition)
    counts = partition_counts(table)
    if corpora := corpus_counts(table):  # only with unlabelled corpora: the metrics file keeps its keys without
        counts["corpora"] = corpora
    write_counts(counts, layout.partition_counts)
    log = logging.getLogger("stages.partition")
    for task, sides in partition_counts(table).items():
        log.info("%s (%s): %s", task, params["mode"], ", ".join(f"{side} {n}" for side, n in sides.items()))


if __name__ == "__main__":
    main()
