"""state.json holds the database passwords: written without following a link, readable by its
owner only, in a directory nobody else may write in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from latitude.errors import StackError
from latitude.stack.state import StackState, exclusive, write_private


def _state(directory: Path) -> StackState:
    return StackState(dir=directory, host="127.0.0.1", ports={"etcd-1.client": 2379})


def test_a_link_planted_at_the_state_file_is_replaced_not_followed(tmp_path: Path):
    stack = tmp_path / "stack"
    stack.mkdir(mode=0o755)
    target = tmp_path / "victim"
    target.write_text("untouched\n")
    (stack / "state.json").symlink_to(target)
    state = _state(stack)
    state.save()
    assert target.read_text() == "untouched\n"
    assert not (stack / "state.json").is_symlink()
    assert (stack / "state.json").stat().st_mode & 0o777 == 0o600
    assert StackState.load(stack) == state
    assert [p.name for p in stack.iterdir()] == ["state.json"]  # no temporary file left


def test_a_state_file_that_is_a_link_is_not_read(tmp_path: Path):
    stack = tmp_path / "stack"
    stack.mkdir(mode=0o755)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _state(elsewhere).save()
    (stack / "state.json").symlink_to(elsewhere / "state.json")
    with pytest.raises(StackError, match=r"state.json is a symbolic link"):
        StackState.load(stack)


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757])
def test_a_directory_others_may_write_in_is_refused_by_name(tmp_path: Path, mode: int):
    stack = tmp_path / "shared"
    stack.mkdir()
    stack.chmod(mode)
    with pytest.raises(StackError, match=rf"{stack} is writable by others .*chmod go-w"):
        _state(stack).save()
    assert not (stack / "state.json").exists()
    with pytest.raises(StackError, match=rf"{stack} is writable by others"):
        with exclusive(stack):
            pass


def test_a_directory_of_another_user_is_refused_by_name(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("giving a directory to another user needs root")
    stack = tmp_path / "theirs"
    stack.mkdir(mode=0o755)
    os.chown(stack, 65534, 65534)
    with pytest.raises(StackError, match=rf"{stack} belongs to uid 65534, not to the user"):
        _state(stack).save()


def test_a_private_file_is_created_private_and_replaced_whole(tmp_path: Path):
    path = tmp_path / "secret"
    write_private(path, b"one\n")
    first = path.stat().st_ino
    write_private(path, b"two\n")
    assert path.read_bytes() == b"two\n"
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.stat().st_ino != first  # a new file renamed into place, not rewritten
