"""Frames/s of one part's preprocessing (split, align, landmarks, masks, mel) through the local process pool
and through a Ray cluster with 1 and 2 worker nodes, on the same frames in one run; the per-frame overhead
Ray adds; and, from the measured per-frame costs, the projected wall time of Aff-Wild2 and of a 100k-video
unlabelled corpus on 1, 8 and 64 nodes of 16 cores, with and without a GPU per node.

Part: the four GRID clips (360x288, 75 frames each) twice under other names, 8 videos, 600 frames;
params.yaml's defaults (SCRFD-2.5G at 640, PFLD-106, regions masks). Variants, each on a fresh layout of the
same index: `local 1` (jobs 1, this process), `local 2` (jobs 2, a pool of two), `ray 1` and `ray 2` (a Ray
cluster on 127.0.0.1: a head that runs no units and 1 or 2 worker nodes of one CPU each; a warm-up run of the
part first, untimed, so the workers have started and imported their models, as on a long-running cluster).
Wall seconds, the least of RUNS runs after an untimed warm-up run of the local pool (imports, page cache);
every variant's outputs are checked byte-identical to `local 1`'s. The local pool starts its processes per
step (a fresh interpreter each, importing torch and ONNX Runtime), as every DVC stage does; Ray's workers
live as long as the cluster.

Ray's own cost per unit of work is measured apart (no-op units on one worker against the same loop in this
process) and turned into a per-frame figure with the units' sizes (a video for split, align and mel; 512 rows
for landmarks and masks). Per-frame CPU costs for the projection: the CPU seconds (this process and its ffmpeg
children) of each step in `local 1`.

Run: `OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python -m bench.ray` (a few minutes on 2 cores).
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path

from bench.faces import GRID, MEDIA, cpu_seconds
from affect.index import index_videos, write_index
from affect.models import materialise
from affect.parallel import connect, run_units
from affect.pipeline import STEPS
from affect.schema import TASKS, Layout
from stages import load_params

ROOT = Path(__file__).resolve().parents[1]
NODE = {"num_cpus": 1, "object_store_memory": 100 * 1024**2}
RUNS = 1  # timed runs of each variant (more: the least wall time counts)

# Projection assumptions (stated in BENCHMARKS.md with the table).
CORES = 16                        # cores per node
AFFWILD2 = (548, 2_786_201, 30_000)      # videos, frames, frames of the longest video (assumed)
CORPUS = (100_000, 280_000_000, 30_000)  # 100k videos of 2,800 frames on average (~2 min at 25 fps), assumed
ONNX_SHARE = {"align_part": 0.81, "landmarks_part": 0.91}  # of the step's CPU time: bench.faces (bare / stage)
GPU_FRAMES_S = 770.0              # ASSUMED, not measured: SCRFD-2.5G at 640 + PFLD on one GPU, frame by frame
RESOLUTION = 2.0                  # Aff-Wild2-like frames (up to 1280x720) cost ~2x GRID's per frame: assumed


def digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes().replace(str(root).encode(), b"")).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "index" not in p.parts}


def run_part(layout: Layout, params: dict) -> tuple[float, dict[str, float]]:
    """Wall seconds of the whole part, and CPU seconds of each step (meaningful in this process only)."""
    costs, start = {}, time.perf_counter()
    for step in STEPS:
        cpu = cpu_seconds()
        step(0, params, layout)
        costs[step.__name__] = cpu_seconds() - cpu
    return time.perf_counter() - start, costs


def unit_overhead(executor: dict, units: int = 200) -> float:
    """Seconds a unit of work costs on Ray beyond the local loop: `len` of a 64 kB payload, one worker."""
    payload = [bytes(65536)] * units
    start = time.perf_counter()
    list(run_units(len, payload, 1, "local units"))
    local = time.perf_counter() - start
    start = time.perf_counter()
    list(run_units(len, payload, 1, "ray units", executor=executor))
    return (time.perf_counter() - start - local) / units


def projection(cpu_per_frame: dict[str, float], ray_per_frame: float) -> list[str]:
    """Markdown rows: corpus, nodes, CPU-only hours, with-GPU hours."""
    total = sum(cpu_per_frame.values()) * RESOLUTION + ray_per_frame
    onnx = sum(cpu_per_frame[s] * share for s, share in ONNX_SHARE.items()) * RESOLUTION
    per_video = (cpu_per_frame["split_part"] + cpu_per_frame["align_part"] + cpu_per_frame["mel_part"]) * RESOLUTION
    per_video_gpu = per_video - cpu_per_frame["align_part"] * ONNX_SHARE["align_part"] * RESOLUTION
    rows = []
    for name, (videos, frames, longest) in {"Aff-Wild2": AFFWILD2, "100k-video corpus": CORPUS}.items():
        for nodes in (1, 8, 64):
            cores = nodes * CORES
            cpu_only = max(frames * total / cores, longest * per_video)
            gpu_node = max(frames / nodes * (total - onnx) / CORES, frames / nodes / GPU_FRAMES_S)
            with_gpu = max(gpu_node, longest * max(per_video_gpu, 1 / GPU_FRAMES_S))
            rows.append(f"| {name} | {videos:,} | {frames / 1e6:.1f}M | {nodes} | {cores} "
                        f"| {cpu_only / 3600:.1f} | {with_gpu / 3600:.1f} |")
    return rows


def main() -> None:
    import ray
    from ray.cluster_utils import Cluster

    params = load_params()
    for group in ("split", "landmarks", "mask", "mel"):
        params[group] = params[group] | {"jobs": 1}
    params["align"] = params["align"] | {"jobs": 1}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = tmp / "models"
        materialise(params["models"]["names"], models, mirror=ROOT / params["models"]["mirror"], download=False)
        videos = {f"{g}_{copy}": MEDIA / f"{g}.mpg" for copy in "ab" for g in GRID}
        index = index_videos(videos, {v: [(v, "main")] for v in videos}, {t: {} for t in TASKS}, n_parts=1, jobs=1)
        frames = sum(e["n_frames"] for e in index.parts[0]["videos"])

        def layout(name: str) -> Layout:
            out = Layout(tmp / name, models)
            write_index(index, out.index)
            return out

        two = params | {g: params[g] | {"jobs": 2} for g in ("split", "align", "landmarks", "mask", "mel")}
        run_part(layout("warm"), params)  # untimed: imports, page cache
        walls, costs = {}, {}
        for name, used in (("local 1", params), ("local 2", two)):
            runs = [run_part(layout(f"{name} {i}"), used) for i in range(RUNS)]
            walls[name], costs[name] = min(runs, key=lambda run: run[0])
        reference = digests(tmp / "local 1 0")
        assert digests(tmp / "local 2 0") == reference
        for nodes in (1, 2):
            cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                                    "object_store_memory": 100 * 1024**2})
            try:
                for _ in range(nodes):
                    cluster.add_node(**NODE)
                cluster.wait_for_nodes()
                connect(cluster.address)
                on_ray = params | {"executor": {"backend": "ray", "address": cluster.address}}
                run_part(layout(f"warm {nodes}"), on_ray)
                if nodes == 1:
                    unit_s = unit_overhead(on_ray["executor"])
                walls[f"ray {nodes}"] = min(run_part(layout(f"ray {nodes} {i}"), on_ray)[0] for i in range(RUNS))
                assert digests(tmp / f"ray {nodes} 0") == reference, f"ray {nodes}: outputs differ"
            finally:
                ray.shutdown()
                cluster.shutdown()

    base = walls["local 1"]
    print(f"{len(videos)} videos, {frames} frames; outputs byte-identical in every variant\n")
    print("| executor | worker processes | wall s | frames/s | speed-up vs local 1 |")
    print("|---|---:|---:|---:|---:|")
    for name, wall in walls.items():
        print(f"| {name} | {name.split()[1]} | {wall:.1f} | {frames / wall:.1f} | {base / wall:.2f}x |")
    overhead = (walls["ray 1"] - base) / frames
    print(f"\nRay overhead, whole part (ray 1 - local 1, one worker process each): {overhead * 1e3:+.2f} ms/frame")
    mean_video = AFFWILD2[1] / AFFWILD2[0]
    per_frame = unit_s * (3 / mean_video + 2 / 512)  # split, align, mel: a unit a video; landmarks, masks: 512 rows
    print(f"Ray overhead per unit of work (no-op units, 64 kB each, one worker): {unit_s * 1e3:.2f} ms; per frame "
          f"at Aff-Wild2's mean video ({mean_video:.0f} frames) and 512-row chunks: {per_frame * 1e3:.4f} ms")
    cpu_per_frame = {name: seconds / frames for name, seconds in costs["local 1"].items()}
    print("\nCPU ms/frame per step (local 1): " + ", ".join(f"{k} {v * 1e3:.2f}" for k, v in cpu_per_frame.items()))
    print("\n| corpus | videos | frames | nodes | cores | CPU only, hours | with a GPU per node, hours |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(projection(cpu_per_frame, per_frame)))


if __name__ == "__main__":
    main()
