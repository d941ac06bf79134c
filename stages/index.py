"""DVC stage `index`: probe and index the dataset at `dataset.root` into data/interim/index/."""

from affect.index import build_index, write_index
from stages import load_params

OUT = "data/interim/index"


def main() -> None:
    params = load_params()
    parts = params["parts"]
    if parts != list(range(len(parts))):
        raise SystemExit(f"params.yaml: parts must list 0 .. n-1, got {parts}")
    index = build_index(params["dataset"]["root"], len(parts), jobs=params["index"]["jobs"])
    write_index(index, OUT)
    print(f"{OUT}: {index.videos.num_rows} videos, {index.tracks.num_rows} tracks, {len(parts)} parts")


if __name__ == "__main__":
    main()
