"""The files REJOIN writes in a PostgreSQL data directory, each replaced whole.

A REJOIN can be interrupted at any moment and repeated, and whoever starts the server next (this
agent, an operator, ``latitude up``) reads what it finds: a file must be the old one or the new
one, never half of each, and owned by the database's user, not by the agent's (which may be
root). The node's own configuration files are saved and put back around pg_rewind and
pg_basebackup, which copy the source's; the standby's settings go into postgresql.auto.conf.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from agent.conninfo import guc_quote

# Settings REJOIN owns in postgresql.auto.conf; the fence goes too, the demotion's
# (latitude.fenced, see agent.demotion) as well as an older agent's read-only default: a
# standby refuses writes anyway, and a later PROMOTE must find a writable configuration.
_OWNED = ("primary_conninfo", "primary_slot_name", "default_transaction_read_only",
          "latitude.fenced")  # fmt: skip
_SETTING = re.compile(r"\s*([A-Za-z_][\w.]*)\s*(?:=|\s|$)")


def configure_standby(directory: Path, conninfo: str, slot: str) -> None:
    """standby.signal, primary_conninfo / primary_slot_name in postgresql.auto.conf, and
    no replication slots."""
    owner = owner_of(directory)
    slots = directory / "pg_replslot"
    # A former primary keeps the slots it served its standbys through; as a standby it must
    # not hold back WAL for them.
    for entry in slots.iterdir() if slots.is_dir() else ():
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    auto = directory / "postgresql.auto.conf"
    kept = [
        line for line in read_or_empty(auto).splitlines()
        if (m := _SETTING.match(line)) is None or m.group(1).lower() not in _OWNED
    ]  # fmt: skip
    kept.append(f"primary_conninfo = {guc_quote(conninfo)}")
    if slot:
        kept.append(f"primary_slot_name = {guc_quote(slot)}")
    write_whole(auto, ("\n".join(kept) + "\n").encode(), owner)
    (directory / "recovery.signal").unlink(missing_ok=True)
    write_whole(directory / "standby.signal", b"", owner)


def settings_files(directory: Path) -> dict[str, bytes]:
    """The node's own configuration files (its address and port are in latitude.conf)."""
    return {p.name: p.read_bytes() for p in directory.glob("*.conf") if p.is_file()}


def restore_settings(directory: Path, files: dict[str, bytes]) -> None:
    owner = (directory.stat().st_uid, directory.stat().st_gid)
    for name, content in files.items():
        write_whole(directory / name, content, owner)


def write_whole(
    path: Path, content: bytes, owner: tuple[int, int] | None, mode: int = 0o600
) -> None:
    """Replace ``path`` whole (a crash leaves the old or the new file, never half of one)."""
    tmp = path.with_name(path.name + ".latitude-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, content)
        os.fsync(fd)
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, *owner)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_or_empty(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def owner_of(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_uid, info.st_gid
