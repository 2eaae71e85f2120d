"""The stack's state file: what ``up`` chose and started, read by ``status`` and ``down``.

It is rewritten (atomically, mode 0600: it holds the database passwords) after every process
the stack starts, so that a crash part-way through ``up`` leaves a file that says exactly what
is running and which data directories are complete.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from latitude.errors import StackError
from latitude.pki import CertFiles
from latitude.stack.processes import ProcessRecord

STATE_VERSION = 1


@dataclass
class StackState:
    dir: Path
    host: str
    ports: dict[str, int]
    cluster_token: str = field(default_factory=lambda: "latitude-" + secrets.token_hex(4))
    superuser_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    replication_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    created_at: float = field(default_factory=time.time)
    # Components whose data directory is complete (initdb done, base backup taken, ...).
    initialized: set[str] = field(default_factory=set)
    processes: dict[str, ProcessRecord] = field(default_factory=dict)
    # The stack's network namespaces and addresses (latitude.stack.network.Layout.to_json),
    # or None when everything listens on ``host`` in the root namespace.
    network: dict | None = None
    # TLS mode (latitude.stack.tls.state_record: the CA and every certificate's paths), or
    # None for plaintext: anyone who reaches a port can then change the cluster.
    tls: dict | None = None

    @property
    def path(self) -> Path:
        return state_path(self.dir)

    @property
    def tls_dir(self) -> Path | None:
        return Path(self.tls["dir"]) if self.tls else None

    def cert_files(self, name: str) -> CertFiles | None:
        """The certificate, key and CA of component ``name`` (a coordinator, an agent,
        "operator", "reader", an etcd member...); None in plaintext mode."""
        if not self.tls:
            return None
        try:
            entry = self.tls["certs"][name]
            return CertFiles(Path(entry["cert"]), Path(entry["key"]), Path(self.tls["ca"]))
        except (KeyError, TypeError) as err:
            raise StackError(
                f"the state file {self.path} names no certificate for {name} (run `latitude up`)"
            ) from err

    def save(self) -> None:
        data = {
            "version": STATE_VERSION,
            "dir": str(self.dir),
            "host": self.host,
            "ports": self.ports,
            "cluster_token": self.cluster_token,
            "superuser_password": self.superuser_password,
            "replication_password": self.replication_password,
            "created_at": self.created_at,
            "initialized": sorted(self.initialized),
            "processes": {name: rec.to_json() for name, rec in self.processes.items()},
            "network": self.network,
            "tls": self.tls,
        }
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)

    @classmethod
    def load(cls, directory: Path) -> StackState | None:
        """The state in ``directory``, or None when there is none; StackError if unreadable."""
        path = state_path(directory)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            raise StackError(f"the state file {path} is unreadable ({err})") from err
        try:
            if data["version"] != STATE_VERSION:
                raise StackError(
                    f"the state file {path} has version {data['version']}, "
                    f"this latitude reads version {STATE_VERSION}"
                )
            return cls(
                dir=Path(data["dir"]),
                host=data["host"],
                ports={k: int(v) for k, v in data["ports"].items()},
                cluster_token=data["cluster_token"],
                superuser_password=data["superuser_password"],
                replication_password=data["replication_password"],
                created_at=float(data["created_at"]),
                initialized=set(data["initialized"]),
                processes={
                    name: ProcessRecord.from_json(rec) for name, rec in data["processes"].items()
                },
                network=data.get("network"),
                tls=data.get("tls"),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise StackError(f"the state file {path} is malformed (missing or bad {err})") from err


def state_path(directory: Path) -> Path:
    return directory / "state.json"


@contextmanager
def exclusive(directory: Path) -> Iterator[None]:
    """Hold the stack directory's lock: two ``up``/``down`` at once would trample each other."""
    directory.mkdir(parents=True, exist_ok=True)
    lock = directory / "lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise StackError(
                f"another latitude command is working on {directory} (it holds {lock})"
            ) from err
        yield
    finally:
        os.close(fd)
