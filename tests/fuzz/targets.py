"""The processes the fuzz tests call, and what is asked of each after the calls: that it is
alive, answers a health check, and how much memory it holds.

A private coordinator (``PrivateCoordinator``) runs beside the shared stack: one replica on the
stack's etcd under a key prefix of its own, so it elects itself leader of a control plane that
has the stack's region names but no agents. It takes the calls that would change the shared
cluster when they are valid (Switchover, Failover, SetMaintenance, SetStrategy, latency
reports, agent streams whose Hello is accepted): there they can change everything and break
nothing another test relies on.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from latitude.netaddr import join_host_port
from latitude.stack import ports
from latitude.v1 import admin_pb2, admin_pb2_grpc


@dataclass(frozen=True, slots=True)
class Target:
    """A server under fuzz: its gRPC address and its process."""

    name: str
    address: str
    pid: int

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return Path(f"/proc/{self.pid}/status").exists() and "zombie" not in self._state()

    def _state(self) -> str:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line
        return ""

    def rss_bytes(self) -> int:
        """Resident memory, from /proc/PID/status (VmRSS, in kB)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"{self.name} (pid {self.pid}) reports no VmRSS")


def channel(address: str) -> grpc.Channel:
    """A client channel to a server under fuzz: the one place the fuzz tests open one (the
    memory load's asyncio channel aside, in load.py), so that a stack in TLS mode needs a
    change here only."""
    return grpc.insecure_channel(address)


def serving(target: Target, timeout: float = 5.0) -> bool:
    """Whether ``target`` answers grpc.health.v1 with SERVING within ``timeout``."""
    with channel(target.address) as opened:
        stub = health_pb2_grpc.HealthStub(opened)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def leader_of(address: str, timeout: float = 2.0) -> admin_pb2.LeaderInfo | None:
    with channel(address) as opened:
        stub = admin_pb2_grpc.AdminServiceStub(opened)
        try:
            return stub.GetStatus(admin_pb2.GetStatusRequest(), timeout=timeout).leader
        except grpc.RpcError:
            return None


class PrivateCoordinator:
    """One coordinator process of our own on the stack's etcd, under a fresh prefix."""

    def __init__(self, host: str, etcd: list[str], regions: list[str], log: Path) -> None:
        self.id = "fuzz-" + secrets.token_hex(3)
        self.prefix = f"/latitude-{self.id}"
        self.address = join_host_port(host, ports.allocate(host, [self.id])[self.id])
        self._argv = [
            sys.executable,
            "-m",
            "coordinator.main",
            "--id",
            self.id,
            "--listen",
            self.address,
            "--etcd",
            ",".join(etcd),
            "--etcd-prefix",
            self.prefix,
            "--regions",
            ",".join(regions),
        ]
        self._log = log
        self._process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> Target:
        """Started, and leader of its own control plane."""
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                self._argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        target = Target(self.id, self.address, self._process.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"{self.id} exited with {self._process.returncode}: "
                    f"{self._log.read_text()[-2000:]}"
                )
            leader = leader_of(self.address)
            if leader is not None and leader.leader_id == self.id:
                return target
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.id} did not become leader within {timeout} s")

    def stop(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
