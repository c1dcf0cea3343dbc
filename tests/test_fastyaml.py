"""The fast reader gives exactly PyYAML's safe-loader documents, or leaves the file to the
event loader (``yamlread``), which then gives every error and position as before.

Checked three ways: a table of YAML 1.1 cases with the values written out by hand; every
manifest in the repository and the generator's output, which must take the fast path; and
damaged copies of the broken-manifest base set (tests/manifest_mutations.py), where whatever
the fast reader accepts must be what both the event loader and CSafeLoader read.
"""

from __future__ import annotations

import datetime
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from manifest_mutations import base_set, mutate_set

from reconciler.manifest import fastyaml
from reconciler.manifest.documents import read_text
from reconciler.manifest.dump import to_documents
from reconciler.manifest.load import load_paths
from reconciler.manifest.yamlread import ReadError, check_characters, decode, read_documents
from reconciler.providers.sim.generate import documents_yaml, generate_estate

ROOT = Path(__file__).resolve().parents[1]
LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def pyyaml(text: str) -> list[Any]:
    return [d for d in yaml.load_all(text, Loader=LOADER) if d is not None]


def fast_data(text: str) -> list[Any] | None:
    docs = fastyaml.read(text)
    return None if docs is None else [d[0] for d in docs]


def same_as_event_loader(text: str) -> None:
    """What the fast reader gives, the event loader gives too, with no error or warning."""
    fast = fastyaml.read(text)
    assert fast is not None
    raws, failure = read_documents(text)
    assert failure is None
    assert all(not r.duplicates and not r.bad_keys for r in raws)
    assert [(d, line, col, f) for d, line, col, f in fast] == [
        (r.data, r.line, r.col, r.has_float) for r in raws
    ]
    assert [d[0] for d in fast] == pyyaml(text)


# (YAML text, the value of key ``v`` as the safe loader reads it)
YAML11 = [
    ("v: yes", True),
    ("v: No", False),
    ("v: on", True),
    ("v: OFF", False),
    ("v: y", "y"),
    ("v: true", True),
    ("v: ~", None),
    ("v: null", None),
    ("v:", None),
    ("v: # only a comment", None),
    ("v: 017", 15),  # YAML 1.1 octal
    ("v: 0o17", "0o17"),  # not octal in YAML 1.1
    ("v: 0x1F", 31),
    ("v: 0b101", 5),
    ("v: 1_000", 1000),
    ("v: +12", 12),
    ("v: -12", -12),
    ("v: 1:30", 90),  # sexagesimal
    ("v: 1:30:00", 5400),
    ("v: 1.5", 1.5),
    ("v: 1e3", "1e3"),  # YAML 1.1 floats need a dot
    ("v: 1.0e+3", 1000.0),
    ("v: 2001-12-14", datetime.date(2001, 12, 14)),
    ("v: 2021-06", "2021-06"),
    ("v: 2.12.2", "2.12.2"),
    ("v: '2019'", "2019"),
    ('v: "2019"', "2019"),
    (r'v: "\\\\fs01\\w"', "\\\\fs01\\w"),  # a file share: \\ and \" are the escapes read fast
    (r'v: "say \"hi\""', 'say "hi"'),
    (r"""v: {s: "\\\\fs\\w", n: ['a, b', "c: d"]}""", {"s": "\\\\fs\\w", "n": ["a, b", "c: d"]}),
    ("v: 'it''s'", "it's"),
    ("v: ''", ""),
    ("v: a#b", "a#b"),
    ("v: a # b", "a"),
    ("v: http://x/y", "http://x/y"),
    ("v: a, b", "a, b"),
    ("v: Cluster Disk 1", "Cluster Disk 1"),
    ("v: [a, 1, yes, ~]", ["a", 1, True, None]),
    ("v: []", []),
    ("v: {a: 1, b: [x, 'y z']}", {"a": 1, "b": ["x", "y z"]}),
    ('v: {disk: "Cluster Disk 1"}', {"disk": "Cluster Disk 1"}),
    ("v: {}", {}),
    ("v:\n- a\n- b", ["a", "b"]),
    ("v:\n  - a\n  -\n  - - x", None),  # "- - x": the event loader's (None: not fast)
    ("v:\n  - name: a\n    roles: [vm]\n  - b", [{"name": "a", "roles": ["vm"]}, "b"]),
    ("v:\n  k:\n    deep: 1", {"k": {"deep": 1}}),
]

# Texts the fast reader leaves to the event loader: what it would get wrong, or report.
NOT_FAST = [
    "a: &x 1\nb: *x",
    "base: &b {x: 1}\nv:\n  <<: *b",
    "v: !!str 5",
    "v: |\n  text",
    "v: >-\n  text",
    "v: abc\n  def",
    "v: 'abc\n  def'",
    'v: "a\\tb"',
    "v: [a,\n  b]",
    "v: [a, ]",
    "v: {a: }",
    "v: [a: 1]",
    "v: a: b",
    "v: a:",
    "a: 1\na: 2",
    "yes: 1",
    "1: x",
    "'quoted': 1",
    "? complex\n: 1",
    "%YAML 1.1\n---\nv: 1",
    "v: 1\n...\n",
    "--- v: 1",
    "v:\tx",
    "v: a\u2028b",
    "just a scalar",
    "- a\nb: 1",
    "v: 9" + "9" * 5000,
]


class TestYaml11:
    @pytest.mark.parametrize(("text", "value"), YAML11)
    def test_values(self, text: str, value: Any) -> None:
        got = fast_data(text)
        if value is None and "- - x" in text:
            assert got is None
            return
        assert got == [{"v": value}]
        assert got == pyyaml(text)
        same_as_event_loader(text)

    @pytest.mark.parametrize("text", NOT_FAST)
    def test_left_to_the_event_loader(self, text: str) -> None:
        assert fastyaml.read(text) is None

    def test_documents_lines_and_columns(self) -> None:
        text = "# head\n---\n---\na: 1\n---\n\n  - x\n  - y: 2.5\n---\n# none\n"
        got = fastyaml.read(text)
        assert got == [({"a": 1}, 4, 1, False), (["x", {"y": 2.5}], 7, 3, True)]
        same_as_event_loader(text)

    def test_windows_line_ends(self) -> None:
        assert fast_data("a: 1\r\nb: [x, y]\r\n") == [{"a": 1, "b": ["x", "y"]}]
        assert fastyaml.read("a: 1\rb: 2") is None

    def test_empty_and_comments_only(self) -> None:
        assert fastyaml.read("") == []
        assert fastyaml.read("# nothing\n\n---\n") == []


def _manifest_files() -> list[Path]:
    folders = [ROOT / "manifests", ROOT / "tests" / "golden", ROOT / "tests" / "broken" / "_base"]
    return sorted(p for folder in folders for p in folder.rglob("*.yaml"))


class TestOurManifests:
    @pytest.mark.parametrize("path", _manifest_files(), ids=lambda p: str(p.relative_to(ROOT)))
    def test_read_fast_and_the_same(self, path: Path) -> None:
        same_as_event_loader(decode(path.read_bytes()))

    def test_generator_output(self) -> None:
        gen = generate_estate(2, 4, 5, 0.2, seed=3)
        same_as_event_loader(documents_yaml(to_documents(gen.desired)))
        same_as_event_loader(documents_yaml(to_documents(gen.world, status=True)))


class TestDamagedInput:
    def test_what_the_fast_reader_accepts_the_event_loader_reads_the_same(self) -> None:
        rng = random.Random(17)
        base = base_set()
        fast = 0
        for _ in range(400):
            for content in mutate_set(rng, base).values():
                try:
                    text = decode(content)
                    check_characters(text)
                except ReadError:
                    continue
                if fastyaml.read(text) is not None:
                    fast += 1
                    same_as_event_loader(text)
        assert fast > 200  # most damage leaves most files plain YAML


class TestPositionsOnlyForErrors:
    def test_an_error_in_a_fast_file_has_its_line_and_column(self) -> None:
        text = (
            "apiVersion: reconciler/v1\nkind: Node\nmetadata:\n  name: n1\nspec:\n"
            "  cluster: c\n  hardware:\n    model: m\n    memory_mib: many\n"
        )
        docs, errors = read_text(text, "t.yaml")
        assert errors == [] and docs[0].positions is None  # read fast, no positions
        assert docs[0].pos(("spec", "hardware", "memory_mib")) == (9, 5)  # at its key
        assert docs[0].pos(("spec", "hardware", "nope")) == (7, 3)  # the nearest written

    def test_yes_spelled_in_a_text_field_is_named(self, tmp_path: Path) -> None:
        (tmp_path / "v.yaml").write_text(
            "apiVersion: reconciler/v1\nkind: Node\nmetadata:\n  name: n1\n  labels:\n"
            "    x: 1\nspec:\n  cluster: yes\n"
        )
        result = load_paths([str(tmp_path)])
        lines = [str(e) for e in result.errors if e.field == "spec.cluster"]
        assert lines == [
            f"{tmp_path}/v.yaml:8:3: Node/n1: spec.cluster: cluster must be text, got 'yes', "
            "which YAML reads as true (quote it: 'yes'; Cluster this node belongs (or is to be "
            "added) to)"
        ]
