"""The agent's database password: read from a file readable by its owner only, and handed to
pg_rewind through a passfile of the run's own, never its environment or command line."""

from __future__ import annotations

import asyncio
import os
import pwd
import time
from pathlib import Path

import pytest

from agent import config as agent_config
from agent.config import AgentConfig, with_password_file
from agent.pg_programs import inherited_env, passfile
from agent.rejoin import LocalServer
from latitude.errors import ConfigError

SECRET = "s3cr:et\\pass"


def _file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "password"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_the_password_comes_from_its_file(tmp_path: Path):
    config = AgentConfig(region="r", db_password_file=_file(tmp_path, SECRET + "\n"))
    assert with_password_file(config).db_password == SECRET
    assert with_password_file(AgentConfig(region="r")).db_password == ""


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_password_file_open_to_others_is_refused_by_name(tmp_path: Path, mode: int):
    path = _file(tmp_path, SECRET, mode)
    with pytest.raises(ConfigError, match=rf"db_password_file: {path} is open to other users"):
        with_password_file(AgentConfig(region="r", db_password_file=path))


def test_a_password_file_must_hold_one_line_and_be_the_only_password(tmp_path: Path):
    with pytest.raises(ConfigError, match="on one line"):
        with_password_file(AgentConfig(region="r", db_password_file=_file(tmp_path, "\n")))
    with pytest.raises(ConfigError, match="both set"):
        with_password_file(
            AgentConfig(region="r", db_password="x", db_password_file=_file(tmp_path, "y"))
        )
    with pytest.raises(ConfigError, match="cannot read"):
        with_password_file(AgentConfig(region="r", db_password_file=tmp_path / "missing"))


def test_the_old_environment_variable_still_works_warned_and_not_passed_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    monkeypatch.setenv("LATITUDE_AGENT_DB_PASSWORD", SECRET)
    monkeypatch.setenv("LATITUDE_AGENT_REGION", "eu-west-1")
    monkeypatch.setenv("LATITUDE_AGENT_COORDINATORS", "127.0.0.1:1")
    config, _ = agent_config.load(None, {})
    assert config.db_password == SECRET
    assert "LATITUDE_AGENT_DB_PASSWORD_FILE" in caplog.text
    assert "LATITUDE_AGENT_DB_PASSWORD" not in os.environ
    monkeypatch.setenv("PGPASSWORD", SECRET)
    assert SECRET not in inherited_env().values()


def test_a_passfile_is_private_escaped_removed_and_never_written_through_a_link(
    tmp_path: Path,
):
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    path = tmp_path / ".pgpass"
    path.symlink_to(victim)  # planted, or left by a killed run: replaced, not followed
    with passfile(path, "agent:1", SECRET, None) as written:
        assert not written.is_symlink()
        assert written.stat().st_mode & 0o777 == 0o600
        assert written.read_text() == "*:*:*:agent\\:1:s3cr\\:et\\\\pass\n"
    assert not path.exists()
    assert victim.read_text() == "untouched"


_FAKE_PROGRAM = """#!/bin/sh
# Records what a PostgreSQL program would see: its arguments, its environment, and the
# passfile its conninfo names, read while it runs.
out={out}
printf '%s\\n' "$@" > "$out/args"
cat /proc/$$/environ > "$out/environ"
file=$(printf '%s\\n' "$@" | sed -n "s/.*passfile='\\([^']*\\)'.*/\\1/p")
[ -n "$file" ] && cat "$file" > "$out/passfile" && stat -c %a "$file" > "$out/passfile-mode"
echo "no rewind required"
"""


def test_pg_rewind_gets_its_password_from_a_passfile_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    bindir, out, data = tmp_path / "bin", tmp_path / "out", tmp_path / "data"
    for directory in (bindir, out, data):
        directory.mkdir()
    for program in ("pg_ctl", "pg_controldata", "pg_rewind", "pg_basebackup", "postgres"):
        script = bindir / program
        script.write_text(_FAKE_PROGRAM.format(out=out))
        script.chmod(0o755)
    monkeypatch.setenv("PGPASSWORD", SECRET)  # an inherited one is not passed on either
    me = pwd.getpwuid(os.geteuid()).pw_name
    server = LocalServer(
        data, region="eu-west-1", bindir=bindir, os_user=me, db_user="latitude_agent",
        db_password=SECRET, db_ssl_ca=tmp_path / "ca.crt",
    )  # fmt: skip
    said = asyncio.run(server._rewind("10.0.0.1", 5432, time.monotonic() + 10, dry_run=True))
    assert "no rewind required" in said
    args, environ = (out / "args").read_text(), (out / "environ").read_bytes()
    assert SECRET not in args and SECRET.encode() not in environ
    assert b"PGPASSWORD" not in environ
    assert "sslmode='verify-full'" in args and f"sslrootcert='{tmp_path / 'ca.crt'}'" in args
    assert (out / "passfile").read_text() == "*:*:*:latitude_agent:s3cr\\:et\\\\pass\n"
    assert (out / "passfile-mode").read_text().strip() == "600"
    assert [p.name for p in tmp_path.iterdir() if "pgpass" in p.name] == []  # removed after
