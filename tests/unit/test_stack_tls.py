"""The local stack's certificates: the plan, reuse across restarts, renewal that replaces all or
nothing, expiry flags, and the TLS line of ``latitude status``."""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import pytest

from latitude import certs_view, cli, pki
from latitude.errors import ConfigError, StackError
from latitude.pki import Identity
from latitude.stack import services, tls
from latitude.stack.state import StackState
from latitude.stack.topology import DEFAULT_TOPOLOGY

NOW = datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC)


def _specs() -> list[tls.CertSpec]:
    addresses = {"coordinator-2": "10.0.0.2", "agent-eu-west-1": "10.0.1.5"}
    return tls.plan(DEFAULT_TOPOLOGY, lambda name: addresses.get(name, "127.0.0.1"))


def test_the_plan_gives_every_component_its_identity_and_address():
    specs = {s.name: s for s in _specs()}
    assert specs["coordinator-2"] == tls.CertSpec(
        "coordinator-2", Identity("coordinator"), ("10.0.0.2",)
    )
    assert specs["agent-eu-west-1"].identity == Identity("agent", "eu-west-1")
    assert specs["agent-eu-west-1"].hosts == ("10.0.1.5",)
    assert specs["operator"].identity == Identity("operator") and not specs["operator"].hosts
    assert specs["reader"].identity == Identity("reader")
    # etcd takes the CN as the user: latitude for the coordinators, root for setup.
    assert specs[tls.ETCD_CLIENT].common_name == "latitude"
    assert specs[tls.ETCD_ROOT].common_name == "root"
    assert "127.0.0.1" in specs["etcd-1"].hosts
    assert len(specs) == 3 + 3 + 2 + 3 + 2


def test_ensure_makes_a_ca_and_keeps_what_is_there(tmp_path: Path):
    specs = _specs()
    assert len(tls.ensure(tmp_path, specs)) == len(specs)
    serial = pki.describe(tmp_path / "coordinator-1.crt").serial
    ca_serial = pki.describe(tmp_path / "ca.crt").serial
    assert tls.ensure(tmp_path, specs) == []  # a restart keeps every certificate
    assert pki.describe(tmp_path / "coordinator-1.crt").serial == serial
    # A certificate that no longer says what the plan says (an address changed) is reissued.
    moved = [
        tls.CertSpec(s.name, s.identity, ("10.9.9.9",)) if s.name == "coordinator-1" else s
        for s in specs
    ]
    assert tls.ensure(tmp_path, moved) == ["coordinator-1"]
    assert pki.describe(tmp_path / "coordinator-1.crt").hosts == ["10.9.9.9"]
    assert pki.describe(tmp_path / "ca.crt").serial == ca_serial
    (tmp_path / "reader.key").unlink()
    assert tls.ensure(tmp_path, specs) == ["coordinator-1", "reader"]


def test_renew_replaces_every_certificate_from_the_same_ca(tmp_path: Path):
    specs = _specs()
    tls.ensure(tmp_path, specs)
    before = {s.name: pki.describe(tmp_path / f"{s.name}.crt") for s in specs}
    ca = (tmp_path / "ca.crt").read_bytes()
    assert tls.renew(tmp_path, specs, days=30) == [s.name for s in specs]
    assert (tmp_path / "ca.crt").read_bytes() == ca
    for spec in specs:
        after = pki.describe(tmp_path / f"{spec.name}.crt")
        assert after.serial != before[spec.name].serial
        assert after.identity == before[spec.name].identity
        assert after.not_after - after.not_before < datetime.timedelta(days=31)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_renewal_that_fails_part_way_replaces_nothing(tmp_path: Path, monkeypatch):
    specs = _specs()
    tls.ensure(tmp_path, specs)
    before = (tmp_path / "coordinator-1.crt").read_bytes()
    real = pki.issue

    def issue(ca_dir, name, **kwargs):
        if name == "reader":
            raise OSError(28, "No space left on device")
        return real(ca_dir, name, **kwargs)

    monkeypatch.setattr(pki, "issue", issue)
    with pytest.raises(OSError, match="No space"):
        tls.renew(tmp_path, specs)
    assert (tmp_path / "coordinator-1.crt").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_renew_needs_the_ca_and_a_sane_lifetime(tmp_path: Path):
    with pytest.raises(StackError, match="no CA"):
        tls.renew(tmp_path, _specs())
    with pytest.raises(ConfigError, match="days"):
        tls.renew(tmp_path, _specs(), days=0)


def test_expiry_is_flagged_under_thirty_days(tmp_path: Path):
    pki.create_ca(tmp_path)
    info = pki.describe(pki.issue(tmp_path, "x", identity=Identity("reader"), days=40).cert)
    assert tls.expiry_note(info, info.not_after - datetime.timedelta(days=31)) == ""
    soon = info.not_after - datetime.timedelta(days=29)
    assert tls.expiry_note(info, soon) == "expires in under 30 days"
    assert tls.human_expiry(info, soon) == "29 d"
    late = info.not_after + datetime.timedelta(hours=3)
    assert tls.expiry_note(info, late) == "EXPIRED"
    assert tls.human_expiry(info, late) == "expired 3 h ago"
    assert tls.expiry_note(None, NOW) == "MISSING"


def test_status_says_which_mode_runs(tmp_path: Path):
    plain = certs_view.format_mode(None, NOW)
    assert "plaintext: anyone who reaches a port can change the cluster" in plain
    assert certs_view.mode_json(None)["mode"] == "plaintext"
    specs = _specs()
    tls.ensure(tmp_path, specs)
    (tmp_path / "reader.crt").unlink()
    now = datetime.datetime.now(datetime.UTC)
    summary = tls.summary(tmp_path, specs, now)
    line = certs_view.format_mode(summary, now)
    assert line.startswith("security: mutual TLS, CA fingerprint SHA-256 ")
    assert summary.ca_fingerprint[:23] in line
    assert "WARNING: certificates to renew" in line and "reader MISSING" in line
    assert certs_view.mode_json(summary)["flagged"] == {"reader": "MISSING"}
    soon = now + datetime.timedelta(days=340)
    assert "coordinator-1 expires in under 30 days" in certs_view.format_mode(
        tls.summary(tmp_path, specs, soon), soon
    )


def test_the_certs_table(tmp_path: Path):
    specs = _specs()
    tls.ensure(tmp_path, specs)
    infos = tls.inventory(tmp_path, specs)
    ca = pki.describe(tmp_path / "ca.crt")
    now = datetime.datetime.now(datetime.UTC)
    text = certs_view.format_certs(ca, specs, infos, now)
    lines = text.splitlines()
    assert lines[0].startswith(f"CA {tmp_path / 'ca.crt'}")
    assert lines[2].split() == ["COMPONENT", "IDENTITY", "HOSTS", "EXPIRES", "IN", "NOTE"]
    row = next(line for line in lines if line.startswith("agent-eu-west-1"))
    assert "agent of eu-west-1" in row and "10.0.1.5" in row and "364 d" in row
    late = now + datetime.timedelta(days=360)
    assert "EXPIRES IN UNDER 30 DAYS" in certs_view.format_certs(ca, specs, infos, late)
    data = certs_view.certs_json(ca, specs, infos, now)
    assert data["certificates"][0]["identity"] == "latitude://role/coordinator"
    assert data["ca"]["fingerprint"] == tls.fingerprint(tmp_path / "ca.crt")


def test_state_records_the_mode_and_paths(tmp_path: Path):
    state = StackState(dir=tmp_path, host="127.0.0.1", ports={})
    assert state.cert_files("operator") is None
    state.tls = tls.state_record(tmp_path / "tls", _specs())
    state.save()
    loaded = StackState.load(tmp_path)
    assert loaded == state
    assert loaded.cert_files("operator") == pki.CertFiles(
        tmp_path / "tls/operator.crt", tmp_path / "tls/operator.key", tmp_path / "tls/ca.crt"
    )
    with pytest.raises(StackError, match="no certificate for nobody"):
        loaded.cert_files("nobody")


def test_processes_get_paths_never_keys_inline(tmp_path: Path):
    files = pki.CertFiles(tmp_path / "c.crt", tmp_path / "c.key", tmp_path / "ca.crt")
    assert services.tls_flags(None) == []
    assert services.tls_flags(files) == [
        "--tls-ca",
        str(files.ca),
        "--tls-cert",
        str(files.cert),
        "--tls-key",
        str(files.key),
    ]
    assert services.tls_flags(files, "--etcd-")[0] == "--etcd-ca"


def _args(tmp_path: Path, **flags) -> argparse.Namespace:
    base = {"dir": tmp_path, "config": None, "tls_ca": None, "tls_cert": None, "tls_key": None}
    return argparse.Namespace(**(base | flags))


def test_the_cli_takes_flags_then_env_then_the_local_stack(tmp_path: Path):
    assert cli.client_tls(_args(tmp_path), env={}) is None  # no stack, no flags: plaintext
    flags = _args(tmp_path, tls_ca="ca", tls_cert="me.crt", tls_key="me.key")
    assert cli.client_tls(flags, env={}) == pki.CertFiles(
        Path("me.crt"), Path("me.key"), Path("ca")
    )
    env = {"LATITUDE_TLS_CA": "a", "LATITUDE_TLS_CERT": "b", "LATITUDE_TLS_KEY": "c"}
    assert cli.client_tls(_args(tmp_path), env=env).cert == Path("b")
    with pytest.raises(ConfigError, match="--tls-ca, --tls-cert and --tls-key: give all three"):
        cli.client_tls(_args(tmp_path, tls_cert="me.crt"), env={})
    with pytest.raises(ConfigError, match="LATITUDE_TLS_CA"):
        cli.client_tls(_args(tmp_path), env={"LATITUDE_TLS_KEY": "k"})
    state = StackState(dir=tmp_path, host="127.0.0.1", ports={})
    state.tls = tls.state_record(tmp_path / "tls", _specs())
    state.save()
    assert cli.client_tls(_args(tmp_path), env={}).cert == tmp_path / "tls/operator.crt"


def test_a_stack_keeps_its_mode_and_takes_a_ca_provided_beforehand(tmp_path: Path):
    from latitude.stack.config import StackConfig
    from latitude.stack.stack import Stack

    provided = tmp_path / "mine" / "tls"
    pki.create_ca(provided)
    state, created = Stack(StackConfig(dir=tmp_path / "mine", tls=True))._load_or_create()
    assert created and state.tls["ca"] == str(provided / "ca.crt")
    with pytest.raises(StackError, match="runs in TLS, not plaintext: run `latitude down`"):
        Stack(StackConfig(dir=tmp_path / "mine", tls=False))._load_or_create()
    assert Stack(StackConfig(dir=tmp_path / "mine"))._load_or_create()[0].tls == state.tls

    (tmp_path / "plain").mkdir()
    Stack(StackConfig(dir=tmp_path / "plain"))._load_or_create()
    with pytest.raises(StackError, match="runs in plaintext, not TLS: run `latitude down`"):
        Stack(StackConfig(dir=tmp_path / "plain", tls=True))._load_or_create()

    pki.create_ca(tmp_path / "other" / "tls")
    (tmp_path / "other" / "tls" / "stray.crt").write_text("")
    with pytest.raises(StackError, match="holds tls but no state file"):
        Stack(StackConfig(dir=tmp_path / "other", tls=True))._load_or_create()


def test_up_takes_tls_from_the_flag_the_environment_or_the_file(tmp_path: Path, monkeypatch):
    def mode(*argv: str):
        args = cli._parser().parse_args(["up", "--dir", str(tmp_path), *argv])
        return cli._stack(args).config.tls

    monkeypatch.delenv("LATITUDE_STACK_TLS", raising=False)
    assert mode() is None  # as the stack runs; plaintext for a new one
    assert mode("--tls") is True
    assert mode("--no-tls") is False
    monkeypatch.setenv("LATITUDE_STACK_TLS", "1")
    assert mode() is True
    settings = tmp_path / "stack.toml"
    settings.write_text("[stack]\ntls = true\n")
    monkeypatch.delenv("LATITUDE_STACK_TLS")
    assert mode("--config", str(settings)) is True
    assert mode("--config", str(settings), "--no-tls") is False
