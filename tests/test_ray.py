"""Ray as the executor of the per-part steps: a real Ray cluster on 127.0.0.1 (a head without CPUs and two
worker nodes of one CPU each), real videos, the real split / align / landmarks / masks / mel steps. The
outputs are the local pool's byte for byte, also when a worker node dies mid-run; a unit's own error reaches
the driver as the local pool raises it."""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed: pip install -e .[cluster] (the README's set-up does)")
from ray.cluster_utils import Cluster  # noqa: E402

from affect.index import build_index, write_index  # noqa: E402
from affect.parallel import connect  # noqa: E402
from affect.pipeline import preprocess  # noqa: E402
from affect.schema import Layout  # noqa: E402
from affect.shards import sha256_of  # noqa: E402
from affect.split import SplitError, split_part  # noqa: E402
from tests.pipeline import FAST, params  # noqa: E402

NODE = {"num_cpus": 1, "object_store_memory": 80 * 1024**2}


def digests(layout: Layout) -> dict[str, str]:
    """sha256 of every file the per-part steps wrote (the index excluded), by path under the layout's root;
    the root's own path, which reports name, reads "<root>"."""
    root = Path(layout.root)
    return {p.relative_to(root).as_posix():
            hashlib.sha256(p.read_bytes().replace(str(root).encode(), b"<root>")).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_relative_to(layout.index)}


@pytest.fixture(scope="module")
def tree(tmp_path_factory, media, models_dir) -> dict:
    """Four real videos (one two-person) and a file that does not decode, indexed as one part, and what the
    local pool makes of them (on_error skip)."""
    base = tmp_path_factory.mktemp("ray")
    videos = base / "raw" / "videos"
    videos.mkdir(parents=True)
    for name in ("grid_bbaf2n.mpg", "grid_lwbsza_h264.mp4", "two_person_grid_bbaf2n_swiz3n_sbs.mp4",
                 "grid_swiz3n.mpg"):
        shutil.copyfile(media / name, videos / name)
    index = build_index(base / "raw", n_parts=1, jobs=1)
    broken = base / "broken.mp4"  # listed in the part with its true fingerprint, as a file damaged after indexing
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(5000))
    index.parts[0]["videos"].append({"video": "broken", "path": str(broken), "fingerprint": sha256_of(broken),
                                     "n_frames": 75, "has_audio": True,
                                     "tracks": [{"track": "broken", "person": "main"}]})
    used = params(FAST, {"dataset": {"root": str(base / "raw")}, "split": {"on_error": "skip"},
                         "align": {"on_error": "skip"}})
    local = Layout(base / "local", models_dir)
    write_index(index, local.index)
    preprocess(0, used, local)
    return {"base": base, "index": index, "params": used, "models": models_dir, "local": digests(local)}


@pytest.fixture(scope="module")
def cluster():
    """A head node that runs no units and two worker nodes of one CPU each, on 127.0.0.1; shut down after."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": 80 * 1024**2,
                                                            "include_dashboard": False})
    workers = [cluster.add_node(**NODE) for _ in range(2)]
    cluster.wait_for_nodes()
    connect(cluster.address)
    yield cluster, workers
    ray.shutdown()
    cluster.shutdown()


def on_ray(tree: dict, cluster) -> dict:
    return tree["params"] | {"executor": {"backend": "ray", "address": cluster.address}}


def layout_for(tree: dict, name: str) -> Layout:
    layout = Layout(tree["base"] / name, tree["models"])
    write_index(tree["index"], layout.index)
    return layout


def test_the_cluster_writes_the_local_pools_bytes(tree, cluster):
    layout = layout_for(tree, "ray")
    preprocess(0, on_ray(tree, cluster[0]), layout)
    made = digests(layout)
    assert any(name.startswith("interim/faces/") for name in made) and "interim/mel/part-0/mel.arrow" in made
    assert made == tree["local"]
    assert "broken.mp4" in (layout.split(0) / "skipped.json").read_text()


def test_a_failing_video_fails_as_it_does_locally(tree, cluster):
    layout = layout_for(tree, "fail")
    failing = on_ray(tree, cluster[0]) | {"split": {"on_error": "fail", "jobs": 1}}
    with pytest.raises(SplitError, match=r"broken\.mp4: cannot split video broken: .*set split.on_error: skip"):
        split_part(0, failing, layout)
    assert not (layout.split(0) / "frames.arrow").exists()


def test_a_worker_node_lost_mid_run_changes_nothing(tree, cluster):
    """One of the two worker nodes is removed while both run align units; Ray reruns its units on the other."""
    head, workers = cluster
    layout = layout_for(tree, "killed")
    seen: dict = {}

    def kill() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if layout.frames(0).exists() and ray.available_resources().get("CPU", 0) == 0:
                seen["align_done"] = (layout.faces(0) / "report.json").exists()
                head.remove_node(workers[1])
                seen["removed"] = True
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill)
    killer.start()
    preprocess(0, on_ray(tree, head), layout)
    killer.join()
    assert seen == {"align_done": False, "removed": True}, "the node was not removed while align ran"
    assert digests(layout) == tree["local"]
