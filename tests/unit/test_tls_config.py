"""TLS settings: tls_ca, tls_cert and tls_key become one CertFiles (all three or none, from
the file, the environment or flags), and a certificate that does not fit the program is a
clear error naming the setting."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from agent.config import AgentConfig
from coordinator.config import CoordinatorConfig
from latitude import config as configuration
from latitude import pki
from latitude.errors import ConfigError
from latitude.pki import CertFiles, Identity
from latitude.tls_config import check_tls


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, CertFiles]:
    here: Path = tmp_path_factory.mktemp("tls")
    pki.create_ca(here / "ca")
    pki.create_ca(here / "other")
    local = ["127.0.0.1", "localhost"]
    return {
        "coordinator": pki.issue(
            here / "ca", "c1", identity=Identity("coordinator"), hosts=[*local, "*.example"]
        ),
        "client-only": pki.issue(here / "ca", "c3", identity=Identity("coordinator")),
        "operator": pki.issue(here / "ca", "op", identity=Identity("operator")),
        "eu": pki.issue(here / "ca", "eu", identity=Identity("agent", "eu-west-1"), hosts=local),
        "us": pki.issue(here / "ca", "us", identity=Identity("agent", "us-east-1"), hosts=local),
        "stranger": pki.issue(here / "other", "c2", identity=Identity("coordinator"), hosts=local),
    }


def flags_of(tls: CertFiles) -> dict[str, str]:
    return {"tls_ca": str(tls.ca), "tls_cert": str(tls.cert), "tls_key": str(tls.key)}


def coordinator(*, file: Path | None = None, env=None, flags=None) -> CoordinatorConfig:
    return configuration.load(
        CoordinatorConfig, section="coordinator", env_prefix="LATITUDE_COORDINATOR_",
        file=file, env=env or {}, flags=flags or {},
    )  # fmt: skip


def agent(region: str, flags: dict) -> AgentConfig:
    return configuration.load(
        AgentConfig, section="agent", env_prefix="LATITUDE_AGENT_", env={},
        flags={"region": region, "coordinators": "127.0.0.1:1", **flags},
    )  # fmt: skip


def test_no_tls_settings_is_plaintext():
    assert coordinator().tls is None


def test_the_three_settings_become_one_certfiles_from_any_source(certs, tmp_path):
    tls = certs["coordinator"]
    assert coordinator(flags=flags_of(tls)).tls == tls
    env = {f"LATITUDE_COORDINATOR_{k.upper()}": v for k, v in flags_of(tls).items()}
    assert coordinator(env=env).tls == tls
    file = tmp_path / "c.toml"
    file.write_text(
        f'[coordinator]\ntls_ca = "{tls.ca}"\ntls_cert = "{tls.cert}"\ntls_key = "{tls.key}"\n'
    )
    assert coordinator(file=file).tls == tls
    # A later source wins member by member, and an empty value takes one back.
    with pytest.raises(ConfigError, match="is not the key of tls_cert"):
        coordinator(file=file, flags={"tls_key": str(certs["eu"].key)})
    with pytest.raises(ConfigError, match=r"^tls_ca: missing"):
        coordinator(file=file, env={"LATITUDE_COORDINATOR_TLS_CA": ""})


def test_all_three_or_none(certs):
    partial = flags_of(certs["coordinator"])
    del partial["tls_key"]
    with pytest.raises(ConfigError) as caught:
        coordinator(flags=partial)
    message = str(caught.value)
    assert message.startswith("tls_key: missing (--tls-ca; --tls-cert given)")
    assert "give all of tls_cert, tls_key, tls_ca, or none" in message


def test_a_coordinator_needs_a_coordinators_certificate(certs):
    with pytest.raises(ConfigError) as caught:
        coordinator(flags=flags_of(certs["operator"]))
    assert str(caught.value) == (
        f"tls_cert: {certs['operator'].cert} speaks for operator (latitude://role/operator), "
        "but this program runs as coordinator: its certificate must carry the SAN URI "
        "latitude://role/coordinator"
    )


def test_an_agent_needs_its_own_regions_certificate(certs):
    assert agent("eu-west-1", flags_of(certs["eu"])).tls == certs["eu"]
    with pytest.raises(ConfigError, match="speaks for agent of us-east-1") as caught:
        agent("eu-west-1", flags_of(certs["us"]))
    assert "latitude://region/eu-west-1" in str(caught.value)
    with pytest.raises(ConfigError, match="speaks for coordinator"):
        agent("eu-west-1", flags_of(certs["coordinator"]))


def test_unreadable_foreign_or_mismatched_files_are_named(certs, tmp_path):
    good = certs["coordinator"]
    with pytest.raises(ConfigError, match=r"^tls_ca: cannot read .*missing\.crt"):
        check_tls(CertFiles(good.cert, good.key, tmp_path / "missing.crt"), Identity("coordinator"))
    stranger = certs["stranger"]
    with pytest.raises(ConfigError, match=r"^tls_cert: .* was not issued by the CA in tls_ca"):
        check_tls(CertFiles(stranger.cert, stranger.key, good.ca), Identity("coordinator"))
    with pytest.raises(ConfigError, match=r"^tls_key: .* is not the key of tls_cert"):
        check_tls(CertFiles(good.cert, certs["operator"].key, good.ca), Identity("coordinator"))
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"^tls_cert: .*garbage\.crt is not a PEM certificate"):
        check_tls(CertFiles(garbage, good.key, good.ca), Identity("coordinator"))
    with pytest.raises(ConfigError, match=r"^tls_key: .* is not an unencrypted PEM private key"):
        check_tls(CertFiles(good.cert, garbage, good.ca), Identity("coordinator"))


def test_an_expired_certificate_is_refused(certs):
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=400)
    with pytest.raises(ConfigError, match=r"expired on .*renew it: latitude certs"):
        check_tls(certs["coordinator"], Identity("coordinator"), now=later)
    check_tls(certs["coordinator"], Identity("coordinator"))


def test_the_certificate_must_name_the_host_others_dial(certs):
    tls = flags_of(certs["coordinator"])
    assert coordinator(flags={**tls, "advertise": "localhost:50051"}).tls is not None
    assert coordinator(flags={**tls, "advertise": "c1.example:50051"}).tls is not None
    with pytest.raises(ConfigError) as caught:
        coordinator(flags={**tls, "advertise": "10.0.0.7:50051"})
    assert str(caught.value) == (
        f"tls_cert: {certs['coordinator'].cert} is not valid for 10.0.0.7, where others reach "
        "this program (advertise); it names localhost, *.example, 127.0.0.1"
    )
    with pytest.raises(ConfigError, match=r"is not valid for a.c1.example, .*\(advertise\)"):
        coordinator(flags={**tls, "advertise": "a.c1.example:50051"})  # one label, not two
    # A wildcard listen address without advertise names no host to check.
    assert coordinator(flags={**tls, "listen": "0.0.0.0:50051"}).tls is not None
    with pytest.raises(ConfigError, match=r"may only be a client's \(no serverAuth usage\)"):
        coordinator(flags=flags_of(certs["client-only"]))
    with pytest.raises(ConfigError, match=r"not valid for 10.1.1.1, .* \(listen\)"):
        agent("eu-west-1", {**flags_of(certs["eu"]), "listen": "10.1.1.1:0"})
