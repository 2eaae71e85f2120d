"""The etcd client's pure parts: which name members' certificates are checked against, and how
etcd's refusals are translated."""

from __future__ import annotations

from pathlib import Path

import aetcd.exceptions
import grpc
import pytest

from coordinator.etcd import (
    Etcd,
    EtcdError,
    EtcdPermissionDenied,
    EtcdUnavailable,
    _translate,
    tls_server_name,
)
from latitude.errors import ConfigError
from latitude.pki import CertFiles


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


def wrapped(code: grpc.StatusCode, details: str) -> Exception:
    """What aetcd raises for a status it has no class for: a ClientError from the RpcError."""
    try:
        try:
            raise rpc_error(code, details)
        except grpc.aio.AioRpcError as err:
            raise aetcd.exceptions.ClientError(details) from err
    except aetcd.exceptions.ClientError as err:
        return err


def test_members_on_one_host_are_checked_against_that_host():
    assert tls_server_name(["10.0.0.5:2379", "10.0.0.5:2381"]) == "10.0.0.5"
    assert tls_server_name(["[::1]:2379", "[::1]:2381"]) == "::1"


def test_a_configured_server_name_wins():
    assert tls_server_name(["10.0.0.5:2379", "10.0.0.6:2379"], "etcd.internal") == "etcd.internal"


def test_members_on_different_hosts_need_a_configured_name():
    with pytest.raises(ConfigError, match=r"etcd_server_name: .*different hosts \(10.0.0.5, 10"):
        tls_server_name(["10.0.0.5:2379", "10.0.0.6:2379"])


@pytest.mark.parametrize(
    "error",
    [
        wrapped(grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied"),
        rpc_error(grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied"),
        aetcd.exceptions.UnauthenticatedError("etcdserver: user name is empty"),
    ],
)
def test_refusals_of_who_we_are_are_permission_errors(error):
    if isinstance(error, aetcd.exceptions.UnauthenticatedError):
        error.__cause__ = rpc_error(grpc.StatusCode.UNAUTHENTICATED, str(error))
    translated = _translate(error, "put")
    assert type(translated) is EtcdPermissionDenied
    assert str(translated).startswith("etcd refused put: etcdserver:")


def test_other_failures_keep_their_kind():
    unavailable = aetcd.exceptions.ConnectionFailedError("no member")
    assert type(_translate(unavailable, "get")) is EtcdUnavailable
    other = wrapped(grpc.StatusCode.RESOURCE_EXHAUSTED, "etcdserver: too many requests")
    assert type(_translate(other, "get")) is EtcdError


async def test_a_missing_certificate_is_named_when_connecting(tmp_path: Path):
    tls = CertFiles(tmp_path / "latitude.crt", tmp_path / "latitude.key", tmp_path / "ca.crt")
    etcd = Etcd(["127.0.0.1:9"], tls=tls)
    with pytest.raises(ConfigError, match=r"cannot read .*latitude\.crt"):
        await etcd.connect()
    await etcd.close()


async def test_one_channel_over_every_member_checked_against_their_host(monkeypatch, tmp_path):
    opened = []

    def open_channel(target, tls, *, options):
        opened.append((target, tls, dict(options)))
        return grpc.aio.insecure_channel("127.0.0.1:9")

    monkeypatch.setattr("coordinator.etcd.open_channel", open_channel)
    tls = CertFiles(tmp_path / "latitude.crt", tmp_path / "latitude.key", tmp_path / "ca.crt")
    etcd = Etcd(["10.0.0.5:2379", "10.0.0.5:2381"], tls=tls)
    await etcd.connect()
    await etcd.connect()  # connected already: no second channel
    await etcd.close()
    [(target, used, options)] = opened
    assert (target, used) == ("ipv4:10.0.0.5:2379,10.0.0.5:2381", tls)
    assert options["grpc.ssl_target_name_override"] == "10.0.0.5"
    assert options["grpc.lb_policy_name"] == "round_robin"
    assert options["grpc.max_reconnect_backoff_ms"] == 1000


def test_plaintext_names_no_server():
    etcd = Etcd(["[::1]:2379", "[::1]:2381"])
    assert etcd._client._target == "ipv6:[::1]:2379,[::1]:2381"
    assert "grpc.ssl_target_name_override" not in etcd._client._options
