"""DVC stage `split`, per part: `python -m stages.split <part>` (affect.split.split_part)
-> data/interim/split/part-<p>/ (frames.arrow, audio.arrow, audio/, skipped.json)."""

import logging

from affect.split import split_part
from affect.schema import Layout
from stages import load_params, part_argument


def main() -> None:
    params = load_params()
    part = part_argument(params)
    logging.getLogger("stages.split").info("part %d: %s", part, split_part(part, params, Layout()))


if __name__ == "__main__":  # worker processes (spawned) import this module without running it
    main()
