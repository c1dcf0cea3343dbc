"""Planning a CSV's life on the lab world: a rename waits for the VMs on it to be off, and a
volume pruned with VMs on it goes after them.

``lab_world(spare_ready=True)`` (sim_strategies) has V1 (100 GiB) holding the disks of A, B
and TEST, all running; the desired side is the same estate with the changes each test names.
"""

from __future__ import annotations

from dataclasses import replace

from sim_strategies import lab_world, os_disk, with_free_lun

from reconciler.engine.planner import make_plan
from reconciler.model.records import (
    ClusterSharedVolume,
    Estate,
    Prune,
    VirtualMachine,
    VolumeStatus,
)


def on_lun(world: Estate, lun: str = "L1") -> Estate:
    return world.with_record(replace(world.volumes["V1"], lun=lun))


def renamed(world: Estate, new: str = "Gold") -> Estate:
    world = world.without("ClusterSharedVolume", "V1").with_record(
        replace(world.volumes["V1"], name=new)
    )
    for vm in list(world.vms.values()):
        disks = tuple(replace(d, volume=new) for d in vm.disks)
        world = world.with_record(replace(vm, disks=disks))
    return world


class TestRenamingPlans:
    def test_blocked_while_vms_run_from_it_and_nothing_is_renamed(self) -> None:
        observed = on_lun(lab_world(spare_ready=True))
        plan = make_plan(renamed(observed), observed)
        assert "rename_csv" not in [a.type for a in plan.actions]
        (block,) = [v for v in plan.violations if v.rule == "csv_in_use"]
        assert block.target == "ClusterSharedVolume/V1"
        assert "A, B, TEST run from it" in block.message

    def test_renamed_when_they_are_off(self) -> None:
        observed = on_lun(lab_world(spare_ready=True))
        for name in ("A", "B", "TEST"):
            observed = observed.with_record(replace(observed.vms[name], power_state="off"))
        plan = make_plan(renamed(observed), observed)
        assert [a.type for a in plan.actions] == ["rename_csv"]
        assert not plan.blocked, plan.violations


class TestPruningVolumes:
    def _with_v9(self, vm_on_it: bool) -> Estate:
        world = with_free_lun(lab_world(spare_ready=True))
        world = world.with_record(
            ClusterSharedVolume("V9", "lab", 50, 50, lun="L9", status=VolumeStatus("n1"))
        )
        for name in ("n1", "n2"):
            node = world.nodes[name]
            luns = node.status.luns | {"V9"}
            world = world.with_record(replace(node, status=replace(node.status, luns=luns)))
        if vm_on_it:
            z = VirtualMachine(
                "Z", "lab", 512, 1, 1, "n2", disks=(replace(os_disk(), volume="V9"),)
            )
            world = world.with_record(z)
        return world

    def _desired(self, observed: Estate) -> Estate:
        desired = observed.without("ClusterSharedVolume", "V9").without("VirtualMachine", "Z")
        cluster = desired.clusters["lab"]
        return desired.with_record(replace(cluster, prune=Prune(enabled=True)))

    def test_removed_after_the_vms_pruned_with_it(self) -> None:
        observed = self._with_v9(vm_on_it=True)
        plan = make_plan(self._desired(observed), observed)
        ids = [a.id for a in plan.actions]
        assert ids == ["remove_vm:Z", "remove_csv:V9"]
        assert plan.actions[1].depends_on == ("remove_vm:Z",)
        assert not plan.blocked, plan.violations

    def test_without_prune_it_is_listed_as_unmanaged_and_kept(self) -> None:
        observed = self._with_v9(vm_on_it=False)
        desired = observed.without("ClusterSharedVolume", "V9")
        plan = make_plan(desired, observed)
        assert plan.actions == ()
        assert "ClusterSharedVolume/V9" in plan.unmanaged
