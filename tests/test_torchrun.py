"""`torchrun` across machines: two torchrun processes that act as two nodes of one process each on 127.0.0.1
(`--nnodes 2`, node ranks 0 and 1, gloo), as the README's two-node recipe runs them on two hosts, train the
digits model of tests/test_train.py with DDP; they must end with the weights of the one-node, two-process run,
and only node 0, which holds global rank 0, writes checkpoints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from tests import test_train
from tests.sshd import free_port

ROOT = Path(__file__).resolve().parents[1]
ENV = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}


def torchrun(*args: str, out: Path) -> subprocess.Popen:
    out.mkdir(parents=True)
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *args, test_train.__file__, str(out)],
                            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_nodes_train_as_one_node_of_two_processes(tmp_path):
    port = str(free_port())
    nodes = [torchrun("--nnodes", "2", "--node_rank", str(n), "--nproc_per_node", "1", "--master_addr", "127.0.0.1",
                      "--master_port", port, out=tmp_path / f"node-{n}") for n in range(2)]
    one_node = torchrun("--standalone", "--nproc_per_node", "2", out=tmp_path / "one-node")
    for process in (*nodes, one_node):
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output

    first, second = tmp_path / "node-0", tmp_path / "node-1"
    assert (first / "rank-0.pt").is_file() and (first / "checkpoints" / "last.pt").is_file()
    assert (second / "rank-1.pt").is_file() and not (second / "checkpoints").exists()
    reference = torch.load(tmp_path / "one-node" / "rank-0.pt", weights_only=True)
    got = torch.load(first / "rank-0.pt", weights_only=True)
    for model in ("student", "teacher"):
        for key, value in reference[model].items():
            assert torch.equal(got[model][key], value), f"{model}.{key}"
