"""The stack's state file: what ``up`` chose and started, read by ``status`` and ``down``.

It is rewritten after every process the stack starts, so that a crash part-way through ``up``
leaves a file that says exactly what is running and which data directories are complete.

It holds the database passwords, so it is written the way a secret must be (``write_private``):
into a fresh temporary file (created exclusively, never through a link, mode 0600 from the
start), then renamed over the old one, so that a reader sees the old file or the new one and a
link planted at its path is replaced, not followed. Its directory must belong to the user
running latitude and be writable by nobody else: anyone who can write there could swap the file
between our write and our next read. It is read without following a link too.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from latitude.errors import StackError, describe_error
from latitude.pki import CertFiles
from latitude.stack.postgres import AGENT_ROLE, SUPERUSER
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
    # The role the agents connect as (latitude.stack.postgres.AGENT_ROLE); a stack made before
    # it existed keeps its agents on the superuser.
    agent_user: str = AGENT_ROLE
    agent_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
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
            "agent_user": self.agent_user,
            "agent_password": self.agent_password,
            "created_at": self.created_at,
            "initialized": sorted(self.initialized),
            "processes": {name: rec.to_json() for name, rec in self.processes.items()},
            "network": self.network,
            "tls": self.tls,
        }
        write_private(self.path, json.dumps(data, indent=2).encode())

    @classmethod
    def load(cls, directory: Path) -> StackState | None:
        """The state in ``directory``, or None when there is none; StackError if unreadable."""
        path = state_path(directory)
        try:
            data = json.loads(_read_no_link(path))
        except FileNotFoundError:
            return None
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise StackError(
                    f"the state file {path} is a symbolic link: refusing to read passwords "
                    "through it (remove the link)"
                ) from err
            raise StackError(f"the state file {path} is unreadable ({err})") from err
        except ValueError as err:
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
                agent_user=data.get("agent_user", SUPERUSER),
                agent_password=data.get("agent_password", data["superuser_password"]),
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
    directory.mkdir(parents=True, exist_ok=True, mode=0o755)
    check_private_dir(directory)
    lock = directory / "lock"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as err:
        raise StackError(f"cannot open the lock file {lock} ({describe_error(err)})") from err
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


def check_private_dir(directory: Path) -> None:
    """StackError unless ``directory`` belongs to the user running latitude and nobody else
    may write in it (whoever can could replace the state file, or plant a link, under us)."""
    try:
        found = os.stat(directory)
    except OSError as err:
        raise StackError(
            f"the stack directory {directory} is unusable ({describe_error(err)})"
        ) from err
    if not stat.S_ISDIR(found.st_mode):
        raise StackError(f"the stack directory {directory} is not a directory")
    if found.st_uid != os.geteuid():
        raise StackError(
            f"the stack directory {directory} belongs to uid {found.st_uid}, not to the user "
            f"running latitude (uid {os.geteuid()}): refusing to keep passwords in it"
        )
    if found.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise StackError(
            f"the stack directory {directory} is writable by others (mode "
            f"{stat.S_IMODE(found.st_mode):o}): refusing to keep passwords in it "
            f"(chmod go-w {directory})"
        )


def write_private(path: Path, content: bytes) -> None:
    """Replace ``path`` with ``content``, readable by its owner only: through a temporary file
    created exclusively and never through a link, renamed into place (a link planted at
    ``path`` is replaced, not followed), in a directory that ``check_private_dir`` accepts."""
    check_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as err:
        raise StackError(f"cannot write {path} ({describe_error(err)})") from err
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_dir(path.parent)


def _read_no_link(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as source:
        return source.read().decode()


def _sync_dir(directory: Path) -> None:
    """The rename itself survives a crash of the machine."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
