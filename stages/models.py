"""DVC stage `models`: materialise the configured face models into data/models/, verified by sha256."""

from pathlib import Path

from affect.models import materialise
from affect.schema import Layout
from stages import load_params


def main() -> None:
    params = load_params()["models"]
    mirror = params["mirror"] if params["mirror"] and Path(params["mirror"]).is_dir() else None
    for path in materialise(params["names"], Layout().models, mirror=mirror):
        print(path)


if __name__ == "__main__":
    main()
