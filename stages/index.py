"""DVC stage `index`: probe and index the dataset at `dataset.root` and the unlabelled corpora under
`dataset.unlabelled` into data/interim/index/."""

from affect.index import build_index, write_index
from affect.schema import Layout
from stages import load_params


def main() -> None:
    params = load_params()
    parts = params["parts"]
    if parts != list(range(len(parts))):
        raise SystemExit(f"params.yaml: parts must list 0 .. n-1, got {parts}")
    dataset = params["dataset"]
    index = build_index(dataset["root"], len(parts), jobs=params["index"]["jobs"],
                        unlabelled=dataset.get("unlabelled"))  # absent: no unlabelled corpora
    write_index(index, Layout().index)
    print(f"{Layout().index}: {index.videos.num_rows} videos, {index.tracks.num_rows} tracks, {len(parts)} parts")


if __name__ == "__main__":  # worker processes (spawned) import this module without running it
    main()
