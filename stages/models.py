"""DVC stage `models`: materialise the configured face models into data/models/, verified by sha256."""

from pathlib import Path

from affect.models import materialise
from stages import load_params

params = load_params()["models"]
mirror = params["mirror"] if params["mirror"] and Path(params["mirror"]).is_dir() else None
for path in materialise(params["names"], "data/models", mirror=mirror):
    print(path)
