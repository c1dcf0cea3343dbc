"""Issue 16 item 4: the unhealthy states a real cluster gets into (a VM role failed, a CSV in
redirected access, a cluster network down or partitioned) are in the model, injectable with
'sim fault', obeyed by the world rules, reported as conditions with when they began (plan,
drift, observe, metrics), and a move onto an unhealthy node is blocked.

Expected outcomes are written out by hand, case by case.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from prometheus_client import generate_latest
from sim_strategies import act, lab_world, migrate

from reconciler.cli.main import cli
from reconciler.engine.health import moves_onto_unhealthy
from reconciler.engine.planner import make_plan
from reconciler.manifest.load import load_paths, require
from reconciler.model.codec import canonical_text
from reconciler.model.conditions import observed_conditions, stamp_since
from reconciler.model.records import Estate, Node, VmStatus, VolumeStatus, frozen_map
from reconciler.model.rules import apply_rules
from reconciler.model.rules_base import switch_to_params
from reconciler.providers.sim.provider import SimProvider
from reconciler.runtime.metrics import LoopMetrics
from reconciler.runtime.ticks import TickReport

GOLDEN = Path(__file__).parent / "golden" / "no_changes"
WORLD = Path(__file__).resolve().parents[1] / "manifests" / "worlds" / "demo.yaml"
ADMIN_URL = os.environ.get("RECONCILER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def converged() -> tuple[Estate, Estate]:
    desired = require(load_paths([str(GOLDEN / "desired")]))
    observed = require(load_paths([str(GOLDEN / "observed.yaml")], world=True))
    return desired, observed


def node_with(estate: Estate, name: str, **status: Any) -> Estate:
    node = estate.nodes[name]
    return estate.with_record(replace(node, status=replace(node.status, **status)))


def vm_with(estate: Estate, name: str, **fields: Any) -> Estate:
    return estate.with_record(replace(estate.vms[name], **fields))


def lm_down(*nodes: str) -> Callable[[Estate], Estate]:
    def change(e: Estate) -> Estate:
        for n in nodes:
            e = node_with(e, n, networks_down=frozenset({"LiveMigration"}))
        return e

    return change


def redirected(**nodes: str) -> Callable[[Estate], Estate]:
    def change(e: Estate) -> Estate:
        v = e.volumes["CSV1"]
        status = replace(v.status, redirected=frozen_map(nodes))
        return e.with_record(replace(v, status=status))

    return change


def failed(name: str) -> Callable[[Estate], Estate]:
    def change(e: Estate) -> Estate:
        vm = e.vms[name]
        return vm_with(e, name, power_state="off", status=replace(vm.status, failed=True))

    return change


# --- the conditions of an observed estate ---------------------------------------------------

CONDITION_CASES: list[tuple[str, Callable[[Estate], Estate], list[tuple[str, str, str]]]] = [
    ("healthy", lambda e: e, []),
    (
        "node down",
        lambda e: node_with(e, "hv3", state="down"),
        [("NodeDown", "Node/hv3", "hv3 is down")],
    ),
    (
        "VM role failed",
        failed("WEB01"),
        [("VmFailed", "VirtualMachine/WEB01", "WEB01's cluster role is failed on hv1")],
    ),
    (
        "VM saved",
        lambda e: vm_with(e, "WEB02", power_state="saved"),
        [("VmSaved", "VirtualMachine/WEB02", "WEB02 is saved on hv2")],
    ),
    (
        "CSV redirected on two nodes",
        redirected(hv2="NoDiskConnectivity", hv1="UserRequest"),
        [
            (
                "CsvRedirected",
                "ClusterSharedVolume/CSV1",
                "CSV1: redirected I/O on hv1 (UserRequest), hv2 (NoDiskConnectivity)",
            )
        ],
    ),
    (
        "network down on every node",
        lm_down("hv1", "hv2", "hv3"),
        [("NetworkDown", "Cluster/lab", "cluster network LiveMigration is down")],
    ),
    (
        "network down on one node: partitioned",
        lm_down("hv2"),
        [
            (
                "NetworkPartitioned",
                "Cluster/lab",
                "cluster network LiveMigration is partitioned: down on hv2",
            )
        ],
    ),
    (
        "a node that is down counts neither way",
        lambda e: node_with(lm_down("hv1", "hv2")(e), "hv3", state="down"),
        [
            ("NodeDown", "Node/hv3", "hv3 is down"),
            ("NetworkDown", "Cluster/lab", "cluster network LiveMigration is down"),
        ],
    ),
    (
        "switch missing on a member",
        lambda e: node_with(e, "hv2", switches=frozen_map()),
        [("SwitchMissing", "Node/hv2", "switch vSwitch-VM is missing on hv2")],
    ),
]


class TestConditionsOfTheWorld:
    @pytest.mark.parametrize(
        ("change", "expected"),
        [c[1:] for c in CONDITION_CASES],
        ids=[c[0] for c in CONDITION_CASES],
    )
    def test_each_state(
        self, change: Callable[[Estate], Estate], expected: list[tuple[str, str, str]]
    ) -> None:
        desired, observed = converged()
        found = observed_conditions(change(observed), desired)
        assert [(c.type, c.target, c.reason) for c in found] == expected
        assert all(c.status == "True" and c.since is None for c in found)

    def test_a_cluster_no_manifest_declares_is_left_out(self) -> None:
        desired, observed = converged()
        observed = node_with(observed, "hv3", state="down")
        other = replace(desired, clusters={})
        assert observed_conditions(observed, other) == []
        assert [c.type for c in observed_conditions(observed)] == ["NodeDown"]


class TestSinceOnTheWorldClock:
    """A condition keeps the time it began while it holds; a new one begins now."""

    def test_a_sequence_of_changes(self) -> None:
        _, world = converged()
        t0 = stamp_since(node_with(world, "hv3", state="down"), 0.0)
        t50 = stamp_since(failed("WEB01")(t0), 50.0)
        t80 = stamp_since(node_with(t50, "hv3", state="up"), 80.0)
        t90 = stamp_since(lm_down("hv1")(t80), 90.0)
        rows = {
            "t0": {(c.type, c.since) for c in observed_conditions(t0)},
            "t50": {(c.type, c.since) for c in observed_conditions(t50)},
            "t80": {(c.type, c.since) for c in observed_conditions(t80)},
            "t90": {(c.type, c.since) for c in observed_conditions(t90)},
        }
        assert rows == {
            "t0": {("NodeDown", 0.0)},
            "t50": {("NodeDown", 0.0), ("VmFailed", 50.0)},
            "t80": {("VmFailed", 50.0)},
            "t90": {("VmFailed", 50.0), ("NetworkPartitioned", 90.0)},
        }
        assert dict(t80.nodes["hv3"].status.since) == {}, "an ended condition is dropped"
        assert dict(t90.clusters["lab"].status.since) == {"NetworkPartitioned/LiveMigration": 90.0}

    def test_the_note_shows_it(self) -> None:
        _, world = converged()
        world = stamp_since(node_with(world, "hv3", state="down"), 12.5)
        [c] = observed_conditions(world)
        assert c.note() == "condition NodeDown=True Node/hv3: hv3 is down (since t=12.5 s)"


class TestStoredTextCompatibility:
    """New fields at their default leave the stored text (and digests) as they were."""

    @pytest.mark.parametrize(
        ("record", "absent"),
        [
            (Node.__name__, ("networks_down", "since")),
            (VmStatus.__name__, ("failed", "since")),
            (VolumeStatus.__name__, ("redirected", "since")),
        ],
    )
    def test_defaults_are_left_out(self, record: str, absent: tuple[str, ...]) -> None:
        _, world = converged()
        texts = {
            "Node": canonical_text(world.nodes["hv1"]),
            "VmStatus": canonical_text(world.vms["WEB01"]),
            "VolumeStatus": canonical_text(world.volumes["CSV1"]),
        }
        for name in absent:
            assert f'"{name}"' not in texts[record]

    def test_set_fields_are_kept_and_read_back(self) -> None:
        from reconciler.model.codec import decode_record

        _, world = converged()
        world = stamp_since(failed("WEB01")(lm_down("hv2")(world)), 7.0)
        for kind, name in (("Node", "hv2"), ("VirtualMachine", "WEB01"), ("Cluster", "lab")):
            record = world.table(kind)[name]
            assert decode_record(kind, json.loads(canonical_text(record))) == record
            assert '"since"' in canonical_text(record) or kind == "Node"


# --- the world rules ------------------------------------------------------------------------

RULE_CASES: list[tuple[str, Callable[[Estate], Estate], Any, list[str]]] = [
    ("live, healthy", lambda e: e, migrate("A", "n2"), []),
    (
        "live onto a node whose LM network is down",
        lambda e: node_with(e, "n2", networks_down=frozenset({"LM"})),
        migrate("A", "n2"),
        ["no live migration: live-migration network LM is down on n2"],
    ),
    (
        "live from a node whose LM network is down",
        lambda e: node_with(e, "n1", networks_down=frozenset({"LM"})),
        migrate("A", "n2"),
        ["no live migration: live-migration network LM is down on n1"],
    ),
    (
        "quick migration needs no LM network",
        lambda e: node_with(e, "n2", networks_down=frozenset({"LM"})),
        migrate("A", "n2", "quick"),
        [],
    ),
    (
        "another network down does not matter",
        lambda e: node_with(e, "n2", networks_down=frozenset({"Heartbeat"})),
        migrate("A", "n2"),
        [],
    ),
    (
        "a failed VM is not running: it does not live-migrate",
        lambda e: vm_with(
            e, "A", power_state="off", status=replace(e.vms["A"].status, failed=True)
        ),
        migrate("A", "n2"),
        ["A is off: only a running VM live-migrates"],
    ),
]


class TestWorldRules:
    @pytest.mark.parametrize(
        ("change", "action", "failures"),
        [c[1:] for c in RULE_CASES],
        ids=[c[0] for c in RULE_CASES],
    )
    def test_migrations(
        self, change: Callable[[Estate], Estate], action: Any, failures: list[str]
    ) -> None:
        result = apply_rules(change(lab_world()), action)
        assert list(result.failures) == failures

    def test_starting_a_failed_vm_brings_its_role_online(self) -> None:
        from sim_strategies import act

        world = lab_world()
        world = vm_with(
            world, "A", power_state="off", status=replace(world.vms["A"].status, failed=True)
        )
        result = apply_rules(world, act("start_vm", vm="A"))
        assert result.failures == ()
        after = result.estate.vms["A"]
        assert (after.power_state, after.status.failed) == ("running", False)


# --- the plan -------------------------------------------------------------------------------

BLOCK_CASES: list[tuple[str, Callable[[Estate], Estate], str | None]] = [
    ("healthy destination", lambda e: e, None),
    ("destination down", lambda e: node_with(e, "hv3", state="down"), "which is down"),
    (
        "destination's only LM network down",
        lm_down("hv3"),
        "but its live-migration network LiveMigration is down",
    ),
    ("CSV redirected there: reported, not blocked", redirected(hv3="UserRequest"), None),
    ("LM down elsewhere: not this move's concern", lm_down("hv2"), None),
]


class TestMovesOntoUnhealthyNodes:
    """WEB01 pinned to hv3: the move is planned, and blocked when hv3 is unhealthy."""

    @pytest.mark.parametrize(
        ("change", "why"), [c[1:] for c in BLOCK_CASES], ids=[c[0] for c in BLOCK_CASES]
    )
    def test_pinned_move(self, change: Callable[[Estate], Estate], why: str | None) -> None:
        desired, observed = converged()
        desired = desired.with_record(replace(desired.vms["WEB01"], node="hv3"))
        plan = make_plan(desired, change(observed))
        blocks = [(v.rule, v.message) for v in plan.violations if v.severity == "block"]
        if why is None:
            assert blocks == []
            assert [a.id for a in plan.actions] == ["migrate_vm:WEB01"]
        else:
            message = f"migrate_vm:WEB01 would move WEB01 onto hv3, {why}"
            assert blocks == [("unhealthy_destination", message)], "named once, not twice"

    @pytest.mark.parametrize(
        ("change", "destinations", "unplaced"),
        [
            (lambda e: e, {"TEST01": "hv3", "WEB01": "hv3"}, []),
            (lm_down("hv3"), {"TEST01": "hv2", "WEB01": "hv2"}, []),
            (lm_down("hv2", "hv3"), {}, ["VirtualMachine/TEST01", "VirtualMachine/WEB01"]),
        ],
        ids=["healthy", "LM down on hv3", "LM down on hv2 and hv3"],
    )
    def test_a_drain_avoids_nodes_whose_lm_network_is_down(
        self, change: Callable[[Estate], Estate], destinations: dict[str, str], unplaced: list[str]
    ) -> None:
        desired, observed = converged()
        hv1 = desired.nodes["hv1"]
        desired = desired.with_record(
            replace(hv1, maintenance=True, unset=hv1.unset - {"maintenance"})
        )
        plan = make_plan(desired, change(observed))
        moves = {
            a.params["vm"]: a.params["destination"] for a in plan.actions if a.type == "migrate_vm"
        }
        assert moves == destinations
        unplaced_blocks = [v for v in plan.violations if v.rule == "no_placement"]
        assert [v.target for v in unplaced_blocks] == unplaced
        for v in unplaced_blocks:  # the block says why, node by node
            assert v.message.endswith(
                "hv2: live-migration network LiveMigration is down on hv2; "
                "hv3: live-migration network LiveMigration is down on hv3"
            )

    def test_a_missing_switch_the_plan_creates_first_does_not_block(self) -> None:
        desired, observed = converged()
        desired = desired.with_record(replace(desired.vms["WEB01"], node="hv3"))
        plan = make_plan(desired, node_with(observed, "hv3", switches=frozen_map()))
        assert [a.id for a in plan.actions] == ["match_vswitch:hv3/vSwitch-VM", "migrate_vm:WEB01"]
        assert not plan.blocked

    @pytest.mark.parametrize(
        ("steps", "blocked"),
        [
            (["migrate_vm:WEB01"], ["migrate_vm:WEB01"]),
            (["match_vswitch:hv3/vSwitch-VM", "migrate_vm:WEB01"], []),
            (["migrate_vm:WEB01", "match_vswitch:hv3/vSwitch-VM"], ["migrate_vm:WEB01"]),
        ],
        ids=["move alone", "switch first", "switch after"],
    )
    def test_a_missing_switch_blocks_the_move(self, steps: list[str], blocked: list[str]) -> None:
        _, observed = converged()
        observed = node_with(observed, "hv3", switches=frozen_map())
        cfg = switch_to_params(converged()[1].switches["vSwitch-VM"].config)
        made = {
            "migrate_vm:WEB01": migrate("WEB01", "hv3"),
            "match_vswitch:hv3/vSwitch-VM": act(
                "match_vswitch", node="hv3", switch="vSwitch-VM", config=cfg
            ),
        }
        found = moves_onto_unhealthy([made[s] for s in steps], observed)
        assert [v.action for v in found] == [made[s].id for s in blocked]
        for v in found:
            assert v.message.endswith("which has no switch vSwitch-VM (adapter nic1)")

    def test_conditions_alone_are_no_difference(self) -> None:
        desired, observed = converged()
        observed = redirected(hv1="UserRequest")(lm_down("hv2")(observed))
        db01 = desired.vms["DB01"]  # power_state left out: not managed
        desired = desired.with_record(replace(db01, unset=db01.unset | {"power_state"}))
        plan = make_plan(desired, vm_with(observed, "DB01", power_state="saved"))
        assert (plan.actions, plan.blocked) == ((), False)
        assert [c["type"] for c in plan.to_json()["conditions"]] == [
            "NetworkPartitioned",
            "CsvRedirected",
            "VmSaved",
        ]


class TestSavedPlans:
    def test_conditions_survive_a_saved_plan_and_are_covered_by_its_digest(self) -> None:
        from reconciler.engine.plan import PlanRefused, verify_document

        desired, observed = converged()
        observed = stamp_since(lm_down("hv2")(observed), 3.0)
        doc = json.loads(make_plan(desired, observed).dumps())
        assert doc["conditions"] == [
            {
                "type": "NetworkPartitioned",
                "status": "True",
                "target": "Cluster/lab",
                "reason": "cluster network LiveMigration is partitioned: down on hv2",
                "since": 3.0,
            }
        ]
        again = verify_document(doc)
        assert json.loads(again.dumps()) == doc
        doc["conditions"] = []  # hiding a condition is an edit
        with pytest.raises(PlanRefused):
            verify_document(doc)


# --- the CLI: sim fault, plan, observe, drift -----------------------------------------------


def run(state: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--state-dir", str(state), *args])


@pytest.fixture
def world(tmp_path: Path) -> Path:
    assert run(tmp_path, "sim", "init", str(WORLD)).exit_code == 0
    return tmp_path


FAULT_CASES: list[tuple[list[str], int, str]] = [
    (["vm-fail", "DC01"], 0, "DC01's cluster role failed: DC01 is off"),
    (["vm-fail", "NOPE"], 1, "no VM NOPE"),
    (["csv-redirect", "CSV01"], 0, "CSV01 is in redirected access on hv01, hv02, hv03, hv04"),
    (
        ["csv-redirect", "CSV01", "--node", "hv02", "--reason", "NoDiskConnectivity"],
        0,
        "CSV01 is in redirected access on hv02 (NoDiskConnectivity)",
    ),
    (["csv-redirect", "CSV01", "--node", "hv09"], 1, "hv09: not a member of prod"),
    (["csv-direct", "CSV01"], 0, "CSV01 has direct access on hv01, hv02, hv03, hv04"),
    (["network-down", "LiveMigration"], 0, "cluster network LiveMigration is down"),
    (
        ["network-down", "LiveMigration", "--node", "hv03"],
        0,
        "cluster network LiveMigration is partitioned: down on hv03",
    ),
    (["network-down", "Storage"], 1, "no cluster has a network Storage"),
    (["network-up", "LiveMigration"], 0, "cluster network LiveMigration is up"),
]


class TestSimFault:
    @pytest.mark.parametrize(("args", "code", "line"), FAULT_CASES, ids=lambda v: str(v))
    def test_each_fault(self, world: Path, args: list[str], code: int, line: str) -> None:
        result = run(world, "sim", "fault", *args)
        assert result.exit_code == code, result.output
        assert line in result.output
        assert "Traceback" not in result.output

    def test_since_is_the_world_clock_when_it_began_and_survives(self, world: Path) -> None:
        sim = SimProvider(state_dir=world)
        try:  # a migration advances the simulated clock; the VM fails after it
            outcome = sim.apply(migrate("SQL02", "hv02", cluster="prod"))
            clock = sim.clock()
        finally:
            sim.close()
        assert outcome.status == "done" and clock > 0
        assert run(world, "sim", "fault", "vm-fail", "DC01").exit_code == 0
        line = (
            "# condition VmFailed=True VirtualMachine/DC01: DC01's cluster role is failed "
            f"on hv01 (since t={clock:.1f} s)"
        )
        assert line in run(world, "observe").output
        assert run(world, "sim", "fault", "csv-redirect", "CSV01").exit_code == 0
        assert line in run(world, "observe").output, "kept in the world, not restamped"
        shown = run(world, "sim", "show").output
        assert "Conditions (2):" in shown
        assert "  " + line.removeprefix("# condition ") in shown


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    """The converged golden estate as a simulated world: its manifests plan nothing."""
    assert run(tmp_path, "sim", "init", str(GOLDEN / "observed.yaml")).exit_code == 0
    return tmp_path


def pinned(tmp_path: Path, vm: str, node: str) -> Path:
    """A copy of the golden manifests with ``vm`` pinned to ``node``."""
    out = tmp_path / f"pinned-{vm}-{node}"
    out.mkdir()
    for f in (GOLDEN / "desired").iterdir():
        (out / f.name).write_text(f.read_text())
    text = (out / "vms.yaml").read_text()
    head = f"  name: {vm}\nspec:\n  cluster: lab\n"
    assert head in text
    (out / "vms.yaml").write_text(text.replace(head, head + f"  node: {node}\n"))
    return out


DESIRED = str(GOLDEN / "desired")

EXIT_CASES: list[tuple[str, list[list[str]], str | None, int, list[str]]] = [
    ("healthy", [], None, 0, []),
    (
        "conditions only",
        [
            ["csv-redirect", "CSV1", "--node", "hv2"],
            ["network-down", "LiveMigration", "--node", "hv3"],
            ["node-crash", "hv2"],
        ],
        None,
        0,
        ["NodeDown", "NetworkPartitioned", "CsvRedirected"],
    ),
    (
        "a failed VM the manifests want running: start it",
        [["vm-fail", "WEB02"]],
        None,
        2,
        ["VmFailed"],
    ),
    (
        "a pinned move onto a node whose LM network is down",
        [["network-down", "LiveMigration", "--node", "hv3"]],
        "hv3",
        3,
        ["NetworkPartitioned"],
    ),
    ("a pinned move onto a healthy node", [], "hv3", 2, []),
    ("a pinned move onto a node that is down", [["node-crash", "hv3"]], "hv3", 3, ["NodeDown"]),
]


class TestPlanExitCodes:
    """Conditions are reported, not differences: exit 0 unless a step is needed (2) or they
    block one (3)."""

    @pytest.mark.parametrize(
        ("faults", "pin", "code", "types"),
        [c[1:] for c in EXIT_CASES],
        ids=[c[0] for c in EXIT_CASES],
    )
    def test_detailed_exitcode(
        self, lab: Path, faults: list[list[str]], pin: str | None, code: int, types: list[str]
    ) -> None:
        for args in faults:
            assert run(lab, "sim", "fault", *args).exit_code == 0
        manifests = str(pinned(lab, "WEB01", pin)) if pin else DESIRED
        text = run(lab, "plan", "--detailed-exitcode", manifests)
        assert text.exit_code == code, text.output
        result = run(lab, "plan", "--json", "--detailed-exitcode", manifests)
        assert result.exit_code == code
        doc = json.loads(result.stdout)
        conditions = doc.get("conditions", [])
        assert [c["type"] for c in conditions] == types
        for c in conditions:
            assert c["status"] == "True" and c["since"] == 0.0
            note = f"note: condition {c['type']}=True {c['target']}: {c['reason']} (since t=0.0 s)"
            assert note in text.output
        if code == 3:
            assert [v["rule"] for v in doc["violations"]] == ["unhealthy_destination"]


class TestObserveAndMetrics:
    def test_observe_comments_each_new_type(self, lab: Path) -> None:
        for args in (
            ["vm-fail", "WEB02"],
            ["csv-redirect", "CSV1", "--node", "hv1", "--reason", "NoDiskConnectivity"],
            ["network-down", "Heartbeat"],
        ):
            assert run(lab, "sim", "fault", *args).exit_code == 0
        out = run(lab, "observe").output
        comments = [line for line in out.splitlines() if line.startswith("# condition")]
        assert comments == [
            "# condition NetworkDown=True Cluster/lab: cluster network Heartbeat is down "
            "(since t=0.0 s)",
            "# condition CsvRedirected=True ClusterSharedVolume/CSV1: CSV1: redirected I/O on "
            "hv1 (NoDiskConnectivity) (since t=0.0 s)",
            "# condition VmFailed=True VirtualMachine/WEB02: WEB02's cluster role is failed on "
            "hv2 (since t=0.0 s)",
        ]

    def test_gauge_by_type_with_every_type_present(self) -> None:
        metrics = LoopMetrics()
        notes = (
            "condition NetworkPartitioned=True Cluster/lab: cluster network LM is partitioned",
            "condition VmFailed=True VirtualMachine/A: A's cluster role is failed on n1",
            "condition VmFailed=True VirtualMachine/B: B's cluster role is failed on n2",
        )
        metrics.tick_done(TickReport(mode="once", started_at=0.0, ended_at=1.0, notes=notes))
        text = generate_latest(metrics.registry).decode()
        expected = {
            "NodeDown": 0,
            "NetworkDown": 0,
            "NetworkPartitioned": 1,
            "SwitchMissing": 0,
            "CsvRedirected": 0,
            "VmFailed": 2,
            "VmSaved": 0,
        }
        for kind, count in expected.items():
            assert f'reconciler_conditions{{type="{kind}"}} {count}.0' in text


class TestDriftShowsConditions:
    """The loop records what it saw; drift shows it open while it holds, then cleared."""

    def test_open_then_cleared(self, lab: Path) -> None:
        assert (
            run(lab, "sim", "fault", "network-down", "LiveMigration", "--node", "hv2").exit_code
            == 0
        )
        assert run(lab, "sim", "fault", "vm-fail", "WEB02").exit_code == 0
        tick = run(lab, "reconcile", "--once", "--mode", "monitor", DESIRED)
        assert "note: condition VmFailed=True VirtualMachine/WEB02" in tick.output
        assert run(lab, "sim", "fault", "network-up", "LiveMigration").exit_code == 0
        run(lab, "reconcile", "--once", "--mode", "monitor", DESIRED)
        rows = json.loads(run(lab, "drift", "--json").stdout)
        seen = [
            (r["type"], r["object"], r["key"], r["since"], r["status"])
            for r in rows
            if r["kind"] == "condition"
        ]
        assert seen == [
            ("VmFailed", "VirtualMachine/WEB02", "VmFailed", 0.0, "open"),
            (
                "NetworkPartitioned",
                "Cluster/lab",
                "NetworkPartitioned/LiveMigration",
                0.0,
                "cleared",
            ),
        ] or seen == [
            (
                "NetworkPartitioned",
                "Cluster/lab",
                "NetworkPartitioned/LiveMigration",
                0.0,
                "cleared",
            ),
            ("VmFailed", "VirtualMachine/WEB02", "VmFailed", 0.0, "open"),
        ]
        assert {r["kind"] for r in rows} == {"drift", "condition"}  # WEB02 off: drift too
        still = json.loads(run(lab, "drift", "--open", "--json").stdout)
        assert [r["object"] for r in still if r["kind"] == "condition"] == ["VirtualMachine/WEB02"]
        text = run(lab, "drift").output
        assert "Conditions (observed health)" in text
        assert "NetworkPartitioned" in text and "cleared" in text


@pytest.fixture
def pg_url() -> Iterator[str]:
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable at {ADMIN_URL} ({exc})")
    name = f"reconciler_conditions_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql:///{name}"
    finally:
        from reconciler.providers.postgres import close_idle

        close_idle()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


class TestBothJournalsKeepConditions:
    @pytest.mark.parametrize("backend", ["sqlite", "postgres"])
    def test_note_and_clear(self, tmp_path: Path, backend: str, request: Any) -> None:
        from reconciler.model.conditions import Condition
        from reconciler.runtime.store.factory import open_store

        url = request.getfixturevalue("pg_url") if backend == "postgres" else None
        now = [100.0]
        store = open_store(tmp_path, url, lambda: now[0])
        down = Condition("NodeDown", "Node/hv3", "hv3 is down", since=5.0, key="NodeDown")
        cut = Condition("NetworkDown", "Cluster/lab", "LM is down", key="NetworkDown/LM")
        try:
            assert store.note_conditions("r1", [down, cut]) == [
                "NodeDown Node/hv3",
                "NetworkDown Cluster/lab",
            ]
            now[0] = 200.0
            assert store.note_conditions("r2", [down], scope={"Node/hv3"}) == []
            rows = {(r.object, r.cleared) for r in store.condition_history()}
            assert rows == {("Node/hv3", False), ("Cluster/lab", False)}, "out of scope: kept"
            now[0] = 300.0
            store.note_conditions("r3", [down])
            by_object = {r.object: r for r in store.condition_history()}
            assert (by_object["Cluster/lab"].cleared, by_object["Cluster/lab"].cleared_at) == (
                True,
                300.0,
            )
            hv3 = by_object["Node/hv3"]
            assert (hv3.detected_at, hv3.last_seen_at, hv3.since, hv3.tick_run) == (
                100.0,
                300.0,
                5.0,
                "r1",
            )
            assert [r.object for r in store.condition_history(open_only=True)] == ["Node/hv3"]
        finally:
            store.close()


# --- the hyperv provider reads the same states back from the peer ---------------------------


class TestHyperVObservesThem:
    """Get-ClusterGroup State Failed, Get-ClusterSharedVolumeState, Get-ClusterNetworkInterface
    State: read back over PSRP from the peer, which serves the simulator's world."""

    def test_read_back(self, tmp_path: Path) -> None:
        from hyperv_inproc import InProcSessions
        from hyperv_world import connections_for, make_world, observable

        from reconciler.providers.hyperv.provider import HyperVProvider
        from reconciler.providers.sim.health import fail_vm, redirect_volume, set_network
        from reconciler.providers.sim.winrm.cmdlets import HyperVPeer

        gen = make_world(tmp_path, nodes=3, vms=2)
        vm = sorted(gen.world.vms)[0]
        volume = sorted(gen.world.volumes)[0]
        net = gen.world.clusters["c001"].networks[0].name
        sim = SimProvider(tmp_path)
        try:
            sim.health_fault(lambda w: fail_vm(w, vm))
            sim.health_fault(lambda w: redirect_volume(w, volume, ["c001-n02"], "UserRequest"))
            sim.health_fault(
                lambda w: redirect_volume(w, volume, ["c001-n03"], "NoDiskConnectivity")
            )
            sim.health_fault(lambda w: set_network(w, "c001", net, ["c001-n01"], up=False))
            truth = sim.observe()
        finally:
            sim.close()
        hv = HyperVProvider(
            tmp_path, connections_for(truth), sessions=InProcSessions(HyperVPeer(tmp_path))
        )
        seen = hv.observe()
        assert observable(seen) == observable(truth)
        assert seen.vms[vm].status.failed
        assert dict(seen.volumes[volume].status.redirected) == {
            "c001-n02": "UserRequest",
            "c001-n03": "NoDiskConnectivity",
        }
        assert seen.nodes["c001-n01"].status.networks_down == {net}
        found = [(c.type, c.target, c.reason, c.since) for c in observed_conditions(seen)]
        assert found == [
            (
                "NetworkPartitioned",
                "Cluster/c001",
                f"cluster network {net} is partitioned: down on c001-n01",
                None,
            ),
            (
                "CsvRedirected",
                f"ClusterSharedVolume/{volume}",
                f"{volume}: redirected I/O on c001-n02 (UserRequest), "
                "c001-n03 (NoDiskConnectivity)",
                None,
            ),
            (
                "VmFailed",
                f"VirtualMachine/{vm}",
                f"{vm}'s cluster role is failed on {truth.vms[vm].node}",
                None,
            ),
        ]


# --- a world file may state them, and observe --status writes them back ----------------------


def world_text(node_status: str = "", volume_status: str = "", vm_status: str = "") -> str:
    """The golden world, with extra status lines on hv2, CSV1 and WEB02."""
    text = (GOLDEN / "observed.yaml").read_text()
    for name, extra in (("hv2", node_status), ("CSV1", volume_status), ("WEB02", vm_status)):
        if not extra:
            continue
        start = text.index(f"  name: {name}\n")
        end = text.find("\n---", start)
        end = len(text) if end < 0 else end + 1
        doc = text[start:end]
        doc = (
            doc.replace("status:\n", "status:\n" + extra, 1)
            if "status:\n" in doc
            else doc + "status:\n" + extra
        )
        text = text[:start] + doc + text[end:]
    return text


class TestWorldFiles:
    def test_stated_read_and_written_back(self, tmp_path: Path) -> None:
        from reconciler.manifest.dump import to_yaml
        from reconciler.manifest.load import load_text

        text = world_text(
            "  networks_down: [LiveMigration]\n",
            "  redirected: {hv1: NoDiskConnectivity}\n",
            "  failed: true\n",
        )
        world = require(load_text(text, "world.yaml", world=True))
        assert [c.type for c in observed_conditions(world)] == [
            "NetworkPartitioned",
            "CsvRedirected",
            "VmFailed",
        ]
        again = require(load_text(to_yaml(world, status=True), "again.yaml", world=True))
        assert again.nodes["hv2"].status.networks_down == {"LiveMigration"}
        assert dict(again.volumes["CSV1"].status.redirected) == {"hv1": "NoDiskConnectivity"}
        assert again.vms["WEB02"].status.failed
        (tmp_path / "w.yaml").write_text(text)
        assert run(tmp_path, "sim", "init", str(tmp_path / "w.yaml")).exit_code == 0
        out = run(tmp_path, "observe").output
        line = "# condition VmFailed=True VirtualMachine/WEB02: WEB02's cluster role is failed"
        assert f"{line} on hv2 (since t=0.0 s)" in out

    @pytest.mark.parametrize(
        ("node", "volume", "message"),
        [
            (
                "  networks_down: [Storage]\n",
                "",
                "status.networks_down: Storage is not a network of cluster lab "
                "(one of: Management, Heartbeat, LiveMigration, VM)",
            ),
            (
                "",
                "  redirected: {hv9: UserRequest}\n",
                "status.redirected.hv9: hv9 is not a member of cluster lab (one of: hv1, hv2, hv3)",
            ),
            ("", "  redirected: {hv1: Slow}\n", "status.redirected.hv1"),
        ],
        ids=["unknown network", "not a member", "unknown reason"],
    )
    def test_bad_statements_are_errors_at_the_line(
        self, node: str, volume: str, message: str
    ) -> None:
        from reconciler.manifest.load import load_text

        result = load_text(world_text(node, volume), "world.yaml", world=True)
        lines = [str(e) for e in result.errors]
        assert any(message in line and line.startswith("world.yaml:") for line in lines), lines
