"""Manifest files as documents: plain data, the line and column of every field, and the file.

Reading itself (encodings, YAML events, limits) is in ``yamlread``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from reconciler.manifest.errors import ManifestError, format_path
from reconciler.manifest.yamlread import (
    MAX_FILE_BYTES,
    Path_,
    ReadError,
    decode,
    read_documents,
)


@dataclass(slots=True)
class Document:
    """One YAML document, its data, and where each field was written."""

    file: str
    index: int
    data: Any
    line: int
    col: int
    # None when the document came from the cache: read again from the file if an error needs it.
    positions: dict[Path_, tuple[int, int]] | None = field(default_factory=dict)
    checked: bool = False  # passed the schema layer already (cached)
    # From reading (see yamlread.RawDocument): keys kept out of data, booleans spelled yes/on.
    bad_keys: list[tuple[Path_, str, str]] = field(default_factory=list)
    spelled: dict[Path_, str] = field(default_factory=dict)
    has_float: bool = False

    @property
    def kind(self) -> str:
        kind = self.data.get("kind") if isinstance(self.data, dict) else None
        return kind if isinstance(kind, str) else "?"

    @property
    def name(self) -> str:
        meta = self.data.get("metadata") if isinstance(self.data, dict) else None
        name = meta.get("name") if isinstance(meta, dict) else None
        return str(name) if name is not None else "?"

    @property
    def ident(self) -> str:
        if self.kind == "?" and self.name == "?":
            return "-"
        return f"{self.kind}/{self.name}"

    def pos(self, path: Path_) -> tuple[int, int]:
        """Line and column of a field, or of its nearest written ancestor."""
        if self.positions is None:
            self.positions = _positions_from_file(self.file, self.index)
        while path:
            found = self.positions.get(path)
            if found is not None:
                return found
            path = path[:-1]
        return self.line, self.col

    def error(self, path: Path_, message: str, allowed: str = "") -> ManifestError:
        line, col = self.pos(path)
        return ManifestError(self.file, line, col, self.ident, format_path(path), message, allowed)

    def warning(self, path: Path_, message: str, allowed: str = "") -> ManifestError:
        line, col = self.pos(path)
        return ManifestError(
            self.file, line, col, self.ident, format_path(path), message, allowed, "warning"
        )


def read_bytes(content: bytes, file: str) -> tuple[list[Document], list[ManifestError]]:
    """Decode a manifest file (UTF-8, or UTF-16 with a BOM), then read its documents."""
    try:
        text = decode(content)
    except ReadError as exc:
        return [], [_read_error(file, exc)]
    return read_text(text, file)


def _read_error(file: str, exc: ReadError) -> ManifestError:
    return ManifestError(file, exc.line, exc.col, "-", "-", exc.message, exc.allowed)


def read_text(text: str, file: str) -> tuple[list[Document], list[ManifestError]]:
    """Parse every document of a YAML stream. A problem that ends the file (syntax, limits)
    is reported at its position and none of the file's objects are checked: half a file
    would only cascade into errors about the objects it no longer declares."""
    raws, failure = read_documents(text)
    if failure is not None:
        error = _read_error(file, failure)
        return [], [replace(error, message=error.message + NOT_CHECKED)]
    docs: list[Document] = []
    errors: list[ManifestError] = []
    for index, raw in enumerate(raws):
        doc = Document(
            file,
            index,
            raw.data,
            raw.line,
            raw.col,
            raw.positions,
            bad_keys=raw.bad_keys,
            spelled=raw.spelled,
            has_float=raw.has_float,
        )
        for line, col, dup_path in raw.duplicates:
            errors.append(
                ManifestError(
                    file,
                    line,
                    col,
                    doc.ident,
                    format_path(dup_path),
                    "duplicate key: the later value would silently replace the earlier one",
                    "each key once per mapping",
                )
            )
        docs.append(doc)
    return docs, errors


NOT_CHECKED = "; the objects in this file were not checked"

_NAME_LINE = re.compile(r"^\s*name:\s*['\"]?([A-Za-z0-9][A-Za-z0-9._-]*)", re.MULTILINE)


def declared_names(text: str) -> set[str]:
    """Names that a file seems to declare, read without YAML: for a file that does not parse,
    so that references to its objects are not reported as unknown."""
    return set(_NAME_LINE.findall(text[:MAX_FILE_BYTES]))


def _positions_from_file(file: str, index: int) -> dict[Path_, tuple[int, int]]:
    try:
        docs, _ = read_bytes(Path(file).read_bytes(), file)
    except OSError:
        return {}
    found = docs[index].positions if index < len(docs) else None
    return found or {}


def is_manifest_path(path: str | Path) -> bool:
    """A .yaml/.yml file outside hidden folders (.git, .github, CI configuration)."""
    parts = Path(path).parts
    return Path(path).suffix in (".yaml", ".yml") and not any(
        p.startswith(".") and p not in (".", "..") for p in parts
    )


def manifest_files(paths: list[str]) -> Iterator[tuple[str, Path | None]]:
    """Every .yaml/.yml file under the given files and folders, in a stable order."""
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if is_manifest_path(f.relative_to(p)) and f.is_file():
                    yield str(f), f
        elif p.is_file():
            yield raw, p
        else:
            yield raw, None
