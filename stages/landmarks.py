"""DVC stage `landmarks`, per part: `python -m stages.landmarks <part>` (affect.landmarks.landmarks_part)
-> data/interim/landmarks/part-<p>/, data/qa/landmarks/part-<p>.png."""

from affect.landmarks import landmarks_part
from affect.schema import Layout
from stages import load_params, part_argument


def main() -> None:
    params = load_params()
    landmarks_part(part_argument(params), params, Layout())


if __name__ == "__main__":  # worker processes (spawned) import this module without running it
    main()
