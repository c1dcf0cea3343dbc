"""Rolling maintenance and placement (issue 6) on the demo estate.

The demo is converged first (hv05 joined, 13 actions); the rolling variant then raises
every node's patch level to 2010-07 and declares ``rolling_update: {id: "2010-07"}``.
End-to-end tests drive the CLI on the simulator; the rest check plans against the
converged demo state, which is the demo plan replayed with the world's own rules.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from click.testing import CliRunner
from rolling_checks import ancestors, most_paused_in_order, most_paused_together

from reconciler.cli.main import cli
from reconciler.engine.plan import Plan
from reconciler.engine.planner import make_plan
from reconciler.engine.safety import replay
from reconciler.manifest.load import load_paths, require
from reconciler.model.actions import Action
from reconciler.model.capacity import usable_memory_mib, used_memory_mib
from reconciler.model.records import Estate
from reconciler.model.rules import apply_rules, invariants
from reconciler.providers.sim.provider import SimProvider
from reconciler.providers.sim.store import MigrationRecord
from reconciler.runtime.clock import ManualClock
from reconciler.runtime.journal import ActionRecord, Journal, RunRecord

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "manifests" / "demo"
WORLD = ROOT / "manifests" / "worlds" / "demo.yaml"
CYCLE = "2010-07"
NODES = ("hv01", "hv02", "hv03", "hv04", "hv05")
PINNED = {"SQL02": "hv02"}  # the demo's only pinned VM
TEST_VM = "TEST01"  # verify_node live-migrates it onto each patched node and back
# A hook that succeeds (a real process: the simulator runs it) and says which node it patched.
PATCH_HOOK = [sys.executable, "-c", "import os; print('patched', os.environ['RECONCILER_NODE'])"]


# --- manifests --------------------------------------------------------------------------------


def demo_variant(
    folder: Path,
    *,
    cycle: str | None = CYCLE,
    nodes: str = "all",
    max_unavailable: int | None = None,
    cluster_extra: str = "",
    maintenance: Sequence[str] = (),
    resumed: Sequence[str] = (),
    edit_vms: Callable[[str], str] | None = None,
) -> Path:
    """A copy of manifests/demo: every node at 2010-07 and a rolling update, unless told not."""
    shutil.copytree(DEMO, folder)
    nodes_file = folder / "nodes.yaml"
    text = nodes_file.read_text()
    if cycle is not None:
        text = text.replace('patch_level: "2010-06"', 'patch_level: "2010-07"')
    docs = text.split("\n---\n")
    for i, doc in enumerate(docs):
        name = re.search(r"^  name: (\S+)$", doc, re.MULTILINE)
        if name and name.group(1) in maintenance:
            docs[i] = doc.rstrip("\n") + "\n  maintenance: true\n"
        if name and name.group(1) in resumed:
            docs[i] = doc.rstrip("\n") + "\n  maintenance: false\n"
    nodes_file.write_text("\n---\n".join(docs))
    cluster = cluster_extra
    if cycle is not None:
        cluster += f'  rolling_update:\n    id: "{cycle}"\n    nodes: {nodes}\n'
        if max_unavailable is not None:
            cluster += f"    max_unavailable: {max_unavailable}\n"
        cluster += f"    hook:\n      command: {json.dumps(PATCH_HOOK)}\n"
    cluster_file = folder / "cluster.yaml"  # its spec is the file's last block
    cluster_file.write_text(cluster_file.read_text() + cluster)
    if edit_vms is not None:
        vms = folder / "vms.yaml"
        vms.write_text(edit_vms(vms.read_text()))
    return folder


def exch01_without_downtime(text: str) -> str:
    old = "migration_policy: never\n  allow_downtime: true"
    assert old in text
    return text.replace(old, "migration_policy: never\n  allow_downtime: false")


def desired_of(folder: Path) -> Estate:
    return require(load_paths([str(folder)]))


@cache
def raw_world() -> Estate:
    return require(load_paths([str(WORLD)], world=True))


@cache
def converged() -> Estate:
    """The demo world after the demo plan (hv05 joined and validated, SQL02 on hv02)."""
    desired = desired_of(DEMO)
    end, violations = replay(raw_world(), desired, make_plan(desired, raw_world()).actions)
    assert violations == []
    return end


def replayed(observed: Estate, actions: Sequence[Action]) -> Estate:
    """The state after ``actions``, each of which must pass its world rule."""
    state = observed
    for action in actions:
        result = apply_rules(state, action)
        assert result.ok, f"{action.id}: {result.failures}"
        state = result.estate
    return state


def of_type(plan: Plan, *types: str) -> list[str]:
    return [a.id for a in plan.actions if a.type in types]


def node_of(vm: str) -> str:
    node = converged().vms[vm].node
    assert node is not None
    return node


# --- the simulator and the CLI -----------------------------------------------------------------


def run(state: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--state-dir", str(state), *args], catch_exceptions=False)
    return result.exit_code, result.output


def run_process(state: Path, *args: str, kill_after: int) -> subprocess.CompletedProcess[str]:
    """Run in a process the simulator ends right after action ``kill_after`` took effect."""
    code, out = run(state, "sim", "fault", "crash-after", str(kill_after))
    assert code == 0, out
    return subprocess.run(
        [sys.executable, "-m", "reconciler", "--state-dir", str(state), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ),
        check=False,
    )


def observe(state: Path) -> Estate:
    provider = SimProvider(state_dir=state)
    try:
        return provider.observe()
    finally:
        provider.close()


def migrations(state: Path) -> list[MigrationRecord]:
    provider = SimProvider(state_dir=state)
    try:
        return provider.store.migrations()
    finally:
        provider.close()


def runs(state: Path) -> list[RunRecord]:
    journal = Journal(state, ManualClock().now)
    try:
        return journal.runs()
    finally:
        journal.close()


def run_actions(state: Path, run_id: str) -> list[ActionRecord]:
    journal = Journal(state, ManualClock().now)
    try:
        return journal.actions(run_id)
    finally:
        journal.close()


@pytest.fixture(scope="module")
def base_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulator state with the base demo converged."""
    state = tmp_path_factory.mktemp("base") / "state"
    assert run(state, "sim", "init", str(WORLD))[0] == 0
    code, out = run(state, "apply", "--auto-approve", str(DEMO))
    assert code == 0 and "13 done" in out, out
    return state


@pytest.fixture(scope="module")
def rolling_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_variant(tmp_path_factory.mktemp("manifests") / "rolling")


@pytest.fixture
def state(base_state: Path, tmp_path: Path) -> Path:
    """A private copy of the converged base state."""
    return Path(shutil.copytree(base_state, tmp_path / "state"))


@dataclass(frozen=True)
class Cycle:
    state: Path
    manifests: Path
    moves: list[MigrationRecord]  # the cycle's moves, without verify_node's test migrations
    output: str
    tests: list[tuple[MigrationRecord, MigrationRecord]] = dataclasses.field(
        default_factory=list
    )  # verify_node's test migrations: TEST01 onto a node and back


@pytest.fixture(scope="module")
def cycle(base_state: Path, rolling_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Cycle:
    """The rolling update applied once on the converged demo."""
    state = Path(shutil.copytree(base_state, tmp_path_factory.mktemp("cycle") / "state"))
    before = len(migrations(state))  # includes TEST01's test migration to hv05 and back
    code, out = run(state, "apply", "--auto-approve", str(rolling_dir))
    assert code == 0, out
    moves, tests = split_test_legs(migrations(state)[before:], verified_nodes(state))
    return Cycle(state, rolling_dir, moves, out, tests)


def verified_nodes(state: Path) -> list[str]:
    """The nodes verify_node ran for in the latest run, in order."""
    latest = runs(state)[0]
    return [
        a.target.removeprefix("Node/")
        for a in run_actions(state, latest.id)
        if a.type == "verify_node" and a.status == "done"
    ]


def split_test_legs(
    records: list[MigrationRecord], verified: list[str]
) -> tuple[list[MigrationRecord], list[tuple[MigrationRecord, MigrationRecord]]]:
    """The moves, and verify_node's test migrations: for each verified node in turn, the
    test VM onto it and straight back."""
    moves: list[MigrationRecord] = []
    pairs: list[tuple[MigrationRecord, MigrationRecord]] = []
    expected = list(verified)
    i = 0
    while i < len(records):
        m = records[i]
        after = records[i + 1] if i + 1 < len(records) else None
        if (
            expected
            and m.vm == TEST_VM
            and m.destination == expected[0]
            and after is not None
            and after.vm == TEST_VM
            and (after.source, after.destination) == (m.destination, m.source)
        ):
            pairs.append((m, after))
            expected.pop(0)
            i += 2
            continue
        moves.append(m)
        i += 1
    return moves, pairs


@pytest.fixture
def private_cycle(cycle: Cycle, tmp_path: Path) -> Cycle:
    return Cycle(
        Path(shutil.copytree(cycle.state, tmp_path / "state")), cycle.manifests, [], cycle.output
    )


# --- end to end ---------------------------------------------------------------------------------


class TestDemoCycle:
    """On the converged demo, the rolling update patches every node and converges."""

    def test_converges_with_every_node_patched_and_the_cycle_recorded(self, cycle: Cycle) -> None:
        assert "succeeded" in cycle.output
        code, out = run(cycle.state, "plan", "--detailed-exitcode", str(cycle.manifests))
        assert code == 0, out
        world = observe(cycle.state)
        assert {world.nodes[n].hardware.patch_level for n in NODES} == {CYCLE}
        status = world.clusters["prod"].status
        assert status.rolling_update_done == CYCLE
        assert (status.rolling_update_in_progress, status.updated_nodes) == (None, frozenset())
        assert not status.monitoring_maintenance
        assert not any(world.nodes[n].maintenance for n in NODES)
        assert invariants(world) == []

    def test_exch01_moves_offline_never_live_nor_saved(self, cycle: Cycle) -> None:
        exch = [m for m in migrations(cycle.state) if m.vm == "EXCH01"]
        assert exch, "EXCH01's node is patched too: it must have moved"
        # Shut down, moved off, started: no live migration and no saved state.
        assert {m.method for m in exch} == {"offline"}
        assert all(m.bytes_sent == 0 for m in exch)
        assert observe(cycle.state).vms["EXCH01"].power_state == "running"

    def test_each_vm_moves_once_and_a_pinned_vm_out_and_back(self, cycle: Cycle) -> None:
        moved = collections.Counter(m.vm for m in cycle.moves)
        running = sorted(converged().vms)
        assert {vm: moved[vm] for vm in running if vm not in PINNED} == {
            vm: 1 for vm in running if vm not in PINNED
        }
        sql02 = [(m.source, m.destination) for m in cycle.moves if m.vm == "SQL02"]
        assert len(sql02) == 2 and sql02[0][0] == sql02[1][1] == "hv02"
        assert observe(cycle.state).vms["SQL02"].node == "hv02"

    def test_verify_migrates_the_test_vm_onto_each_node_and_back(self, cycle: Cycle) -> None:
        assert [there.destination for there, _ in cycle.tests] == verified_nodes(cycle.state)
        assert sorted(verified_nodes(cycle.state)) == list(NODES)
        assert {(there.method, back.method) for there, back in cycle.tests} == {("live", "live")}

    def test_one_node_is_paused_at_a_time(self, cycle: Cycle) -> None:
        (latest, _base) = runs(cycle.state)
        done = [a for a in run_actions(cycle.state, latest.id) if a.status == "done"]
        paused: set[str] = set()
        drained: list[str] = []
        for action in done:
            node = action.target.removeprefix("Node/")
            if action.type == "drain_node":
                assert not paused, f"{node} paused while {paused} still is"
                paused.add(node)
                drained.append(node)
            elif action.type == "resume_node":
                paused.discard(node)
            elif action.type == "patch_node":
                assert paused == {node}, f"{node} patched while paused: {paused}"
        assert sorted(drained) == list(NODES)
        assert drained[0] == "hv05", "the empty node (least loaded) goes first"

    def test_a_second_apply_with_the_same_id_does_nothing(self, private_cycle: Cycle) -> None:
        before = observe(private_cycle.state)
        code, out = run(
            private_cycle.state, "apply", "--auto-approve", str(private_cycle.manifests)
        )
        assert code == 0 and "No changes" in out
        assert observe(private_cycle.state) == before
        assert len(runs(private_cycle.state)) == 2, "no new run in the journal"

    def test_a_new_id_starts_a_new_cycle(self, private_cycle: Cycle, tmp_path: Path) -> None:
        again = demo_variant(tmp_path / "next", cycle="2010-08")
        plan = make_plan(desired_of(again), observe(private_cycle.state))
        patched = [a.params["node"] for a in plan.actions if a.type == "patch_node"]
        assert sorted(patched) == list(NODES), "the same level, but a new cycle patches again"
        assert of_type(plan, "complete_rolling_update") == ["complete_rolling_update:prod"]
        code, out = run(private_cycle.state, "apply", "--auto-approve", str(again))
        assert code == 0, out
        assert observe(private_cycle.state).clusters["prod"].status.rolling_update_done == "2010-08"


class TestInterruptedCycle:
    """A cycle killed mid-apply resumes where it stopped: patched nodes are not redone."""

    @pytest.mark.parametrize(
        "crash_at",
        [
            "verify_node:hv05",  # the first node is patched but still paused
            "patch_node:hv01",  # a node is patched, the journal never heard it finish
            "verify_node:hv02",  # late: hv02 patched and paused, SQL02 away from its pin
            "complete_rolling_update:prod",  # the cycle recorded, monitoring still in maintenance
        ],
    )
    def test_crash_then_apply_converges_without_redoing_nodes(
        self, state: Path, rolling_dir: Path, crash_at: str
    ) -> None:
        plan = make_plan(desired_of(rolling_dir), observe(state))
        position = [a.id for a in plan.actions].index(crash_at) + 1
        before = len(migrations(state))
        proc = run_process(state, "apply", "--auto-approve", str(rolling_dir), kill_after=position)
        assert proc.returncode == 137, proc.stdout + proc.stderr
        crashed = observe(state)
        assert invariants(crashed) == []
        status = crashed.clusters["prod"].status
        updated = set(NODES) if status.rolling_update_done == CYCLE else status.updated_nodes
        assert updated, "the crash points are all after the first patch"
        (first, _base) = runs(state)
        assert first.outcome == "running"
        assert run_actions(state, first.id)[-1].action_id == crash_at

        code, out = run(state, "apply", "--auto-approve", str(rolling_dir))
        assert code == 0, out
        assert f"Run {first.id} was interrupted" in out
        second, interrupted, _base = runs(state)
        assert (interrupted.id, interrupted.outcome) == (first.id, "interrupted")
        assert second.outcome == "succeeded"
        redone = [
            a.action_id
            for a in run_actions(state, second.id)
            if a.type in ("drain_node", "patch_node") and a.target.removeprefix("Node/") in updated
        ]
        assert redone == [], "a node patched before the crash was drained or patched again"

        world = observe(state)
        assert {world.nodes[n].hardware.patch_level for n in NODES} == {CYCLE}
        assert world.clusters["prod"].status.rolling_update_done == CYCLE
        assert invariants(world) == []
        assert run(state, "plan", "--detailed-exitcode", str(rolling_dir))[0] == 0
        # The interruption costs no extra moves: still once each, the pinned VM out and back.
        verified = [
            a.target.removeprefix("Node/")
            for run_id, statuses in ((first.id, ("done", "interrupted")), (second.id, ("done",)))
            for a in run_actions(state, run_id)
            if a.type == "verify_node" and a.status in statuses
        ]
        moves, tests = split_test_legs(migrations(state)[before:], verified)
        assert tests, "verify_node migrated the test VM"
        moved = collections.Counter(m.vm for m in moves)
        assert moved.pop("SQL02") == 2
        assert set(moved.values()) == {1}


# --- plans on the converged demo -----------------------------------------------------------------


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    root = tmp_path_factory.mktemp("variants")
    count = iter(range(1000))

    def make(**kwargs: object) -> Path:
        return demo_variant(root / f"v{next(count)}", **kwargs)  # type: ignore[arg-type]

    return make


class TestCyclePlan:
    """The rolling plan keeps quorum, memory and max_unavailable, under any dependency order."""

    def test_replay_finds_no_violation(self, rolling_dir: Path) -> None:
        desired = desired_of(rolling_dir)
        plan = make_plan(desired, converged())
        assert plan.violations == () and plan.notes == ()
        end, violations = replay(converged(), desired, plan.actions)
        assert violations == []
        assert end.clusters["prod"].status.rolling_update_done == CYCLE

    def test_with_max_unavailable_1_no_dependency_order_pauses_two_nodes(
        self, rolling_dir: Path
    ) -> None:
        plan = make_plan(desired_of(rolling_dir), converged())
        assert len(most_paused_together(list(plan.actions))) == 1
        deps = ancestors(list(plan.actions))
        drains = of_type(plan, "drain_node")
        for earlier, later in itertools.pairwise(drains):
            assert f"resume_node:{earlier.split(':')[1]}" in deps[later]

    def test_max_unavailable_2_takes_two_nodes_out_together(
        self, variants: Callable[..., Path]
    ) -> None:
        desired = desired_of(variants(max_unavailable=2))
        plan = make_plan(desired, converged())
        assert plan.notes == (), "5 nodes, node majority: 2 may be out"
        assert replay(converged(), desired, plan.actions)[1] == []
        assert set(most_paused_together(list(plan.actions))) == {"hv05", "hv01"}
        deps = ancestors(list(plan.actions))
        # The batch's VMs all leave both nodes before either is paused.
        leaving = {
            a.id
            for a in plan.actions
            if a.type == "migrate_vm" and a.params["source"] in ("hv05", "hv01")
        }
        assert leaving and leaving <= deps["drain_node:hv05"] & deps["drain_node:hv01"]
        assert most_paused_in_order(plan.actions) == 1, "the executor still runs one at a time"

    def test_max_unavailable_beyond_quorum_is_cut_with_a_note(
        self, variants: Callable[..., Path]
    ) -> None:
        plan = make_plan(desired_of(variants(max_unavailable=3)), converged())
        assert plan.notes == (
            f"rolling update {CYCLE}: quorum (node_majority, 5 nodes) allows 2 node(s) out at once",
        )
        assert len(most_paused_together(list(plan.actions))) == 2
        assert not plan.blocked

    def test_every_interruption_resumes_where_it_stopped(self, rolling_dir: Path) -> None:
        desired = desired_of(rolling_dir)
        plan = make_plan(desired, converged())
        state = converged()
        for done, action in enumerate(plan.actions, start=1):
            state = apply_rules(state, action).estate
            updated = state.clusters["prod"].status.updated_nodes
            rest = make_plan(desired, state)
            assert not rest.blocked, (action.id, rest.violations)
            assert not [
                a.id
                for a in rest.actions
                if a.type in ("drain_node", "patch_node") and a.params["node"] in updated
            ], f"after {action.id}: a patched node is drained or patched again"
            moves = collections.Counter(
                a.params["vm"]
                for a in [*plan.actions[:done], *rest.actions]
                if a.type == "migrate_vm"
            )
            assert max(n for vm, n in moves.items() if vm not in PINNED) == 1, action.id
            assert moves["SQL02"] == 2, f"after {action.id}: SQL02 moved {moves['SQL02']} times"
            end = replayed(state, rest.actions)
            assert end.clusters["prod"].status.rolling_update_done == CYCLE, action.id
            assert make_plan(desired, end).empty, action.id

    def test_a_listed_node_that_is_not_a_member_is_a_violation(
        self, variants: Callable[..., Path]
    ) -> None:
        plan = make_plan(desired_of(variants(nodes="[hv01, hv09]")), converged())
        (violation,) = [v for v in plan.violations if v.rule == "rolling_update"]
        assert (violation.target, violation.severity) == ("Cluster/prod", "block")
        assert "lists hv09, which is not a member" in violation.message
        assert [a.params["node"] for a in plan.actions if a.type == "patch_node"] == ["hv01"]

    def test_exch01_without_downtime_blocks_only_its_node(
        self, variants: Callable[..., Path]
    ) -> None:
        plan = make_plan(desired_of(variants(edit_vms=exch01_without_downtime)), converged())
        exch_node = node_of("EXCH01")
        blocks = [v for v in plan.violations if v.severity == "block"]
        assert [(v.rule, v.target) for v in blocks] == [("rolling_update", f"Node/{exch_node}")]
        assert "EXCH01 may not be live-migrated and allows no downtime" in blocks[0].message
        patched = {a.params["node"] for a in plan.actions if a.type == "patch_node"}
        assert patched == set(NODES) - {exch_node}
        assert not [a for a in plan.actions if a.params.get("node") == exch_node]
        assert not [a for a in plan.actions if a.params.get("vm") == "EXCH01"]
        assert of_type(plan, "complete_rolling_update") == []

    def test_a_node_kept_in_maintenance_is_patched_and_stays_paused(
        self, variants: Callable[..., Path]
    ) -> None:
        desired = desired_of(variants(maintenance=["hv03"]))
        plan = make_plan(desired, converged())
        assert [v for v in plan.violations if v.severity == "block"] == []
        assert "resume_node:hv03" not in of_type(plan, "resume_node")
        patch = next(a for a in plan.actions if a.id == "patch_node:hv03")
        assert "drain_node:hv03" in patch.depends_on
        end = replayed(converged(), plan.actions)
        assert end.nodes["hv03"].maintenance
        assert end.nodes["hv03"].hardware.patch_level == CYCLE
        assert end.clusters["prod"].status.rolling_update_done == CYCLE
        assert make_plan(desired, end).empty


class TestNodeMaintenance:
    """maintenance: true drains a node one VM at a time and keeps it; false resumes it."""

    def test_maintenance_true_drains_one_vm_at_a_time_and_keeps_it_drained(
        self, variants: Callable[..., Path]
    ) -> None:
        desired = desired_of(variants(cycle=None, maintenance=["hv03"]))
        plan = make_plan(desired, converged())
        on_hv03 = {vm.name for vm in converged().vms_on("hv03") if vm.power_state == "running"}
        moves = [a for a in plan.actions if a.type == "migrate_vm"]
        assert {a.params["vm"] for a in moves} == on_hv03
        assert all(a.params["source"] == "hv03" != a.params["destination"] for a in moves)
        for before, after in itertools.pairwise(moves):
            assert before.id in after.depends_on, "max_parallel_migrations 1: one at a time"
        assert [a.id for a in plan.actions][-1] == "drain_node:hv03"
        assert set(plan.actions[-1].depends_on) == {a.id for a in moves}
        end = replayed(converged(), plan.actions)
        assert end.nodes["hv03"].maintenance and end.vms_on("hv03") == []
        assert make_plan(desired, end).empty, "the node is kept drained"

    def test_maintenance_false_resumes_it_and_moves_nothing_back(
        self, variants: Callable[..., Path]
    ) -> None:
        drained = make_plan(desired_of(variants(cycle=None, maintenance=["hv03"])), converged())
        paused = replayed(converged(), drained.actions)
        plan = make_plan(desired_of(variants(cycle=None, resumed=["hv03"])), paused)
        assert [a.id for a in plan.actions] == ["resume_node:hv03"]

    def test_maintenance_left_out_leaves_a_paused_node_paused(
        self, variants: Callable[..., Path]
    ) -> None:
        # Unset means unmanaged: an operator's pause stands, and nothing moves back onto it.
        drained = make_plan(desired_of(variants(cycle=None, maintenance=["hv03"])), converged())
        paused = replayed(converged(), drained.actions)
        plan = make_plan(desired_of(DEMO), paused)
        assert plan.actions == ()
        assert not plan.blocked


class TestBalance:
    """balance.max_memory_spread_pct moves VMs onto a new node once validated, pins excepted."""

    SPREAD = "  balance:\n    max_memory_spread_pct: 20\n"

    @staticmethod
    def _spread(estate: Estate) -> float:
        cluster = estate.clusters["prod"]
        pct = [
            100.0 * used_memory_mib(estate, n) / usable_memory_mib(estate.nodes[n], cluster)
            for n in cluster.nodes
        ]
        return max(pct) - min(pct)

    def test_moves_onto_hv05_after_validation_until_within_the_spread(
        self, variants: Callable[..., Path]
    ) -> None:
        desired = desired_of(variants(cycle=None, cluster_extra=self.SPREAD))
        plan = make_plan(desired, raw_world())
        assert plan.violations == () and plan.notes == ()
        balanced = [a for a in plan.actions if a.reason.startswith("balance:")]
        assert balanced, "hv05 joins empty: the spread is far above 20 points"
        for move in balanced:
            assert move.params["destination"] == "hv05"
            assert "validate_cluster:prod" in move.depends_on
            assert desired.vms[move.params["vm"]].node is None, "a pinned VM was balanced"
            assert desired.vms[move.params["vm"]].migration_policy == "live"
        end = replayed(raw_world(), plan.actions)
        assert self._spread(end) <= 20
        # It stops as soon as it is within: without the last move it was not.
        last = plan.actions.index(balanced[-1])
        before_last = replayed(raw_world(), plan.actions[:last])
        assert self._spread(before_last) > 20

    def test_pinned_vms_are_not_moved_and_the_plan_says_why(
        self, variants: Callable[..., Path]
    ) -> None:
        def pin_everything(text: str) -> str:
            docs = text.split("\n---\n")
            for i, doc in enumerate(docs):
                name = re.search(r"^  name: (\S+)$", doc, re.MULTILINE)
                if name and "\n  node: " not in doc:
                    where = raw_world().vms[name.group(1)].node
                    docs[i] = doc.replace(
                        "  cluster: prod\n", f"  cluster: prod\n  node: {where}\n"
                    )
            return "\n---\n".join(docs)

        desired = desired_of(
            variants(cycle=None, cluster_extra=self.SPREAD, edit_vms=pin_everything)
        )
        plan = make_plan(desired, raw_world())
        assert [a for a in plan.actions if a.reason.startswith("balance:")] == []
        assert [a.params["vm"] for a in plan.actions if a.type == "migrate_vm"] == ["SQL02"]
        (note,) = plan.notes
        assert "stays above 20: no VM can move" in note
