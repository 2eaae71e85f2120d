"""The local CA: identities travel in SAN URIs, keys are private, bad identities are refused."""

from __future__ import annotations

import os
import stat

import pytest

from latitude import pki


def test_an_agent_certificate_names_its_region_and_serves_its_hosts(tmp_path):
    pki.create_ca(tmp_path)
    files = pki.issue(
        tmp_path, "agent-eu", identity=pki.Identity("agent", "eu-west-1"), hosts=["10.0.0.2", "db"]
    )
    info = pki.describe(files.cert)
    assert info.identity == pki.Identity("agent", "eu-west-1")
    assert sorted(info.hosts) == ["10.0.0.2", "db"]
    assert not info.is_ca and pki.describe(files.ca).is_ca
    assert pki.identity_of_pem(files.cert.read_bytes()).region == "eu-west-1"
    assert stat.S_IMODE(os.stat(files.key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "ca.key").st_mode) == 0o600


def test_roles_and_foreign_uris():
    assert pki.Identity.from_uris(["spiffe://x/y", "latitude://role/operator"]) == pki.Identity(
        "operator"
    )
    assert pki.Identity.from_uris(["latitude://role/agent"]) is None  # an agent needs a region
    assert pki.Identity.from_uris(["latitude://role/root"]) is None
    assert pki.Identity.from_uris([]) is None
    with pytest.raises(ValueError, match="unknown role"):
        pki.Identity("root")
    with pytest.raises(ValueError, match="names its region"):
        pki.Identity("operator", "eu-west-1")


def test_a_key_is_never_written_through_a_planted_link(tmp_path):
    pki.create_ca(tmp_path)
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    (tmp_path / "x.key").unlink(missing_ok=True)
    os.symlink(target, tmp_path / "x.key")
    pki.issue(tmp_path, "x", identity=pki.Identity("reader"))
    assert target.read_text() == "keep"
    assert not (tmp_path / "x.key").is_symlink()
