"""The local stack as a test harness: the suite runs exactly what ``latitude up`` runs."""

from __future__ import annotations

import asyncio
import atexit
import functools
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agent.pg_programs import pgpass_field
from latitude import pki
from latitude.pki import CertFiles, Identity
from latitude.stack.config import StackConfig
from latitude.stack.postgres import SUPERUSER
from latitude.stack.stack import Stack
from latitude.stack.tls import ETCD_CLIENT_USER, TLS_DIR


def traversable_tempdir(prefix: str) -> Path:
    """A fresh directory PostgreSQL's system user can reach (pytest's own tmp is 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def tls_requested() -> bool:
    """Whether the test suite runs its stacks in TLS mode (LATITUDE_TEST_TLS=1)."""
    return os.environ.get("LATITUDE_TEST_TLS", "") in ("1", "true", "yes")


@functools.cache
def _test_ca() -> Path:
    """One CA for every stack a TLS-mode test run starts (removed when the run ends), so that
    one client certificate reaches them all."""
    directory = traversable_tempdir("latitude-test-ca-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    pki.create_ca(directory / "ca", name="latitude test CA")
    return directory / "ca"


@functools.cache
def suite_client_tls(role: str = "operator", region: str = "") -> CertFiles | None:
    """The certificate test clients present to the stacks of this run, from the run's CA
    when LATITUDE_TEST_TLS=1: an operator's by default, or any role's (an agent's names its
    ``region``); None (plaintext) otherwise."""
    if not tls_requested():
        return None
    name = f"test-{role}-{region}" if region else f"test-{role}"
    return pki.issue(_test_ca(), name, identity=Identity(role, region))


@functools.cache
def suite_etcd_tls(user: str = ETCD_CLIENT_USER) -> CertFiles | None:
    """A client certificate for the run's etcd clusters, etcd user ``user`` (its CN):
    ``latitude`` reaches the coordinators' prefix, ``root`` everything. None in plaintext."""
    if not tls_requested():
        return None
    return pki.issue(_test_ca(), f"test-etcd-{user}", common_name=user)


def superuser_conninfo(stack: Stack, host: str, port: int, directory: Path) -> str:
    """A libpq conninfo for the stack's superuser at ``host``:``port``, for programs such as
    pgbench: its password goes in a passfile (0600, in ``directory``), never in the child's
    environment or command line, where other users' ``ps`` could read it."""
    passfile = directory / "pgpass"
    fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(f"*:*:*:{SUPERUSER}:{pgpass_field(stack.state().superuser_password)}\n")
    return f"host={host} port={port} user={SUPERUSER} dbname=postgres passfile={passfile}"


@contextmanager
def running_stack(**settings) -> Iterator[Stack]:
    """A stack started in a temporary directory, stopped and removed afterwards; in TLS mode
    when ``tls=True`` is given, or by default when LATITUDE_TEST_TLS=1 (then from the run's
    CA, whose certificates tests/integration's helpers present; tests/chaos's present none
    yet, so the partition suite runs in plaintext only)."""
    settings.setdefault("tls", tls_requested())
    parent = traversable_tempdir("latitude-stack-")
    stack = Stack(StackConfig(dir=parent / "stack", **settings))
    if settings["tls"] and tls_requested():
        provided = stack.dir / TLS_DIR
        provided.mkdir(parents=True, mode=0o700)
        for name in ("ca.crt", "ca.key"):
            shutil.copy2(_test_ca() / name, provided / name)
    try:
        asyncio.run(stack.up())
        yield stack
    finally:
        keep = os.environ.get("LATITUDE_KEEP_LOGS")
        if keep and (stack.dir / "logs").is_dir():  # for a post-mortem of a failed run
            shutil.copytree(stack.dir / "logs", Path(keep) / parent.name, dirs_exist_ok=True)
        if (stack.dir / "state.json").exists():
            asyncio.run(stack.down())
        shutil.rmtree(parent, ignore_errors=True)


def log_tails(stack: Stack, lines: int = 25) -> str:
    """What the stack's coordinators and agents said last (DEBUG lines left out): printed
    with a failed test, because a CI run keeps nothing else of the stack."""
    logs = stack.dir / "logs"
    parts = []
    for path in sorted(logs.glob("coordinator-*.log")) + sorted(logs.glob("agent-*.log")):
        try:
            text = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        said = [line for line in text if " DEBUG " not in line][-lines:]
        parts.append(f"----- {path.name}, last {len(said)} lines -----")
        parts.extend(said)
    return "\n".join(parts)
