"""One typed configuration object per program: a TOML file, then ``LATITUDE_*`` env, then flags.

Each program declares a frozen dataclass whose fields are its settings. ``load`` reads the
settings from the three sources in that order (later ones win), converts each value to the
field's declared type and runs the class's ``validate`` method; every error names the field and
the source it came from, so ``port_base = "x"`` in ``stack.toml`` does not surface as a traceback.

A setting whose type is a group of paths (``tls: CertFiles | None``) is given as one key per
member, ``tls_ca``, ``tls_cert`` and ``tls_key``, in every source: all of them or none.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from latitude.errors import ConfigError

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def load(
    cls: type[T],
    *,
    section: str,
    env_prefix: str,
    file: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    ignore: tuple[str, ...] = (),
) -> T:
    """Build ``cls`` from ``[section]`` of ``file``, then ``env_prefix + FIELD`` env, then flags.

    Flags whose value is None are treated as not given. Keys of the file's table named in
    ``ignore`` are left for the caller (structured settings such as lists of tables).
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    groups = _path_groups(hints)
    members = {f"{g}_{m}": (g, m) for g, kind in groups.items() for m in _members(kind)}
    given: dict[str, dict[str, tuple[Path | None, str]]] = {g: {} for g in groups}

    def member(key: str, raw: Any, where: str) -> None:
        group, name = members[key]
        given[group][name] = (_convert(raw, Path | None, where), where)

    if file is not None:
        table = _read_section(file, section)
        for key, raw in table.items():
            if key in ignore:
                continue
            if key in members:
                member(key, raw, f"{file}: [{section}] {key}")
                continue
            if key not in names:
                raise ConfigError(f"{file}: [{section}] has no setting {key!r}")
            values[key] = _convert(raw, hints[key], f"{file}: [{section}] {key}")

    for key, raw in (env or {}).items():
        if not key.startswith(env_prefix):
            continue
        name = key[len(env_prefix) :].lower()
        if name in members:
            member(name, raw, key)
        elif name in names:
            values[name] = _convert(raw, hints[name], key)

    for name, raw in (flags or {}).items():
        if raw is None:
            continue
        if name in members:
            member(name, raw, "--" + name.replace("_", "-"))
        else:
            values[name] = _convert(raw, hints[name], "--" + name.replace("_", "-"))

    for group, parts in given.items():
        values.update(_group(group, groups[group], parts))

    config = cls(**values)
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()
    return config


def _path_groups(hints: Mapping[str, Any]) -> dict[str, type]:
    """The settings that are groups of paths (a dataclass of Path fields), by name."""
    groups = {}
    for name, hint in hints.items():
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
            hint = next((a for a in typing.get_args(hint) if a is not type(None)), None)
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            kinds = typing.get_type_hints(hint).values()
            if kinds and all(kind is Path for kind in kinds):
                groups[name] = hint
    return groups


def _members(kind: type) -> list[str]:
    return [f.name for f in dataclasses.fields(kind)]


def _group(name: str, kind: type, parts: Mapping[str, tuple[Path | None, str]]) -> dict:
    """``{name: kind(...)}`` when every member is given, {} when none is; otherwise the
    error names what is missing and where the others came from."""
    present = {m: where for m, (path, where) in parts.items() if path is not None}
    if not present:
        return {}
    missing = [m for m in _members(kind) if m not in present]
    if missing:
        keys = ", ".join(f"{name}_{m}" for m in _members(kind))
        told = "; ".join(present.values())
        raise ConfigError(
            f"{', '.join(f'{name}_{m}' for m in missing)}: missing ({told} given): "
            f"give all of {keys}, or none"
        )
    return {name: kind(**{m: path for m, (path, _) in parts.items()})}


def _read_section(file: Path, section: str) -> Mapping[str, Any]:
    try:
        document = tomllib.loads(file.read_text())
    except FileNotFoundError as err:
        raise ConfigError(f"configuration file {file} does not exist") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"configuration file {file} is not valid TOML: {err}") from err
    table = document.get(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{file}: [{section}] must be a table")
    return table


def _convert(raw: Any, hint: Any, where: str) -> Any:
    optional = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(members) < len(typing.get_args(hint))
        hint = members[0]
    if optional and (raw is None or raw == ""):
        return None
    origin = typing.get_origin(hint)
    if origin is tuple and dataclasses.is_dataclass(typing.get_args(hint)[0]):
        return _tables(raw, typing.get_args(hint)[0], where)
    if origin is tuple:
        items = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(items, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {raw!r}")
        item_type = typing.get_args(hint)[0]
        return tuple(_convert(_strip(i), item_type, where) for i in items if _strip(i) != "")
    if hint is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise ConfigError(f"{where}: expected true or false, got {raw!r}")
    if hint is int:
        if isinstance(raw, bool):
            raise ConfigError(f"{where}: expected an integer, got {raw!r}")
        try:
            return int(raw)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{where}: expected an integer, got {raw!r}") from err
    if hint is float:
        try:
            value = float(raw)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{where}: expected a number, got {raw!r}") from err
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {raw!r}")
        return value
    if hint is Path:
        return Path(str(raw)).expanduser()
    if hint is str:
        if not isinstance(raw, str):
            raise ConfigError(f"{where}: expected a string, got {raw!r}")
        return raw
    raise TypeError(f"unsupported setting type {hint!r} for {where}")


def _tables(raw: Any, cls: type, where: str) -> tuple:
    """A TOML array of tables (``[[section.name]]``), or the same as a JSON list of objects
    (from the environment), as a tuple of ``cls``, each checked by its ``validate``."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else []
        except json.JSONDecodeError as err:
            raise ConfigError(f"{where}: expected a JSON list of objects ({err})") from err
    if not isinstance(raw, list | tuple):
        raise ConfigError(f"{where}: expected a list of tables, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    items = []
    for index, table in enumerate(raw):
        here = f"{where}[{index}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{here}: expected a table, got {table!r}")
        unknown = sorted(set(table) - set(fields))
        if unknown:
            raise ConfigError(
                f"{here}: no setting {unknown[0]!r} (known: {', '.join(sorted(fields))})"
            )
        missing = [
            name
            for name, f in fields.items()
            if name not in table
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ConfigError(f"{here}: {missing[0]} is required")
        values = {k: _convert(v, hints[k], f"{here}.{k}") for k, v in table.items()}
        item = cls(**values)
        validate = getattr(item, "validate", None)
        if validate is not None:
            validate(here)
        items.append(item)
    return tuple(items)


def _strip(item: Any) -> Any:
    return item.strip() if isinstance(item, str) else item
