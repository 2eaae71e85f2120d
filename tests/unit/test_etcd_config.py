"""The coordinator's etcd TLS settings: file, LATITUDE_COORDINATOR_ETCD_*, flags; all three
paths or none, each a file that exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.config import CoordinatorConfig
from coordinator.main import parse_args
from latitude import config, pki
from latitude.errors import ConfigError
from latitude.pki import CertFiles


@pytest.fixture
def certs(tmp_path: Path) -> CertFiles:
    pki.create_ca(tmp_path)
    return pki.issue(tmp_path, "etcd-client", common_name="latitude")


def load(file: Path | None = None, env: dict | None = None, argv: list[str] = ()):
    _, flags = parse_args(list(argv))
    return config.load(
        CoordinatorConfig,
        section="coordinator",
        env_prefix="LATITUDE_COORDINATOR_",
        file=file,
        env=env or {},
        flags=flags,
        ignore=("alerts",),
    )


def test_plaintext_by_default():
    loaded = load()
    assert loaded.etcd_tls is None


def test_from_a_file(tmp_path: Path, certs: CertFiles):
    file = tmp_path / "c.toml"
    file.write_text(
        f'[coordinator]\netcd_ca = "{certs.ca}"\netcd_cert = "{certs.cert}"\n'
        f'etcd_key = "{certs.key}"\n'
    )
    assert load(file=file).etcd_tls == certs


def test_from_the_environment_and_flags(certs: CertFiles):
    env = {
        "LATITUDE_COORDINATOR_ETCD_CA": str(certs.ca),
        "LATITUDE_COORDINATOR_ETCD_CERT": "/elsewhere.crt",
        "LATITUDE_COORDINATOR_ETCD_KEY": str(certs.key),
    }
    loaded = load(env=env, argv=["--etcd-cert", str(certs.cert), "--etcd-server-name", "etcd"])
    assert loaded.etcd_tls == certs
    assert loaded.etcd_server_name == "etcd"


def test_all_three_or_none(certs: CertFiles):
    with pytest.raises(ConfigError, match=r"etcd_key: .*together \(only etcd_ca, etcd_cert given"):
        load(argv=["--etcd-ca", str(certs.ca), "--etcd-cert", str(certs.cert)])


def test_a_missing_file_is_named(certs: CertFiles):
    certs.key.unlink()
    argv = ["--etcd-ca", str(certs.ca), "--etcd-cert", str(certs.cert), "--etcd-key"]
    with pytest.raises(ConfigError, match=f"etcd_key: cannot read {certs.key}"):
        load(argv=[*argv, str(certs.key)])


def test_a_key_that_is_not_the_certificates_is_named(tmp_path: Path, certs: CertFiles):
    other = pki.issue(tmp_path, "other", common_name="latitude")
    argv = ["--etcd-ca", str(certs.ca), "--etcd-cert", str(certs.cert), "--etcd-key"]
    with pytest.raises(ConfigError, match=f"etcd_key: {other.key} is not the key of etcd_cert"):
        load(argv=[*argv, str(other.key)])


def test_members_on_several_hosts_need_a_server_name(certs: CertFiles):
    argv = ["--etcd-ca", str(certs.ca), "--etcd-cert", str(certs.cert)]
    argv += ["--etcd-key", str(certs.key), "--etcd", "10.0.0.1:2379,10.0.0.2:2379"]
    with pytest.raises(ConfigError, match="etcd_server_name: .*different hosts"):
        load(argv=argv)
    assert load(argv=[*argv, "--etcd-server-name", "etcd.internal"]).etcd_tls == certs


def test_a_server_name_without_tls_is_a_mistake():
    with pytest.raises(ConfigError, match="etcd_server_name: only means something with"):
        load(argv=["--etcd-server-name", "etcd"])
