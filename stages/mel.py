"""DVC stage `mel`, per part: `python -m stages.mel <part>` -> data/interim/mel/part-<p>/mel.arrow."""

import logging
import sys

from affect.mel import mel_part
from stages import load_params

part = int(sys.argv[1])
params = load_params()
counts = mel_part(f"data/interim/split/part-{part}", f"data/interim/mel/part-{part}/mel.arrow", params["audio"])
logging.getLogger("stages.mel").info("part %d: %s", part, counts)
