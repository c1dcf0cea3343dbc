"""Per-VM phases: placing VMs on their declared nodes, settings, adapters and disks."""

from __future__ import annotations

from typing import Any

from reconciler.engine.adapters import adapter_steps, memory_steps, settings_steps
from reconciler.engine.disk_moves import Slot, order_disk_moves
from reconciler.engine.placement import destination_problems
from reconciler.engine.planner.lifecycle import Lifecycle
from reconciler.model.actions import ActionType
from reconciler.model.compare import same_nics
from reconciler.model.platforms import platform
from reconciler.model.records import Disk, VirtualMachine
from reconciler.model.rules import disk_to_params
from reconciler.model.rules_disks import move_needs_off

Step = tuple[ActionType, dict[str, Any], str, dict[str, tuple[Any, Any]], list[str]]


def _ordered_moves(want: VirtualMachine, have: VirtualMachine, moves: list[Step]) -> list[Step]:
    targets: dict[str, Slot] = {
        m[1]["disk"]: (m[1]["controller"], m[1]["controller_number"], m[1]["slot"]) for m in moves
    }
    where: dict[str, Slot] = {
        d.name: (d.controller, d.controller_number, d.slot) for d in have.disks
    }
    out: list[Step] = []
    for name, slot, parked in order_disk_moves(have, targets):
        before, after = where[name], slot
        where[name] = slot
        final = targets[name]
        reason = (
            f"disk {name} waits in the free slot {after[0]} {after[1]}:{after[2]} so the disks "
            f"it trades slots with can move (it goes to {final[0]} {final[1]}:{final[2]} after)"
            if parked
            else f"disk {name} is on another controller or slot in the manifest"
        )
        out.append(
            (
                "move_disk",
                {
                    "vm": want.name,
                    "disk": name,
                    "controller": after[0],
                    "controller_number": after[1],
                    "slot": after[2],
                },
                reason,
                {
                    f"disks.{name}": (
                        f"{before[0]} {before[1]}:{before[2]}",
                        f"{after[0]} {after[1]}:{after[2]}",
                    )
                },
                [],
            )
        )
    return out


class Vms(Lifecycle):
    __slots__ = ()

    def _pin_not_ready(self, want: VirtualMachine) -> bool:
        """A running VM pinned to a node that cannot take it yet (memory, hard anti-affinity)."""
        have = self.state.vms[want.name]
        if want.node is None or want.node == have.node or have.power_state != "running":
            return False
        return bool(destination_problems(self.state, have, want.node))

    def place_vms(self) -> None:
        waiting: list[VirtualMachine] = []
        missing: list[VirtualMachine] = []
        for vm in self.desired.vms.values():
            if vm.cluster != self.cluster:
                continue
            if vm.name not in self.state.vms:
                missing.append(vm)
                continue
            waiting.append(vm)
        # A VM pinned to a node that the VMs leaving it have not made ready yet waits for
        # them; once a round frees nothing, the rest are planned and replay says why not.
        while waiting:
            later: list[VirtualMachine] = []
            for vm in waiting:
                if self._pin_not_ready(vm):
                    later.append(vm)
                else:
                    self.plan_vm(vm)
            if len(later) == len(waiting):
                break
            waiting = later
        for vm in waiting:
            self.plan_vm(vm)
        # New VMs after the moves of existing ones, which may make room for them.
        self.create_vms(missing)

    def plan_vm(self, want: VirtualMachine) -> None:
        have = self.state.vms[want.name]
        target = f"VirtualMachine/{want.name}"
        cluster = self.state.clusters[self.cluster]
        needs_off: list[str] = []
        steps: list[
            tuple[ActionType, dict[str, Any], str, dict[str, tuple[Any, Any]], list[str]]
        ] = []
        online_resize = platform(cluster.platform).online_vhd_resize
        current = {d.name: d for d in have.disks}
        # Detaching comes first: a disk that replaces another in its slot (another file, or
        # another name) is attached after the old one is out, so the plan never blocks itself.
        detaches: list[
            tuple[ActionType, dict[str, Any], str, dict[str, tuple[Any, Any]], list[str]]
        ] = []
        for disk in want.disks:
            old = current.pop(disk.name, None)
            replaced = (
                old is not None
                and disk.file is not None
                and disk.file_path(want.name) != old.file_path(have.name)
            )
            if old is not None and replaced:
                if old.controller == "ide":
                    needs_off.append(f"replace IDE disk {disk.name}")
                detaches.append(
                    (
                        "detach_disk",
                        {"vm": want.name, "disk": disk.name, "delete_file": False},
                        f"disk {disk.name} is another file in the manifest "
                        f"({disk.file_path(want.name)}): the old one is detached, file kept",
                        {
                            f"disks.{disk.name}.file": (
                                old.file_path(have.name),
                                None,
                            )
                        },
                        [],
                    )
                )
                old = None
            if old is None:
                if disk.controller == "ide":
                    needs_off.append(f"add IDE disk {disk.name}")
                steps.append(
                    (
                        "add_disk",
                        {"vm": want.name, "disk": disk_to_params(disk)},
                        f"disk {disk.name} is in the manifest",
                        {
                            f"disks.{disk.name}": (
                                None,
                                f"{disk.size_gib} GiB "
                                f"{disk.controller} {disk.controller_number}:"
                                f"{disk.slot}",
                            )
                        },
                        self.volume_ready.get(disk.volume, []),
                    )
                )
                continue
            self.plan_disk(want, have, old, disk, steps, needs_off, online_resize)
        # Moves first (one may free the slot an added disk takes), in an order that never
        # lands on a taken slot: a swap goes through a free slot.
        moves = [step for step in steps if step[0] == "move_disk"]
        steps[:] = [*_ordered_moves(want, have, moves), *(s for s in steps if s[0] != "move_disk")]
        controllers = want.scsi_controllers
        if controllers is not None and controllers != have.scsi_count():
            needs_off.append("add or remove SCSI controllers")
            step: Step = (
                "set_scsi_controllers",
                {"vm": want.name, "count": controllers},
                f"{controllers} SCSI controller(s) in the manifest",
                {"scsi_controllers": (have.scsi_count(), controllers)},
                [],
            )
            # Added before the disks that use them move or arrive; removed after they left.
            if controllers > have.scsi_count():
                steps.insert(0, step)
            else:
                steps.append(step)
        for name, gone in sorted(current.items()):
            if gone.controller == "ide":
                needs_off.append(f"remove IDE disk {name}")
            detaches.append(
                (
                    "detach_disk",
                    {"vm": want.name, "disk": name, "delete_file": False},
                    f"disk {name} is no longer in the manifest: detached, file kept",
                    {f"disks.{name}": (f"{gone.size_gib} GiB on {gone.volume}", None)},
                    [],
                )
            )
        steps = detaches + steps
        memory, memory_off = memory_steps(cluster.platform, want, have)
        steps.extend(memory)
        needs_off.extend(memory_off)
        if not same_nics(want.nics, have.nics):
            nic_steps, nic_off = adapter_steps(self.state, want, have)
            steps.extend(nic_steps)
            needs_off.extend(nic_off)
        if (want.preferred_owners, want.automatic_start_action, want.automatic_stop_action) != (
            None,
            None,
            None,
        ):
            settings, settings_off = settings_steps(want, have)
            steps.extend(settings)
            needs_off.extend(settings_off)
        if want.generation != have.generation:
            self.block(
                "unsupported",
                target,
                f"generation {have.generation} cannot become {want.generation}",
                f"set generation: {have.generation}",
            )
        if want.highly_available != have.highly_available:
            # Add-ClusterVirtualMachineRole, or Remove-ClusterGroup -RemoveResources keeping
            # the VM: neither is built (a role removed is also a VM that no longer fails over).
            self.block(
                "unsupported",
                target,
                f"{want.name} is {'' if have.highly_available else 'not '}a clustered role, "
                f"the manifest says highly_available: {str(want.highly_available).lower()}; "
                "adding or removing the clustered role is not supported yet",
                "Add-ClusterVirtualMachineRole (or remove the role) by hand, or set "
                f"highly_available: {str(have.highly_available).lower()}",
            )
        running = have.power_state == "running"
        stop_id: str | None = None
        if needs_off and running:
            if want.allow_downtime:
                stop_id = self.emit(
                    "stop_vm",
                    target,
                    want.name,
                    {"vm": want.name},
                    reason="needs the VM off: " + ", ".join(needs_off),
                    changes={"power_state": ("running", "off")},
                )
            else:
                self.block(
                    "downtime_not_allowed",
                    target,
                    f"{want.name} must be off to "
                    + ", ".join(needs_off)
                    + " and its manifest allows no downtime",
                    "set allow_downtime: true, or make the change by hand in a window",
                )
        last: list[str] = []
        previous_move: str | None = None  # disk moves run one after another (slots)
        controller_step: str | None = None  # a controller added comes before the disks on it
        detached: list[str] = []
        for type_, params, reason, changes, deps in steps:
            chained: list[str] = []
            if type_ in ("move_disk", "set_scsi_controllers"):
                chained.append(previous_move or "")  # a controller removed: after the moves
            if type_ in ("move_disk", "add_disk"):
                chained.append(controller_step or "")
                # A disk attached or moved may take a slot a detach frees: it waits for them.
                chained.extend(detached)
            aid = self.emit(
                type_,
                target,
                want.name,
                params,
                depends_on=[stop_id or "", *deps, *chained],
                reason=reason,
                changes=changes,
            )
            if aid:
                last.append(aid)
                if type_ == "move_disk":
                    previous_move = aid
                elif type_ == "set_scsi_controllers":
                    controller_step = aid
                elif type_ == "detach_disk":
                    detached.append(aid)
        moved = self.plan_move(want, [stop_id or "", *last])
        if moved:
            last.append(moved)
        have = self.state.vms[want.name]
        if want.power_state == "running" and have.power_state != "running":
            self.emit(
                "start_vm",
                target,
                want.name,
                {"vm": want.name},
                depends_on=last,
                reason="started again after its change"
                if stop_id
                else "power_state: running in the manifest",
                changes={"power_state": (have.power_state, "running")},
            )
        elif want.power_state == "off" and have.power_state == "running":
            self.emit(
                "stop_vm",
                target,
                want.name,
                {"vm": want.name},
                reason="power_state: off in the manifest",
                changes={"power_state": ("running", "off")},
            )

    def plan_disk(
        self,
        want: VirtualMachine,
        have: VirtualMachine,
        old: Disk,
        disk: Disk,
        steps: list[tuple[ActionType, dict[str, Any], str, dict[str, tuple[Any, Any]], list[str]]],
        needs_off: list[str],
        online_resize: bool,
    ) -> None:
        target = f"VirtualMachine/{want.name}"
        if old.volume != disk.volume:
            cluster = self.state.clusters[self.cluster]
            if not platform(cluster.platform).live_storage_migration:
                needs_off.append(
                    f"move {disk.name} to {disk.volume} (no live storage migration before 2012)"
                )
            # Before a resize or conversion: those then need the space on the new volume.
            steps.append(
                (
                    "move_vm_storage",
                    {"vm": want.name, "disk": disk.name, "volume": disk.volume},
                    f"disk {disk.name} is on volume {disk.volume} in the manifest: its file "
                    f"moves there from {old.volume}",
                    {f"disks.{disk.name}.volume": (old.volume, disk.volume)},
                    self.volume_ready.get(disk.volume, []),
                )
            )
        if (old.controller, old.controller_number, old.slot) != (
            disk.controller,
            disk.controller_number,
            disk.slot,
        ):
            why = move_needs_off(have, old, disk)
            if why:
                needs_off.append(f"move {disk.name} ({why})")
            # Before disks are added: one may take the slot this one leaves.
            steps.insert(
                0,
                (
                    "move_disk",
                    {
                        "vm": want.name,
                        "disk": disk.name,
                        "controller": disk.controller,
                        "controller_number": disk.controller_number,
                        "slot": disk.slot,
                    },
                    f"disk {disk.name} is on another controller or slot in the manifest",
                    {
                        f"disks.{disk.name}": (
                            f"{old.controller} {old.controller_number}:{old.slot}",
                            f"{disk.controller} {disk.controller_number}:{disk.slot}",
                        )
                    },
                    [],
                ),
            )
        if disk.size_gib < old.size_gib:
            self.block(
                "no_shrink",
                target,
                f"disk {disk.name} is {old.size_gib} GiB, the manifest says "
                f"{disk.size_gib}: virtual disks are never shrunk",
                f"set size_gib >= {old.size_gib}",
            )
        elif disk.size_gib > old.size_gib:
            if not (online_resize and disk.format == "vhdx" and disk.controller == "scsi"):
                needs_off.append(f"resize {disk.name}")
            steps.append(
                (
                    "extend_vhd",
                    {"vm": want.name, "disk": disk.name, "size_gib": disk.size_gib},
                    f"grow {disk.name}; then extend the guest's partition too "
                    "(DISKPART extend or Resize-Partition)",
                    {f"disks.{disk.name}.size_gib": (old.size_gib, disk.size_gib)},
                    self.volume_ready.get(disk.volume, []),
                )
            )
        if disk.type != old.type or disk.format != old.format:
            if disk.format != old.format:
                self.block(
                    "unsupported",
                    target,
                    f"disk {disk.name}: converting {old.format} to "
                    f"{disk.format} is not supported yet",
                    f"set format: {old.format}",
                )
            else:
                needs_off.append(f"convert {disk.name}")
                steps.append(
                    (
                        "convert_disk",
                        {"vm": want.name, "disk": disk.name, "type": disk.type},
                        f"convert {disk.name} {old.type} -> {disk.type}",
                        {f"disks.{disk.name}.type": (old.type, disk.type)},
                        self.volume_ready.get(disk.volume, []),
                    )
                )
