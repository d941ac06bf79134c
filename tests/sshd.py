"""A real OpenSSH server on 127.0.0.1 for the tests: the Debian `openssh-server` package's `sshd`, run in the
foreground with a configuration, a host key, a user key and an authorized_keys file of its own in a temporary
folder, on a free high port, for the user running the tests (root in CI, or a normal user).

    server = SSHServer(tmp_path / "sshd")
    server.start()
    ...  # ssh://{server.user}@127.0.0.1:{server.port}/some/folder, key in server.key
    server.stop()

`stop()` kills the listener and every connection it forked (sshd puts each connection in a session of its own,
so they are found as the listener's descendants, not by process group): after it, no sshd of ours is left.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import psutil

SSHD = shutil.which("sshd", path=f"/usr/sbin:/usr/local/sbin:{os.environ.get('PATH', '')}")
# Root's sshd drops privileges into this empty folder (compiled into Debian's sshd; the package's service
# creates it at boot, which a container or CI machine never does).
PRIVSEP_DIR = Path("/run/sshd")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the kernel's choice, in the high range)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> Path:
    """A new ed25519 key pair without passphrase at `path` and `path`.pub; returns `path`."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "affect-tests", "-f", str(path)],
                   check=True, capture_output=True)
    return path


class SSHServer:
    """sshd on 127.0.0.1:`port` accepting `user` with the private key `key` (public key only, no password)."""

    def __init__(self, folder: Path):
        assert SSHD, "sshd is missing: `bash .ci/setup` installs Debian's openssh-server (as root)"
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.user = getpass.getuser()
        self.port = free_port()
        self.key = keygen(folder / "user_key")
        host_key = keygen(folder / "host_key")
        self.authorized_keys = folder / "authorized_keys"
        self.authorized_keys.write_text((folder / "user_key.pub").read_text())
        self.log = folder / "sshd.log"
        self.config = folder / "sshd_config"
        self.config.write_text("\n".join([
            f"ListenAddress 127.0.0.1:{self.port}",
            f"HostKey {host_key}",
            f"PidFile {folder / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "AuthenticationMethods publickey",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            # PAM's session modules (loginuid, systemd) fail in containers; keys alone need no PAM.
            "UsePAM no",
            # the temporary folder is not the user's home: do not check its owner and modes
            "StrictModes no",
            "Subsystem sftp internal-sftp",
            f"AllowUsers {self.user}",
            "MaxStartups 100",
            "MaxSessions 100",
            "LogLevel VERBOSE",
            "",
        ]))
        self.process: subprocess.Popen | None = None

    def url(self, path: Path) -> str:
        """The DVC remote URL of the absolute folder `path` on this server."""
        return f"ssh://{self.user}@127.0.0.1:{self.port}{path}"

    def start(self, timeout: float = 10.0) -> None:
        """Start sshd and wait until it answers with its SSH banner."""
        if os.geteuid() == 0:
            PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)],
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(64).startswith(b"SSH-2.0-"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd did not answer on 127.0.0.1:{self.port} in {timeout} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        """Kill sshd and every connection it serves, as a crash would, and wait until all are gone.

        Connections are killed leaves first, so that each dead process is reaped by its own sshd parent:
        an orphan would be left to PID 1 as a zombie, which not every container's init reaps.
        """
        if self.process is None:
            return
        listener = psutil.Process(self.process.pid)
        for _ in range(100):
            try:
                leaves = [p for p in listener.children(recursive=True) if not p.children()]
            except psutil.NoSuchProcess:
                continue  # a connection ended while it was listed: look again
            if not leaves:
                break
            for process in leaves:
                try:
                    process.kill()
                except psutil.NoSuchProcess:
                    pass
            psutil.wait_procs(leaves, timeout=5)  # gone once their parent has reaped them
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None
