"""DVC stage `models`: materialise the configured face models into data/models/, verified by sha256."""

from pathlib import Path

from affect.models import materialise
from affect.schema import Layout
from stages import load_params


def mirror_folder(mirror: str | None, cwd: Path) -> Path | None:
    """params' models.mirror as an existing folder, or None (then the models are downloaded). A relative path
    is taken from the project, and in a queued DVC experiment (which runs in a copy of the project under
    `.dvc/tmp/exps/`) from the project that queued it, where `../shared/models` is."""
    if not mirror:
        return None
    candidates = [cwd / mirror]
    parts = cwd.resolve().parts
    for i in range(len(parts) - 3):
        if parts[i:i + 3] == (".dvc", "tmp", "exps"):
            candidates.append(Path(*parts[:i]) / mirror)
    return next((c for c in candidates if c.is_dir()), None)


def main() -> None:
    params = load_params()["models"]
    for path in materialise(params["names"], Layout().models, mirror=mirror_folder(params["mirror"], Path.cwd())):
        print(path)


if __name__ == "__main__":
    main()
