"""The files REJOIN writes into a data directory: pure file work on a temporary directory."""

from __future__ import annotations

from agent.datadir import configure_standby


def test_a_former_primary_becomes_a_standby_without_its_slots_or_its_fence(tmp_path):
    slot = tmp_path / "pg_replslot" / "latitude_eu_west_1"
    slot.mkdir(parents=True)
    (slot / "state").write_bytes(b"\0")
    (tmp_path / "postgresql.auto.conf").write_text(
        "max_connections = 50\n"
        "primary_conninfo = 'host=old'\n"
        "default_transaction_read_only = 'on'\n"
        "latitude.fenced = 'command'\n"
    )
    (tmp_path / "recovery.signal").write_text("")

    configure_standby(tmp_path, "host=10.0.0.2 port=5432 user=it's", "latitude_us_east_1")

    assert list((tmp_path / "pg_replslot").iterdir()) == []
    assert (tmp_path / "postgresql.auto.conf").read_text().splitlines() == [
        "max_connections = 50",
        "primary_conninfo = 'host=10.0.0.2 port=5432 user=it''s'",
        "primary_slot_name = 'latitude_us_east_1'",
    ]
    assert (tmp_path / "standby.signal").exists()
    assert not (tmp_path / "recovery.signal").exists()


def test_configuring_twice_gives_the_same_files(tmp_path):
    configure_standby(tmp_path, "host=a", "")
    first = (tmp_path / "postgresql.auto.conf").read_text()
    configure_standby(tmp_path, "host=a", "")
    assert (
        (tmp_path / "postgresql.auto.conf").read_text() == first == "primary_conninfo = 'host=a'\n"
    )
