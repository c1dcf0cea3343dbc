"""Manifest bytes to plain data with the line and column of every field, within fixed limits.

Decoding accepts UTF-8 (with or without a BOM) and UTF-16 with a BOM. YAML events from
libyaml are composed here rather than by PyYAML, so that aliases, nesting, document size and
scalar length are bounded where they are written, and a self-referencing anchor is an error.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

try:
    _Loader: type[Any] = yaml.CSafeLoader
except AttributeError:  # PyYAML without libyaml
    _Loader = yaml.SafeLoader

Path_ = tuple[str | int, ...]
Position = tuple[int, int]

# Limits: far above any real estate, far below what would exhaust time or memory.
MAX_FILE_BYTES = 16 * 2**20
MAX_DOCUMENT_NODES = 100_000  # values in one document, aliases counted as expanded
MAX_ALIASES = 1_000  # alias uses in one document
MAX_ALIAS_VALUES = 100_000  # values that aliases repeat, over a whole file
MAX_DEPTH = 64  # nested mappings and lists
MAX_SCALAR_CHARS = 65_536

# What YAML forbids anywhere in a stream (YAML 1.1 "printable" set, as libyaml checks it).
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]")

_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_RESOLVERS = yaml.resolver.Resolver.yaml_implicit_resolvers
_BOOL_WORDS = SafeConstructor.bool_values
_CONSTRUCT: dict[str, Any] = {
    "tag:yaml.org,2002:int": SafeConstructor.construct_yaml_int,
    "tag:yaml.org,2002:float": SafeConstructor.construct_yaml_float,
    "tag:yaml.org,2002:timestamp": SafeConstructor.construct_yaml_timestamp,
}
_TAG_WORDS = {
    "tag:yaml.org,2002:int": "a whole number",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:timestamp": "a date",
}
_COLLECTION_TAGS = (None, "!", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


class ReadError(Exception):
    """A problem that ends the reading of a file: at a line and column, with a remedy."""

    def __init__(self, line: int, col: int, message: str, allowed: str) -> None:
        super().__init__(message)
        self.line = line
        self.col = col
        self.message = message
        self.allowed = allowed


@dataclass(slots=True)
class RawDocument:
    data: Any
    line: int
    col: int
    positions: dict[Path_, Position]
    duplicates: list[tuple[int, int, Path_]] = field(default_factory=list)
    # Keys that cannot be field names (not text, or with a line break): reported by the schema
    # layer, and left out of ``data`` so no later code meets a key it cannot compare.
    bad_keys: list[tuple[Path_, str, str]] = field(default_factory=list)
    # Where YAML turned a bare word into a boolean (yes, no, on, off): its text, for the message.
    spelled: dict[Path_, str] = field(default_factory=dict)
    has_float: bool = False


def _line_col(text: str, index: int) -> Position:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def decode(content: bytes) -> str:
    """The text of a manifest file; ReadError names the byte that is not in its encoding."""
    if len(content) > MAX_FILE_BYTES:
        raise ReadError(
            1,
            1,
            f"the file is {len(content)} bytes, more than a manifest file may be",
            f"at most {MAX_FILE_BYTES // 2**20} MiB: split it into several files",
        )
    if content.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise ReadError(1, 1, "the file is UTF-32 (byte 0 is its BOM)", _ENCODINGS)
    if content.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        codec = "utf-16"
    else:
        codec = "utf-8-sig"
    try:
        return content.decode(codec)
    except UnicodeDecodeError as exc:
        good = content[: exc.start].decode(codec, errors="replace")
        line, col = _line_col(good, len(good))
        name = "UTF-8" if codec == "utf-8-sig" else "UTF-16"
        raise ReadError(
            line,
            col,
            f"not valid {name}: byte offset {exc.start} (0x{content[exc.start]:02x}) {exc.reason}",
            _ENCODINGS,
        ) from None


_ENCODINGS = "UTF-8, or UTF-16 with a byte-order mark: save the file in one of these"


def check_characters(text: str) -> None:
    found = _FORBIDDEN.search(text)
    if found is None:
        return
    line, col = _line_col(text, found.start())
    char = found.group()
    raise ReadError(
        line,
        col,
        f"control character {char!r} (U+{ord(char):04X}) is not allowed in YAML",
        "printable text; in a double-quoted string write it as an escape such as \\t",
    )


class _Node:
    """A mapping or list being composed: its data, path, and what it has counted so far."""

    __slots__ = ("anchor", "data", "key", "key_pos", "mark", "merges", "nodes", "path", "skip")

    def __init__(self, data: Any, path: Path_, anchor: str | None, mark: Any) -> None:
        self.data = data
        self.path = path
        self.anchor = anchor
        self.nodes = 1
        self.key: Any = _NO_KEY  # a mapping waiting for the value of this key
        self.key_pos: Position = (0, 0)
        self.skip = False  # the value belongs to a key that cannot be kept
        self.merges: list[tuple[dict[str, Any], Position]] = []
        self.mark = mark


_NO_KEY = object()


def _pos(mark: Any) -> Position:
    return mark.line + 1, mark.column + 1


def _error(mark: Any, message: str, allowed: str) -> ReadError:
    line, col = _pos(mark)
    return ReadError(line, col, message, allowed)


class _Composer:
    """Events of one document to plain data and positions (iterative: depth costs no stack)."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.alias_values = 0  # across the documents of the file

    def scalar(self, event: Any, doc: RawDocument, path: Path_) -> Any:
        value: str = event.value
        if len(value) > MAX_SCALAR_CHARS:
            raise _error(
                event.start_mark,
                f"a value of {len(value)} characters is longer than a manifest value may be",
                f"at most {MAX_SCALAR_CHARS} characters",
            )
        tag = event.tag
        if tag is None or tag == "!":
            plain = event.implicit[0]
            if not plain or (value and value[0] not in _RESOLVERS):
                return value
            tag = self.loader.resolve(yaml.ScalarNode, value, event.implicit)
        if tag == _STR or tag == "tag:yaml.org,2002:value":
            return value
        if tag == "tag:yaml.org,2002:null":
            return None
        if tag == "tag:yaml.org,2002:bool":
            word = value.lower()
            if word not in ("true", "false"):
                doc.spelled[path] = value
            return _BOOL_WORDS[word]
        if tag == _MERGE:
            return _MERGE_KEY
        construct = _CONSTRUCT.get(tag)
        if construct is None:
            raise _error(
                event.start_mark,
                f"YAML tag {tag!r} is not supported in manifests",
                "plain values: text, numbers, true/false, lists and mappings",
            )
        try:
            result = construct(self.loader, yaml.ScalarNode(tag, value))
        except (ValueError, OverflowError, TypeError) as exc:
            what = _TAG_WORDS.get(tag, tag)
            reason = "it has too many digits" if len(value) > 1000 else str(exc)
            raise _error(
                event.start_mark,
                f"{value[:40]!r} cannot be read as {what}: {reason}",
                "a valid value, or quote it to make it text",
            ) from None
        if isinstance(result, float):
            doc.has_float = True
        return result

    def document(self, root_event: Any) -> RawDocument:
        doc = RawDocument(None, *_pos(root_event.start_mark), positions={})
        anchors: dict[str, tuple[Any, int]] = {}
        open_anchors: set[str] = set()
        stack: list[_Node] = []
        aliases = 0
        total = 0
        event = root_event
        get_event = self.loader.get_event
        positions = doc.positions
        while True:
            kind = type(event)
            if kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                node = stack.pop()
                if node.merges:
                    _merge(node, positions)
                if node.anchor is not None:
                    anchors[node.anchor] = (node.data, node.nodes)
                    open_anchors.discard(node.anchor)
                value: Any = node.data
                size = node.nodes
                value_mark = None
            else:
                parent = stack[-1] if stack else None
                if parent is not None and type(parent.data) is dict and parent.key is _NO_KEY:
                    self._key(event, parent, doc)
                    event = get_event()
                    continue
                path: Path_ = ()
                if parent is not None:
                    if type(parent.data) is dict:
                        key = "<<" if parent.key is _MERGE_KEY else parent.key
                        path = (*parent.path, key)
                        positions[path] = parent.key_pos
                    else:
                        path = (*parent.path, len(parent.data))
                        positions[path] = _pos(event.start_mark)
                value_mark = event.start_mark
                if kind is yaml.ScalarEvent:
                    value = self.scalar(event, doc, path)
                    size = 1
                    if event.anchor is not None:
                        anchors[event.anchor] = (value, 1)
                elif kind is yaml.AliasEvent:
                    name = event.anchor
                    if name in open_anchors:
                        raise _error(
                            event.start_mark,
                            f"alias *{name} refers to the anchor &{name} that contains it",
                            "an alias may only repeat a value that is complete",
                        )
                    if name not in anchors:
                        raise _error(
                            event.start_mark,
                            f"alias *{name} has no anchor &{name} before it",
                            "define &name before using *name, in the same document",
                        )
                    aliases += 1
                    if aliases > MAX_ALIASES:
                        raise _error(
                            event.start_mark,
                            f"more than {MAX_ALIASES} aliases in one document",
                            f"at most {MAX_ALIASES} uses of *name per document",
                        )
                    value, size = anchors[name]
                    self.alias_values += size
                    if total + size > MAX_DOCUMENT_NODES or self.alias_values > MAX_ALIAS_VALUES:
                        raise _error(
                            event.start_mark,
                            f"alias *{name} repeats {size} values: more than aliases may expand to",
                            f"at most {MAX_DOCUMENT_NODES} values in a document and "
                            f"{MAX_ALIAS_VALUES} repeated by aliases in a file",
                        )
                elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                    if event.tag not in _COLLECTION_TAGS:
                        raise _error(
                            event.start_mark,
                            f"YAML tag {event.tag!r} is not supported in manifests",
                            "plain lists and mappings",
                        )
                    if len(stack) >= MAX_DEPTH:
                        raise _error(
                            event.start_mark,
                            f"values nested more than {MAX_DEPTH} levels deep",
                            f"at most {MAX_DEPTH} levels of lists and mappings",
                        )
                    node = _Node(
                        {} if kind is yaml.MappingStartEvent else [],
                        path,
                        event.anchor,
                        event.start_mark,
                    )
                    if event.anchor is not None:
                        open_anchors.add(event.anchor)
                    total += 1
                    stack.append(node)
                    event = get_event()
                    continue
                else:  # pragma: no cover - libyaml sends no other event inside a document
                    raise _error(event.start_mark, "unexpected YAML event", "valid YAML")
            if kind is not yaml.MappingEndEvent and kind is not yaml.SequenceEndEvent:
                total += size
                if total > MAX_DOCUMENT_NODES:
                    raise _error(
                        event.start_mark,
                        f"the document has more than {MAX_DOCUMENT_NODES} values",
                        "one object per document: split the file into documents",
                    )
            if not stack:
                doc.data = value
                return doc
            parent = stack[-1]
            parent.nodes += size
            if type(parent.data) is list:
                parent.data.append(value)
            else:
                key = parent.key
                parent.key = _NO_KEY
                if parent.skip:
                    parent.skip = False
                elif key is _MERGE_KEY:
                    _add_merge(parent, value, value_mark, doc)
                else:
                    if key in parent.data:
                        doc.duplicates.append((*parent.key_pos, (*parent.path, key)))
                    parent.data[key] = value
            event = get_event()

    def _key(self, event: Any, parent: _Node, doc: RawDocument) -> None:
        """A mapping key: text, or the merge key ``<<``; anything else is kept out of data."""
        parent.key_pos = _pos(event.start_mark)
        kind = type(event)
        if kind is yaml.ScalarEvent:
            key = self.scalar(event, doc, (*parent.path, "?"))
            if isinstance(key, str) and "\n" not in key and "\r" not in key:
                parent.key = key
                return
            if key is _MERGE_KEY:
                parent.key = key
                return
            spelled = doc.spelled.pop((*parent.path, "?"), None)
            problem, allowed = _key_problem(key, spelled)
            parent.key = spelled or ("~" if key is None else str(key))
        elif kind is yaml.AliasEvent:
            problem, allowed = "an alias cannot be a key", "a field name in plain text"
            parent.key = f"*{event.anchor}"
        else:
            # A list or mapping used as a key: compose it like a value, then drop the pair.
            problem, allowed = "a list or mapping cannot be a key", "a field name in plain text"
            parent.key = "?"
            doc.bad_keys.append(((*parent.path, "?"), problem, allowed))
            doc.positions[(*parent.path, "?")] = parent.key_pos
            parent.skip = True
            self._skip_key_collection(event)
            return
        doc.bad_keys.append(((*parent.path, parent.key), problem, allowed))
        doc.positions[(*parent.path, parent.key)] = parent.key_pos
        parent.skip = True

    def _skip_key_collection(self, event: Any) -> None:
        depth = 1
        count = 1
        while depth:
            event = self.loader.get_event()
            count += 1
            kind = type(event)
            if kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                depth += 1
            elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                depth -= 1
            if count > MAX_DOCUMENT_NODES or depth > MAX_DEPTH:
                raise _error(
                    event.start_mark, "a key too large to read", "a field name in plain text"
                )


_MERGE_KEY = object()


def _key_problem(key: Any, spelled: str | None) -> tuple[str, str]:
    if isinstance(key, str):
        return (
            "a key cannot contain a line break",
            "a field name on one line",
        )
    if isinstance(key, bool):
        word = spelled or str(key).lower()
        return (
            f"the key {word} reads as the boolean {str(key).lower()}, not as a field name",
            f"quote it: '{word}'",
        )
    if key is None:
        return "the key is empty (null)", "a field name in plain text"
    what = "a number" if isinstance(key, int | float) else "a date"
    return f"the key {key!r} is {what}, not a field name", f"quote it: '{key}'"


def _add_merge(parent: _Node, value: Any, mark: Any, doc: RawDocument) -> None:
    sources = value if isinstance(value, list) else [value]
    for source in sources:
        if not isinstance(source, dict):
            raise _error(
                mark,
                "a merge key '<<' needs a mapping or a list of mappings",
                "<<: *name, where &name marks a mapping",
            )
        parent.merges.append((source, parent.key_pos))


def _merge(node: _Node, positions: dict[Path_, Position]) -> None:
    """``<<: *base``: keys written in the mapping win, then earlier merge sources win."""
    for source, pos in node.merges:
        for key, value in source.items():
            if key not in node.data:
                node.data[key] = value
                positions.setdefault((*node.path, key), pos)


def read_documents(text: str) -> tuple[list[RawDocument], ReadError | None]:
    """Every document of a YAML stream; a ReadError ends the file at its position."""
    docs: list[RawDocument] = []
    try:
        check_characters(text)
    except ReadError as exc:
        return docs, exc
    loader = _Loader(text)
    composer = _Composer(loader)
    try:
        while True:
            event = loader.get_event()
            kind = type(event)
            if kind is yaml.StreamEndEvent:
                break
            if kind is not yaml.DocumentStartEvent:
                continue
            root = loader.get_event()
            if type(root) is yaml.DocumentEndEvent:
                continue
            doc = composer.document(root)
            loader.get_event()  # DocumentEndEvent
            if doc.data is not None:  # an empty document between two '---'
                docs.append(doc)
    except ReadError as exc:
        return docs, exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = _pos(mark) if mark else (1, 1)
        problem = exc.problem or "invalid YAML"
        context = f" {exc.context}" if exc.context else ""
        if exc.context_mark is not None and mark is not None and exc.context_mark.line < mark.line:
            context += f" that starts at line {exc.context_mark.line + 1}"
        return docs, ReadError(
            line,
            col,
            f"YAML syntax error: {problem}{context}",
            "valid YAML: check indentation, quotes and ':' after keys",
        )
    except yaml.reader.ReaderError as exc:
        line, col = _line_col(text, min(exc.position, len(text)))
        return docs, ReadError(line, col, f"YAML error: {exc.reason}", "printable text")
    except yaml.YAMLError as exc:
        return docs, ReadError(1, 1, f"YAML error: {exc}", "valid YAML")
    finally:
        loader.dispose()
    return docs, None
