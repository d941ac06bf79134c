"""DVC stage `landmarks`, per part: `python -m stages.landmarks <part>` -> data/interim/landmarks/part-<p>/ + QA."""

import sys

from affect.landmarks import landmarks_part, model_folder
from affect.models import model_file
from affect.qa import gallery
from affect.shards import read_shards
from stages import load_params

part = int(sys.argv[1])
p = load_params()["landmarks"]
faces, out = f"data/interim/faces/part-{part}", f"data/interim/landmarks/part-{part}"
landmarks_part(faces, model_file(model_folder(p["model"]), "landmarks"), out, scheme=p["model"], jobs=p["jobs"])
gallery(read_shards(faces), read_shards(out), path=f"data/qa/landmarks/part-{part}.png")
