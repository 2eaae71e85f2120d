from __future__ import annotations

import json
from pathlib import Path

import pytest

from latitude.errors import StackError, UnknownRegionError
from latitude.stack.processes import ProcessRecord
from latitude.stack.state import StackState, exclusive
from latitude.stack.topology import DEFAULT_TOPOLOGY
from latitude.table import human_bytes, render


def test_the_default_topology_has_one_primary_and_two_standbys():
    assert DEFAULT_TOPOLOGY.primary.name == "us-east-1"
    assert [r.name for r in DEFAULT_TOPOLOGY.standbys] == ["eu-west-1", "ap-southeast-1"]
    assert DEFAULT_TOPOLOGY.region("eu-west-1").slot_name == "latitude_eu_west_1"
    with pytest.raises(UnknownRegionError, match="unknown region 'us-west-9'"):
        DEFAULT_TOPOLOGY.region("us-west-9")


def test_state_round_trips_and_is_private(tmp_path: Path):
    state = StackState(dir=tmp_path, host="127.0.0.1", ports={"etcd-1.client": 2379})
    state.initialized.add("etcd-1")
    state.processes["etcd-1"] = ProcessRecord("etcd-1", 123, 456)
    state.save()
    assert (tmp_path / "state.json").stat().st_mode & 0o777 == 0o600
    loaded = StackState.load(tmp_path)
    assert loaded == state


def test_missing_unreadable_and_foreign_state(tmp_path: Path):
    assert StackState.load(tmp_path) is None
    (tmp_path / "state.json").write_text("[]")
    with pytest.raises(StackError, match="malformed"):
        StackState.load(tmp_path)
    (tmp_path / "state.json").write_text(json.dumps({"version": 99}))
    with pytest.raises(StackError, match="has version 99"):
        StackState.load(tmp_path)


def test_two_commands_cannot_hold_the_stack_at_once(tmp_path: Path):
    with exclusive(tmp_path), pytest.raises(StackError, match="another latitude command"):
        with exclusive(tmp_path):
            pass


def test_tables_align_and_sizes_read_naturally():
    table = render(["A", "LONGER"], [["x", 1], ["wide value", None]])
    assert table.splitlines() == [
        "A           LONGER",
        "----------  ------",
        "x           1",
        "wide value",
    ]
    assert [human_bytes(n) for n in (None, 0, 2048, 5 * 2**30)] == [
        "-",
        "0 B",
        "2.0 KiB",
        "5.0 GiB",
    ]
