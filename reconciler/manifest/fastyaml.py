"""A fast reader for the plain block YAML manifests are written in, with no positions.

Most manifest files use a small part of YAML: block mappings and lists, one value a line,
plain or quoted one-line scalars, comments. This reader composes that part straight from the
lines, about five times faster than PyYAML's CSafeLoader, and gives exactly the documents the
safe loader gives: plain scalars are resolved by PyYAML's own YAML 1.1 resolver and built by
its constructors (yes/no/on/off, octal, sexagesimal, timestamps), each distinct text once.

It records no line positions: they are only needed for an error, and then the file is read
again by ``yamlread``'s bounded event loader, which records them. Anything outside that part
(flow collections, anchors and aliases, tags, block scalars, multi-line scalars, merge keys,
duplicate or non-text keys, tabs, directives, anything the loader would report, any limit
near) makes ``read`` return None, and the event loader reads the file: so every error, and
every protection against hostile input, is the event loader's, unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, cast

import yaml
from yaml.constructor import SafeConstructor

from reconciler.manifest.yamlread import MAX_DEPTH, MAX_DOCUMENT_NODES, MAX_SCALAR_CHARS

# (data, line, column, has_float): per document, as the event loader would give them.
FastDocument = tuple[Any, int, int, bool]


class _Unsupported(Exception):
    """Outside the part of YAML this reader composes: the event loader reads the file."""


# A key line: the key, then a plain scalar with no ':' or '#' in it (most values), or
# whatever else follows (quoted, flow, a comment; checked by ``scalar``), or nothing.
_KEY = re.compile(
    r"""([A-Za-z0-9_][A-Za-z0-9_./-]*):(?: +(?:([^ !&*|>'"%@`\[\]{},#?:-][^#:]*)|(.*)))?$"""
)
# Characters that end the fast path wherever they are: tabs (indentation rules), line breaks
# other than \n (YAML 1.1 counts NEL and the Unicode separators), a byte-order mark inside.
_ODD = re.compile("[\t\r\x85\u2028\u2029\ufeff]")
# A plain scalar may not start with these (or they start something this reader leaves out).
_NOT_PLAIN = frozenset("!&*|>'\"%@`[]{},#?:")
# Flow tokens: indicators, quoted scalars, and plain text between them.
_FLOW_TOKEN = re.compile(r"""[\[\]{},]|: |"(?:[^"\\]|\\[\\"])*"|'(?:[^']|'')*'|[^\[\]{},:'"]+""")
# A double-quoted scalar whose only escapes are \\ and \" (a share such as "\\\\fs01\\w").
_DOUBLE = re.compile(r'"(?:[^"\\]|\\[\\"])*"')
_ESCAPED = re.compile(r"\\(.)")

_FLOW_MARKS = frozenset(("[", "]", "{", "}", ",", ": "))
_KEY_TEXT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]*")

_RESOLVE = cast(Callable[[type, str, tuple[bool, bool]], str], yaml.resolver.Resolver().resolve)
_RESOLVES = frozenset(yaml.resolver.Resolver.yaml_implicit_resolvers)
_CONSTRUCTOR = SafeConstructor()
_CONSTRUCT: dict[str, Any] = {
    "tag:yaml.org,2002:int": SafeConstructor.construct_yaml_int,
    "tag:yaml.org,2002:float": SafeConstructor.construct_yaml_float,
    "tag:yaml.org,2002:timestamp": SafeConstructor.construct_yaml_timestamp,
}
_BOOL_WORDS = SafeConstructor.bool_values
_STR_TAGS = ("tag:yaml.org,2002:str", "tag:yaml.org,2002:value")
_SPELLED = object()  # marker in the scalar cache: a boolean written yes/no/on/off


def _resolve(text: str) -> Any:
    """What the safe loader makes of a plain scalar whose first character has resolvers."""
    tag = _RESOLVE(yaml.ScalarNode, text, (True, False))
    if tag in _STR_TAGS:
        return text
    if tag == "tag:yaml.org,2002:null":
        return None
    if tag == "tag:yaml.org,2002:bool":
        return _BOOL_WORDS[text.lower()]
    construct = _CONSTRUCT.get(tag)
    if construct is None:  # merge key, the yaml tag: the event loader's business
        raise _Unsupported
    try:
        return construct(_CONSTRUCTOR, yaml.ScalarNode(tag, text))
    except (ValueError, OverflowError, TypeError):
        raise _Unsupported from None


def _unescape(quoted: str) -> str:
    body = quoted[1:-1]
    return _ESCAPED.sub(r"\1", body) if "\\" in body else body


class _Reader:
    __slots__ = ("con", "end", "floats", "flow_values", "ind", "keys", "values")

    def __init__(self, ind: list[int], con: list[str]) -> None:
        self.ind = ind
        self.con = con
        self.end = 0
        self.values: dict[str, Any] = {}  # plain scalar text -> value
        self.keys: dict[str, str] = {}  # one string object per distinct key
        self.floats = False
        self.flow_values = 0  # items of flow lists in this document (they share a line)

    def scalar(self, text: str, depth: int) -> Any:
        first = text[0]
        if first == "'":
            return self.quoted(text)
        if first == '"':
            found = _DOUBLE.match(text)
            if found is None:
                raise _Unsupported  # other escapes, or the string goes on over lines
            self.after_quote(text, found.end() - 1)
            return _unescape(found.group())
        if first == "[" or first == "{":
            return self.flow(text, depth)
        if first in _NOT_PLAIN or (first == "-" and (len(text) == 1 or text[1] == " ")):
            raise _Unsupported
        comment = text.find(" #")
        if comment >= 0:
            text = text[:comment].rstrip(" ")
        if ": " in text or text[-1] == ":":
            raise _Unsupported
        return self.plain(text)

    def plain(self, text: str) -> Any:
        values = self.values
        value = values.get(text, values)
        if value is values:
            # Each distinct text once (records share repeated values: "scsi", a volume name).
            value = values[text] = _resolve(text) if text[0] in _RESOLVES else text
            if type(value) is bool and text.lower() not in ("true", "false"):
                values[text] = _SPELLED
        if value is _SPELLED:  # which word it was is read again with positions, for messages
            return _BOOL_WORDS[text.lower()]
        if type(value) is float:
            self.floats = True
        return value

    def flow(self, text: str, depth: int) -> Any:
        """``[a, b]``, ``{name: x, roles: [vm], disk: "Disk 1"}``: flow collections on one
        line, of one-line scalars and plain text keys, with no empty items."""
        comment = text.find(" #")
        if comment >= 0:
            text = text[:comment].rstrip(" ")
        tokens = _FLOW_TOKEN.findall(text)
        if "".join(tokens) != text:
            raise _Unsupported  # a character no token takes: ':' before a non-space, say
        tokens = [t for t in tokens if not t.isspace()]
        value, used = self.flow_node(tokens, 0, depth)
        if used != len(tokens):
            raise _Unsupported  # text after the collection
        return value

    def flow_node(self, tokens: list[str], i: int, depth: int) -> tuple[Any, int]:
        if i >= len(tokens):
            raise _Unsupported  # the collection goes on over lines
        token = tokens[i]
        if token == "[" or token == "{":
            if depth >= MAX_DEPTH - 1:
                raise _Unsupported
            self.flow_values += 1
            closing = "]" if token == "[" else "}"
            items: Any = [] if token == "[" else {}
            i += 1
            if i < len(tokens) and tokens[i] == closing:
                return items, i + 1
            while True:
                if token == "[":
                    value, i = self.flow_node(tokens, i, depth + 1)
                    items.append(value)
                else:
                    raw = tokens[i].strip(" ") if i < len(tokens) else ""
                    if _KEY_TEXT.fullmatch(raw) is None or tokens[i + 1 : i + 2] != [": "]:
                        raise _Unsupported
                    key = self.key(raw)
                    if key in items:
                        raise _Unsupported
                    items[key], i = self.flow_node(tokens, i + 2, depth + 1)
                if i >= len(tokens):
                    raise _Unsupported
                if tokens[i] == closing:
                    return items, i + 1
                if tokens[i] != ",":
                    raise _Unsupported
                i += 1
        if token in _FLOW_MARKS:
            raise _Unsupported  # "[a, ]", "{a: }", "[a: 1]": the event loader's
        self.flow_values += 1
        if token[0] == "'":
            return token[1:-1].replace("''", "'"), i + 1
        if token[0] == '"':
            return _unescape(token), i + 1
        item = token.strip(" ")
        if item[0] in _NOT_PLAIN or (item[0] == "-" and item[1:2] in ("", " ")) or "#" in item:
            raise _Unsupported
        return self.plain(item), i + 1

    def quoted(self, text: str) -> str:
        start = 1
        while True:
            close = text.find("'", start)
            if close < 0:
                raise _Unsupported
            if text.startswith("'", close + 1):
                start = close + 2
                continue
            self.after_quote(text, close)
            return text[1:close].replace("''", "'")

    @staticmethod
    def after_quote(text: str, close: int) -> None:
        rest = text[close + 1 :]
        if rest and not (rest[0] == " " and rest.lstrip(" ")[0] == "#"):
            raise _Unsupported

    def key(self, raw: str) -> str:
        key = self.keys.get(raw)
        if key is None:
            if raw[0] in _RESOLVES and _resolve(raw) is not raw:
                raise _Unsupported  # a key that is not text: the event loader reports it
            key = self.keys[raw] = raw
        return key

    def block(self, i: int, depth: int) -> tuple[Any, int]:
        text = self.con[i]
        if text[0] == "-" and (len(text) == 1 or text[1] == " "):
            return self.sequence(i, self.ind[i], depth)
        return self.mapping(i, self.ind[i], depth)

    def mapping(self, i: int, level: int, depth: int) -> tuple[dict[str, Any], int]:
        if depth >= MAX_DEPTH - 1:  # (a flow list in it would be one level deeper)
            raise _Unsupported
        ind, con, end, keys, values = self.ind, self.con, self.end, self.keys, self.values
        out: dict[str, Any] = {}
        while i < end:
            at = ind[i]
            if at != level:
                if at < level:
                    break
                raise _Unsupported
            found = _KEY.match(con[i])
            if found is None:
                raise _Unsupported
            raw, plain, rest = found.groups()
            key = keys.get(raw)
            if key is None:
                key = self.key(raw)
            if key in out:
                raise _Unsupported  # a duplicate key: the event loader reports it
            i += 1
            value: Any = None
            if plain is not None:  # the common case: a plain scalar, no ':' or '#' in it
                value = values.get(plain, values)
                if value is values or value is _SPELLED or type(value) is float:
                    value = self.plain(plain)
                if i < end and ind[i] > level:
                    raise _Unsupported  # a scalar going on over lines
            elif rest is None or rest[0] == "#":
                if i < end:
                    at = ind[i]
                    text = con[i]
                    if at > level:
                        value, i = self.block(i, depth + 1)
                    elif at == level and text[0] == "-" and (len(text) == 1 or text[1] == " "):
                        value, i = self.sequence(i, level, depth + 1)
            else:
                value = self.scalar(rest, depth + 1)
                if i < end and ind[i] > level:
                    raise _Unsupported
            out[key] = value
        return out, i

    def sequence(self, i: int, level: int, depth: int) -> tuple[list[Any], int]:
        if depth >= MAX_DEPTH - 1:  # (a flow list in it would be one level deeper)
            raise _Unsupported
        ind, con, end = self.ind, self.con, self.end
        out: list[Any] = []
        while i < end:
            at = ind[i]
            if at != level:
                if at < level:
                    break
                raise _Unsupported
            text = con[i]
            if text[0] != "-":
                break  # a key after the list: the list was the value of the key before it
            if len(text) > 1 and text[1] != " ":
                break  # "-x": a plain scalar, not an item; not in a list
            if len(text) == 1 or text[1:].lstrip(" ")[0] == "#":
                i += 1
                value: Any = None
                if i < end and ind[i] > level:
                    value, i = self.block(i, depth + 1)
            else:
                rest = text[2:]
                col = level + 2 + len(rest) - len(rest.lstrip(" "))
                rest = rest.lstrip(" ")
                if rest[0] == "-" or rest[0] == "?":
                    raise _Unsupported  # "- - x", "- ? x": rare, left to the event loader
                if _KEY.match(rest) is not None:
                    # "- key: value": a mapping whose keys line up under this first key.
                    ind[i] = col
                    con[i] = rest
                    value, i = self.mapping(i, col, depth + 1)
                else:
                    value = self.scalar(rest, depth + 1)
                    i += 1
                    if i < end and ind[i] > level:
                        raise _Unsupported
            out.append(value)
        return out, i


def read(text: str) -> list[FastDocument] | None:
    """The documents of ``text``, or None when the event loader must read it.

    ``text`` has passed ``yamlread.check_characters`` already.
    """
    if _ODD.search(text) is not None:
        if "\r" not in text or _ODD.search(text.replace("\r\n", "\n")) is not None:
            return None
        text = text.replace("\r\n", "\n")
    ind: list[int] = []
    con: list[str] = []
    starts: list[tuple[int, int]] = []  # per document: first content line (index, number)
    ends: list[int] = []
    open_doc = False
    for number, line in enumerate(text.split("\n"), 1):
        line = line.rstrip(" ")
        if not line:
            continue
        content = line.lstrip(" ")
        first = content[0]
        if first == "#":
            continue
        if len(line) == len(content) and first in "-.%":
            if line == "---":
                if open_doc:
                    ends.append(len(con))
                    open_doc = False
                continue
            if first != "-" or line[1:2] == "-":
                return None  # "...", a directive, "--- value"
        if len(content) > MAX_SCALAR_CHARS:
            return None
        if not open_doc:
            starts.append((len(con), number))
            open_doc = True
        ind.append(len(line) - len(content))
        con.append(content)
    if open_doc:
        ends.append(len(con))
    reader = _Reader(ind, con)
    docs: list[FastDocument] = []
    try:
        for (start, number), end in zip(starts, ends, strict=True):
            reader.end = end
            reader.floats = False
            reader.flow_values = 0
            text0 = con[start]
            is_list = text0[0] == "-" and (len(text0) == 1 or text0[1] == " ")
            if not is_list and _KEY.match(text0) is None:
                return None  # a document that is a scalar
            col = ind[start] + 1
            data, i = reader.block(start, 0)
            # At most 3 values start on a line ("key:", "- a: 1"), besides flow list items.
            if i != end or (end - start) * 3 + reader.flow_values > MAX_DOCUMENT_NODES:
                return None
            docs.append((data, number, col, reader.floats))
    except (_Unsupported, RecursionError):
        return None
    return docs
