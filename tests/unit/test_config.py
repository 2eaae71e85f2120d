from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from latitude import config
from latitude.errors import ConfigError
from latitude.stack.config import StackConfig


@dataclass(frozen=True)
class Example:
    name: str = "default"
    count: int = 1
    ratio: float = 0.5
    enabled: bool = False
    path: Path | None = None
    peers: tuple[str, ...] = ()

    def validate(self) -> None:
        if self.count < 0:
            raise ConfigError(f"count: must not be negative, got {self.count}")


def load(**kwargs) -> Example:
    return config.load(Example, section="example", env_prefix="LATITUDE_EX_", **kwargs)


def test_defaults_when_nothing_is_given():
    assert load() == Example()


def test_file_then_env_then_flags(tmp_path: Path):
    file = tmp_path / "c.toml"
    file.write_text('[example]\nname = "file"\ncount = 5\nratio = 0.25\n')
    loaded = load(
        file=file,
        env={"LATITUDE_EX_COUNT": "7", "LATITUDE_EX_PEERS": "a, b,,c", "OTHER": "x"},
        flags={"name": "flag", "ratio": None},
    )
    assert loaded == Example(name="flag", count=7, ratio=0.25, peers=("a", "b", "c"))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LATITUDE_EX_COUNT": "many"}, "LATITUDE_EX_COUNT: expected an integer, got 'many'"),
        ({"LATITUDE_EX_RATIO": "nan"}, "LATITUDE_EX_RATIO: expected a finite number"),
        ({"LATITUDE_EX_RATIO": "inf"}, "LATITUDE_EX_RATIO: expected a finite number"),
        ({"LATITUDE_EX_ENABLED": "maybe"}, "LATITUDE_EX_ENABLED: expected true or false"),
        ({"LATITUDE_EX_COUNT": "-1"}, "count: must not be negative"),
    ],
)
def test_bad_values_name_their_source(env, message):
    with pytest.raises(ConfigError, match=message):
        load(env=env)


def test_booleans_and_optional_paths():
    loaded = load(env={"LATITUDE_EX_ENABLED": "yes", "LATITUDE_EX_PATH": "~/x"})
    assert loaded.enabled is True
    assert loaded.path == Path("~/x").expanduser()
    assert load(env={"LATITUDE_EX_PATH": ""}).path is None


def test_file_errors_name_the_file(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[example\n")
    with pytest.raises(ConfigError, match=f"{bad} is not valid TOML"):
        load(file=bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[example]\ncolour = 'red'\n")
    with pytest.raises(ConfigError, match=r"unknown.toml: \[example\] has no setting 'colour'"):
        load(file=unknown)
    typed = tmp_path / "typed.toml"
    typed.write_text("[example]\nname = 3\n")
    with pytest.raises(ConfigError, match=r"\[example\] name: expected a string, got 3"):
        load(file=typed)
    with pytest.raises(ConfigError, match="does not exist"):
        load(file=tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"host": "localhost"}, "host: 'localhost' is not an IP address"),
        ({"port_base": 80}, "port_base: 80 is outside"),
        ({"ready_timeout": 0.0}, "ready_timeout: must be positive"),
    ],
)
def test_stack_settings_are_validated(flags, message):
    with pytest.raises(ConfigError, match=message):
        config.load(StackConfig, section="stack", env_prefix="LATITUDE_STACK_", flags=flags)
