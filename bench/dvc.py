"""How long a no-op `dvc repro` and `dvc status` take, as the number of stored frames grows.

Two layouts of the same 112x112 JPEG crops, each the output of one DVC stage in one temporary
repository: Arrow shards (this project: a few thousand frames per file) and TSAV's layout (one JPEG per
crop and one per mask, in per-track folders). The figures are the median of 3 runs after a first repro.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.pipeline import commit, dvc, run

STAGE_SCRIPT = '''
import sys, numpy as np, cv2, pyarrow as pa
from pathlib import Path
from affect.shards import write_shards
layout, n_frames = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
base = cv2.resize(rng.integers(0, 255, (14, 14, 3), dtype=np.uint8), (112, 112))
crop = cv2.imencode(".jpg", base)[1].tobytes()
mask = cv2.imencode(".jpg", base[..., 0])[1].tobytes()
frames_per_track = 5000
if layout == "shards":
    table = pa.table({"track": [f"t{i // frames_per_track}" for i in range(n_frames)],
                      "frame": pa.array(np.arange(n_frames) % frames_per_track, pa.int32()),
                      "crop": [crop] * n_frames, "mask": [mask] * n_frames})
    write_shards(table, "out/shards", 4096)
else:
    for i in range(n_frames):
        folder = Path("out/files") / f"t{i // frames_per_track}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i % frames_per_track:05d}.jpg").write_bytes(crop)
        (folder / f"{i % frames_per_track:05d}_mask.jpg").write_bytes(mask)
'''


def timed(project: Path, *args: str) -> float:
    """Median seconds of 3 runs of a dvc command."""
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        dvc(project, *args)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def measure(folder: Path, layout: str, n_frames: int) -> dict:
    project = folder / f"{layout}-{n_frames}"
    project.mkdir(parents=True)
    run(project, "git", "init", "-q")
    dvc(project, "init", "-q")
    (project / "make.py").write_text(STAGE_SCRIPT)
    (project / "dvc.yaml").write_text(
        f"stages:\n  store:\n    cmd: {sys.executable} make.py {layout} {n_frames}\n"
        f"    deps: [make.py]\n    outs: [out/{layout}]\n")
    start = time.perf_counter()
    dvc(project, "repro")
    first = time.perf_counter() - start
    commit(project, "stored")
    files = sum(1 for p in (project / "out").rglob("*") if p.is_file())
    return {"layout": layout, "frames": n_frames, "files": files, "first repro s": first,
            "no-op repro s": timed(project, "repro"), "status s": timed(project, "status")}


def main(sizes: tuple[int, ...] = (10_000, 100_000)) -> None:
    print("| layout | frames | files | first repro s | no-op repro s | status s |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n_frames in sizes:
            for layout in ("shards", "files"):
                row = measure(Path(tmp), layout, n_frames)
                print(f"| {row['layout']} | {row['frames']} | {row['files']} | {row['first repro s']:.1f} "
                      f"| {row['no-op repro s']:.2f} | {row['status s']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
