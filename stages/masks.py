"""DVC stage `masks`, per part: `python -m stages.masks <part>` (affect.mask.masks_part)
-> data/interim/masks/part-<p>/, data/qa/masks/part-<p>.png."""

from affect.mask import masks_part
from affect.schema import Layout
from stages import load_params, part_argument


def main() -> None:
    params = load_params()
    masks_part(part_argument(params), params, Layout())


if __name__ == "__main__":  # worker processes (spawned) import this module without running it
    main()
