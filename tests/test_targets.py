"""--target Kind/name (plan and apply) takes what the object needs and what must follow it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli.main import cli
from reconciler.engine.targets import target_closure
from reconciler.model.actions import Action
from reconciler.model.records import Estate
from reconciler.providers.sim.provider import SimProvider

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "manifests" / "demo")
WORLD = str(ROOT / "manifests" / "worlds" / "demo.yaml")
JOIN_HV05 = [
    "set_vlan_trunk:hv03/vSwitch-VM",
    "begin_monitoring_maintenance:prod",
    "match_vswitch:hv05/vSwitch-VM",
    "present_storage:hv05",
    "add_node:hv05",
    "update_quorum:prod",
    "test_live_migration:hv05/TEST01",
    "validate_cluster:prod",
    "end_monitoring_maintenance:prod",
]


def run(state: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--state-dir", str(state), *args], catch_exceptions=False)
    return result.exit_code, result.output


def observe(state: Path) -> Estate:
    provider = SimProvider(state_dir=state)
    try:
        return provider.observe()
    finally:
        provider.close()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    assert run(tmp_path, "sim", "init", WORLD)[0] == 0
    return tmp_path


def act(aid: str, target: str, *deps: str) -> Action:
    return Action(aid, aid.split(":")[0], target, "c", depends_on=deps)  # type: ignore[arg-type]


class TestClosure:
    """The closure on hand-made plans: dependencies, finishing dependents, opened states."""

    PLAN: tuple[Action, ...] = (
        act("begin_monitoring_maintenance:c", "Cluster/c"),
        act("extend_lun:V", "ClusterSharedVolume/V"),
        act("extend_volume:V", "ClusterSharedVolume/V", "extend_lun:V"),
        act("add_disk:VM1", "VirtualMachine/VM1", "extend_volume:V"),
        act("add_node:n5", "Node/n5", "begin_monitoring_maintenance:c"),
        act("update_quorum:c", "Cluster/c", "add_node:n5"),
        act("validate_cluster:c", "Cluster/c", "update_quorum:c"),
        act("end_monitoring_maintenance:c", "Cluster/c", "validate_cluster:c"),
        act("migrate_vm:VM2", "VirtualMachine/VM2"),
    )

    def ids(self, target: str) -> list[str]:
        return [a.id for a in target_closure(self.PLAN, target)]

    def test_a_joining_node_brings_the_whole_procedure(self) -> None:
        assert self.ids("Node/n5") == [
            "begin_monitoring_maintenance:c",
            "add_node:n5",
            "update_quorum:c",
            "validate_cluster:c",
            "end_monitoring_maintenance:c",
        ]

    def test_a_volume_brings_its_lun_but_not_a_disk_that_needed_the_room(self) -> None:
        assert self.ids("ClusterSharedVolume/V") == ["extend_lun:V", "extend_volume:V"]

    def test_a_disk_brings_the_room_it_needs(self) -> None:
        assert self.ids("VirtualMachine/VM1") == ["extend_lun:V", "extend_volume:V", "add_disk:VM1"]

    def test_an_independent_object_comes_alone(self) -> None:
        assert self.ids("VirtualMachine/VM2") == ["migrate_vm:VM2"]

    def test_an_object_without_actions_gives_nothing(self) -> None:
        assert self.ids("Node/elsewhere") == []


class TestPlanAndApplyTarget:
    """On the demo: targeting the joining node hv05 joins it completely, and nothing else."""

    def test_plan_target_joining_node(self, state: Path) -> None:
        code, out = run(state, "plan", DEMO, "--target", "Node/hv05", "--json")
        assert code == 0, out
        assert [a["id"] for a in json.loads(out)["actions"]] == JOIN_HV05

    def test_apply_target_leaves_no_half_joined_node(self, state: Path) -> None:
        code, out = run(state, "apply", "--auto-approve", "--target", "Node/hv05", DEMO)
        assert code == 0, out
        world = observe(state)
        prod = world.clusters["prod"]
        assert "hv05" in prod.nodes
        assert prod.status.pending_nodes == frozenset(), "hv05 left pending"
        assert not prod.status.monitoring_maintenance, "monitoring left in maintenance"
        # Untargeted work is left for later.
        assert world.vms["SQL02"].node == "hv01"
        code, out = run(state, "plan", DEMO, "--json")
        assert [a["id"] for a in json.loads(out)["actions"]] == [
            "extend_lun:CSV02",
            "extend_volume:CSV02",
            "migrate_vm:SQL02",
            "add_disk:FS01",
        ]

    def test_saved_plan_with_target_applies(self, state: Path, tmp_path: Path) -> None:
        saved = tmp_path / "plan.json"
        assert run(state, "plan", DEMO, "--target", "Node/hv05", "--out", str(saved))[0] == 0
        code, out = run(state, "apply", "--plan", str(saved), "--auto-approve")
        assert code == 0, out
        assert observe(state).clusters["prod"].status.pending_nodes == frozenset()

    def test_apply_unknown_target_is_an_error(self, state: Path) -> None:
        code, out = run(state, "apply", "--auto-approve", "--target", "Node/nope", DEMO)
        assert code == 1
        assert "no object Node/nope" in out
