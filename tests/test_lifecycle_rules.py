"""World rules of the lifecycle actions: create_vm, remove_vm, evict_node, on the lab world.

Every expected number is worked out by hand from ``lab_world()`` (see sim_strategies): CSV
V1 is 100 GiB and holds 55 GiB (A: 20 GiB fixed os + 10 GiB dynamic data counted at half;
B: 20 GiB fixed os; TEST: 20 GiB dynamic os counted at half), so 45 GiB are free. n2 has
14336 MiB usable (16384 - 2048 parent reserve) and B takes 4151 of it (4096 + 32 + 3 x 8 - 1).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from sim_strategies import act, add_disk, create, lab_world, migrate, new_vm, os_disk
from test_sim_rules import accepted, refused, stopped, with_vm

from reconciler.model.records import Disk, Estate, VmNic, frozen_map
from reconciler.model.rules import apply_rules, volume_used_gib

DRAIN_N2 = (migrate("B", "n1"), act("drain_node", node="n2"))


def steps(world: Estate, *actions: object) -> Estate:
    for action in actions:
        world = accepted(world, action)  # type: ignore[arg-type]
    return world


def node_down(world: Estate, name: str) -> Estate:
    node = world.nodes[name]
    return world.with_record(replace(node, status=replace(node.status, state="down")))


def with_unused_file(world: Estate, path: str, gib: float) -> Estate:
    volume = world.volumes["V1"]
    status = replace(volume.status, files=frozen_map({path: gib}))
    return world.with_record(replace(volume, status=status))


class TestCreatingAVm:
    """create_vm builds the VM off on its node, with new files, where a migration could go."""

    def test_builds_it_off_on_its_node_with_its_adapters_and_new_files(self) -> None:
        after = accepted(lab_world(), create(new_vm("C"), "n2"))
        vm = after.vms["C"]
        assert (vm.node, vm.power_state, vm.memory_mib) == ("n2", "off", 1024)
        assert vm.nics == (VmNic("nic1", "vs", 10),)
        assert [d.name for d in vm.disks] == ["os"]
        assert volume_used_gib(after, "V1") == pytest.approx(75.0)  # 55 + the 20 GiB fixed file

    def test_start_vm_then_runs_it_if_the_node_has_the_memory(self) -> None:
        world = accepted(lab_world(), create(new_vm("C"), "n2"))
        assert accepted(world, act("start_vm", vm="C")).vms["C"].power_state == "running"
        big = accepted(lab_world(), create(new_vm("D", 12288), "n2"))
        # 12288 + 32 + 11 x 8 - 1 = 12407 MiB needed; n2 has 14336 - 4151 = 10185 free.
        refused(big, act("start_vm", vm="D"), "too little free memory (12407 MiB needed)")

    @pytest.mark.parametrize(
        ("world", "vm", "node", "why"),
        [
            (lab_world(spare_ready=True), new_vm("C"), "n3", "n3 is not a member of lab"),
            (steps(lab_world(), *DRAIN_N2), new_vm("C"), "n2", "n2 is in maintenance"),
            (lab_world(), new_vm("C", 1024, 30), "n2", "does not carry VLAN 30"),
            (
                lab_world(),
                new_vm("C", 1024, 10, replace(os_disk(), size_gib=50)),
                "n2",
                "V1 has 45.0 GiB free, the new disk files need 50.0",
            ),
            (node_down(lab_world(), "n2"), new_vm("C"), "n2", "n2 is down"),
            (lab_world(), new_vm("A"), "n2", "a different VM named A exists already"),
        ],
        ids=["not-a-member", "in-maintenance", "vlan-missing", "no-space", "down", "name-taken"],
    )
    def test_refused_with_the_reason(self, world: Estate, vm: object, node: str, why: str) -> None:
        refused(world, create(vm, node), why)  # type: ignore[arg-type]

    def test_without_quorum_no_role_is_added(self) -> None:
        world = node_down(node_down(lab_world(), "n1"), "n2")
        refused(world, create(new_vm("C"), "n2"), "has lost quorum")

    def test_generation_2_is_refused_where_the_platform_has_none(self) -> None:
        disk = Disk("os", "scsi", 0, 0, "fixed", "vhd", 20, "V1", boot=True)
        vm = replace(new_vm("C", 1024, 10, disk), generation=2)
        refused(lab_world("2008r2"), create(vm, "n2"), "platform 2008r2 has no generation-2 VMs")

    def test_an_existing_file_is_attached_not_created(self) -> None:
        world = with_unused_file(lab_world(), "OLD/os.vhd", 12.0)
        assert volume_used_gib(world, "V1") == pytest.approx(67.0)
        vm = new_vm("C", 1024, 10, replace(os_disk(), type="dynamic", file="OLD/os.vhd"))
        after = accepted(world, create(vm, "n2"))
        assert after.vms["C"].disks[0].file_size_gib == 12.0
        assert dict(after.volumes["V1"].status.files) == {}
        assert volume_used_gib(after, "V1") == pytest.approx(67.0), "no new space is taken"

    def test_a_missing_file_is_refused(self) -> None:
        vm = new_vm("C", 1024, 10, replace(os_disk(), file="OLD/os.vhd"))
        refused(lab_world(), create(vm, "n2"), "V1 holds no unused file OLD/os.vhd")

    def test_a_detached_file_can_be_attached_again(self) -> None:
        world = accepted(lab_world(), act("detach_disk", vm="A", disk="data"))
        data = lab_world().vms["A"].disks[1]
        disk = replace(data, file="A/data.vhdx")
        back = accepted(world, add_disk("A", disk))
        assert back.vms["A"].disk("data") is not None
        assert dict(back.volumes["V1"].status.files) == {}
        assert volume_used_gib(back, "V1") == pytest.approx(volume_used_gib(lab_world(), "V1"))


class TestRemovingAVm:
    """remove_vm stops and removes the VM; its files stay unless delete_disks says so."""

    def test_files_are_kept_and_still_take_their_space(self) -> None:
        after = accepted(lab_world(), act("remove_vm", vm="B", delete_disks=False))
        assert "B" not in after.vms
        assert dict(after.volumes["V1"].status.files) == {"B/os.vhd": 20.0}
        assert volume_used_gib(after, "V1") == pytest.approx(55.0)

    def test_delete_disks_frees_the_space(self) -> None:
        after = accepted(lab_world(), act("remove_vm", vm="B", delete_disks=True))
        assert dict(after.volumes["V1"].status.files) == {}
        assert volume_used_gib(after, "V1") == pytest.approx(35.0)

    def test_the_clusters_test_vm_is_not_removed(self) -> None:
        refused(lab_world(), act("remove_vm", vm="TEST"), "TEST is the test VM of lab")

    def test_without_quorum_nothing_is_removed(self) -> None:
        world = node_down(node_down(lab_world(), "n1"), "n2")
        refused(world, act("remove_vm", vm="B"), "has lost quorum")

    def test_a_vm_already_gone_is_done(self) -> None:
        assert apply_rules(lab_world(), act("remove_vm", vm="GONE")).done


class TestEvictingANode:
    """evict_node: a drained, empty member leaves; quorum must hold with one member fewer."""

    def test_refused_while_it_holds_a_vm(self) -> None:
        refused(lab_world(), act("evict_node", node="n2"), "n2 still holds B: move them first")

    def test_an_off_vm_registered_there_must_move_too(self) -> None:
        world = steps(stopped(lab_world(), "B"), act("drain_node", node="n2"))
        refused(world, act("evict_node", node="n2"), "n2 still holds B")

    def test_refused_until_drained(self) -> None:
        world = accepted(lab_world(), migrate("B", "n1"))
        refused(world, act("evict_node", node="n2"), "n2 must be drained (paused)")

    def test_leaves_the_cluster_and_is_no_longer_paused(self) -> None:
        after = accepted(steps(lab_world(), *DRAIN_N2), act("evict_node", node="n2"))
        assert after.clusters["lab"].nodes == ("n1",)
        assert "n2" in after.nodes and not after.nodes["n2"].maintenance

    def test_the_csvs_it_coordinated_move_to_a_node_that_stays(self) -> None:
        world = steps(
            lab_world(),
            migrate("A", "n2"),
            migrate("TEST", "n2"),
            act("drain_node", node="n1"),
        )
        assert world.volumes["V1"].status.coordinator == "n1"
        after = accepted(world, act("evict_node", node="n1"))
        assert after.volumes["V1"].status.coordinator == "n2"

    def test_a_down_node_leaves_without_draining(self) -> None:
        world = node_down(with_vm(lab_world(), "B", node="n1", power_state="off"), "n2")
        after = accepted(world, act("evict_node", node="n2"))
        assert after.clusters["lab"].nodes == ("n1",)

    def test_refused_when_quorum_would_be_lost(self) -> None:
        # Three members, node majority, n2 down: without n3, 1 of 2 would be up.
        world = lab_world(spare_ready=True)
        cluster = replace(
            world.clusters["lab"],
            nodes=("n1", "n2", "n3"),
            quorum=replace(world.clusters["lab"].quorum, mode="node_majority"),
        )
        world = world.with_record(cluster)
        world = node_down(with_vm(world, "B", node="n1", power_state="off"), "n2")
        world = accepted(world, act("drain_node", node="n3"))
        refused(
            world,
            act("evict_node", node="n3"),
            "evicting n3 would lose quorum (node_majority, 1 of 2 nodes up)",
        )

    def test_the_last_node_stays(self) -> None:
        world = steps(lab_world(), *DRAIN_N2, act("evict_node", node="n2"))
        for vm in ("A", "B", "TEST"):
            world = world.without("VirtualMachine", vm)
        world = accepted(world, act("drain_node", node="n1"))
        refused(world, act("evict_node", node="n1"), "n1 is the last node of lab")

    def test_a_node_that_is_not_a_member_is_done(self) -> None:
        assert apply_rules(lab_world(), act("evict_node", node="n3")).done

    def test_it_can_join_again_afterwards(self) -> None:
        world = steps(lab_world(), *DRAIN_N2, act("evict_node", node="n2"))
        after = accepted(world, act("add_node", node="n2"))
        assert after.clusters["lab"].nodes == ("n1", "n2")
        assert "n2" in after.clusters["lab"].status.pending_nodes
