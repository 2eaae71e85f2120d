"""latitude.channels: message limits on every channel, certificates read once per version."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from latitude import channels, pki
from latitude.channels import MAX_MESSAGE_BYTES, channel_credentials, open_channel, with_limits
from latitude.errors import ConfigError
from latitude.pki import CertFiles, Identity


def test_the_limits_are_always_set_and_the_caller_wins_on_the_same_key():
    assert dict(with_limits()) == {
        "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
        "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
    }
    merged = with_limits([("grpc.max_receive_message_length", 1024), ("grpc.keepalive_time_ms", 9)])
    assert merged == [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", 1024),
        ("grpc.keepalive_time_ms", 9),
    ]


def test_credentials_are_read_once_per_version_of_the_files(tmp_path, monkeypatch):
    pki.create_ca(tmp_path)
    tls = pki.issue(tmp_path, "reader", identity=Identity("reader"))
    reads = []
    real = CertFiles.read
    monkeypatch.setattr(CertFiles, "read", lambda self: reads.append(self) or real(self))
    first = channel_credentials(tls)
    assert channel_credentials(tls) is first
    assert len(reads) == 1
    # Renewed (latitude certs rewrites the files): the next channel uses the new ones.
    pki.issue(tmp_path, "reader", identity=Identity("reader"))
    stat = os.stat(tls.cert)
    os.utime(tls.cert, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert channel_credentials(tls) is not first
    assert len(reads) == 2


def test_a_missing_file_is_a_clear_error(tmp_path):
    missing = CertFiles(tmp_path / "a.crt", tmp_path / "a.key", tmp_path / "ca.crt")
    with pytest.raises(ConfigError, match=r"cannot read .*a\.crt: No such file"):
        channel_credentials(missing)


def test_the_cache_stays_bounded(tmp_path):
    pki.create_ca(tmp_path)
    for i in range(channels._CACHED + 3):
        channel_credentials(pki.issue(tmp_path, f"r{i}", identity=Identity("reader")))
    assert len(channels._credentials) == channels._CACHED


async def test_a_channel_opens_with_or_without_tls(tmp_path):
    pki.create_ca(tmp_path)
    tls = pki.issue(tmp_path, "reader", identity=Identity("reader"))
    for given in (None, tls):
        channel = open_channel("127.0.0.1:1", given)
        await channel.close()


# Channels that are not latitude's to secure this way: etcd's (its own TLS and auth) and the
# user-configured gRPC health check of a service beside the agent.
_OWN_CHANNELS = {"latitude/channels.py", "coordinator/etcd.py", "agent/checks.py"}


def test_every_grpc_channel_is_opened_through_latitude_channels():
    root = Path(__file__).resolve().parents[2]
    direct = [
        str(path.relative_to(root))
        for package in ("latitude", "coordinator", "agent")
        for path in sorted((root / package).rglob("*.py"))
        if str(path.relative_to(root)) not in _OWN_CHANNELS
        and "latitude/v1/" not in str(path.relative_to(root))
        and re.search(r"\b(insecure|secure)_channel\(", path.read_text())
    ]
    assert not direct, f"open channels with latitude.channels.open_channel in {direct}"
