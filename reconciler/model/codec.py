"""Records to JSON-ready values and back, field by field, for state stores and fingerprints.

Frozen sets become sorted lists and mappings plain dicts, so equal records encode to equal
text. Each record type gets an encoder and a decoder built once from its type hints: large
estates are observed and fingerprinted often, so no per-value type inspection at run time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import types
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from reconciler.model import records
from reconciler.model.records import Record, frozen_map

T = TypeVar("T")
Codec = Callable[[Any], Any]

RECORD_TYPES: dict[str, type[Any]] = {
    "Cluster": records.Cluster,
    "Node": records.Node,
    "VirtualSwitch": records.VirtualSwitch,
    "ClusterSharedVolume": records.ClusterSharedVolume,
    "VirtualMachine": records.VirtualMachine,
}


def _identity(value: Any) -> Any:
    return value


def _text(value: Any) -> Any:
    """Text fields are few distinct values repeated over the estate (a cluster, a volume, a
    controller type): one string object each, not one per record read."""
    return sys.intern(value) if type(value) is str else value


def _optional(inner: Codec) -> Codec:
    if inner is _identity:
        return _identity
    return lambda v: None if v is None else inner(v)


def _fields(cls: type[Any]) -> list[tuple[str, Any]]:
    hints = get_type_hints(cls, vars(records))
    return [(f.name, hints[f.name]) for f in dataclasses.fields(cls) if f.init]


@cache
def _encoder(tp: Any) -> Codec:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        return _optional(_encoder(options[0])) if len(options) == 1 else _identity
    if origin is tuple:
        item = _encoder(get_args(tp)[0])
        return lambda v: [item(x) for x in v]
    if origin is frozenset:
        item = _encoder(get_args(tp)[0])
        return lambda v: sorted(item(x) for x in v)
    if origin in (Mapping, dict):
        item = _encoder(get_args(tp)[1])
        return lambda v: {str(k): item(v[k]) for k in sorted(v)}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        parts = [(name, _encoder(hint)) for name, hint in _fields(tp)]
        later = _later_defaults(tp)
        if not later:
            return lambda v: {name: enc(getattr(v, name)) for name, enc in parts}

        def encode_record(v: Any) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for name, enc in parts:
                value = getattr(v, name)
                if name in later and value == later[name]:
                    continue  # a later field at its default: the text (and digest) as before
                out[name] = enc(value)
            return out

        return encode_record
    return _identity


def _later_defaults(cls: type[Any]) -> dict[str, Any]:
    """Defaults of the fields marked ``omit_default`` (added after records were first stored)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("omit_default"):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
    return out


@cache
def _decoder(tp: Any) -> Codec:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        return _optional(_decoder(options[0])) if len(options) == 1 else _identity
    if origin is Literal or tp is str:
        return _text
    if origin is tuple:
        item = _decoder(get_args(tp)[0])
        return lambda v: tuple(item(x) for x in v)
    if origin is frozenset:
        item = _decoder(get_args(tp)[0])
        return lambda v: frozenset(item(x) for x in v)
    if origin in (Mapping, dict):
        item = _decoder(get_args(tp)[1])
        return lambda v: frozen_map({k: item(x) for k, x in v.items()})
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        parts = {name: _decoder(hint) for name, hint in _fields(tp)}
        names = parts.keys()
        # Only the fields whose values change on the way in (most are text or numbers as is).
        convert = [(name, dec) for name, dec in parts.items() if dec is not _identity]

        def build(v: Mapping[str, Any]) -> Any:
            kwargs = dict(v) if v.keys() <= names else {k: x for k, x in v.items() if k in names}
            for name, dec in convert:
                if name in kwargs:
                    kwargs[name] = dec(kwargs[name])
            return tp(**kwargs)

        return build
    if tp is float:
        return lambda v: None if v is None else float(v)
    return _identity


def encode(value: Any) -> Any:
    """A record (or any value made of the model's types) as plain JSON-ready data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        kind: Any = type(value)
        return _encoder(kind)(value)
    if isinstance(value, frozenset | set):
        return sorted(encode(v) for v in value)
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in sorted(value.items())}
    if isinstance(value, tuple | list):
        return [encode(v) for v in value]
    return value


def canonical_text(record: Record) -> str:
    """The record as canonical JSON: what state stores keep and digests are made of."""
    return json.dumps(encode(record), sort_keys=True, separators=(",", ":"))


def stamp_digest(record: Record, text: str) -> str:
    """Remember the digest of the canonical text a record was just read from or written as."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    object.__setattr__(record, "_digest", digest)
    return digest


def record_digest(record: Record) -> str:
    """A short content digest; computed once per record (records are immutable)."""
    cached: str | None = record._digest
    return cached if cached is not None else stamp_digest(record, canonical_text(record))


def decode(cls: type[T], value: Mapping[str, Any]) -> T:
    target: Any = cls
    result: T = _decoder(target)(value)
    return result


def decode_record(kind: str, value: Mapping[str, Any]) -> Record:
    target: Any = RECORD_TYPES[kind]
    record: Record = _decoder(target)(value)
    return record
