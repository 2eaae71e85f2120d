"""Postgres.enable_tls on files alone: a server certificate from the stack's CA for the node's
address, kept while it fits, and the settings that turn TLS on and keep WAL on it."""

from __future__ import annotations

from pathlib import Path

from latitude import pki
from latitude.stack.postgres import Postgres, PostgresNode, tls_ca


def _node(tmp_path: Path, host: str = "10.1.2.3") -> PostgresNode:
    data = tmp_path / "postgres" / "eu-west-1"
    data.mkdir(parents=True, exist_ok=True)
    return PostgresNode("eu-west-1", host, 6543, data, tmp_path / "eu.log")


def test_a_node_gets_a_certificate_for_its_address_and_tls_only_replication(tmp_path: Path):
    ca_dir = tmp_path / "tls"
    pki.create_ca(ca_dir)
    node, postgres = _node(tmp_path), Postgres({}, None)
    postgres.write_node_settings(node)
    postgres.write_hba(node)
    assert tls_ca(node) is None  # plaintext until enabled
    assert "ssl" not in (node.data_dir / "latitude.conf").read_text()
    assert "\nhost  replication" in (node.data_dir / "pg_hba.conf").read_text()

    postgres.enable_tls(node, ca_dir)
    ca = tls_ca(node)
    assert ca == tmp_path / "postgres" / "ca.crt"
    assert ca.read_bytes() == (ca_dir / "ca.crt").read_bytes()
    cert = tmp_path / "postgres" / "eu-west-1.tls" / "server.crt"
    assert pki.describe(cert).hosts == ["10.1.2.3"]
    assert (cert.parent / "server.key").stat().st_mode & 0o777 == 0o600
    settings = (node.data_dir / "latitude.conf").read_text()
    assert "port = 6543\n" in settings and "ssl = on\n" in settings
    assert f"ssl_cert_file = '{cert}'" in settings and f"ssl_ca_file = '{ca}'" in settings
    hba = (node.data_dir / "pg_hba.conf").read_text()
    assert "\nhostssl  replication  replicator" in hba and "\nhost  replication" not in hba


def test_a_certificate_is_kept_while_it_fits_and_reissued_for_a_new_address(tmp_path: Path):
    ca_dir = tmp_path / "tls"
    pki.create_ca(ca_dir)
    postgres = Postgres({}, None)
    postgres.enable_tls(_node(tmp_path), ca_dir)
    cert = tmp_path / "postgres" / "eu-west-1.tls" / "server.crt"
    first = pki.describe(cert).serial
    postgres.enable_tls(_node(tmp_path), ca_dir)
    assert pki.describe(cert).serial == first
    postgres.enable_tls(_node(tmp_path, host="10.9.9.9"), ca_dir)
    assert pki.describe(cert).hosts == ["10.9.9.9"]
