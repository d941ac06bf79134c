"""The default demo's rendering, before ffmpeg, as sha256 digests: a check that two machines render the same.

`python -m bench.demo_digests OUT.json [OTHER.json]` renders every video of params.yaml's demo (all cores) and
writes {video stem: {"frames": sha256 of its RGB frames, "voice": sha256 of its 16-bit voice or ""}}; with
OTHER.json (the same made on another machine) it prints the digests that differ. The demo's files
(data/demo.sha256) add ffmpeg's encoding to this; the digests tell a rendering difference from an encoder's.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import platform
import sys

import cv2
import numpy as np

from affect import synth
from stages import load_params

DEMO = {k: v for k, v in load_params()["demo"].items() if k != "jobs"}
_FACES: list[synth.Face] = []


def _init() -> None:
    global _FACES
    cv2.setNumThreads(1)
    _FACES = synth.source_faces(tuple(DEMO["size"]))


def digest(plan: synth.VideoPlan) -> tuple[str, dict[str, str]]:
    """(stem, {"frames": sha256, "voice": sha256 of the 16-bit PCM or ""}) of one planned video."""
    frames, sound, _, _ = synth.render_video(plan, _FACES, DEMO["seed"])
    h = hashlib.sha256()
    for frame in frames:
        h.update(frame.tobytes())
    voice = "" if sound is None else hashlib.sha256(synth.pcm16(sound)).hexdigest()
    return plan.stem, {"frames": h.hexdigest(), "voice": voice}


def main(argv: list[str]) -> None:
    plans = synth.plan_videos(DEMO["seed"], DEMO["n_videos"], tuple(DEMO["seconds"]), tuple(DEMO["size"]),
                              DEMO["two_person_fraction"], DEMO["no_audio_fraction"], DEMO["unannotated_fraction"],
                              DEMO["task_fraction"], DEMO["validation_fraction"], DEMO["avi_fraction"])
    with multiprocessing.get_context("spawn").Pool(os.cpu_count(), _init) as pool:
        digests = dict(pool.map(digest, plans))
    with open(argv[0], "w") as f:
        json.dump(digests, f, indent=1, sort_keys=True)
    print(f"{argv[0]}: {len(digests)} videos rendered on {platform.machine()}, numpy {np.__version__}")
    if len(argv) > 1:
        with open(argv[1]) as f:
            other = json.load(f)
        differ = [(stem, kind) for stem in sorted(set(other) | set(digests)) for kind in ("frames", "voice")
                  if other.get(stem, {}).get(kind) != digests.get(stem, {}).get(kind)]
        print(f"{len(differ)} of {2 * len(digests)} digests differ from {argv[1]}: {differ[:20]}")


if __name__ == "__main__":
    main(sys.argv[1:])
