"""`torchrun` across machines: two torchrun processes that act as two nodes of one process each on 127.0.0.1
(`--nnodes 2`, c10d rendezvous, gloo), as the README's two-node recipe runs them on two hosts, train the
digits model of tests/test_train.py with DDP; they must end with the weights of the one-node, two-process run,
and only the node that holds global rank 0 writes checkpoints."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from tests import test_train

ROOT = Path(__file__).resolve().parents[1]
ENV = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, out: Path) -> subprocess.Popen:
    out.mkdir(parents=True)
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *args, test_train.__file__, str(out)],
                            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_nodes_train_as_one_node_of_two_processes(tmp_path):
    endpoint = f"127.0.0.1:{free_port()}"
    nodes = [torchrun("--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend", "c10d", "--rdzv_endpoint",
                      endpoint, "--rdzv_id", "affect-test", "--local_addr", "127.0.0.1", out=tmp_path / f"node-{n}")
             for n in range(2)]
    one_node = torchrun("--standalone", "--nproc_per_node", "2", out=tmp_path / "one-node")
    for process in (*nodes, one_node):
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output

    [first] = [n for n in range(2) if (tmp_path / f"node-{n}" / "rank-0.pt").is_file()]
    second = tmp_path / f"node-{1 - first}"
    assert (tmp_path / f"node-{first}" / "checkpoints" / "last.pt").is_file()
    assert not (second / "checkpoints").exists() and (second / "rank-1.pt").is_file()
    reference = torch.load(tmp_path / "one-node" / "rank-0.pt", weights_only=True)
    got = torch.load(tmp_path / f"node-{first}" / "rank-0.pt", weights_only=True)
    for model in ("student", "teacher"):
        for key, value in reference[model].items():
            assert torch.equal(got[model][key], value), f"{model}.{key}"
