"""The plan as a pull-request comment (Markdown with Mermaid pictures) and as Graphviz DOT."""

from __future__ import annotations

import re
from dataclasses import replace
from functools import cache
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli.main import cli
from reconciler.cli.render_markdown import GRAPH_MAX_ACTIONS, plan_dot, plan_markdown
from reconciler.engine.plan import Plan, PlanViolation
from reconciler.engine.planner import make_plan
from reconciler.engine.review import ChangedObjects
from reconciler.manifest.load import load_paths, load_text, require
from reconciler.model.actions import Action
from reconciler.providers.sim.generate import generate_estate
from reconciler.runtime.workflow import manifests_digest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "manifests" / "demo"
WORLD = ROOT / "manifests" / "worlds" / "demo.yaml"
GOLDEN = ROOT / "tests" / "golden"
HOSTILE = 'evil"]-->x'


@cache
def demo_plan() -> Plan:
    desired = require(load_paths([str(DEMO)]))
    observed = require(load_paths([str(WORLD)], world=True))
    return make_plan(desired, observed, manifests=[str(DEMO)])


@cache
def golden_plan(case: str) -> Plan:
    desired = require(load_paths([str(GOLDEN / case / "desired")]))
    observed = require(load_paths([str(GOLDEN / case / "observed.yaml")], world=True))
    return make_plan(desired, observed)


@cache
def big_plan() -> Plan:
    generated = generate_estate(8, 16, 25, drift=0.05, seed=3)
    return make_plan(generated.desired, generated.world)


def huge_plan() -> Plan:
    """The big plan four times over (ids made unique): more than a comment can hold."""
    base = big_plan()
    actions = [
        replace(
            a,
            id=f"{a.id}@{copy}",
            depends_on=tuple(f"{d}@{copy}" for d in a.depends_on),
        )
        for copy in range(4)
        for a in base.actions
    ]
    return replace(base, actions=tuple(actions))


def hostile_plan() -> Plan:
    """Names and free text that would break Markdown, HTML or Mermaid if not escaped."""
    text = 'a | b `code` ```fence``` <script>x</script> @team #12 [link](u) *bold* \\ "q"'
    first = Action(
        id="set_vm:evil",
        type="set_vm",
        target=f"VirtualMachine/{HOSTILE}",
        cluster=f"c|{HOSTILE}",
        params={"vm": HOSTILE},
        disruption="downtime",
        reason=text,
        changes={"memory_mib": (f"{HOSTILE}|1", f"2`{text}")},
        estimate_seconds=30,
    )
    move = Action(
        id="migrate_vm:evil",
        type="migrate_vm",
        target=f"VirtualMachine/{HOSTILE}",
        cluster=f"c|{HOSTILE}",
        params={
            "vm": HOSTILE,
            "source": "n:1;#",
            "destination": "n2```",
            "method": "live",
            "memory_mib": 1024,
        },
        depends_on=("set_vm:evil",),
        disruption="live-migration",
        reason=text,
        estimate_seconds=12.5,
        estimate_bytes=2**30,
    )
    violation = PlanViolation(
        "no_shrink", f"VirtualMachine/{HOSTILE}", text, f"fix {text}", "block", "set_vm:evil"
    )
    return Plan(
        actions=(first, move),
        violations=(violation,),
        fingerprint="sha256:" + "0" * 64,
        prior_state={},
        notes=(text,),
    )


def mermaid_blocks(markdown: str) -> list[list[str]]:
    """The lines inside each ```mermaid fence."""
    return [
        block.split("\n")
        for block in re.findall(r"^```mermaid\n(.*?)\n^```$", markdown, flags=re.M | re.S)
    ]


def block_of(markdown: str, kind: str) -> list[str]:
    (block,) = [b for b in mermaid_blocks(markdown) if b[0] == kind]
    return block


def unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def detail_rows(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if re.match(r"^\| \d+ \| ", line)]


class TestSummaryFirst:
    """The summary (counts, disruption, duration, bytes, safety) comes before any details."""

    def test_summary_comes_before_any_details(self) -> None:
        text = plan_markdown(demo_plan())
        summary = text.index("**Plan: 13 action(s)")
        assert summary < text.index("<details>")
        assert summary < text.index("```mermaid")

    def test_summary_has_counts_disruption_duration_and_bytes(self) -> None:
        text = plan_markdown(demo_plan())
        head = text[: text.index("<details>")]
        assert "| **Actions** | 13: `add_disk` 1, `add_node` 1," in head
        assert "| **Disruption** | 5 none, 6 online, 2 live-migration |" in head
        assert "| **Estimated duration** | 15m 46s" in head
        assert "| **To move** | 18.2 GiB |" in head
        assert "**Safe to apply**" in head

    def test_blocked_plan_says_so_with_each_fix(self) -> None:
        text = plan_markdown(golden_plan("shrink_volume"))
        head = text[: text.index("<details>")] if "<details>" in text else text
        assert "**BLOCKED**: 1 safety violation" in head
        assert "`no_shrink`" in head
        assert "set size\\_gib &gt;= 1024" in head

    def test_no_changes_is_short(self) -> None:
        empty = replace(demo_plan(), actions=(), violations=())
        text = plan_markdown(empty)
        assert "No changes. The estate matches the manifests." in text
        assert "<details>" not in text
        assert "```mermaid" not in text

    def test_changed_objects_come_before_the_details(self) -> None:
        changed = ChangedObjects(added=("VirtualMachine/NEW01",), changed=("VirtualMachine/FS01",))
        text = plan_markdown(demo_plan(), changed)
        section = text.index("### Manifest objects this change touches")
        assert section < text.index("<details>")
        assert "- **Added** (1): VirtualMachine/NEW01" in text
        assert "- **Changed** (1): VirtualMachine/FS01" in text
        assert "Removed" not in text


class TestDetails:
    """Details: one collapsible section per cluster, grouped by node, with before -> after."""

    def test_one_closed_details_section_per_cluster(self) -> None:
        text = plan_markdown(big_plan())
        assert text.count("<details><summary><b>Cluster ") == 8
        assert text.count("<details>") == text.count("</details>")

    def test_groups_follow_the_text_output(self) -> None:
        text = plan_markdown(demo_plan())
        groups = re.findall(r"^\*\*(node \w+|cluster|storage|virtual machines)\*\*$", text, re.M)
        assert groups == [
            "node hv03",
            "cluster",
            "node hv05",
            "storage",
            "node hv01",
            "virtual machines",
        ]

    def test_rows_show_before_and_after(self) -> None:
        rows = detail_rows(plan_markdown(demo_plan()))
        assert len(rows) == 13
        assert any("spec.size\\_gib: 1536 → 2048" in r for r in rows)
        assert any("SQL02 hv01 → hv02 (live, 12288 MiB)" in r for r in rows)


class TestPictures:
    """A Mermaid timeline of every action back to back, and the dependency graph when small."""

    def test_timeline_has_one_bar_per_action_back_to_back(self) -> None:
        gantt = block_of(plan_markdown(demo_plan()), "gantt")
        bars = [line for line in gantt if re.search(r":(\w+, )?t\d+, ", line)]
        assert len(bars) == 13
        assert bars[0].endswith(":t1, 00:00:00, 10s")
        for i, bar in enumerate(bars[1:], start=2):
            assert f"t{i}, after t{i - 1}, " in bar
        seconds = sum(int(re.findall(r"(\d+)s$", bar)[0]) for bar in bars)
        assert seconds == round(demo_plan().estimate_seconds())

    def test_timeline_marks_migrations(self) -> None:
        gantt = block_of(plan_markdown(demo_plan()), "gantt")
        (move,) = [line for line in gantt if "SQL02" in line]
        assert "12 move SQL02 hv01 #8594; hv02 :active, t12, after t11, 154s" in move

    def test_big_timeline_merges_runs_and_keeps_the_total(self) -> None:
        plan = big_plan()
        gantt = block_of(plan_markdown(plan), "gantt")
        bars = [line for line in gantt if re.search(r":(\w+, )?t\d+, ", line)]
        assert len(bars) <= 80 < len(plan.actions)
        seconds = sum(int(re.findall(r"(\d+)s$", bar)[0]) for bar in bars)
        assert abs(seconds - plan.estimate_seconds()) <= len(bars)

    def test_graph_has_every_action_and_dependency(self) -> None:
        plan = demo_plan()
        graph = block_of(plan_markdown(plan), "graph TD")
        nodes = [line for line in graph if re.match(r"^    a\d+\[", line)]
        edges = [line for line in graph if " --> " in line]
        assert len(nodes) == 13
        assert len(edges) == sum(len(a.depends_on) for a in plan.actions)
        assert "    a10 --> a11" in edges  # extend_lun before extend_volume

    def test_graph_is_omitted_for_a_big_plan(self) -> None:
        text = plan_markdown(big_plan())
        assert len(big_plan().actions) > GRAPH_MAX_ACTIONS
        assert [b[0] for b in mermaid_blocks(text)] == ["gantt"]
        assert "Omitted: 172 actions are too many to draw here" in text


class TestLength:
    """Under the limit whatever the plan: details are cut with a note, never the summary."""

    def test_big_generated_plan_fits_in_a_comment(self) -> None:
        text = plan_markdown(big_plan())
        assert len(text) < 60_000
        assert "**Plan: 172 action(s)" in text

    def test_huge_plan_is_cut_with_a_note(self) -> None:
        plan = huge_plan()
        text = plan_markdown(plan)
        assert len(text) <= 60_000
        shown = len(detail_rows(text))
        assert 0 < shown < len(plan.actions)
        note = f"the details list {shown} of 688 actions; {688 - shown} actions are left out"
        assert note in text
        assert "`reconciler plan --json`" in text
        assert f"**Plan: {len(plan.actions)} action(s)" in text
        assert text.count("<details>") == text.count("</details>")

    def test_a_summary_longer_than_the_limit_is_cut_too(self) -> None:
        plan = demo_plan()
        many = tuple(
            PlanViolation("no_shrink", f"VirtualMachine/VM{i}", "x" * 2_000, "fix", "block")
            for i in range(60)
        )
        text = plan_markdown(replace(plan, violations=many), max_chars=20_000)
        assert len(text) <= 20_000
        assert text.endswith("The whole plan: `reconciler plan --json`.\n")

    @pytest.mark.parametrize("limit", [8_000, 15_000, 30_000])
    def test_any_limit_is_kept(self, limit: int) -> None:
        text = plan_markdown(big_plan(), max_chars=limit)
        assert len(text) <= limit
        assert "Truncated" in text
        assert "| **Estimated duration** |" in text


class TestEscaping:
    """Names and free text cannot break the diagrams, the tables or the HTML."""

    def test_manifest_names_cannot_hold_such_characters(self) -> None:
        result = load_text(
            "apiVersion: reconciler/v1\nkind: Cluster\n"
            f"metadata: {{name: '{HOSTILE}'}}\nspec: {{platform: '2019', nodes: [n1]}}\n"
        )
        assert any(e.field == "metadata.name" for e in result.problems())

    def test_mermaid_labels_hold_no_raw_quotes_brackets_or_backticks(self) -> None:
        text = plan_markdown(hostile_plan())
        graph = block_of(text, "graph TD")
        for line in graph:
            if re.match(r"^    a\d+\[", line):
                assert re.fullmatch(r'    a\d+\["[^"\[\]`]*"\]:::d_\w+', line), line
        assert "#34;" in "\n".join(graph)  # the quote, as an entity code

    def test_gantt_lines_have_one_colon_and_no_stray_hash(self) -> None:
        gantt = block_of(plan_markdown(hostile_plan()), "gantt")
        for line in gantt[1:]:
            assert "`" not in line
            assert re.sub(r"#\d+;", "", line).count("#") == 0, line
            if re.search(r"t\d+, ", line):
                label, _ = line.rsplit(" :", 1)
                assert ":" not in label, line
            if line.lstrip().startswith("section"):
                assert ":" not in line

    def test_fences_are_not_closed_early(self) -> None:
        text = plan_markdown(hostile_plan())
        fences = [line for line in text.splitlines() if line.startswith("```")]
        assert fences == ["```mermaid", "```", "```mermaid", "```"]

    def test_table_rows_keep_their_columns(self) -> None:
        text = plan_markdown(hostile_plan())
        rows = detail_rows(text)
        assert len(rows) == 2
        assert all(unescaped_pipes(r) == 8 for r in rows)
        (violation,) = [r for r in text.splitlines() if r.startswith("| ⛔ block |")]
        assert unescaped_pipes(violation) == 7

    def test_no_html_or_mentions_get_through(self) -> None:
        text = plan_markdown(hostile_plan())
        assert "<script>" not in text
        assert "&lt;script&gt;" in text
        assert "\\@team" in text
        assert "\\#12" in text
        assert "<b>Cluster c|evil&quot;]--&gt;x</b>" in text

    def test_dot_strings_are_escaped(self) -> None:
        graph = parse_dot(plan_dot(hostile_plan()))
        assert graph.labels["set_vm:evil"] == f"1. set_vm\\nVirtualMachine/{HOSTILE}"
        assert graph.edges == [("set_vm:evil", "migrate_vm:evil")]


# --- a small DOT reader: enough of the grammar to prove the output is one well-formed digraph


class Dot:
    def __init__(self) -> None:
        self.labels: dict[str, str] = {}
        self.edges: list[tuple[str, str]] = []


_DOT_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<id>[A-Za-z_][A-Za-z0-9_]*|-?\d+(?:\.\d+)?)'
    r"|(?P<op>->|[{}\[\];,=]))",
    re.S,
)


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    while text[pos:].strip():
        match = _DOT_TOKEN.match(text, pos)
        assert match is not None, f"DOT syntax error at {text[pos : pos + 40]!r}"
        out.append(match.group(match.lastgroup or "op"))
        pos = match.end()
    return out


def _unquote(token: str) -> str:
    if token.startswith('"'):
        return re.sub(
            r"\\(.)", lambda m: m.group(1) if m.group(1) in '"\\' else m.group(0), token[1:-1]
        )
    return token


def parse_dot(text: str) -> Dot:
    """Parse ``digraph { ... }``; fails on any token the grammar does not allow."""
    tokens = _tokens(text)
    graph = Dot()
    pos = 0

    def take(expected: str | None = None) -> str:
        nonlocal pos
        token = tokens[pos]
        assert expected is None or token == expected, f"expected {expected}, got {token}"
        pos += 1
        return token

    def attrs() -> dict[str, str]:
        out: dict[str, str] = {}
        take("[")
        while tokens[pos] != "]":
            key = take()
            take("=")
            out[key] = _unquote(take())
            if tokens[pos] == ",":
                take(",")
        take("]")
        return out

    def statements() -> None:
        take("{")
        while tokens[pos] != "}":
            if tokens[pos] == "subgraph":
                take()
                take()
                statements()
                continue
            first = take()
            if first in ("node", "edge", "graph"):
                attrs()
            elif tokens[pos] == "=":
                take("=")
                take()
            elif tokens[pos] == "->":
                take("->")
                graph.edges.append((_unquote(first), _unquote(take())))
            else:
                graph.labels[_unquote(first)] = attrs()["label"]
            take(";")
        take("}")

    take("digraph")
    take()
    statements()
    assert pos == len(tokens), "text after the graph"
    return graph


class TestDot:
    """--format dot: the dependency graph for Graphviz, coloured, deterministic."""

    def test_is_a_digraph_with_one_edge_per_dependency(self) -> None:
        plan = demo_plan()
        graph = parse_dot(plan_dot(plan))
        assert len(graph.labels) == 13
        assert len(graph.edges) == sum(len(a.depends_on) for a in plan.actions)
        assert ("extend_lun:CSV02", "extend_volume:CSV02") in graph.edges

    def test_nodes_are_labelled_with_step_type_and_target(self) -> None:
        graph = parse_dot(plan_dot(demo_plan()))
        assert graph.labels["migrate_vm:SQL02"] == "12. migrate_vm\\nVirtualMachine/SQL02"

    def test_nodes_are_filled_by_disruption_and_blocked_ones_outlined(self) -> None:
        text = plan_dot(golden_plan("never_live_migrate"))
        assert 'fillcolor="#cfe3ff"' in text  # live-migration
        assert 'color="#c62828", penwidth=2' in text

    def test_same_plan_same_bytes(self) -> None:
        assert plan_dot(demo_plan()) == plan_dot(demo_plan())
        assert plan_markdown(demo_plan()) == plan_markdown(demo_plan())


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo world the CLI tests only plan against."""
    state = tmp_path_factory.mktemp("md")
    result = CliRunner().invoke(cli, ["--state-dir", str(state), "sim", "init", str(WORLD)])
    assert result.exit_code == 0, result.output
    return state


class TestCli:
    """plan --format markdown|dot through the command line, exit codes as before."""

    def run(self, state: Path, *args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, ["--state-dir", str(state), "plan", *args])
        return result.exit_code, result.output

    def test_markdown_is_printed_alone(self, state: Path) -> None:
        code, out = self.run(state, "--format", "markdown", str(DEMO))
        assert code == 0
        assert out == plan_markdown(demo_plan())

    def test_dot_is_printed_alone(self, state: Path) -> None:
        code, out = self.run(state, "--format", "dot", str(DEMO))
        assert code == 0
        assert out.startswith("digraph plan {")
        assert len(parse_dot(out).edges) == 15

    def test_out_still_saves_json(self, state: Path, tmp_path: Path) -> None:
        saved = tmp_path / "plan.json"
        code, out = self.run(state, "--format", "markdown", "--out", str(saved), str(DEMO))
        assert code == 0
        # The saved plan also records the digest of the manifest files it was made from.
        with_files = replace(demo_plan(), manifests_digest=manifests_digest([str(DEMO)]))
        assert saved.read_text() == with_files.dumps()
        assert "Saved the plan" not in out

    def test_detailed_exitcode_is_unchanged(self, state: Path) -> None:
        code, _ = self.run(state, "--format", "markdown", "--detailed-exitcode", str(DEMO))
        assert code == 2


class TestRemovalsAndUnmanaged:
    """Removals are shown apart in the comment; objects in no manifest are listed, left alone."""

    def test_removals_have_their_own_section_and_summary(self) -> None:
        text = plan_markdown(golden_plan("prune_remove_vm"))
        assert "REMOVES 1: VirtualMachine/OLD01" in text
        section = text[text.index("**Removals**") :].split("\n\n")[1]
        assert section.startswith("- 🗑️ `remove_vm` VirtualMachine/OLD01: OLD01 is in no manifest")
        assert "destructive" in text

    def test_unmanaged_objects_are_listed_even_with_nothing_to_do(self) -> None:
        text = plan_markdown(golden_plan("unmanaged_vm"))
        assert "**Unmanaged** (in the world, in no manifest; left alone)" in text
        assert "- VirtualMachine/OLD01" in text
        assert "**Removals**" not in text
