"""Parameter binding for the peer's cmdlets, as strict as a real host (stricter on numbers).

Each cmdlet declares its parameters and their wire types. An unknown parameter, a missing
mandatory one, or a value of the wrong wire type is refused with the error record
PowerShell itself writes (NamedParameterNotFound, ParameterArgumentTransformationError...).
Numbers must arrive as the parameter's own type: an Int32 where the cmdlet takes UInt64 is
refused (pypsrp sends a bare Python int as Int32, which overflows above 2 GiB).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from psrpcore.types import PSInt, PSInt16, PSInt64, PSUInt64

# Parameters every cmdlet takes (CommonParameters); their values are not the cmdlet's business.
COMMON = frozenset(
    {"ErrorAction", "WarningAction", "InformationAction", "Verbose", "Debug", "WhatIf", "Confirm"}
)


class PeerError(Exception):
    """An error record the host writes: message, category, FullyQualifiedErrorId, target."""

    def __init__(
        self,
        message: str,
        category: str,
        fq_error_id: str,
        target: str | None = None,
        exception_type: str = "System.Exception",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.category = category
        self.fq_error_id = fq_error_id
        self.target = target
        self.exception_type = exception_type


@dataclass(frozen=True)
class Param:
    kind: str  # str | strs | u64 | i64 | i32 | i16 | bool | switch | choice | obj
    mandatory: bool = False
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Spec:
    name: str
    command_class: str  # for FullyQualifiedErrorId, e.g. Microsoft.HyperV.PowerShell.Commands.GetVM
    params: Mapping[str, Param] = field(default_factory=dict)
    positional: tuple[str, ...] = ()
    takes_input: bool = False

    def fqid(self, error_id: str) -> str:
        return f"{error_id},{self.command_class}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _wire(value: Any) -> str:
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, PSUInt64):
        return "UInt64"
    if isinstance(value, PSInt64):
        return "Int64"
    if isinstance(value, PSInt16):
        return "Int16"
    if isinstance(value, PSInt):
        return "Int32"
    if _is_int(value):
        return "Int32"
    if isinstance(value, float):
        return "Single"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list | tuple):
        return "Object[]"
    return type(value).__name__


def _convert(spec: Spec, name: str, param: Param, value: Any) -> Any:
    def refuse(expected: str) -> PeerError:
        return PeerError(
            f"Cannot process argument transformation on parameter '{name}'. Cannot convert "
            f"value of type {_wire(value)} to type {expected}: {spec.name} takes {expected} "
            "here; send the value with that wire type.",
            "InvalidData",
            spec.fqid("ParameterArgumentTransformationError"),
            name,
        )

    kind = param.kind
    if kind == "switch":
        if value is None or value is True:
            return True
        if value is False:
            return False
        raise refuse("System.Management.Automation.SwitchParameter")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise refuse("System.Boolean")
    if kind == "str":
        if isinstance(value, str):
            return str(value)
        raise refuse("System.String")
    if kind == "strs":
        if isinstance(value, str):
            return [str(value)]
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return [str(v) for v in value]
        raise refuse("System.String[]")
    if kind == "choice":
        if isinstance(value, str):
            for choice in param.choices:
                if choice.lower() == value.lower():
                    return choice
            raise PeerError(
                f"Cannot bind parameter '{name}'. Cannot convert value \"{value}\" to type "
                f"the parameter takes. Specify one of the following enumerator names and try "
                f"again: {', '.join(param.choices)}",
                "InvalidArgument",
                spec.fqid("CannotConvertArgumentNoMessage"),
                name,
            )
        raise refuse("an enumeration name (System.String)")
    if kind == "u64":
        if isinstance(value, PSUInt64) or (isinstance(value, PSInt64) and value >= 0):
            return int(value)
        raise refuse("System.UInt64")
    if kind == "i64":
        if isinstance(value, PSInt64):
            return int(value)
        raise refuse("System.Int64")
    if kind == "i16":
        if isinstance(value, PSInt16):
            return int(value)
        raise refuse("System.Int16")
    if kind == "i32":
        if _is_int(value) and not isinstance(value, PSInt64 | PSUInt64):
            return int(value)
        raise refuse("System.Int32")
    return value  # obj: anything, as the host would bind it to PSObject


def bind(spec: Spec, parameters: Sequence[tuple[str | None, Any]]) -> dict[str, Any]:
    """The named values of one command, checked against its declaration."""
    bound: dict[str, Any] = {}
    positional = list(spec.positional)
    known = {k.lower(): k for k in spec.params}
    for raw_name, value in parameters:
        if raw_name is None:
            if not positional:
                raise PeerError(
                    f"A positional parameter cannot be found that accepts argument '{value}'.",
                    "InvalidArgument",
                    spec.fqid("PositionalParameterNotFound"),
                    str(value),
                )
            name = positional.pop(0)
        else:
            if raw_name in COMMON or raw_name.lower() in {c.lower() for c in COMMON}:
                bound["__" + raw_name] = value
                continue
            found = known.get(raw_name.lower())
            if found is None:
                raise PeerError(
                    f"A parameter cannot be found that matches parameter name '{raw_name}'.",
                    "InvalidArgument",
                    spec.fqid("NamedParameterNotFound"),
                    raw_name,
                )
            name = found
        if name in bound:
            raise PeerError(
                f"Cannot bind parameter because parameter '{name}' is specified more than once.",
                "InvalidArgument",
                spec.fqid("ParameterAlreadyBound"),
                name,
            )
        bound[name] = _convert(spec, name, spec.params[name], value)
    missing = [n for n, p in spec.params.items() if p.mandatory and n not in bound]
    if missing:
        raise PeerError(
            f"Cannot process command because of one or more missing mandatory parameters: "
            f"{' '.join(missing)}.",
            "InvalidArgument",
            spec.fqid("MissingMandatoryParameter"),
            missing[0],
        )
    return bound


def error_action_stop(bound: Mapping[str, Any]) -> bool:
    value = bound.get("__ErrorAction")
    return isinstance(value, str) and value.lower() == "stop"
