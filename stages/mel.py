"""DVC stage `mel`, per part: `python -m stages.mel <part>` (affect.mel.mel_part)
-> data/interim/mel/part-<p>/mel.arrow."""

import logging

from affect.mel import mel_part
from affect.schema import Layout
from stages import load_params, part_argument


def main() -> None:
    params = load_params()
    part = part_argument(params)
    logging.getLogger("stages.mel").info("part %d: %s", part, mel_part(part, params, Layout()))


if __name__ == "__main__":  # worker processes (spawned) import this module without running it
    main()
