"""Ways to break a manifest set: byte-level damage and schema-level mistakes.

Shared by the property test (tests/test_bad_input_properties.py) and the long fuzz run
(bench/fuzz.py). Each mutation takes a ``random.Random`` and a set as {file name: bytes}.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

BASE = Path(__file__).resolve().parent / "broken" / "_base"
ManifestSet = dict[str, bytes]


def base_set() -> ManifestSet:
    return {p.name: p.read_bytes() for p in sorted(BASE.glob("*.yaml"))}


# Bytes that YAML, decoders and terminals treat specially.
SPECIAL = [
    b"\x00",
    b"\x07",
    b"\x1b[31m",
    b"\x1b]0;title\x07",
    b"\r",
    b"\t",
    b"\xff",
    b"\xe9",
    b"\xc3",
    b"\xef\xbb\xbf",
    b"\xe2\x80\xa8",
    b"&a ",
    b"*a",
    b"*nope",
    b"<<: *a\n",
    b"[",
    b"]",
    b"{",
    b"}",
    b": ",
    b"- ",
    b"? ",
    b"'",
    b'"',
    b"#",
    b"---\n",
    b"...\n",
    b"!!python/object:os.system ",
    b"!foo ",
    b"%YAML 1.1\n",
    b"|\n",
    b">-\n",
    b"~",
    b"yes",
    b"on",
    b"40.0",
    b"-1",
    b"1e999",
    b".nan",
    b"0x1F",
    b"1:30",
    b"2020-02-30",
    b"[/x]",
    b"[bold red]",
    b"\n  ",
    b"\n",
]

# Values a schema-level mutation puts where a field was.
VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    40.0,
    8192.5,
    10**30,
    -(10**30),
    float("inf"),
    "",
    "yes",
    "x" * 300,
    "\x1b[31mred\x1b[0m",
    "[/x]",
    "a\nb",
    [],
    [1, "a", None],
    {},
    {"a": 1},
    {1: 2},
    "CSV01",
    "vSwitch-VM",
    "base",
    "node01",
    4095,
    65 * 1024,
    2041,
    64 * 1024 + 1,
    -40,
]


def _flip(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return bytes([rng.randrange(256)])
    i = rng.randrange(len(data))
    return data[:i] + bytes([rng.randrange(256)]) + data[i + 1 :]


def _insert(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(len(data) + 1)
    return data[:i] + rng.choice(SPECIAL) + data[i:]


def _delete(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return data
    i = rng.randrange(len(data))
    return data[:i] + data[i + rng.randint(1, 40) :]


def _truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def _lines(rng: random.Random, data: bytes) -> bytes:
    lines = data.split(b"\n")
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    choice = rng.randrange(4)
    if choice == 0:
        lines.insert(j, lines[i])
    elif choice == 1:
        lines[i], lines[j] = lines[j], lines[i]
    elif choice == 2:
        del lines[i]
    else:
        lines[i] = b" " * rng.randint(1, 4) + lines[i]
    return b"\n".join(lines)


def _encoding(rng: random.Random, data: bytes) -> bytes:
    text = data.decode("utf-8", errors="replace")
    encoding = rng.choice(["utf-16", "utf-16-le", "utf-16-be", "latin-1", "utf-32", "utf-8-sig"])
    if encoding == "latin-1":
        text = text.replace("name: ", "name: café-", 1)
    return text.encode(encoding, errors="replace")


def _bomb(rng: random.Random, data: bytes) -> bytes:
    """Alias bombs, self-references, deep nesting and huge values, appended as a document."""
    width = rng.randint(2, 12)
    choice = rng.randrange(6)
    if choice == 0:
        levels = [f"l0: &l0 [{', '.join(['x'] * width)}]"]
        for n in range(1, rng.randint(3, 12)):
            levels.append(f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * width)}]")
        extra = "\n".join(levels)
    elif choice == 1:
        extra = "a: &a [*a]"
    elif choice == 2:
        extra = "a: &a {b: *a}"
    elif choice == 3:
        depth = rng.choice([10, 63, 64, 65, 200, 2000])
        extra = "a: " + "[" * depth + "]" * depth
    elif choice == 4:
        extra = "a: " + "9" * rng.choice([100, 4301, 70000])
    else:
        extra = "a: '" + "x" * rng.choice([1000, 65537, 300000]) + "'"
    return data + b"\n---\n" + extra.encode()


def _empty(rng: random.Random, data: bytes) -> bytes:
    return rng.choice([b"", b"\n", b"# only a comment\n", b"---\n", b"---\n...\n"])


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out.extend(_paths(v, (*path, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_paths(v, (*path, i)))
    return out


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 2:
        return word + "x"
    i = rng.randrange(len(word) - 1)
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def mutate_document(rng: random.Random, doc: Any) -> Any:
    """One schema-level mistake in a parsed document: a changed value, key or shape."""
    paths = [p for p in _paths(doc) if p]
    if not paths:
        return rng.choice(VALUES)
    path = rng.choice(paths)
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    choice = rng.randrange(5)
    if choice == 0 or not isinstance(last, str):
        parent[last] = rng.choice(VALUES)
    elif choice == 1:
        parent[_typo(last, rng)] = parent.pop(last)
    elif choice == 2:
        del parent[last]
    elif choice == 3:
        parent[rng.choice([1, None, True, "a\nb", "unknown_field", "\x1b[2J"])] = parent[last]
    else:
        value = parent[last]
        if isinstance(value, str):
            parent[last] = _typo(value, rng)
        else:
            parent[last] = rng.choice(VALUES)
    return doc


def _schema(rng: random.Random, data: bytes) -> bytes:
    if b"&" in data or b"*" in data or len(data) > 50_000:
        return _flip(rng, data)  # an earlier bomb: walking its data would explode here
    try:
        docs = [d for d in yaml.safe_load_all(data.decode("utf-8")) if d is not None]
    except (yaml.YAMLError, ValueError, RecursionError):  # PyYAML's own limits, too
        return _flip(rng, data)
    if not docs:
        return data
    i = rng.randrange(len(docs))
    docs[i] = mutate_document(rng, docs[i])
    style = rng.choice([None, False, True])
    return yaml.safe_dump_all(docs, default_flow_style=style, allow_unicode=True).encode()


BYTE_MUTATIONS: list[Callable[[random.Random, bytes], bytes]] = [
    _flip,
    _insert,
    _insert,
    _delete,
    _truncate,
    _lines,
    _encoding,
    _bomb,
    _empty,
]
MUTATIONS = [*BYTE_MUTATIONS, _schema, _schema, _schema, _schema]


def mutate_set(rng: random.Random, files: ManifestSet) -> ManifestSet:
    """A copy of the set with one to three mutations, sometimes a file added or removed."""
    out = dict(files)
    for _ in range(rng.randint(1, 3)):
        name = rng.choice(sorted(out))
        out[name] = rng.choice(MUTATIONS)(rng, out[name])
    if rng.random() < 0.05 and len(out) > 1:
        del out[rng.choice(sorted(out))]
    if rng.random() < 0.05:
        out["extra.yaml"] = rng.choice(SPECIAL)
    return out
