"""STAND-IN until engineer W's wire.py lands (same interface): typed values and decode."""

from __future__ import annotations

from typing import Any

from pypsrp.serializer import TaggedValue


def u64(n: int) -> TaggedValue:
    return TaggedValue("U64", int(n))


def i64(n: int) -> TaggedValue:
    return TaggedValue("I64", int(n))


def i32(n: int) -> TaggedValue:
    return TaggedValue("I32", int(n))


def decode(value: Any) -> Any:
    from pypsrp.complex_objects import GenericComplexObject

    if isinstance(value, GenericComplexObject):
        if value.property_sets and not value.adapted_properties and not value.extended_properties:
            return value.to_string
        out: dict[str, Any] = {k: decode(v) for k, v in value.adapted_properties.items()}
        out.update({k: decode(v) for k, v in value.extended_properties.items()})
        out["__types__"] = list(value.types)
        return out
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value
