"""Values on the PSRP wire: typed numbers out, plain Python data back.

pypsrp sends every Python ``int`` as Int32 and every ``float`` as Single, so sizes go out wrapped
(``u64``); what comes back is decoded to dicts, lists, names of enums, datetimes and timedeltas.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from pypsrp.complex_objects import GenericComplexObject, ObjectMeta
from pypsrp.serializer import Serializer, TaggedValue

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT64_MAX = 2**64 - 1
TYPES_KEY = "__types__"

_DATETIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,7}))?(Z|[+-]\d{2}:\d{2})?$"
)
_DURATION = re.compile(r"^(-)?P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


class WireError(ValueError):
    """A value that cannot go on the wire as is, or came back in a shape we cannot read."""


class DotNetDateTime(str):
    """The text of a ``<DT>`` element (pypsrp returns it as a plain string)."""


class DotNetTimeSpan(str):
    """The text of a ``<TS>`` element (an xs:duration such as ``PT1H2M3.5S``)."""


def _int(element: ET.Element) -> int:
    return int(element.text or "0")


# Primitive CLIXML elements read as pypsrp 0.9 reads them, without its per-element
# ET.tostring() of the XML (half the client's CPU on a Get-VM of a hundred VMs).
_PRIMITIVES: dict[str, Callable[[ET.Element], Any]] = {
    "B": lambda e: (e.text or "").lower() == "true",
    "By": _int,
    "SB": _int,
    "U16": _int,
    "I16": _int,
    "U32": _int,
    "I32": _int,
    "U64": _int,
    "I64": _int,
    "Sg": lambda e: float(e.text or "0"),
    "Db": lambda e: float(e.text or "0"),
    "Nil": lambda e: None,
    "Version": lambda e: e.text,
}


class UndecodedClixml(str):
    """CLIXML that pypsrp could not map to a type and handed back as XML text."""


_CONTAINER_TAGS = frozenset({"Obj", "LST", "DCT", "IE", "QUE", "STK"})


class TypedSerializer(Serializer):
    """pypsrp's deserializer, keeping DateTime/TimeSpan apart from strings and reading lists
    of types it does not know (``List`1[[Microsoft.HyperV...]]``) instead of returning XML."""

    def deserialize(
        self,
        element: ET.Element | str,
        metadata: ObjectMeta | None = None,
        clear: bool = True,
    ) -> Any:
        if isinstance(element, str):  # pypsrp hands each message over as XML text
            try:
                element = ET.fromstring(element)
            except ET.ParseError:
                return super().deserialize(element, metadata, clear)
        if not clear:
            primitive = _PRIMITIVES.get(element.tag)
            if primitive is not None and element.text is not None:
                return primitive(element)
            if element.tag == "S":
                return self._deserialize_string(element.text)
        if element.tag == "DT" and element.text:
            return DotNetDateTime(element.text)
        if element.tag == "TS" and element.text:
            return DotNetTimeSpan(element.text)
        untyped = metadata is None or (type(metadata) is ObjectMeta and metadata.object is None)
        if element.tag in ("LST", "IE") and untyped:
            if clear:
                self._clear()
            return [self.deserialize(child, clear=False) for child in element]
        result = super().deserialize(element, metadata, clear)
        container = element.tag in _CONTAINER_TAGS
        if container and isinstance(result, str) and not isinstance(result, UndecodedClixml):
            return UndecodedClixml(result)
        return result


def use_typed_serializer(pool: Any) -> None:
    """Make a pypsrp RunspacePool decode with ``TypedSerializer`` (pypsrp 0.9 internals)."""
    serializer = TypedSerializer()
    serializer.cipher = pool._serializer.cipher
    pool._serializer = serializer
    pool._fragmenter.serializer = serializer


def _checked_int(n: int, low: int, high: int, kind: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise WireError(f"{kind} needs an int, not {type(n).__name__} {n!r}")
    if not low <= n <= high:
        raise WireError(f"{n} is out of range for {kind} ({low}..{high})")
    return n


def u64(n: int) -> TaggedValue:
    """A System.UInt64 (sizes in bytes, e.g. -SizeBytes, -Size)."""
    return TaggedValue("U64", _checked_int(n, 0, UINT64_MAX, "UInt64"))


def i64(n: int) -> TaggedValue:
    """A System.Int64 (e.g. Set-VM -MemoryStartupBytes)."""
    return TaggedValue("I64", _checked_int(n, INT64_MIN, INT64_MAX, "Int64"))


def i32(n: int) -> TaggedValue:
    """A System.Int32 said explicitly (VLAN ids, disk and partition numbers)."""
    return TaggedValue("I32", _checked_int(n, INT32_MIN, INT32_MAX, "Int32"))


def i16(n: int) -> TaggedValue:
    """A System.Int16 (New-VM -Generation)."""
    return TaggedValue("I16", _checked_int(n, -(2**15), 2**15 - 1, "Int16"))


def dbl(x: float) -> TaggedValue:
    """A System.Double (pypsrp would send a bare float as Single)."""
    return TaggedValue("Db", float(x))


def check_params(params: Mapping[str, Any] | None, *, cmdlet: str = "") -> None:
    """Refuse values pypsrp would send with the wrong .NET type: an int outside Int32 or a
    float (Single). Wrap them with u64/i64/dbl."""
    for name, value in (params or {}).items():
        _check_value(value, f"{cmdlet} -{name}".strip())


def _check_value(value: Any, where: str) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, TaggedValue):
        return
    if isinstance(value, int):
        if not INT32_MIN <= value <= INT32_MAX:
            raise WireError(
                f"{where}: {value} does not fit Int32 and pypsrp would send it as Int32; "
                "wrap it with wire.u64() or wire.i64()"
            )
    elif isinstance(value, float):
        raise WireError(f"{where}: float {value!r} would go as Single; wrap it with wire.dbl()")
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_value(item, where)
    elif isinstance(value, Mapping):
        for item in value.values():
            _check_value(item, where)


def parse_datetime(text: str) -> datetime:
    match = _DATETIME.match(text)
    if match is None:
        raise WireError(f"not a .NET DateTime: {text!r}")
    base, fraction, zone = match.groups()
    micro = (fraction or "").ljust(6, "0")[:6]  # .NET has 7 digits (100 ns); Python 6
    zone = "+00:00" if zone == "Z" else (zone or "")
    return datetime.fromisoformat(f"{base}.{micro}{zone}")


def parse_timespan(text: str) -> timedelta:
    match = _DURATION.match(text)
    if match is None or text in ("P", "PT", "-P", "-PT"):
        raise WireError(f"not a .NET TimeSpan: {text!r}")
    sign, days, hours, minutes, seconds = match.groups()
    span = timedelta(
        days=int(days or 0),
        hours=int(hours or 0),
        minutes=int(minutes or 0),
        seconds=float(seconds or 0),
    )
    return -span if sign else span


def _type_names(obj: GenericComplexObject) -> list[str]:
    return [t.removeprefix("Deserialized.") for t in obj.types]


def decode(value: Any) -> Any:
    """pypsrp output -> plain data: objects -> dict of adapted and extended properties plus
    ``__types__``; enums -> their name; DateTime/TimeSpan -> datetime/timedelta; lists -> list."""
    if isinstance(value, DotNetDateTime):
        return parse_datetime(value)
    if isinstance(value, DotNetTimeSpan):
        return parse_timespan(value)
    if isinstance(value, UndecodedClixml):
        raise WireError(f"undecoded CLIXML came back: {value[:80]!r}...")
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [decode(item) for item in value]
    if isinstance(value, dict):
        return {decode(k): decode(v) for k, v in value.items()}
    if isinstance(value, GenericComplexObject):
        return _decode_object(value)
    return value


def _decode_object(obj: GenericComplexObject) -> Any:
    types = _type_names(obj)
    has_properties = bool(obj.adapted_properties or obj.extended_properties)
    if "System.Enum" in types:
        if obj.to_string is None:
            raise WireError(f"enum {types[0]} came back without its name")
        return str(obj.to_string)
    name = types[0] if types else "object"
    if not has_properties and len(obj.property_sets) == 1:
        inner = obj.property_sets[0]
        if isinstance(inner, UndecodedClixml):
            raise WireError(f"{name} came back as undecoded CLIXML: {inner[:80]!r}")
        return decode(inner)  # a list of a type pypsrp does not know, or a wrapped primitive
    if not has_properties and obj.property_sets:
        raise WireError(f"{name} came back as {len(obj.property_sets)} unnamed values")
    if not has_properties and obj.to_string is not None:
        return str(obj.to_string)  # e.g. a nested object past the serialization depth
    out: dict[str, Any] = {k: decode(v) for k, v in obj.adapted_properties.items()}
    out.update({k: decode(v) for k, v in obj.extended_properties.items()})
    out[TYPES_KEY] = types
    return out
