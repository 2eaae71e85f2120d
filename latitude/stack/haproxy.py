"""HAProxy beside the local stack (``latitude up --haproxy``): one address for writes, one for
reads, each following the agents' health endpoints.

The configuration is deploy/haproxy/haproxy.cfg, the template people copy for their own
deployments, rendered for the stack's ports: the stack runs what the documentation shows. HAProxy
decides nothing; the agents do (``/primary`` turns 503 before a fence), and HAProxy's fast checks
with ``on-marked-down shutdown-sessions`` carry the answer to clients.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template

import aiohttp

from agent.health_lag import BadLag, parse_lag
from latitude.errors import ConfigError, MissingBinaryError, StackError
from latitude.netaddr import join_host_port
from latitude.stack import processes
from latitude.stack.processes import ProcessRecord

# In the checkout, beside the other deployment files (an installed wheel does not carry it).
TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "haproxy" / "haproxy.cfg"
COMPONENT = "haproxy"
# The state file's names for HAProxy's ports: ``port_owner`` maps each to COMPONENT.
WRITE_PORT, READ_PORT, STATS_PORT = (f"{COMPONENT}.{p}" for p in ("write", "read", "stats"))
PORT_NAMES = (WRITE_PORT, READ_PORT, STATS_PORT)
# The read listener sends reads to standbys at most this far behind: one lag bound for bytes
# or time, in the agents' /replica?lag= syntax.
READ_LAG = "16MB"
# Debian installs it outside an unprivileged user's PATH.
_DEBIAN_PATH = "/usr/sbin/haproxy"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True, slots=True)
class Backend:
    """A region as HAProxy sees it: where its database is, and where its agent answers checks."""

    region: str
    database: str  # host:port
    agent_host: str
    agent_http_port: int

    def server_line(self) -> str:
        if not _NAME.fullmatch(self.region):
            raise ConfigError(f"haproxy: region name {self.region!r} cannot name a server")
        return (
            f"    server {self.region} {self.database} check "
            f"addr {self.agent_host} port {self.agent_http_port}"
        )


def render(
    template: str,
    *,
    write: str,
    read: str,
    stats: str,
    backends: Sequence[Backend],
    read_lag: str = READ_LAG,
) -> str:
    """The template with its ``${...}`` fields filled: listen addresses (host:port), one server
    line per region in each listener, the read listener's lag bound."""
    if not backends:
        raise ConfigError("haproxy: no regions to send traffic to")
    try:  # what the agents will parse, and nothing a URL cannot carry
        parse_lag(read_lag)
    except BadLag as err:
        raise ConfigError(f"haproxy: read lag bound: {err}") from err
    if any(c.isspace() for c in read_lag):
        raise ConfigError(f"haproxy: read lag bound {read_lag!r}: write it without spaces")
    servers = "\n".join(b.server_line() for b in backends)
    try:
        return Template(template).substitute(
            write_bind=write,
            read_bind=read,
            stats_bind=stats,
            write_servers=servers,
            read_servers=servers,
            read_lag=read_lag,
        )
    except (KeyError, ValueError) as err:
        raise ConfigError(
            f"haproxy: the template has a field latitude does not fill ({err})"
        ) from err


def binary(name: str = "haproxy") -> str:
    """HAProxy's program; MissingBinaryError saying how to install it."""
    found = shutil.which(name)
    if found is None and name == "haproxy" and os.access(_DEBIAN_PATH, os.X_OK):
        found = _DEBIAN_PATH
    if found is None:
        raise MissingBinaryError(
            f"HAProxy not found ({name!r} is not on PATH, nor {_DEBIAN_PATH}): install Debian's "
            "haproxy package (apt-get install haproxy) or set LATITUDE_STACK_HAPROXY_BIN"
        )
    return found


def argv(program: str, config: Path) -> list[str]:
    # -db: in the foreground, one process, so the stack's record of it is HAProxy itself.
    return [program, "-db", "-f", str(config)]


def write_config(directory: Path, listen: dict[str, str], backends: Sequence[Backend]) -> Path:
    """Render the template into ``directory``/haproxy.cfg; its path."""
    text = render(
        template_text(),
        write=listen["write"],
        read=listen["read"],
        stats=listen["stats"],
        backends=backends,
    )
    directory.mkdir(exist_ok=True)
    config = directory / "haproxy.cfg"
    config.write_text(text)
    return config


async def check(program: str, config: Path) -> None:
    """HAProxy's own check of the configuration: a bad line is named before anything starts."""
    await processes.run([program, "-c", "-f", str(config)], what=f"checking {config}")


class WriteRouting:
    """Whether a started HAProxy routes writes yet: its write listener has one server UP."""

    def __init__(self, record: ProcessRecord, stats: str, log: Path) -> None:
        self._record = record
        self._stats = stats
        self._log = log
        self.server = ""

    async def found(self) -> bool:
        if not processes.is_alive(self._record):
            raise StackError(
                f"HAProxy exited; its log {self._log} ends with:\n{processes.tail(self._log)}"
            )
        try:
            up = (await servers_up(self._stats)).get("write", [])
        except StackError:
            return False
        self.server = up[0] if len(up) == 1 else ""
        return bool(self.server)


def template_text(path: Path = TEMPLATE) -> str:
    try:
        return path.read_text()
    except OSError as err:
        raise StackError(
            f"HAProxy's configuration template {path} is unreadable ({err.strerror}): "
            "`latitude up --haproxy` runs from a checkout of latitude"
        ) from err


async def servers_up(stats: str, timeout: float = 1.0) -> dict[str, list[str]]:
    """The servers HAProxy has UP in each listener ("write", "read"), from its stats page
    (``host:port``); StackError when it does not answer."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(f"http://{stats}/;csv") as response,
        ):
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError, OSError) as err:
        raise StackError(f"HAProxy's stats on {stats} did not answer ({err!r})") from err
    return parse_stats(text)


def parse_stats(text: str) -> dict[str, list[str]]:
    """The servers UP in each listener, from HAProxy's CSV stats (header "# pxname,svname,...")."""
    rows = csv.DictReader(io.StringIO(text.removeprefix("# ")))
    up: dict[str, list[str]] = {}
    for row in rows:
        name, server = row.get("pxname"), row.get("svname")
        if not name or server in (None, "FRONTEND", "BACKEND"):
            continue
        listener = up.setdefault(name, [])
        if (row.get("status") or "").startswith("UP"):
            listener.append(server)
    return up


def addresses(host: str, ports: dict[str, int]) -> dict[str, str]:
    """HAProxy's listeners in a stack's state ("write", "read", "stats" -> host:port)."""
    return {name.split(".", 1)[1]: join_host_port(host, ports[name]) for name in PORT_NAMES}
