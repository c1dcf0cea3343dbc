"""Multi-document YAML read into plain data while keeping the line and column of every field.

Uses libyaml's C loader when PyYAML was built with it (much faster on large estates).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reconciler.manifest.errors import ManifestError, format_path

try:
    _Loader: type[Any] = yaml.CSafeLoader
except AttributeError:  # PyYAML without libyaml
    _Loader = yaml.SafeLoader

Path_ = tuple[str | int, ...]


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


Duplicate = tuple[int, int, Path_]


def _index(
    node: yaml.Node,
    path: Path_,
    positions: dict[Path_, tuple[int, int]],
    duplicates: list[Duplicate],
) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                mark = key_node.start_mark
                duplicates.append((mark.line + 1, mark.column + 1, (*path, key)))
            seen.add(key)
            child = (*path, key)
            positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            _index(value_node, child, positions, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = (*path, i)
            positions[child] = (item.start_mark.line + 1, item.start_mark.column + 1)
            _index(item, child, positions, duplicates)


def read_text(text: str, file: str) -> tuple[list[Document], list[ManifestError]]:
    """Parse every document of a YAML stream; a syntax error ends the file, with its position."""
    docs: list[Document] = []
    errors: list[ManifestError] = []
    loader = _Loader(text)
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            data = loader.construct_document(node)
            if data is None:  # an empty document between two '---'
                continue
            positions: dict[Path_, tuple[int, int]] = {}
            duplicates: list[Duplicate] = []
            _index(node, (), positions, duplicates)
            doc = Document(
                file, index, data, node.start_mark.line + 1, node.start_mark.column + 1, positions
            )
            for line, col, dup_path in duplicates:
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
            index += 1
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or "invalid YAML"
        context = f" {exc.context}" if exc.context else ""
        errors.append(
            ManifestError(
                file,
                line,
                col,
                "-",
                "-",
                f"YAML syntax error: {problem}{context}",
                "valid YAML: check indentation, quotes and ':' after keys",
            )
        )
    except yaml.YAMLError as exc:
        errors.append(ManifestError(file, 1, 1, "-", "-", f"YAML error: {exc}", "valid YAML"))
    finally:
        loader.dispose()
    return docs, errors


def _positions_from_file(file: str, index: int) -> dict[Path_, tuple[int, int]]:
    try:
        docs, _ = read_text(Path(file).read_text(encoding="utf-8"), file)
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
