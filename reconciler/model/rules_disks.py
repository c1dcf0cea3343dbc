"""World rules for a VM's disk layout: moving a disk to another controller or slot, or its
file to another volume, and its SCSI controllers.

SCSI data disks are hot-plugged (removed and added again) while the VM runs; a disk on IDE,
or the disk the VM boots from, moves only with the VM off. SCSI controllers are added and
removed only with the VM off (Add-VMScsiController, Remove-VMScsiController); the highest
numbered go first, so the others keep their numbers, and never one a disk is on.

A disk's file moves to another CSV of its cluster (Move-VMStorage) while the VM runs from
2012 on: the copy needs the file's size free on the destination, the destination's LUN
seen by the VM's node, and no other file of that name there. 2008 R2 has no live storage
migration: there the file moves only with the VM off (an offline copy).
"""

from __future__ import annotations

from dataclasses import replace

from reconciler.model.actions import Action
from reconciler.model.platforms import SCSI_CONTROLLERS, platform
from reconciler.model.records import Disk, Estate, VirtualMachine
from reconciler.model.rules_base import (
    RuleResult,
    already_done,
    fail,
    slot_problems,
    vm_of,
    volume_free_gib,
)


def move_needs_off(vm: VirtualMachine, old: Disk, new: Disk) -> str | None:
    """Why moving ``old`` to ``new``'s slot needs the VM off, or None when it can run."""
    if old.controller == "ide" or new.controller == "ide":
        return "IDE devices change only while the VM is off"
    boot = vm.boot_disk()
    if boot is not None and boot.name == old.name:
        return "it is the boot disk"
    return None


def _move_disk(estate: Estate, action: Action) -> RuleResult:
    vm = vm_of(estate, action)
    if vm is None:
        return fail(estate, f"VM {action.params['vm']} does not exist")
    disk = vm.disk(action.params["disk"])
    if disk is None:
        return fail(estate, f"{vm.name} has no disk {action.params['disk']}")
    moved = replace(
        disk,
        controller=action.params["controller"],
        controller_number=int(action.params["controller_number"]),
        slot=int(action.params["slot"]),
    )
    if moved == disk:
        return already_done(estate)
    problems = slot_problems(vm, moved)
    if moved.controller == "ide" and vm.generation == 2:
        problems.append(f"{vm.name} is generation 2: it has no IDE controller")
    why = move_needs_off(vm, disk, moved)
    if why and vm.power_state != "off":
        problems.append(f"{vm.name} must be off to move {disk.name}: {why}")
    if problems:
        return fail(estate, *problems)
    disks = tuple(moved if d.name == disk.name else d for d in vm.disks)
    return RuleResult(estate.with_record(replace(vm, disks=disks)))


def storage_move_problems(estate: Estate, vm: VirtualMachine, disk: Disk, to: str) -> list[str]:
    """Why ``disk``'s file cannot move to volume ``to`` now (empty: it can)."""
    volume = estate.volumes.get(to)
    if volume is None:
        return [f"volume {to} does not exist"]
    problems: list[str] = []
    if volume.cluster != vm.cluster:
        problems.append(f"{to} is a volume of {volume.cluster}, {vm.name} runs in {vm.cluster}")
    cluster = estate.clusters.get(vm.cluster)
    live = cluster is not None and platform(cluster.platform).live_storage_migration
    if vm.power_state != "off" and not live:
        problems.append(
            f"{vm.name} must be off to move {disk.name}: Windows Server 2008 R2 has no live "
            "storage migration (it came with 2012)"
        )
    need = disk.used_gib()
    free = volume_free_gib(estate, to)
    if need > free:
        problems.append(f"{to} has {free:.1f} GiB free, {disk.name}'s file needs {need:.1f} GiB")
    name = disk.file_path(vm.name)
    if any(f.lower() == name.lower() for f in volume.status.files):
        problems.append(f"{to} already holds a file {name}")
    node = estate.nodes.get(vm.node) if vm.node is not None else None
    if node is not None and to not in node.status.luns:
        problems.append(f"{node.name}, where {vm.name} runs, does not see the LUN of {to}")
    return problems


def _move_vm_storage(estate: Estate, action: Action) -> RuleResult:
    vm = vm_of(estate, action)
    if vm is None:
        return fail(estate, f"VM {action.params['vm']} does not exist")
    disk = vm.disk(action.params["disk"])
    if disk is None:
        return fail(estate, f"{vm.name} has no disk {action.params['disk']}")
    to = str(action.params["volume"])
    if disk.volume == to:
        return already_done(estate)
    problems = storage_move_problems(estate, vm, disk, to)
    if problems:
        return fail(estate, *problems)
    # The file leaves its volume whole (Move-VMStorage deletes the source once it switched).
    moved = replace(disk, volume=to)
    disks = tuple(moved if d.name == disk.name else d for d in vm.disks)
    return RuleResult(estate.with_record(replace(vm, disks=disks)))


def _set_scsi_controllers(estate: Estate, action: Action) -> RuleResult:
    vm = vm_of(estate, action)
    if vm is None:
        return fail(estate, f"VM {action.params['vm']} does not exist")
    count = int(action.params["count"])
    if vm.scsi_count() == count:
        if vm.scsi_controllers == count:
            return already_done(estate)
        # Known now: recorded as it is, nothing changes on the host.
        return RuleResult(estate.with_record(replace(vm, scsi_controllers=count)))
    problems: list[str] = []
    if not 0 <= count <= SCSI_CONTROLLERS:
        problems.append(f"a VM has 0 to {SCSI_CONTROLLERS} SCSI controllers, not {count}")
    on = sorted(
        {
            d.controller_number
            for d in vm.disks
            if d.controller == "scsi" and d.controller_number >= count
        }
    )
    if on:
        users = ", ".join(
            d.name for d in vm.disks if d.controller == "scsi" and d.controller_number >= count
        )
        problems.append(
            f"disks {users} are on SCSI controller(s) {', '.join(map(str, on))}: move them first"
        )
    if vm.power_state != "off":
        problems.append(f"{vm.name} must be off to add or remove a SCSI controller")
    if problems:
        return fail(estate, *problems)
    return RuleResult(estate.with_record(replace(vm, scsi_controllers=count)))


DISK_RULES = {
    "move_disk": _move_disk,
    "move_vm_storage": _move_vm_storage,
    "set_scsi_controllers": _set_scsi_controllers,
}
