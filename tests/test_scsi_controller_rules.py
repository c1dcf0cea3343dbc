"""World rule of set_scsi_controllers, and the controller a disk needs, on the lab world.

VM A in ``lab_world()`` is generation 1 (os on IDE 0:0, data on SCSI 0:0), running on n1, with
no controller count recorded: it is taken to have one SCSI controller, the one its data disk
is on. Hyper-V adds and removes SCSI controllers only while the VM is off.
"""

from __future__ import annotations

import pytest
from sim_strategies import act, lab_world
from test_sim_rules import accepted, refused, stopped, with_vm

from reconciler.model.rules import invariants


def controllers(count: int) -> object:
    return act("set_scsi_controllers", vm="A", count=count)


def test_counted_from_the_disks_when_not_recorded() -> None:
    assert lab_world().vms["A"].scsi_count() == 1
    assert lab_world().vms["B"].scsi_count() == 0  # generation 1, IDE only


def test_added_with_the_vm_off_then_a_disk_moves_onto_the_new_one() -> None:
    world = accepted(stopped(lab_world(), "A"), controllers(2))
    assert world.vms["A"].scsi_controllers == 2
    moved = accepted(
        world, act("move_disk", vm="A", disk="data", controller="scsi", controller_number=1, slot=0)
    )
    assert moved.vms["A"].disk("data").controller_number == 1  # type: ignore[union-attr]
    assert invariants(moved) == []


@pytest.mark.parametrize(
    ("count", "running", "why"),
    [
        (2, True, "A must be off to add or remove a SCSI controller"),
        (0, False, "disks data are on SCSI controller(s) 0: move them first"),
        (5, False, "a VM has 0 to 4 SCSI controllers, not 5"),
    ],
)
def test_refused_with_the_reason(count: int, running: bool, why: str) -> None:
    world = lab_world() if running else stopped(lab_world(), "A")
    refused(world, controllers(count), why)  # type: ignore[arg-type]


def test_a_disk_needs_its_controller_once_the_count_is_recorded() -> None:
    world = with_vm(stopped(lab_world(), "A"), "A", scsi_controllers=1)
    refused(
        world,
        act("move_disk", vm="A", disk="data", controller="scsi", controller_number=2, slot=0),
        "SCSI controller 2 does not exist on A (1 controller(s)): add it first",
    )


def test_the_count_as_it_is_is_only_recorded() -> None:
    # Same count as the disks imply: nothing changes on the host, so a running VM is fine.
    after = accepted(lab_world(), controllers(1))
    assert after.vms["A"].scsi_controllers == 1
    assert after.vms["A"].power_state == "running"
