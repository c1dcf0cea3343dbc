"""Manifest files as documents: plain data, the line and column of every field, and the file.

Reading itself (encodings, YAML events, limits) is in ``yamlread``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from reconciler.manifest import fastyaml
from reconciler.manifest.errors import ManifestError, format_path
from reconciler.manifest.yamlread import (
    MAX_FILE_BYTES,
    Path_,
    RawDocument,
    ReadError,
    check_characters,
    decode,
    read_documents,
)


class Source:
    """Where a file's documents can be read again, with positions, when an error needs them:
    its text, or (for documents from the cache) the file. Read once, for all its documents."""

    __slots__ = ("file", "raws", "text")

    def __init__(self, text: str | None = None, file: str | None = None) -> None:
        self.text = text
        self.file = file
        self.raws: list[RawDocument] | None = None

    def raw(self, index: int) -> RawDocument | None:
        if self.raws is None:
            text = self.text
            if text is None and self.file is not None:
                try:
                    text = decode(Path(self.file).read_bytes())
                except (OSError, ReadError):
                    text = None
            self.raws = read_documents(text)[0] if text is not None else []
            self.text = None
        return self.raws[index] if index < len(self.raws) else None


@dataclass(slots=True)
class Document:
    """One YAML document, its data, and where each field was written."""

    file: str
    index: int
    data: Any
    line: int
    col: int
    # None when not recorded (the fast reader, the cache): ``source`` reads them again, with
    # positions, only when an error needs them.
    positions: dict[Path_, tuple[int, int]] | None = None
    checked: bool = False  # passed the schema layer already (cached)
    # From reading (see yamlread.RawDocument): keys kept out of data, booleans spelled yes/on.
    bad_keys: Sequence[tuple[Path_, str, str]] = ()
    spelled: dict[Path_, str] | None = None
    has_float: bool = False
    source: Source | None = None
    # Kind and name, kept when the data is let go (see ``release``).
    label: tuple[str, str] | None = None

    @property
    def kind(self) -> str:
        if self.label is not None:
            return self.label[0]
        kind = self.data.get("kind") if isinstance(self.data, dict) else None
        return kind if isinstance(kind, str) else "?"

    @property
    def name(self) -> str:
        if self.label is not None:
            return self.label[1]
        meta = self.data.get("metadata") if isinstance(self.data, dict) else None
        name = meta.get("name") if isinstance(meta, dict) else None
        return str(name) if name is not None else "?"

    def release(self) -> None:
        """Let the data go once its record is built: errors need only the kind and name."""
        self.label = (self.kind, self.name)
        self.data = None

    @property
    def ident(self) -> str:
        if self.kind == "?" and self.name == "?":
            return "-"
        return f"{self.kind}/{self.name}"

    def _read_again(self) -> tuple[dict[Path_, tuple[int, int]], dict[Path_, str]]:
        raw = self.source.raw(self.index) if self.source is not None else None
        self.positions = raw.positions if raw is not None else {}
        self.spelled = raw.spelled if raw is not None else {}
        return self.positions, self.spelled

    def pos(self, path: Path_) -> tuple[int, int]:
        """Line and column of a field, or of its nearest written ancestor."""
        positions = self.positions
        if positions is None:
            positions, _ = self._read_again()
        while path:
            found = positions.get(path)
            if found is not None:
                return found
            path = path[:-1]
        return self.line, self.col

    def spelled_as(self, path: Path_) -> str | None:
        """How a boolean was written, when not true/false (yes, on, ...)."""
        spelled = self.spelled
        if spelled is None:
            _, spelled = self._read_again()
        return spelled.get(path)

    def error(self, path: Path_, message: str, allowed: str = "") -> ManifestError:
        line, col = self.pos(path)
        return ManifestError(self.file, line, col, self.ident, format_path(path), message, allowed)

    def warning(self, path: Path_, message: str, allowed: str = "") -> ManifestError:
        line, col = self.pos(path)
        return ManifestError(
            self.file, line, col, self.ident, format_path(path), message, allowed, "warning"
        )


def read_bytes(
    content: bytes, file: str, path: Path | None = None
) -> tuple[list[Document], list[ManifestError]]:
    """Decode a manifest file (UTF-8, or UTF-16 with a BOM), then read its documents.
    With ``path``, positions an error needs are read again from the file, not kept text."""
    try:
        text = decode(content)
    except ReadError as exc:
        return [], [_read_error(file, exc)]
    return read_text(text, file, path)


def _read_error(file: str, exc: ReadError) -> ManifestError:
    return ManifestError(file, exc.line, exc.col, "-", "-", exc.message, exc.allowed)


def read_text(
    text: str, file: str, path: Path | None = None
) -> tuple[list[Document], list[ManifestError]]:
    """Parse every document of a YAML stream. A problem that ends the file (syntax, limits)
    is reported at its position and none of the file's objects are checked: half a file
    would only cascade into errors about the objects it no longer declares.

    Plain block YAML is read by ``fastyaml``, without positions; anything else, and any file
    read again for an error's position, by ``yamlread``'s event loader."""
    try:
        check_characters(text)
    except ReadError:
        fast = None
    else:
        fast = fastyaml.read(text)
    if fast is not None:
        source = Source(file=str(path)) if path is not None else Source(text)
        return [
            Document(file, index, data, line, col, has_float=has_float, source=source)
            for index, (data, line, col, has_float) in enumerate(fast)
        ], []
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
