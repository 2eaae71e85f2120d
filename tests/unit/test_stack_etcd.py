"""The stack's etcd command lines and certificates, plaintext and TLS."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from latitude import pki
from latitude.stack import etcd
from latitude.stack.etcd import EtcdMember
from latitude.stack.etcd_auth import key_range

MEMBERS = [
    EtcdMember("etcd-1", "10.0.0.2", 2379, 2380),
    EtcdMember("etcd-2", "10.0.0.2", 2381, 2382),
]


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_plaintext_members_speak_http_and_check_no_certificates(tmp_path: Path):
    argv = etcd.argv("etcd", MEMBERS[0], MEMBERS, tmp_path, "token")
    assert flag(argv, "--listen-client-urls") == "http://10.0.0.2:2379"
    assert flag(argv, "--initial-cluster") == (
        "etcd-1=http://10.0.0.2:2380,etcd-2=http://10.0.0.2:2382"
    )
    assert not [a for a in argv if "cert" in a or "trusted" in a]


def test_tls_members_speak_https_and_take_only_the_cas_certificates(tmp_path: Path):
    tls = pki.CertFiles(tmp_path / "etcd-2.crt", tmp_path / "etcd-2.key", tmp_path / "ca.crt")
    argv = etcd.argv("etcd", MEMBERS[1], MEMBERS, tmp_path, "token", tls=tls)
    for name in ("--listen-client-urls", "--advertise-client-urls"):
        assert flag(argv, name) == "https://10.0.0.2:2381"
    for name in ("--listen-peer-urls", "--initial-advertise-peer-urls"):
        assert flag(argv, name) == "https://10.0.0.2:2382"
    assert flag(argv, "--initial-cluster") == (
        "etcd-1=https://10.0.0.2:2380,etcd-2=https://10.0.0.2:2382"
    )
    assert {"--client-cert-auth", "--peer-client-cert-auth"} <= set(argv)
    for side in ("", "peer-"):
        assert flag(argv, f"--{side}trusted-ca-file") == str(tls.ca)
        assert flag(argv, f"--{side}cert-file") == str(tls.cert)
        assert flag(argv, f"--{side}key-file") == str(tls.key)


def test_certificates_name_each_members_host_and_each_users_name(tmp_path: Path):
    pki.create_ca(tmp_path / "ca")
    certs = etcd.issue_certificates(tmp_path / "ca", MEMBERS, tmp_path / "etcd")
    assert certs == etcd.certificates(tmp_path / "etcd", MEMBERS, tmp_path / "ca" / "ca.crt")
    member = pki.describe(certs.member("etcd-1").cert)
    assert member.hosts == ["10.0.0.2"]

    def common_name(path: Path) -> str:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value

    assert common_name(certs.client.cert) == etcd.CLIENT_USER == "latitude"
    assert common_name(certs.root.cert) == etcd.ROOT_USER == "root"
    assert (certs.client.key.stat().st_mode & 0o777) == 0o600


def test_the_role_covers_the_prefix_and_nothing_beside_it():
    start, end = key_range("/latitude")
    assert (start, end) == (b"/latitude/", b"/latitude0")
    assert key_range("/latitude/") == (start, end)
    inside = [b"/latitude/leader", b"/latitude/failover/current"]
    outside = [b"/latitude", b"/latitude-other/x", b"/latitudeX", b"/other"]
    assert all(start <= k < end for k in inside)
    assert not any(start <= k < end for k in outside)
