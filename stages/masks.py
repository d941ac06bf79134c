"""DVC stage `masks`, per part: `python -m stages.masks <part>` -> data/interim/masks/part-<p>/ + QA picture."""

import sys

from affect.mask import masks_part
from affect.qa import gallery
from affect.shards import read_shards
from stages import load_params

part = int(sys.argv[1])
params = load_params()
faces = f"data/interim/faces/part-{part}"
landmarks, out = f"data/interim/landmarks/part-{part}", f"data/interim/masks/part-{part}"
masks_part(landmarks, out, style=params["mask"]["style"], scheme=params["landmarks"]["model"],
           size=params["align"]["crop_size"], jobs=params["mask"]["jobs"])
gallery(read_shards(faces), read_shards(landmarks), read_shards(out), path=f"data/qa/masks/part-{part}.png")
