"""Protobuf enum values as people read them: RegionState HEALTHY, not REGION_STATE_HEALTHY.

Every latitude.v1 enum prefixes its values with its own name in upper snake case (the
convention of common.proto), so the prefix is derived from the enum, never typed by hand.
"""

from __future__ import annotations

import re

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

_WORD = re.compile(r"(?<!^)(?=[A-Z])")


def short_name(enum: EnumTypeWrapper, value: int, *, lower: bool = False) -> str:
    """``value``'s name without its enum's prefix (lower case if asked)."""
    prefix = _WORD.sub("_", enum.DESCRIPTOR.name).upper() + "_"
    name = enum.Name(value).removeprefix(prefix)
    return name.lower() if lower else name
