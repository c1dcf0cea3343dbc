"""Ordering the disk moves of one VM so that no move lands on a slot still taken.

Moves run one by one; a move whose target slot another moving disk still holds waits for
it. When every remaining move waits on another (two disks swapping slots, or a longer
cycle), one disk is first parked in a free slot (same controller kind, else SCSI: on a
generation-1 VM a parked IDE disk is in effect detached and attached again, with the VM off
as IDE changes need anyway), which breaks the cycle.
"""

from __future__ import annotations

from reconciler.model.platforms import IDE_CONTROLLERS, IDE_SLOTS, SCSI_CONTROLLERS, SCSI_SLOTS
from reconciler.model.records import Controller, VirtualMachine

Slot = tuple[Controller, int, int]  # controller, controller number, slot


def _free_slot(kind: Controller, taken: set[Slot], wanted: set[Slot]) -> Slot | None:
    counts = (IDE_CONTROLLERS, IDE_SLOTS) if kind == "ide" else (SCSI_CONTROLLERS, SCSI_SLOTS)
    for number in range(counts[0]):
        for slot in range(counts[1]):
            candidate = (kind, number, slot)
            if candidate not in taken and candidate not in wanted:
                return candidate
    return None


def order_disk_moves(vm: VirtualMachine, targets: dict[str, Slot]) -> list[tuple[str, Slot, bool]]:
    """The moves from ``vm``'s slots to ``targets`` (disk name -> slot), in an order that
    never lands on a taken slot: (disk, slot, parked) with ``parked`` for an interim move.
    Moves that cannot be ordered (no free slot anywhere) come last as they are, and the
    world rules refuse them with their reason."""
    where: dict[str, Slot] = {d.name: (d.controller, d.controller_number, d.slot) for d in vm.disks}
    holder = {slot: name for name, slot in where.items()}
    pending = dict(sorted(targets.items()))
    out: list[tuple[str, Slot, bool]] = []

    def move(name: str, slot: Slot, parked: bool) -> None:
        del holder[where[name]]
        holder[slot] = name
        where[name] = slot
        out.append((name, slot, parked))

    while pending:
        ready = [n for n, slot in pending.items() if holder.get(slot) in (None, n)]
        for name in ready:
            move(name, pending.pop(name), False)
        if ready:
            continue
        name = next(iter(pending))
        kinds: list[Controller] = [pending[name][0]]
        if vm.generation != 2:
            kinds.append("scsi")
        park = None
        for kind in dict.fromkeys(kinds):
            park = _free_slot(kind, set(holder), set(pending.values()))
            if park is not None:
                break
        if park is None:
            out.extend((n, slot, False) for n, slot in pending.items())
            break
        move(name, park, True)
    return out
