"""verify_node checks what an admin would after patching a node: it is up, at the target patch
level, its switches match the manifests, and the test VM live-migrates onto it and back. A
failure stops the cycle before the next node is drained.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_hook import CYCLE, DEMO, NODES, WORLD, observe, rolling

from reconciler.cli.main import cli
from reconciler.manifest.load import load_paths, require
from reconciler.model.actions import Action
from reconciler.model.records import Estate
from reconciler.model.rules import apply_rules, switch_to_params
from reconciler.providers.sim.provider import SimProvider
from reconciler.runtime.clock import ManualClock
from reconciler.runtime.journal import Journal


def run(state: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--state-dir", str(state), *args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def converged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("converged") / "state"
    assert run(state, "sim", "init", str(WORLD))[0] == 0
    assert run(state, "apply", "--auto-approve", str(DEMO))[0] == 0
    return state


@pytest.fixture
def state(converged: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(converged, tmp_path / "state"))


def verify(node: str, switches: dict[str, object] | None = None) -> Action:
    params: dict[str, object] = {"node": node, "patch_level": CYCLE, "test_vm": "TEST01"}
    if switches is not None:
        params["switches"] = switches
    return Action(f"verify_node:{node}", "verify_node", f"Node/{node}", "prod", params)


def manifest_switches() -> dict[str, object]:
    desired = require(load_paths([str(DEMO)]))
    return {s.name: switch_to_params(s.config) for s in desired.switches_of("prod")}


class TestTheChecks:
    """Each check on its own, on the converged demo with hv05 patched and paused."""

    def patched(self, world: Estate) -> Estate:
        node = world.nodes["hv05"]
        node = replace(node, maintenance=True, hardware=replace(node.hardware, patch_level=CYCLE))
        return world.with_record(node)

    def test_switches_are_checked_against_the_manifests_not_the_peers(self, state: Path) -> None:
        world = self.patched(observe(state))
        # Every node lost VLAN 40 alike: the peers agree with each other, not with the manifest.
        for name in NODES:
            node = world.nodes[name]
            switches = dict(node.status.switches)
            cfg = switches["vSwitch-VM"]
            switches["vSwitch-VM"] = replace(cfg, allowed_vlans=cfg.allowed_vlans - {40})
            world = world.with_record(replace(node, status=replace(node.status, switches=switches)))
        result = apply_rules(world, verify("hv05", manifest_switches()))
        assert result.failures == (
            "verification failed: switch vSwitch-VM on hv05 differs from the manifest",
        )

    def test_a_node_that_did_not_come_back_fails(self, state: Path) -> None:
        world = self.patched(observe(state))
        node = world.nodes["hv05"]
        world = world.with_record(replace(node, status=replace(node.status, state="down")))
        (failure,) = apply_rules(world, verify("hv05", manifest_switches())).failures
        assert "hv05 did not come back up" in failure

    def test_a_node_below_the_patch_level_fails(self, state: Path) -> None:
        world = observe(state)
        (failure,) = apply_rules(world, verify("hv05", manifest_switches())).failures
        assert "hv05 is at patch level 2010-06, not 2010-07" in failure

    def test_a_stopped_test_vm_fails(self, state: Path) -> None:
        world = self.patched(observe(state))
        world = world.with_record(replace(world.vms["TEST01"], power_state="off"))
        (failure,) = apply_rules(world, verify("hv05", manifest_switches())).failures
        assert "test VM TEST01 is not running" in failure


class TestTheTestMigration:
    """On the simulator the test VM really moves onto the node and back (a failed move fails)."""

    def test_there_and_back_or_a_failure(self, state: Path) -> None:
        sim = SimProvider(state_dir=state)
        try:
            drain = Action("drain_node:hv05", "drain_node", "Node/hv05", "prod", {"node": "hv05"})
            patch = Action(
                "patch_node:hv05",
                "patch_node",
                "Node/hv05",
                "prod",
                {"node": "hv05", "cycle": CYCLE, "patch_level": CYCLE, "command": ["true"]},
            )
            assert sim.apply(drain).status == "done"
            assert sim.apply(patch).status == "done"
            home = sim.observe().vms["TEST01"].node
            before = len(sim.store.migrations())
            sim.fail_migrations(1)
            failed = sim.apply(verify("hv05", manifest_switches()))
            assert failed.status == "transient_error"
            ok = sim.apply(verify("hv05", manifest_switches()))
            assert ok.status == "done", ok.message
            legs = [(m.vm, m.source, m.destination, m.outcome) for m in sim.store.migrations()]
            assert legs[before:] == [
                ("TEST01", home, "hv05", "failed"),
                ("TEST01", home, "hv05", "done"),
                ("TEST01", "hv05", home, "done"),
            ]
            assert sim.observe().vms["TEST01"].node == home
        finally:
            sim.close()


class TestAFailureStopsTheCycle:
    """A node that does not come back after its patch: the cycle stops before the next drain."""

    def test_then_a_later_apply_carries_on(self, state: Path, tmp_path: Path) -> None:
        # The hook "reboots" the node into a crash, through the simulator's own fault command.
        crash = (
            f"{sys.executable} -m reconciler --state-dir {state} sim fault node-crash "
            "$RECONCILER_NODE"
        )
        manifests = rolling(tmp_path / "crash", ["sh", "-c", crash])
        code, out = run(state, "apply", "--auto-approve", str(manifests))
        assert code == 1, out
        assert "verify_node:hv05" in out and "hv05 did not come back up" in out
        world = observe(state)
        drained = [n for n in NODES if world.nodes[n].maintenance]
        assert drained == ["hv05"], "no other node was drained after the failed verification"
        journal = Journal(state, ManualClock().now)
        try:
            latest = journal.runs()[0]
            statuses = {a.action_id: a.status for a in journal.actions(latest.id)}
        finally:
            journal.close()
        assert statuses["verify_node:hv05"] == "precondition_failed"
        assert statuses["resume_node:hv05"] == "skipped"
        assert all(statuses[f"drain_node:{n}"] == "skipped" for n in NODES if n != "hv05")

        assert run(state, "sim", "fault", "node-recover", "hv05")[0] == 0
        fine = rolling(tmp_path / "fine", ["true"])
        code, out = run(state, "apply", "--auto-approve", str(fine))
        assert code == 0, out
        world = observe(state)
        assert {world.nodes[n].hardware.patch_level for n in NODES} == {CYCLE}
        assert world.clusters["prod"].status.rolling_update_done == CYCLE
