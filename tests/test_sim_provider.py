"""The simulator provider: its world on disk, apply outcomes, migration physics, faults, and a
crash in the middle of an action."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sim_strategies import DEMO_WORLD, REPO, act, demo_world, lab_world, migrate

from reconciler.cli.main import cli
from reconciler.manifest.load import load_text
from reconciler.model.actions import Action
from reconciler.model.physics import (
    ACTION_SECONDS,
    MIGRATION_RESUME_SECONDS,
    OFFLINE_MOVE_SECONDS,
    estimate_move,
    max_parallel_migrations,
)
from reconciler.model.platforms import platform
from reconciler.model.records import Estate, LiveMigrationSettings
from reconciler.model.rules import invariants, placement_problems
from reconciler.providers.sim.drift import DRIFT_KINDS, make_drift
from reconciler.providers.sim.provider import CRASH_DURING, SimProvider
from reconciler.providers.sim.store import WORLD_FILE

TABLES = ("objects", "meta", "migrations", "faults", "events")


def open_world(state_dir: Path, estate: Estate | None = None) -> SimProvider:
    sim = SimProvider(state_dir=state_dir)
    sim.init_world(estate if estate is not None else demo_world(), "test")
    return sim


def snapshot(state_dir: Path) -> dict[str, list[Any]]:
    """Every row of every table, read with a connection of its own."""
    conn = sqlite3.connect(state_dir / WORLD_FILE)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in TABLES}
    finally:
        conn.close()


def demo_migrate(vm: str, destination: str, method: str = "live") -> Action:
    return migrate(vm, destination, method, cluster="prod")


@pytest.fixture
def sim(tmp_path: Path) -> Any:
    provider = open_world(tmp_path)
    yield provider
    provider.close()


@pytest.fixture
def no_sleeping(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulator's clock is simulated: a wall-clock sleep anywhere is a bug."""

    def refuse(seconds: float) -> None:
        raise AssertionError(f"slept {seconds} s on the wall clock")

    monkeypatch.setattr(time, "sleep", refuse)


@pytest.mark.usefixtures("no_sleeping")
class TestWorldRoundTrip:
    """``sim init`` of a world, then ``observe``, gives back exactly the world that was loaded."""

    def test_observe_equals_the_loaded_world(self, tmp_path: Path) -> None:
        result = CliRunner().invoke(
            cli, ["--state-dir", str(tmp_path), "sim", "init", str(DEMO_WORLD)]
        )
        assert result.exit_code == 0, result.output
        sim = SimProvider(state_dir=tmp_path)
        try:
            observed = sim.observe()
        finally:
            sim.close()
        assert observed == demo_world()
        assert observed.records() == demo_world().records()

    def test_observe_with_status_is_a_world_file(self, tmp_path: Path) -> None:
        runner = CliRunner()
        runner.invoke(cli, ["--state-dir", str(tmp_path), "sim", "init", str(DEMO_WORLD)])
        result = runner.invoke(cli, ["--state-dir", str(tmp_path), "observe", "--status"])
        assert result.exit_code == 0, result.output
        loaded = load_text(result.stdout, "observed.yaml", world=True)
        assert [str(e) for e in loaded.problems()] == []
        assert loaded.estate == demo_world()

    def test_a_changed_world_round_trips_too(self, sim: SimProvider, tmp_path: Path) -> None:
        assert sim.apply(demo_migrate("SQL02", "hv02")).status == "done"
        assert sim.apply(act("stop_vm", "prod", vm="APP01")).status == "done"
        result = CliRunner().invoke(cli, ["--state-dir", str(tmp_path), "observe", "--status"])
        loaded = load_text(result.stdout, "observed.yaml", world=True)
        assert loaded.estate == sim.observe()
        assert loaded.estate.vms["SQL02"].node == "hv02"


@pytest.mark.usefixtures("no_sleeping")
class TestApplyOutcomes:
    """``apply`` says what happened: done, already done, refused, transient or permanent."""

    def test_every_outcome_kind(self, sim: SimProvider) -> None:
        stop = act("stop_vm", "prod", vm="APP01")
        assert sim.apply(stop).status == "done"
        assert sim.apply(stop).status == "already_done"
        refused = sim.apply(demo_migrate("APP03", "hv03"))
        assert refused.status == "precondition_failed"
        assert "does not carry VLAN 40" in refused.message
        sim.fail_migrations(1)
        assert sim.apply(demo_migrate("DC01", "hv03")).status == "transient_error"
        unknown = sim.apply(Action("x", "reboot_everything", "Cluster/prod", "prod"))  # type: ignore[arg-type]
        assert unknown.status == "permanent_error"
        assert not unknown.succeeded

    def test_a_refused_action_changes_nothing_on_disk(
        self, sim: SimProvider, tmp_path: Path
    ) -> None:
        sim.fail_migrations(1)
        before = snapshot(tmp_path)
        for action in (
            demo_migrate("APP03", "hv03"),
            act("extend_volume", "prod", volume="CSV02", size_gib=4096),
            act("set_vm", "prod", vm="DC01", memory_mib=4096),
            act("drain_node", "prod", node="hv01"),
        ):
            assert sim.apply(action).status == "precondition_failed", action.id
        assert snapshot(tmp_path) == before
        # The pending fault was not used up by a refused migration.
        assert sim.apply(demo_migrate("DC01", "hv03")).status == "transient_error"

    def test_the_clock_advances_by_the_action_seconds(self, sim: SimProvider) -> None:
        assert sim.clock() == 0.0
        outcome = sim.apply(act("stop_vm", "prod", vm="APP01"))
        assert outcome.seconds == ACTION_SECONDS["stop_vm"]
        assert sim.clock() == ACTION_SECONDS["stop_vm"]
        move = sim.apply(demo_migrate("SQL02", "hv02"))
        assert sim.clock() == pytest.approx(ACTION_SECONDS["stop_vm"] + move.seconds)
        assert sim.apply(act("stop_vm", "prod", vm="APP01")).seconds == 0.0
        assert sim.clock() == pytest.approx(ACTION_SECONDS["stop_vm"] + move.seconds)

    def test_a_long_migration_takes_no_wall_time(self, sim: SimProvider) -> None:
        started = time.perf_counter()
        outcome = sim.apply(demo_migrate("SQL02", "hv02"))
        assert outcome.seconds > 100  # 12 GiB, 35 MiB/s dirty, 1 GbE, 10 passes
        assert time.perf_counter() - started < 2


@pytest.mark.usefixtures("no_sleeping")
class TestMigrationRecords:
    """Each migration records its duration, traffic, passes and blackout, from the physics model."""

    def test_a_live_migration_matches_the_model(self, sim: SimProvider) -> None:
        world = sim.observe()
        outcome = sim.apply(demo_migrate("SQL02", "hv02"))
        expected = estimate_move(world.clusters["prod"], world.vms["SQL02"], "live")
        [record] = sim.store.migrations()
        assert (record.vm, record.source, record.destination) == ("SQL02", "hv01", "hv02")
        assert (record.method, record.outcome) == ("live", "done")
        assert record.total_seconds == pytest.approx(expected.total_seconds)
        assert record.downtime_seconds == pytest.approx(expected.downtime_seconds)
        assert record.passes == expected.passes
        assert record.bytes_sent == expected.bytes_sent
        assert record.bytes_sent > 12288 * 2**20, "pre-copy sends more than the VM's memory"
        assert outcome.seconds == pytest.approx(record.total_seconds)
        assert outcome.details["passes"] == record.passes
        assert len(outcome.details["pass_seconds"]) == record.passes + 1
        assert sim.observe().vms["SQL02"].node == "hv02"

    def test_quick_and_offline_moves(self, sim: SimProvider) -> None:
        sim.apply(demo_migrate("APP01", "hv04", "quick"))
        sim.apply(act("stop_vm", "prod", vm="APP02"))
        sim.apply(demo_migrate("APP02", "hv04", "offline"))
        quick, offline = sim.store.migrations()
        assert quick.downtime_seconds == quick.total_seconds > 0, "quick: all of it is blackout"
        assert quick.bytes_sent == 2 * 6144 * 2**20, "saved and restored"
        assert (offline.total_seconds, offline.bytes_sent, offline.passes) == (
            OFFLINE_MOVE_SECONDS,
            0,
            0,
        )

    def test_migrations_run_one_after_another(self, sim: SimProvider) -> None:
        assert max_parallel_migrations(sim.observe().clusters["prod"]) == 1
        sim.apply(demo_migrate("SQL02", "hv02"))
        sim.apply(demo_migrate("DC01", "hv03"))
        first, second = sim.store.migrations()
        assert second.at_seconds == pytest.approx(first.at_seconds + first.total_seconds)
        assert sim.clock() == pytest.approx(first.total_seconds + second.total_seconds)

    def test_max_parallel_migrations_is_the_setting_or_the_platform_default(self) -> None:
        cluster = demo_world().clusters["prod"]
        assert (
            max_parallel_migrations(replace(cluster, live_migration=LiveMigrationSettings())) == 1
        )
        two = replace(cluster, live_migration=LiveMigrationSettings(max_parallel_migrations=2))
        assert max_parallel_migrations(two) == 2


@pytest.mark.usefixtures("no_sleeping")
class TestNodeCrash:
    """A crashed node's HA VMs restart where they fit; the rest, and non-HA VMs, stay down."""

    def test_ha_vms_restart_where_they_can_run(self, sim: SimProvider) -> None:
        victims = {vm.name for vm in sim.observe().vms_on("hv04")}
        assert victims == {"WEB05", "WEB06", "EXCH01", "APP04"}
        report = sim.crash_node("hv04")
        assert report[0] == "hv04 is down"
        world = sim.observe()
        assert world.nodes["hv04"].status.state == "down"
        for name in victims:
            vm = world.vms[name]
            assert vm.power_state == "running"
            assert vm.node in {"hv01", "hv02", "hv03"}
            assert placement_problems(world, vm, vm.node) == []
            assert f"{name} restarted on {vm.node}" in report
        assert world.vms["APP04"].node != "hv03", "hv03 does not carry VLAN 40"
        assert invariants(world) == []

    def test_non_ha_vms_stay_down(self, tmp_path: Path) -> None:
        world = demo_world()
        world = world.with_record(replace(world.vms["WEB05"], highly_available=False))
        sim = open_world(tmp_path, world)
        report = sim.crash_node("hv04")
        after = sim.observe()
        assert (after.vms["WEB05"].node, after.vms["WEB05"].power_state) == ("hv04", "off")
        assert "WEB05 stays down (not highly available)" in report
        assert after.vms["WEB06"].power_state == "running"
        sim.close()

    def test_vms_without_room_stay_down(self, tmp_path: Path) -> None:
        # n1 has 11706 MiB free; B at 12000 MiB costs 12119.
        lab = lab_world()
        lab = lab.with_record(replace(lab.vms["B"], memory_mib=12000))
        sim = open_world(tmp_path, lab)
        report = sim.crash_node("n2")
        after = sim.observe()
        assert "B stays down (no capacity): its role is failed" in report
        assert (after.vms["B"].node, after.vms["B"].power_state) == ("n2", "off")
        assert after.vms["B"].status.failed, "the cluster gave up restarting the role"
        assert "lost quorum" not in " ".join(report), "1 node + witness is 2 of 3 votes"
        assert invariants(after) == []
        sim.close()

    def test_recover_brings_the_node_back_not_its_vms(self, tmp_path: Path) -> None:
        lab = lab_world()
        sim = open_world(tmp_path, lab.with_record(replace(lab.vms["B"], highly_available=False)))
        sim.crash_node("n2")
        assert sim.recover_node("n2") == ["n2 is up"]
        after = sim.observe()
        assert after.nodes["n2"].status.state == "up"
        assert after.vms["B"].power_state == "off"
        sim.close()


@pytest.mark.usefixtures("no_sleeping")
class TestMigrationFaults:
    """Injected faults: the next N migrations fail; a slow link makes migrations slower."""

    def test_fail_migrations_then_succeed(self, sim: SimProvider) -> None:
        sim.fail_migrations(2)
        move = demo_migrate("DC01", "hv03")
        for _ in range(2):
            outcome = sim.apply(move)
            assert outcome.status == "transient_error"
            assert "stays on its source" in outcome.message
            assert sim.observe().vms["DC01"].node == "hv01"
        assert sim.apply(move).status == "done"
        assert sim.observe().vms["DC01"].node == "hv03"
        assert [m.outcome for m in sim.store.migrations()] == ["failed", "failed", "done"]

    def test_a_fault_for_another_cluster_does_not_apply(self, sim: SimProvider) -> None:
        sim.fail_migrations(1, cluster="elsewhere")
        assert sim.apply(demo_migrate("DC01", "hv03")).status == "done"

    def test_a_slow_link_slows_migration_by_about_the_factor(self, sim: SimProvider) -> None:
        # DC01 dirties 1 MiB/s: copying is nearly all of the time, so time scales with 1/factor.
        sim.apply(demo_migrate("DC01", "hv03"))
        sim.slow_link(0.25)
        sim.apply(demo_migrate("DC01", "hv01"))
        normal, slow = sim.store.migrations()
        fixed = platform("2008r2").live_migration_setup_seconds + MIGRATION_RESUME_SECONDS
        ratio = (slow.total_seconds - fixed) / (normal.total_seconds - fixed)
        assert ratio == pytest.approx(4.0, rel=0.05)
        assert slow.downtime_seconds > normal.downtime_seconds


@pytest.mark.usefixtures("no_sleeping")
class TestDrift:
    """Drift changes the world behind the tool's back: seeded, random or of a named kind."""

    def test_the_same_seed_gives_the_same_drift(self) -> None:
        world = demo_world()
        first = make_drift(world, seed=7)
        assert first == make_drift(world, seed=7)
        assert first[0] != world

    @pytest.mark.parametrize("kind", DRIFT_KINDS)
    def test_each_kind_changes_the_world(self, sim: SimProvider, kind: str) -> None:
        before = sim.observe()
        after, message = make_drift(before, seed=1, kind=kind)
        sim.change_behind_back(before, after, message)
        assert sim.observe() == after != before
        assert (0.0, "drift", message) in sim.store.events()

    def test_placement_moves_one_vm_to_a_valid_node(self) -> None:
        before = demo_world()
        after, message = make_drift(before, seed=3, kind="placement")
        moved = [n for n in before.vms if before.vms[n].node != after.vms[n].node]
        assert len(moved) == 1
        vm = after.vms[moved[0]]
        assert f"VirtualMachine/{vm.name} moved" in message
        assert placement_problems(after, vm, vm.node) == []  # type: ignore[arg-type]
        assert invariants(after) == []

    def test_vlan_drops_one_unused_vlan_from_one_host_trunk(self) -> None:
        before = demo_world()
        after, _message = make_drift(before, seed=5, kind="vlan", target="hv01")
        old = before.nodes["hv01"].status.switches["vSwitch-VM"].allowed_vlans
        new = after.nodes["hv01"].status.switches["vSwitch-VM"].allowed_vlans
        [dropped] = old - new
        assert new < old
        in_use = {nic.vlan for vm in before.vms_on("hv01") for nic in vm.nics}
        assert dropped not in in_use
        assert invariants(after) == []
        assert all(after.nodes[n] == before.nodes[n] for n in before.nodes if n != "hv01")


KILL_SCRIPT = """
import sys
from pathlib import Path
from reconciler.model.actions import Action
from reconciler.providers.sim.provider import SimProvider

ACTIONS = {
    "stop": Action("stop", "stop_vm", "VirtualMachine/APP01", "prod", {"vm": "APP01"}),
    "move": Action("move", "migrate_vm", "VirtualMachine/SQL02", "prod",
                   {"vm": "SQL02", "destination": "hv02", "method": "live"}),
}
sim = SimProvider(state_dir=Path(sys.argv[1]))
for name in sys.argv[2:]:
    print("RESULT", name, sim.apply(ACTIONS[name]).status, flush=True)
print("RESULT survived", flush=True)
"""


def results(run: subprocess.CompletedProcess[str]) -> list[str]:
    """The child's RESULT lines (its log lines aside)."""
    return [line[7:] for line in run.stdout.splitlines() if line.startswith("RESULT ")]


def arm(state_dir: Path, kill_at: int) -> None:
    sim = SimProvider(state_dir=state_dir)
    sim.arm_crash(CRASH_DURING, kill_at)
    sim.close()


def run_killed(state_dir: Path, kill_at: int, *actions: str) -> subprocess.CompletedProcess[str]:
    """Apply ``actions`` in a child process that dies inside the ``kill_at``-th one."""
    if not SimProvider(state_dir=state_dir).store.has_fault(CRASH_DURING):
        arm(state_dir, kill_at)
    return subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(state_dir), *actions],
        env=dict(os.environ),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class TestCrashMidAction:
    """A process killed inside an action's transaction leaves the world as it was before it."""

    def test_a_killed_migration_leaves_the_world_byte_for_byte(self, tmp_path: Path) -> None:
        sim = open_world(tmp_path)
        arm(tmp_path, 1)
        world_before, rows_before = sim.observe(), snapshot(tmp_path)
        sim.close()
        killed = run_killed(tmp_path, 1, "move")
        assert killed.returncode == 137, killed.stderr
        assert results(killed) == []
        reopened = SimProvider(state_dir=tmp_path)
        assert reopened.observe() == world_before
        after = snapshot(tmp_path)
        assert after.pop("faults") != rows_before.pop("faults"), "the fault was used up"
        assert after == rows_before
        assert reopened.clock() == 0.0
        assert reopened.store.migrations() == []
        # The reopened world works: the same migration now runs.
        assert reopened.apply(demo_migrate("SQL02", "hv02")).status == "done"
        reopened.close()

    def test_only_the_killed_action_is_lost(self, tmp_path: Path) -> None:
        open_world(tmp_path).close()
        killed = run_killed(tmp_path, 2, "stop", "move")
        assert killed.returncode == 137, killed.stderr
        assert results(killed) == ["stop done"]
        reopened = SimProvider(state_dir=tmp_path)
        world = reopened.observe()
        assert world.vms["APP01"].power_state == "off"
        assert world.vms["SQL02"].node == "hv01"
        assert reopened.clock() == ACTION_SECONDS["stop_vm"]
        assert reopened.store.migrations() == []
        reopened.close()
