"""DVC stage `align`, per part: `python -m stages.align <part>` -> data/interim/faces/part-<p>/ + QA picture."""

import sys

from affect.align import align_part
from affect.models import model_file
from affect.qa import gallery
from affect.shards import read_shards
from stages import load_params

part = int(sys.argv[1])
params = load_params()
p = params["align"]
out = f"data/interim/faces/part-{part}"
align_part(f"data/interim/index/parts/part-{part}.json", f"data/interim/split/part-{part}/frames.arrow",
           model_file(p["detector"], "det"), out, root=params["dataset"]["root"], det_size=p["det_size"],
           threshold=p["det_threshold"], template=p["template"], crop_size=p["crop_size"],
           jpeg_quality=p["jpeg_quality"], reacquire_s=p["reacquire_s"], shard_rows=p["shard_rows"],
           on_error=p["on_error"], jobs=p["jobs"])
gallery(read_shards(out), path=f"data/qa/faces/part-{part}.png")
