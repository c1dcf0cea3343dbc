"""The storage a cluster could take: presented LUNs that are no CSV yet (``free_luns``).

Read once per cluster on a member: ``Get-ClusterAvailableDisk`` (disks every node sees that
are not clustered) and the Physical Disk resources in Available Storage (clustered, not a CSV:
a create_csv cut short, or a remove_csv half done). A LUN is named by its array id, the
disk's ``UniqueId`` from that member's ``Get-Disk``: an available disk is tied to it by its
``Number`` (disk numbers are per node, so the same member's), a resource by its
``DiskIdGuid`` private property (the disk's GPT ``Guid``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from reconciler.providers.hyperv import model_map as m

AVAILABLE_STORAGE = "Available Storage"

Call = Callable[..., list[dict[str, Any]]]


def _owner_name(value: Any) -> str:
    return str(value.get("Name")) if isinstance(value, dict) else str(value or "")


def free_luns(
    call: Call,
    via: str,
    disks: Iterable[Mapping[str, Any]],
    resources: Iterable[Mapping[str, Any]],
    warnings: m.Warnings,
) -> dict[str, int]:
    """Array id -> GiB of every LUN the cluster could make a CSV of (read on ``via``)."""
    mine = list(disks)
    by_number = {int(d["Number"]): d for d in mine if d.get("Number") is not None}
    by_guid = {str(d["Guid"]).lower(): d for d in mine if d.get("Guid")}
    out: dict[str, int] = {}

    def put(disk: Mapping[str, Any] | None, size: Any, where: str) -> None:
        lun = str((disk or {}).get("UniqueId") or "")
        if not lun:
            warnings.add(where, "no UniqueId on the disk: the LUN cannot be named; left out")
            return
        gib = m.gib(size, f"{where} (LUN {lun})", warnings)
        if gib is not None:
            out[lun] = gib

    for a in call(via, "Get-ClusterAvailableDisk"):
        number = a.get("Number")
        disk = by_number.get(int(number)) if number is not None else None
        put(disk, a.get("Size", 0), f"Node/{via} available disk {number}")
    parked = [
        str(r.get("Name"))
        for r in resources
        if str(r.get("ResourceType")) == "Physical Disk"
        and _owner_name(r.get("OwnerGroup")) == AVAILABLE_STORAGE
    ]
    if parked:
        got = call(
            via,
            "Get-ClusterResource",
            {"Name": parked},
            then=[("Get-ClusterParameter", {"Name": ["DiskIdGuid"]})],
        )
        for p in got:
            disk = by_guid.get(str(p.get("Value") or "").lower())
            where = f"Node/{via} cluster disk {_owner_name(p.get('ClusterObject'))}"
            put(disk, (disk or {}).get("Size", 0), where)
    return out


def lun_ids(reads: Mapping[str, Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """(node, disk FriendlyName) -> UniqueId, for a CSV's LUN id (its disk on its owner)."""
    return {
        (node, str(d.get("FriendlyName"))): str(d["UniqueId"])
        for node, r in reads.items()
        for d in r.get("disks", ())
        if d.get("UniqueId")
    }
