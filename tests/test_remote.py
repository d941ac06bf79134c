"""Sharing like a lab does: the demo pipeline's cache, run-cache and experiments through a real SSH remote.

Each test starts a real OpenSSH server on 127.0.0.1 (tests/sshd.py: Debian's sshd, a throwaway host key and
user key, a free high port) and uses a folder on it as the project's DVC remote through dvc-ssh, the way a
lab's storage server is used: `ssh://user@host:port/path`, the key set with `dvc remote modify --local`
(each person's own, never committed). Every test works on its own copy of the session's `demo_pipeline`,
stops its server in teardown, and prints how long each step took and what it moved (shown by `pytest -s`).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from affect.shards import sha256_of
from tests.pipeline import DVC, ENV, commit, copy_project, dvc, ran, run
from tests.sshd import SSHServer, keygen

pytestmark = pytest.mark.slow

# DVC keeps a stage out of the run-cache when one of its `outs:` has `cache: false` (dvc/stage/__init__.py:
# `no_cache_outs`; metrics and plots are exempt). `train` (dvclive/plots) and `evaluate` (data/evaluate/plots)
# have one, so their results never enter the run-cache. Cached (the default) they would; declared as stage
# `plots:` they would too, but then `dvc plots show` also draws every raw file in those folders.
# A refused key must end `dvc push` with DVC's error within this many seconds (no password prompt, no hang).
REFUSED_WITHIN_S = 30


@pytest.fixture
def sshd(tmp_path):
    server = SSHServer(tmp_path / "sshd")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def steps(request):
    """Times each step of a test; prints them at its end, passed or failed (`pytest -s` shows them)."""
    recorder = Steps()
    yield recorder
    print(f"\n{request.node.name}:\n" + "\n".join(recorder.lines))


class Steps:
    """Wall-clock time of each named step, with DVC's transfer summary when it prints one."""

    def __init__(self):
        self.lines: list[str] = []

    def __call__(self, name: str, fn, *args, **kwargs):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        elapsed = time.perf_counter() - start
        summary = moved(result.stdout) if isinstance(result, subprocess.CompletedProcess) else ""
        self.lines.append(f"  {name:<44} {elapsed:6.1f} s  {summary}")
        return result

    def note(self, text: str) -> None:
        self.lines.append(f"  {text}")


def moved(output: str) -> str:
    """DVC's transfer summary ("12 files pushed", "3 files fetched and 40 files added"), if any."""
    found = re.findall(r"\d+ files? (?:pushed|fetched|added)", output)
    return ", ".join(found)


def count(output: str, what: str) -> int:
    found = re.search(rf"(\d+) files? {what}", output)
    return int(found.group(1)) if found else 0


def use_ssh_remote(project: Path, server: SSHServer, storage: Path, key: Path | None = None) -> None:
    """Make `storage` on `server` the project's default remote, reached with `key` (default: the server's)."""
    if not (project / ".dvc/config").read_text().count('remote "lab"'):
        dvc(project, "remote", "add", "-d", "lab", server.url(storage))
    dvc(project, "remote", "modify", "--local", "lab", "keyfile", str(key or server.key))


def clone(source: str | Path, folder: Path, server: SSHServer) -> Path:
    """A colleague's fresh `git clone`, with their key for the lab remote (not in git: .dvc/config.local)."""
    run(folder.parent, "git", "clone", "-q", str(source), str(folder))
    dvc(folder, "remote", "modify", "--local", "lab", "keyfile", str(server.key))
    return folder


def remote_objects(storage: Path) -> list[Path]:
    """The content-addressed files DVC keeps on the remote (temporary upload names excluded)."""
    return [p for p in (storage / "files/md5").rglob("*") if p.is_file() and not p.name.endswith(".tmp")]


def remote_bytes(storage: Path) -> int:
    return sum(p.stat().st_size for p in storage.rglob("*") if p.is_file())


def output_digests(project: Path) -> dict[str, str]:
    """sha256 of every file of every output recorded in dvc.lock, by path."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    digests = {}
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            path = project / out["path"]
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            digests.update({p.relative_to(project).as_posix(): sha256_of(p) for p in files})
    return digests


def assert_up_to_date(project: Path) -> None:
    status = dvc(project, "status").stdout
    assert "Data and pipelines are up to date." in status, status
    assert ran(dvc(project, "repro").stdout) == set()


def test_ssh_remote_push_clone_pull(demo_pipeline, sshd, steps, tmp_path):
    """The README's SSH recipe, run: push outputs and run-cache, a colleague clones, pulls and is up to date."""
    project = copy_project(demo_pipeline, tmp_path / "project")
    storage = tmp_path / "storage"
    use_ssh_remote(project, sshd, storage)
    commit(project, "lab remote")

    pushed = steps("dvc push --run-cache", dvc, project, "push", "--run-cache")
    objects = remote_objects(storage)
    runs = [p for p in (storage / "runs").rglob("*") if p.is_file()]
    assert objects and runs, "outputs and run records are on the server"
    assert count(pushed.stdout, "pushed") == len(objects) + len(runs), pushed.stdout
    steps.note(f"on the server: {len(objects)} objects, {len(runs)} run records, {remote_bytes(storage) / 1e6:.1f} MB")
    assert steps("dvc push (again)", dvc, project, "push").stdout.strip().endswith("Everything is up to date.")

    colleague = clone(project, tmp_path / "colleague", sshd)
    steps("dvc pull", dvc, colleague, "pull")
    steps("dvc status + dvc repro (nothing to run)", assert_up_to_date, colleague)
    assert sha256_of(colleague / "data/train/teacher.pt") == sha256_of(project / "data/train/teacher.pt")
    assert output_digests(colleague) == output_digests(project)


def test_push_cut_by_a_server_crash_completes_on_the_next_push(demo_pipeline, sshd, steps, tmp_path):
    """The server dies during `dvc push`: the push fails; once the server is back, the next push sends the
    rest, every object on the server matches its name, and a colleague pulls byte-identical outputs."""
    project = copy_project(demo_pipeline, tmp_path / "project")
    storage = tmp_path / "storage"
    use_ssh_remote(project, sshd, storage)
    commit(project, "lab remote")

    start = time.perf_counter()
    push = subprocess.Popen([DVC, "push", "-j", "1"], cwd=project, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    while push.poll() is None and len(remote_objects(storage)) < 3:
        time.sleep(0.01)
    sshd.stop()
    output, _ = push.communicate(timeout=120)
    steps.note(f"{'dvc push, server killed after 3 objects':<44} {time.perf_counter() - start:6.1f} s")
    assert push.returncode != 0, f"the push ended before the server was killed:\n{output}"
    assert "ERROR" in output, output
    steps.note(next(line for line in output.splitlines() if line.startswith("ERROR")))
    partial = len(remote_objects(storage))

    sshd.start()
    resumed = steps("dvc push (server back)", dvc, project, "push")
    objects = remote_objects(storage)
    assert count(resumed.stdout, "pushed") == len(objects) - partial, resumed.stdout
    steps.note(f"on the server after the crash: {partial} objects; after the second push: {len(objects)}")
    for path in objects:
        name = path.parent.name + path.name.removesuffix(".dir")
        assert hashlib.md5(path.read_bytes()).hexdigest() == name, f"{path} is damaged"

    colleague = clone(project, tmp_path / "colleague", sshd)
    steps("dvc pull", dvc, colleague, "pull")
    assert output_digests(colleague) == output_digests(project)


def test_refused_key_fails_fast_with_dvcs_error(demo_pipeline, sshd, steps, tmp_path):
    """A key the server does not accept: `dvc push` stops with DVC's error in bounded time, uploads nothing."""
    project = copy_project(demo_pipeline, tmp_path / "project")
    storage = tmp_path / "storage"
    use_ssh_remote(project, sshd, storage, key=keygen(tmp_path / "stranger_key"))
    refused = steps(f"dvc push, key refused (bound {REFUSED_WITHIN_S} s)", dvc, project, "push", check=False,
                    timeout=REFUSED_WITHIN_S)
    steps.note(refused.stderr.strip().splitlines()[0])
    assert refused.returncode != 0
    assert "ERROR" in refused.stderr and "permission denied" in refused.stderr.lower(), refused.stderr
    assert not storage.exists() or not remote_objects(storage)
    assert "Failed publickey" in sshd.log.read_text(), "the server saw the key and refused it"


def test_experiments_shared_through_git_and_ssh(demo_pipeline, sshd, steps, tmp_path):
    """Two experiments pushed (`dvc exp push --run-cache`: git refs to a bare repository, outputs and run
    records to the SSH remote). In a fresh clone, `dvc exp pull` brings both: `dvc exp show` lists them with
    their params and metrics, and `dvc exp apply` gives the same model. In another, a newcomer who sets the
    same params gets the results from the shared run-cache (`dvc pull --run-cache`, then `dvc repro`) without
    training."""
    project = copy_project(demo_pipeline, tmp_path / "project")
    origin = tmp_path / "origin.git"
    run(tmp_path, "git", "init", "-q", "--bare", "-b", "main", str(origin))
    run(project, "git", "remote", "add", "origin", str(origin))
    use_ssh_remote(project, sshd, tmp_path / "storage")
    commit(project, "lab remote")
    run(project, "git", "push", "-q", "origin", "HEAD:main")

    for method in ("mean_teacher", "supervised"):  # the first is the committed run: nothing to compute
        steps(f"dvc exp run -n {method}", dvc, project, "exp", "run", "-n", method, "-S", f"train.method={method}")
    steps("dvc exp push --run-cache origin", dvc, project, "exp", "push", "--run-cache", "origin", "supervised",
          "mean_teacher")

    colleague = clone(origin, tmp_path / "colleague", sshd)
    steps("dvc exp pull origin", dvc, colleague, "exp", "pull", "origin", "supervised", "mean_teacher")
    mine, theirs = experiments(project), experiments(colleague)
    assert set(theirs) == {"supervised", "mean_teacher"}
    for name, data in theirs.items():
        assert data["params"]["params.yaml"]["data"]["train"]["method"] == name
        metrics = data["metrics"]["data/evaluate/metrics.json"]["data"]
        criteria = [task["criterion"] for model in ("teacher", "student") for task in metrics[model].values()]
        assert criteria and all(-1 <= c <= 1 for c in criteria)
        assert metrics == mine[name]["metrics"]["data/evaluate/metrics.json"]["data"]
    for folder in (project, colleague):
        dvc(folder, "exp", "apply", "supervised")
    supervised_model = sha256_of(project / "data/train/teacher.pt")
    assert sha256_of(colleague / "data/train/teacher.pt") == supervised_model

    assert run_cache_has(project, "python -m stages.train"), "train is not in DVC's run-cache"
    newcomer = clone(origin, tmp_path / "newcomer", sshd)
    params = yaml.safe_load((newcomer / "params.yaml").read_text())
    params["train"]["method"] = "supervised"
    (newcomer / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    steps("dvc pull --run-cache", dvc, newcomer, "pull", "--run-cache")
    repro = steps("dvc repro (from the run-cache)", dvc, newcomer, "repro")
    restored = set(re.findall(r"Stage '([^']+)' is cached - skipping run", repro.stdout))
    assert {"train", "evaluate"} <= restored, repro.stdout
    assert not ran(repro.stdout) - restored, f"a stage ran instead of coming from the run-cache:\n{repro.stdout}"
    assert sha256_of(newcomer / "data/train/teacher.pt") == supervised_model


def test_shared_cache_directory(demo_pipeline, steps, tmp_path):
    """The README's shared-cache recipe: the cache moves to a shared folder (group-writable), committed in
    .dvc/config; a colleague's fresh clone checks every output out of it, with no push or pull."""
    project = copy_project(demo_pipeline, tmp_path / "project")
    shared = tmp_path / "shared-disk/affect-cache"
    shared.mkdir(parents=True)
    dvc(project, "cache", "dir", str(shared))
    dvc(project, "config", "cache.shared", "group")
    for item in (project / ".dvc/cache").iterdir():  # the cache built so far moves to the shared disk, once
        shutil.move(item, shared / item.name)
    steps("dvc checkout --relink", dvc, project, "checkout", "--relink")
    commit(project, "shared cache")

    colleague = tmp_path / "colleague"
    run(tmp_path, "git", "clone", "-q", str(project), str(colleague))
    steps("dvc checkout (from the shared cache)", dvc, colleague, "checkout")
    assert_up_to_date(colleague)
    assert output_digests(colleague) == output_digests(project)
    assert not (colleague / ".dvc/cache").exists() or not any((colleague / ".dvc/cache").rglob("*.*"))

    # the colleague adds a file whose md5 starts a cache folder that does not exist yet
    text = next(t for t in (f"notes, take {k}\n" for k in range(1000))
                if not (shared / "files/md5" / hashlib.md5(t.encode()).hexdigest()[:2]).exists())
    (colleague / "notes.txt").write_text(text)
    dvc(colleague, "add", "notes.txt")
    folder = shared / "files/md5" / hashlib.md5(text.encode()).hexdigest()[:2]
    mode = stat.S_IMODE(folder.stat().st_mode)
    assert mode & stat.S_IWGRP and mode & stat.S_ISGID, f"{folder}: {oct(mode)}, want group-writable, setgid"


def run_cache_has(project: Path, cmd: str) -> bool:
    """Whether the project's run-cache holds a run of the stage command `cmd`."""
    return any(f"cmd: {cmd}\n" in p.read_text() for p in (project / ".dvc/cache/runs").rglob("*") if p.is_file())


def experiments(project: Path) -> dict[str, dict]:
    """Experiment name -> its `dvc exp show --json` data (params, metrics)."""
    rows = json.loads(dvc(project, "exp", "show", "--json").stdout)
    return {exp["name"]: exp["data"] for row in rows for branch in row.get("experiments") or []
            for exp in branch.get("revs", [])}
