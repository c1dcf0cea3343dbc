"""Schema layer: each document checked against its kind's JSON Schema (``schemas/``, packaged).

jsonschema's messages are rewritten into ours: the field that is wrong (an unknown key points
at the key itself), what is wrong, and what is allowed, with a did-you-mean for typos.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from typing import Any

import fastjsonschema
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

from reconciler import resources
from reconciler.manifest.documents import Document
from reconciler.manifest.errors import (
    ManifestError,
    did_you_mean,
    did_you_mean_target,
    one_of,
)
from reconciler.model.records import KINDS

API_VERSION = "reconciler/v1"
SCHEMA_FILES = {kind: f"{kind.lower()}.schema.json" for kind in KINDS}


@cache
def schema_for(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((resources.schemas() / SCHEMA_FILES[kind]).read_text())
    return schema


@cache
def _fast_validator(kind: str) -> Callable[[Any], Any]:
    validate: Callable[[Any], Any] = fastjsonschema.compile(schema_for(kind))
    return validate


def fast_valid(kind: str, data: Any) -> bool:
    """The quick yes: fastjsonschema compiles the schema to Python (~20x faster than
    jsonschema). Only a no goes on to jsonschema, whose errors we turn into messages."""
    try:
        _fast_validator(kind)(data)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


# JSON Schema counts 40.0 as an integer; a manifest means a whole number, written as one.
_STRICT_TYPES = Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)
)
_StrictValidator = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator, type_checker=_STRICT_TYPES
)


@cache
def validator_for(kind: str) -> Draft202012Validator:
    validator: Draft202012Validator = _StrictValidator(schema_for(kind))
    return validator


def _describe(value: Any) -> str:
    names = {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "list",
        dict: "mapping",
        type(None): "null",
    }
    text = repr(value) if not isinstance(value, dict | list) else names[type(value)]
    return (
        f"{names.get(type(value), type(value).__name__)} {text}"
        if isinstance(value, bool | int | float | str)
        else text
    )


def _allowed_text(schema: dict[str, Any]) -> str:
    return str(schema.get("description", "")).rstrip(".")


def _translate(doc: Document, err: ValidationError) -> list[ManifestError]:
    path = tuple(err.absolute_path)
    schema: dict[str, Any] = err.schema if isinstance(err.schema, dict) else {}
    value: Any = err.instance
    kind = err.validator
    expected_value: Any = err.validator_value
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extras = sorted(k for k in value if k not in schema.get("properties", {}))
        out = []
        for key in extras:
            hint = did_you_mean(str(key), allowed)
            out.append(
                doc.error(
                    (*path, key),
                    f"unknown field '{key}'; {hint}".rstrip("; "),
                    f"allowed: {', '.join(allowed)}",
                )
            )
        return out
    if kind == "required":
        props = schema.get("properties", {})
        # A misspelt key is reported as unknown with a did-you-mean; not twice.
        suggested = (
            {did_you_mean_target(str(k), props) for k in value if k not in props}
            if schema.get("additionalProperties") is False
            else set()
        )
        missing = [k for k in expected_value if k not in value and k not in suggested]
        out = []
        for key in missing:
            desc = _allowed_text(props.get(key, {}))
            out.append(
                doc.error(
                    path,
                    f"missing required field '{key}'",
                    f"{key}: {desc}" if desc else f"add {key}",
                )
            )
        return out
    if kind == "enum":
        values = [str(v) for v in expected_value]
        hint = did_you_mean(str(value), values)
        return [doc.error(path, f"{value!r} is not allowed; {hint}".rstrip("; "), one_of(values))]
    if kind == "const":
        return [doc.error(path, f"{value!r} is not allowed", f"must be {expected_value}")]
    if kind == "type":
        return [_type_error(doc, path, schema, value, expected_value)]
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        if low is not None and high is not None:
            bounds = f"{low}..{high}"
        else:
            bounds = f"at least {low}" if low is not None else f"at most {high}"
        word = "small" if kind in ("minimum", "exclusiveMinimum") else "large"
        return [doc.error(path, f"{value} is too {word}", f"{bounds}: {_allowed_text(schema)}")]
    if kind == "pattern":
        return [doc.error(path, f"{value!r} is not a valid value", _allowed_text(schema))]
    if kind == "oneOf":
        return [doc.error(path, f"{_describe(value)} is not a valid value", _allowed_text(schema))]
    if kind == "uniqueItems":
        return [doc.error(path, "the list repeats an item", "each item once")]
    if kind == "minItems":
        return [
            doc.error(
                path,
                "the list is empty",
                f"at least {expected_value} item(s): {_allowed_text(schema)}",
            )
        ]
    return [doc.error(path, err.message, _allowed_text(schema))]


def _field_name(path: tuple[str | int, ...]) -> str:
    names = [p for p in path if isinstance(p, str)]
    return names[-1] if names else "the document"


def _range_text(schema: dict[str, Any]) -> str:
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        return f" {low}-{high}"
    if low is not None:
        return f" of at least {low}"
    if high is not None:
        return f" of at most {high}"
    return ""


_TYPE_WORDS = {
    "integer": "a whole number",
    "number": "a number",
    "string": "text",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "empty",
}


def _type_error(
    doc: Document, path: tuple[str | int, ...], schema: dict[str, Any], value: Any, expected: Any
) -> ManifestError:
    """``vlan must be a whole number 1-4094, got number 40.0``: the field, in manifest terms."""
    types = expected if isinstance(expected, list) else [expected]
    wanted = " or ".join(_TYPE_WORDS.get(str(t), str(t)) for t in types)
    if "integer" in types or "number" in types:
        wanted += _range_text(schema)
    message = f"{_field_name(path)} must be {wanted}, got {_describe(value)}"
    desc = _allowed_text(schema)
    allowed = desc or wanted
    spelled = doc.spelled_as(path)
    if isinstance(value, bool) and spelled is not None and "string" in types:
        word = str(value).lower()
        message = f"{_field_name(path)} must be text, got {spelled!r}, which YAML reads as {word}"
        allowed = f"quote it: '{spelled}'" + (f"; {desc}" if desc else "")
    return doc.error(path, message, allowed)


def check_document(doc: Document) -> list[ManifestError]:
    """apiVersion, kind, then the kind's schema; every problem, not just the first."""
    data = doc.data
    if not isinstance(data, dict):
        return [
            doc.error(
                (),
                f"a manifest must be a mapping, got {_describe(data)}",
                "apiVersion, kind, metadata, spec",
            )
        ]
    if doc.bad_keys:
        # Keys that are not field names were left out of the data: checking the rest of the
        # document would only report their absence again.
        return [doc.error(path, problem, allowed) for path, problem, allowed in doc.bad_keys]
    errors: list[ManifestError] = []
    api = data.get("apiVersion")
    if api != API_VERSION:
        what = "missing apiVersion" if api is None else f"unknown apiVersion {api!r}"
        errors.append(doc.error(("apiVersion",), what, f"must be {API_VERSION}"))
    kind = data.get("kind")
    if kind not in KINDS:
        what = "missing kind" if kind is None else f"unknown kind {kind!r}"
        hint = did_you_mean(str(kind), KINDS) if kind is not None else ""
        errors.append(doc.error(("kind",), f"{what}; {hint}".rstrip("; "), one_of(KINDS)))
        return errors
    if errors:
        return errors
    if not doc.has_float and fast_valid(kind, data):  # floats: see _STRICT_TYPES
        return errors
    found = sorted(
        validator_for(kind).iter_errors(data),
        key=lambda e: (doc.pos(tuple(e.absolute_path)), str(e.validator)),
    )
    seen: set[ManifestError] = set()
    # A value of the wrong type is one mistake: not also "not one of" or "no match".
    mistyped = {tuple(e.absolute_path) for e in found if e.validator == "type"}
    for err in found:
        if err.validator in ("enum", "const", "pattern") and tuple(err.absolute_path) in mistyped:
            continue
        for error in _translate(doc, err):
            if error not in seen:  # jsonschema says "required" once per missing key
                seen.add(error)
                errors.append(error)
    return errors
