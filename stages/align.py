"""DVC stage `align`, per part: `python -m stages.align <part>` (affect.align.align_part)
-> data/interim/faces/part-<p>/, data/qa/faces/part-<p>.png."""

from affect.align import align_part
from affect.schema import Layout
from stages import load_params, part_argument


def main() -> None:
    params = load_params()
    align_part(part_argument(params), params, Layout())


if __name__ == "__main__":  # worker processes (spawned) import this module without running it
    main()
