"""A Docker engine of the compose test's own, started and removed by the test.

Everything it keeps is under one temporary directory (data root, exec root, pid file, socket,
its containerd's state), so that it never meets another engine or test and can be removed
whole. It runs with the vfs storage driver (no overlay mounts to leave behind), and with no
iptables rules, no masquerading and no docker0 bridge: the compose network is a user-defined
bridge, which needs none of them for traffic between its containers; published ports go through
the userland proxy on 127.0.0.1. ``leftovers`` is what the test checks after the engine is gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REQUIRED = ("dockerd", "docker", "docker-compose", "debootstrap", "containerd", "runc", "ip", "nft")


def missing() -> str:
    """Why the compose test cannot run here ("" when it can)."""
    if os.geteuid() != 0:
        return "the compose test needs root (dockerd, debootstrap)"
    for program in REQUIRED:
        if shutil.which(program) is None:
            return f"the compose test needs {program} (scripts/bootstrap installs it as root)"
    return ""


@dataclass
class Engine:
    root: Path
    process: subprocess.Popen

    @property
    def host(self) -> str:
        return f"unix://{self.root / 'docker.sock'}"

    @property
    def docker(self) -> list[str]:
        """The docker client's argv prefix for this engine."""
        return ["docker", "-H", self.host]

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host, **extra}

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.docker, *args], capture_output=True, text=True, timeout=timeout, check=False
        )

    def log_tail(self, lines: int = 40) -> str:
        text = (self.root / "dockerd.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True)
    return {line.split(":")[1].strip().split("@")[0] for line in out.stdout.splitlines()}


def _rules() -> str:
    rules = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True, check=False)
    return rules.stdout


def _mounts_under(root: Path) -> list[str]:
    with open("/proc/self/mounts") as mounts:
        targets = [line.split()[1] for line in mounts]
    return [t for t in targets if t == str(root) or t.startswith(f"{root}/")]


def leftovers(before_links: set[str], root: Path) -> list[str]:
    """What the engine left behind: its directory, mounts under it, a bridge or veth of its
    own, a docker chain or table."""
    found = []
    if root.exists():
        found.append(f"{root} still exists")
    found += [f"mount {m} remains" for m in _mounts_under(root)]
    found += [
        f"network interface {link} remains"
        for link in sorted(links() - before_links)
        if link.startswith(("br-", "docker", "veth"))
    ]
    if "docker" in _rules().lower():
        found.append("nftables/iptables hold docker rules")
    return found


def _wait_ready(engine: Engine, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if engine.process.poll() is not None:
            raise RuntimeError(f"dockerd exited {engine.process.returncode}:\n{engine.log_tail()}")
        if engine.run("version", timeout=10).returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"dockerd not ready after {timeout} s:\n{engine.log_tail()}")
        time.sleep(0.2)


def _stop(engine: Engine) -> None:
    with contextlib.suppress(ProcessLookupError):
        engine.process.send_signal(signal.SIGTERM)
    try:
        engine.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        # Its containerd and shims are in its process group (start_new_session).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(engine.process.pid, signal.SIGKILL)
        engine.process.wait(timeout=30)
    # Whatever the engine did not unmount (a container's shm, a netns file) goes first, deepest
    # first, so that the directory can be removed.
    for target in sorted(_mounts_under(engine.root), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)
    shutil.rmtree(engine.root, ignore_errors=True)


@contextlib.contextmanager
def running_engine() -> Iterator[Engine]:
    """A started engine; on the way out, its containers are removed and it is stopped and
    removed, whatever happened."""
    # Short: containerd's sockets live under the exec root, and a Unix socket's path is short.
    root = Path(tempfile.mkdtemp(prefix="lat-dockerd-", dir="/tmp"))
    (root / "daemon.json").write_text("{}\n")  # not the machine's /etc/docker/daemon.json
    argv = [
        "dockerd",
        f"--config-file={root / 'daemon.json'}",
        "--storage-driver=vfs",
        f"--data-root={root / 'data'}",
        f"--exec-root={root / 'exec'}",
        f"--pidfile={root / 'dockerd.pid'}",
        f"--host=unix://{root / 'docker.sock'}",
        "--iptables=false",
        "--ip-masq=false",
        "--bridge=none",
    ]
    with (root / "dockerd.log").open("wb") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    engine = Engine(root, process)
    try:
        _wait_ready(engine, timeout=60)
        yield engine
    finally:
        containers = engine.run("ps", "-aq", timeout=60).stdout.split()
        if containers:
            engine.run("rm", "-f", "-v", *containers, timeout=120)
        engine.run("network", "prune", "-f", timeout=60)
        engine.run("volume", "prune", "-f", timeout=60)
        _stop(engine)
