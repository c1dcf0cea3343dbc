"""Records to JSON-ready values and back, field by field, for state stores and fingerprints.

Frozen sets become sorted lists and mappings plain dicts, so equal records encode to equal
text; decoding follows the dataclass type hints.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from functools import cache
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from reconciler.model import records
from reconciler.model.records import Record, frozen_map

T = TypeVar("T")

RECORD_TYPES: dict[str, type[Any]] = {
    "Cluster": records.Cluster,
    "Node": records.Node,
    "VirtualSwitch": records.VirtualSwitch,
    "ClusterSharedVolume": records.ClusterSharedVolume,
    "VirtualMachine": records.VirtualMachine,
}


def encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, frozenset | set):
        return sorted(encode(v) for v in value)
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in sorted(value.items())}
    if isinstance(value, tuple | list):
        return [encode(v) for v in value]
    return value


@cache
def _hints(cls: type[Any]) -> dict[str, Any]:
    return get_type_hints(cls, vars(records))


def _decode(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        return _decode(options[0], value) if len(options) == 1 else value
    if origin is Literal:
        return value
    if origin is tuple:
        (item,) = get_args(tp)[:1]
        return tuple(_decode(item, v) for v in value)
    if origin is frozenset:
        (item,) = get_args(tp)
        return frozenset(_decode(item, v) for v in value)
    if origin is Mapping or origin is dict:
        _, item = get_args(tp)
        return frozen_map({k: _decode(item, v) for k, v in value.items()})
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        return tp(**{k: _decode(hints[k], v) for k, v in value.items() if k in hints})
    if tp is float:
        return float(value)
    return value


def decode(cls: type[T], value: Mapping[str, Any]) -> T:
    result: T = _decode(cls, value)
    return result


def decode_record(kind: str, value: Mapping[str, Any]) -> Record:
    record: Record = _decode(RECORD_TYPES[kind], value)
    return record
