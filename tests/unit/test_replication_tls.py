"""With a CA for PostgreSQL (db_ssl_ca), every connection the agent sets up to another region's
server verifies it: sslmode=verify-full against that CA, whatever the conninfo said before."""

from __future__ import annotations

import ssl
from pathlib import Path

from agent.conninfo import follow_conninfo, parse_conninfo
from agent.rejoin import LocalServer, verified_tls
from latitude import pki


def test_follow_puts_verified_tls_in_place_of_what_the_conninfo_said():
    current = "host=10.0.0.1 port=5432 user=replicator sslmode=prefer application_name=eu"
    tls = (("sslmode", "verify-full"), ("sslrootcert", "/etc/ca.crt"))
    assert parse_conninfo(follow_conninfo(current, "10.0.0.2", 6543, tls)) == [
        ("host", "10.0.0.2"), ("port", "6543"), ("user", "replicator"),
        ("application_name", "eu"), ("sslmode", "verify-full"), ("sslrootcert", "/etc/ca.crt"),
    ]  # fmt: skip
    assert ("sslmode", "prefer") in parse_conninfo(follow_conninfo(current, "h", 1))


def test_rejoin_replicates_over_verified_tls_only_with_a_ca(tmp_path: Path):
    plain = LocalServer(tmp_path / "data", region="eu-west-1", replication_passfile=Path("/p"))
    assert plain.tls_pairs() == ()
    assert "sslmode" not in plain._replication_conninfo("10.0.0.1", 5432)
    ca = tmp_path / "ca.crt"
    server = LocalServer(tmp_path / "data", region="eu-west-1", db_ssl_ca=ca)
    conninfo = dict(parse_conninfo(server._replication_conninfo("10.0.0.1", 5432)))
    assert conninfo["sslmode"] == "verify-full" and conninfo["sslrootcert"] == str(ca)


def test_the_agents_own_connections_verify_the_server_and_its_name(tmp_path: Path):
    ca = pki.create_ca(tmp_path)
    context = verified_tls(ca)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
