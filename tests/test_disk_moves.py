"""Ordering one VM's disk moves (engine/disk_moves.py), case by case, worked out by hand."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.engine.disk_moves import order_disk_moves
from reconciler.model.records import Disk, VirtualMachine


def vm(generation: int, *slots: tuple[str, str, int, int]) -> VirtualMachine:
    disks = tuple(
        Disk(name, controller, number, slot, "dynamic", "vhdx", 10, "V1")  # type: ignore[arg-type]
        for name, controller, number, slot in slots
    )
    return VirtualMachine("A", "lab", 1024, 1, generation, "n1", disks=disks)


CASES: list[tuple[str, VirtualMachine, dict[str, Any], list[tuple[str, Any, bool]]]] = [
    (
        "swap: one parked in the first free SCSI slot",
        vm(2, ("os", "scsi", 0, 0), ("a", "scsi", 0, 1), ("b", "scsi", 0, 2)),
        {"a": ("scsi", 0, 2), "b": ("scsi", 0, 1)},
        [("a", ("scsi", 0, 3), True), ("b", ("scsi", 0, 1), False), ("a", ("scsi", 0, 2), False)],
    ),
    (
        "chain: the one onto a free slot first, then the one onto the slot it left",
        vm(2, ("a", "scsi", 0, 1), ("b", "scsi", 0, 2)),
        {"a": ("scsi", 0, 2), "b": ("scsi", 1, 0)},
        [("b", ("scsi", 1, 0), False), ("a", ("scsi", 0, 2), False)],
    ),
    (
        "three-cycle: one parked, the other two follow, then the parked one",
        vm(2, ("a", "scsi", 0, 0), ("b", "scsi", 0, 1), ("c", "scsi", 0, 2)),
        {"a": ("scsi", 0, 1), "b": ("scsi", 0, 2), "c": ("scsi", 0, 0)},
        [
            ("a", ("scsi", 0, 3), True),
            ("c", ("scsi", 0, 0), False),
            ("b", ("scsi", 0, 2), False),
            ("a", ("scsi", 0, 1), False),
        ],
    ),
    (
        "generation 1, all four IDE slots full: parked on SCSI (detached and attached again)",
        vm(1, ("a", "ide", 0, 0), ("b", "ide", 0, 1), ("c", "ide", 1, 0), ("d", "ide", 1, 1)),
        {"a": ("ide", 0, 1), "b": ("ide", 0, 0)},
        [("a", ("scsi", 0, 0), True), ("b", ("ide", 0, 0), False), ("a", ("ide", 0, 1), False)],
    ),
]


@pytest.mark.parametrize(
    ("why", "machine", "targets", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_moves_never_land_on_a_taken_slot(
    why: str, machine: VirtualMachine, targets: dict[str, Any], expected: list[Any]
) -> None:
    assert order_disk_moves(machine, targets) == expected
