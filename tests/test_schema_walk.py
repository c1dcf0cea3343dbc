"""Every field the schemas accept is reconciled, or marked in the schema as not compared.

The walk visits every leaf field of every kind's schema (nested objects and lists too). For
each, it takes the converged estate of ``tests/schema_walk/`` (the world is the same
documents plus ``status.yaml``), changes that one field in the manifests to the first other
value that still validates, plans, and demands:

- no mark: the change is an action or a blocked item (never silent);
- ``"x-reconciler": "informational"``: no action, no block, and a plan note naming the field;
- ``"policy"`` or ``"label"``: the change reaches the built record (the field is not
  dropped on the way); such fields tell the tool how to act and are not compared;
- ``"identity"``: a name or an owner; changing it declares another object, so validation
  refuses it or the plan acts or blocks.

A new schema field without a mark fails here until the base estate uses it and a change to
it plans something. What counts is in the schema, not in a list in this file.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from reconciler.cli.main import cli
from reconciler.engine.planner import make_plan
from reconciler.manifest.load import LoadResult, load_text
from reconciler.manifest.schema import schema_for
from reconciler.model.records import KINDS, Estate

HERE = Path(__file__).resolve().parent / "schema_walk"
MARK = "x-reconciler"
MARKS = ("identity", "label", "policy", "informational")

Path_ = tuple[str | int, ...]
TRIES = 40  # other values tried per place the field is set, before the next place


@dataclass(frozen=True)
class Leaf:
    kind: str
    path: tuple[str, ...]  # "[]" stands for each item of a list
    schema: dict[str, Any]

    @property
    def mark(self) -> str | None:
        value = self.schema.get(MARK)
        return str(value) if value is not None else None

    @property
    def id(self) -> str:
        return f"{self.kind}:{'.'.join(self.path)}".replace(".[]", "[]")


def _walk(kind: str, schema: dict[str, Any], path: tuple[str, ...]) -> Iterator[Leaf]:
    if "properties" in schema:
        for key, sub in schema["properties"].items():
            yield from _walk(kind, sub, (*path, key))
    elif schema.get("type") == "array" and "properties" in schema.get("items", {}):
        yield from _walk(kind, schema["items"], (*path, "[]"))
    else:
        yield Leaf(kind, path, schema)


def leaves() -> list[Leaf]:
    """Every leaf under metadata and spec (status is observed-only, never in a manifest)."""
    out: list[Leaf] = []
    for kind in KINDS:
        top = schema_for(kind)["properties"]
        for part in ("metadata", "spec"):
            out.extend(_walk(kind, top[part], (part,)))
    return out


LEAVES = leaves()


def base_docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((HERE / "desired.yaml").read_text()) if d]


def _merge(doc: dict[str, Any], world: dict[str, Any]) -> None:
    """The world's status, and each spec field it has instead of the manifest's."""
    if "status" in world:
        doc["status"] = world["status"]
    doc["spec"].update(world.get("spec", {}))


def dump(docs: list[dict[str, Any]]) -> str:
    """JSON is YAML too, and dumps fast: the walk loads a few hundred estates."""
    return "\n---\n".join(json.dumps(d) for d in docs)


def world_text() -> str:
    world = yaml.safe_load((HERE / "status.yaml").read_text())
    docs = []
    for doc in base_docs():
        _merge(doc, world.get(f"{doc['kind']}/{doc['metadata']['name']}", {}))
        docs.append(doc)
    return dump(docs)


def load(docs: list[dict[str, Any]]) -> LoadResult:
    return load_text(dump(docs), "desired.yaml")


def _estate(result: LoadResult) -> Estate:
    assert result.estate is not None, [str(e) for e in result.problems()]
    return result.estate


WORLD = _estate(load_text(world_text(), "world.yaml", world=True))
BASE = _estate(load(base_docs()))


def occurrences(docs: list[dict[str, Any]], leaf: Leaf) -> list[tuple[int, Path_]]:
    """(document index, concrete path) of each place the base estate sets the field."""
    out: list[tuple[int, Path_]] = []

    def follow(node: Any, rest: tuple[str, ...], here: Path_, doc: int) -> None:
        if not rest:
            out.append((doc, here))
            return
        key = rest[0]
        if key == "[]":
            for i, item in enumerate(node if isinstance(node, list) else []):
                follow(item, rest[1:], (*here, i), doc)
        elif isinstance(node, dict) and key in node:
            follow(node[key], rest[1:], (*here, key), doc)

    for i, doc in enumerate(docs):
        if doc["kind"] == leaf.kind:
            follow(doc, leaf.path, (), i)
    return out


def get(doc: Any, path: Path_) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def put(doc: Any, path: Path_, value: Any) -> None:
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


def _digit_changes(text: str) -> Iterator[str]:
    """The text with one digit changed, last digits first: a value of the same shape."""
    for i in range(len(text) - 1, -1, -1):
        if text[i].isdigit():
            for step in (1, 9):
                yield text[:i] + str((int(text[i]) + step) % 10) + text[i + 1 :]


def _enum(schema: dict[str, Any]) -> list[Any] | None:
    if "enum" in schema:
        return list(schema["enum"])
    return None


def candidates(schema: dict[str, Any], value: Any, pool: list[str]) -> Iterator[Any]:
    """Other values for a field, generically by its schema type; validation picks among them."""
    if isinstance(value, bool):
        yield not value
    elif isinstance(value, int):
        low, high = schema.get("minimum", -(2**63)), schema.get("maximum", 2**63)
        for other in (value + 1, value - 1, value * 2, value // 2, *range(1, 64)):
            if other != value and low <= other <= high:
                yield other
    elif isinstance(value, str):
        for other in _enum(schema) or []:
            if other != value:
                yield other
        if any("," in str(s.get("pattern", "")) for s in schema.get("oneOf", [])):
            yield value + ",4000"  # a longer list
        yield from _digit_changes(value)
        yield from (p for p in pool if p != value)
        yield value + "x"
    elif isinstance(value, list):
        items = schema.get("items", {})
        for other in _enum(items) or []:
            if other not in value:
                yield [other]
        if len(value) > 1:
            yield value[:-1]
        yield [*value, *(p for p in pool if p not in value)][: len(value) + 1]
    elif isinstance(value, dict):
        yield {k: f"{v}x" for k, v in value.items()}


def string_pool(docs: list[dict[str, Any]], leaf: Leaf) -> list[str]:
    """The values the field has elsewhere, then every name in the estate (of objects, and of
    networks, NICs and disks): a reference changed to one of them stays valid."""
    pool: list[str] = []

    def add(value: Any) -> None:
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str) and v not in pool:
                pool.append(v)

    for i, path in occurrences(docs, leaf):
        add(get(docs[i], path))

    def names(node: Any) -> None:
        if isinstance(node, dict):
            add(node.get("name"))
            for value in node.values():
                names(value)
        elif isinstance(node, list):
            for item in node:
                names(item)

    names(docs)
    return pool


def field_text(path: Path_) -> str:
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else key)
    return out


@dataclass
class Outcome:
    where: str
    value: Any
    result: LoadResult
    actions: list[str]
    blocks: list[str]
    notes: list[str]


def first_valid_change(leaf: Leaf, accept_invalid: bool = False) -> Outcome:
    docs = base_docs()
    found = occurrences(docs, leaf)
    assert found, (
        f"{leaf.id}: the base estate never sets this field; use it in "
        "tests/schema_walk/desired.yaml (and the world's status.yaml if it is observed)"
    )
    pool = string_pool(docs, leaf)
    tried: list[str] = []
    for doc_index, path in found:
        current = get(docs[doc_index], path)
        for value in list(candidates(leaf.schema, current, pool))[:TRIES]:
            changed = copy.deepcopy(docs)
            put(changed[doc_index], path, value)
            result = load(changed)
            doc = docs[doc_index]
            where = f"{doc['kind']}/{doc['metadata']['name']} {field_text(path)}"
            if result.estate is None and not accept_invalid:
                tried.append(f"{value!r}: {result.problems()[0].message}")
                continue
            if result.estate is None:
                return Outcome(where, value, result, [], [], [])
            plan = make_plan(result.estate, WORLD)
            return Outcome(
                where,
                value,
                result,
                [a.id for a in plan.actions],
                [f"{v.rule}: {v.message}" for v in plan.violations if v.severity == "block"],
                list(plan.notes),
            )
    raise AssertionError(f"{leaf.id}: no other value validates; tried {tried[:8]}")


class TestTheBase:
    def test_the_base_estate_is_converged(self) -> None:
        plan = make_plan(BASE, WORLD)
        assert plan.actions == ()
        assert [v for v in plan.violations if v.severity == "block"] == []
        assert not [n for n in plan.notes if n.startswith("informational")]

    def test_every_mark_is_one_of_the_known_ones(self) -> None:
        marks = {leaf.mark for leaf in LEAVES} - {None}
        assert marks <= set(MARKS), marks

    def test_the_walk_sees_nested_fields(self) -> None:
        ids = {leaf.id for leaf in LEAVES}
        # A few by hand, so a broken walk cannot pass by seeing nothing.
        assert {
            "Cluster:spec.networks[].subnet",
            "Cluster:spec.rolling_update.hook.command",
            "Node:spec.nics[].offloads.vmq",
            "VirtualMachine:spec.nics[].trunk.native_vlan",
            "VirtualMachine:spec.disks[].parent",
            "VirtualSwitch:spec.vlan_trunk.allowed",
        } <= ids
        assert len(LEAVES) > 80


def _by_mark(mark: str | None) -> list[Any]:
    return [pytest.param(leaf, id=leaf.id) for leaf in LEAVES if leaf.mark == mark]


class TestEveryFieldIsReconciledOrMarked:
    @pytest.mark.parametrize("leaf", _by_mark(None))
    def test_a_change_is_an_action_or_a_block(self, leaf: Leaf) -> None:
        outcome = first_valid_change(leaf)
        assert outcome.actions or outcome.blocks, (
            f"{outcome.where} changed to {outcome.value!r}: the plan neither acts nor blocks "
            f"(a silent difference); mark the field in its schema or reconcile it"
        )

    @pytest.mark.parametrize("leaf", _by_mark("informational"))
    def test_informational_differences_are_noted(self, leaf: Leaf) -> None:
        outcome = first_valid_change(leaf)
        assert outcome.actions == [] and outcome.blocks == [], outcome
        ref, _, path = outcome.where.partition(" ")
        noted = [n for n in outcome.notes if n.startswith("informational:")]
        assert [n for n in noted if f"{ref} {path}:" in n], (outcome.where, outcome.notes)

    @pytest.mark.parametrize("leaf", _by_mark("policy") + _by_mark("label"))
    def test_policy_reaches_the_record(self, leaf: Leaf) -> None:
        outcome = first_valid_change(leaf)
        assert outcome.result.estate != BASE, f"{outcome.where}: the change is dropped"

    @pytest.mark.parametrize("leaf", _by_mark("identity"))
    def test_identity_declares_another_object(self, leaf: Leaf) -> None:
        outcome = first_valid_change(leaf, accept_invalid=True)
        refused = outcome.result.estate is None
        assert refused or outcome.actions or outcome.blocks, outcome.where


class TestInformationalInThePlanOutput:
    """An informational difference is said in text, JSON and markdown, and is no change."""

    def test_bandwidth(self, tmp_path: Path) -> None:
        world = tmp_path / "world.yaml"
        world.write_text(world_text())
        desired = tmp_path / "desired"
        desired.mkdir()
        shutil.copy(HERE / "desired.yaml", desired / "estate.yaml")
        text = (desired / "estate.yaml").read_text()
        line = "subnet: 10.10.1.0/24, bandwidth_mbps: 1000"  # Heartbeat, networks[2]
        (desired / "estate.yaml").write_text(text.replace(line, line[:-4] + "10000"))
        state = ["--state-dir", str(tmp_path / "state")]
        runner = CliRunner()
        assert runner.invoke(cli, [*state, "sim", "init", str(world)]).exit_code == 0
        note = (
            "informational: Cluster/lab spec.networks[2].bandwidth_mbps: the world has 1000, "
            "the manifest says 10000 (not reconciled)"
        )
        for fmt in ("text", "json", "markdown"):
            result = runner.invoke(
                cli, [*state, "plan", str(desired), "--detailed-exitcode", "--format", fmt]
            )
            assert result.exit_code == 0, result.output
            if fmt == "json":
                assert note in json.loads(result.output)["notes"]
            else:
                shown = re.sub(r"\s+", " ", result.output).replace("\\", "")  # markdown escapes
                assert note in shown, result.output
