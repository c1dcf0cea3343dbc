r"""apply() for the life of a cluster shared volume: create it from a presented LUN, rename it,
remove it (the world rules are ``model.rules_storage``).

A LUN is known by its array id, the disk's ``UniqueId`` (``Get-Disk``): the same on every node
and kept through formatting and clustering, unlike disk numbers (per node) or the signature.
Each sequence reads what is there first and does only what is missing, so a run cut short
(after the format, with the disk in Available Storage, before the mount point's rename) is
finished by the same action, never done twice. A cluster resource's Name is set by
assignment, which no cmdlet parameter does: that one step is the constant script
``Rename-ClusterResource.ps1`` (``scripts``) with both names as typed parameters.
"""

from __future__ import annotations

from typing import Any

from reconciler.model.actions import Action
from reconciler.model.rules_storage import volume_users
from reconciler.providers.hyperv import model_map as m
from reconciler.providers.hyperv import scripts
from reconciler.providers.hyperv import targeting as t
from reconciler.providers.hyperv.act import Runner
from reconciler.providers.hyperv.wire import i32, u64

AVAILABLE_STORAGE = "Available Storage"
NTFS_LABEL_MAX = 32  # an NTFS volume label holds at most 32 characters
UNFORMATTED = frozenset({"", "RAW", "Unknown"})


# --- reading what is there -----------------------------------------------------------------


def _name_of(value: Any) -> str:
    """A cluster object as remoting serializes it: a name, or an object with a Name."""
    return str(value.get("Name")) if isinstance(value, dict) else str(value or "")


def _csvs(r: Runner, via: str) -> dict[str, dict[str, Any]]:
    return {str(c.get("Name")): c for c in r.call(via, "Get-ClusterSharedVolume", {})}


def _available(r: Runner, via: str) -> list[str]:
    """The Physical Disk resources in Available Storage: clustered, not yet a CSV."""
    return [
        str(x.get("Name"))
        for x in r.call(via, "Get-ClusterResource", {})
        if str(x.get("ResourceType")) == "Physical Disk"
        and _name_of(x.get("OwnerGroup")) == AVAILABLE_STORAGE
    ]


def _lun_disk(r: Runner, node: str, lun: str) -> dict[str, Any]:
    for d in r.call(node, "Get-Disk", {}):
        if str(d.get("UniqueId") or "") == lun:
            return dict(d)
    raise LookupError(f"{node} sees no disk with UniqueId {lun}: present the LUN to it first")


def _resource_of(r: Runner, via: str, disk: dict[str, Any]) -> str | None:
    """The Available Storage resource of ``disk`` (its DiskIdGuid is the disk's GPT Guid)."""
    names = _available(r, via)
    guid = str(disk.get("Guid") or "").lower()
    if not names or not guid:
        return None
    got = r.call(
        via,
        "Get-ClusterResource",
        {"Name": names},
        then=[("Get-ClusterParameter", {"Name": ["DiskIdGuid"]})],
    )
    for p in got:
        if str(p.get("Value") or "").lower() == guid:
            return _name_of(p.get("ClusterObject"))
    return None


# --- create_csv ----------------------------------------------------------------------------


def _format(r: Runner, node: str, disk: dict[str, Any], name: str, size_gib: int) -> None:
    """GPT, one partition of the plan's size, NTFS: each only if not there yet. A partition
    that holds another file system is data, never formatted over."""
    number = i32(int(disk["Number"]))
    if str(disk.get("PartitionStyle")) == "RAW":
        r.call(node, "Initialize-Disk", {"Number": number, "PartitionStyle": "GPT"})
    parts = [
        p
        for p in r.call(node, "Get-Partition", {"DiskNumber": number})
        if str(p.get("Type")) == "Basic"
    ]
    if parts:
        pnum = int(parts[0]["PartitionNumber"])
    else:
        # The whole LUN: the largest partition beside GPT's reserved one (a -Size of the
        # LUN's own size would not fit).
        whole = size_gib * m.GIB >= int(disk.get("Size") or 0)
        sized: dict[str, Any] = (
            {"UseMaximumSize": None} if whole else {"Size": u64(size_gib * m.GIB)}
        )
        made = r.call(node, "New-Partition", {"DiskNumber": number, **sized})
        pnum = int(made[0]["PartitionNumber"])
    which = {"DiskNumber": number, "PartitionNumber": i32(pnum)}
    volumes = r.call(node, "Get-Partition", which, then=[("Get-Volume", {})])
    fs = str(volumes[0].get("FileSystem") or "") if volumes else ""
    if fs in UNFORMATTED:
        r.call(
            node,
            "Get-Partition",
            which,
            then=[
                (
                    "Format-Volume",
                    {
                        "FileSystem": "NTFS",
                        "NewFileSystemLabel": name[:NTFS_LABEL_MAX],
                        "Confirm": False,
                    },
                )
            ],
            deadline=t.DISK_SECONDS,
        )
    elif fs != "NTFS":
        raise ValueError(
            f"partition {pnum} of disk {disk['Number']} on {node} holds {fs}, not NTFS: it is "
            "not formatted over; clear the LUN by hand if its data may go"
        )


def _mount_point(r: Runner, via: str, name: str) -> None:
    r"""C:\ClusterStorage\<name>: Add-ClusterSharedVolume mounts a new CSV as VolumeN."""
    csv = next(iter(r.call(via, "Get-ClusterSharedVolume", {"Name": [name]})), None)
    if csv is None:
        raise LookupError(f"no CSV named {name} after adding it")
    infos = list(csv.get("SharedVolumeInfo") or [])
    have = str(infos[0].get("FriendlyVolumeName") or "") if infos else ""
    want = f"{m.CSV_ROOT}\\{name}"
    if not have or have.rstrip("\\").lower() == want.lower():
        return
    owner = str(csv.get("OwnerNode") or "") or via
    r.call(owner, "Rename-Item", {"LiteralPath": have.rstrip("\\"), "NewName": name})


def _rename_resource(r: Runner, via: str, old: str, new: str) -> None:
    r.script(via, scripts.RENAME_CLUSTER_RESOURCE, {"Name": old, "NewName": new})


def create_csv(r: Runner, a: Action) -> None:
    """Format the LUN on one member, Add-ClusterDisk, name the resource, Add-ClusterSharedVolume,
    name the mount point."""
    p = a.params
    name, lun, size = str(p["volume"]), str(p["lun"]), int(p["size_gib"])
    if str(p.get("file_system") or "NTFS") != "NTFS":
        raise ValueError(f"file system {p['file_system']}: this provider formats NTFS only")
    node = t.any_member(r.estate, a.cluster)
    if name not in _csvs(r, node):
        if name not in _available(r, node):
            disk = _lun_disk(r, node, lun)
            resource = _resource_of(r, node, disk) if disk.get("IsClustered") else None
            if resource is None and disk.get("IsClustered"):
                raise ValueError(f"LUN {lun} is a cluster disk already, in use: not taken")
            if resource is None:
                _format(r, node, disk, name, size)
                number = i32(int(disk["Number"]))
                added = r.call(
                    node,
                    "Get-Disk",
                    {"Number": number},
                    then=[("Get-ClusterAvailableDisk", {}), ("Add-ClusterDisk", {})],
                )
                if not added:
                    raise LookupError(
                        f"LUN {lun} is not available to cluster {a.cluster} "
                        "(Get-ClusterAvailableDisk): present it to every member"
                    )
                resource = str(added[0].get("Name"))
            if resource != name:
                _rename_resource(r, node, resource, name)
        r.call(node, "Add-ClusterSharedVolume", {"Name": name})
    _mount_point(r, node, name)


# --- rename_csv ----------------------------------------------------------------------------


def rename_csv(r: Runner, a: Action) -> None:
    """The CSV's resource, then its mount point. Only a volume no VM uses: a VM's
    configuration and drives keep their paths under the old folder on a host."""
    p = a.params
    old, new = str(p["volume"]), str(p["name"])
    users = sorted(set(p.get("vms") or ()) | set(volume_users(r.estate, old)))
    if users:
        raise ValueError(
            f"{', '.join(users)} have files on {old}: renaming its folder would leave their "
            "configuration and disk paths behind (updating them is not built); move their "
            "storage first, or keep the old name"
        )
    via = t.any_member(r.estate, a.cluster)
    csvs = _csvs(r, via)
    if old in csvs:
        _rename_resource(r, via, old, new)
    elif new not in csvs:
        raise LookupError(f"cluster {a.cluster} has no CSV named {old} or {new}")
    _mount_point(r, via, new)


# --- remove_csv ----------------------------------------------------------------------------


def remove_csv(r: Runner, a: Action) -> None:
    """Out of the CSVs, then out of the cluster: the LUN is an available disk again, its
    data on it (never formatted or wiped)."""
    name = str(a.params["volume"])
    users = volume_users(r.estate, name)
    if users:
        raise ValueError(f"{', '.join(users)} have disks on {name}: it is not removed")
    via = t.any_member(r.estate, a.cluster)
    if name in _csvs(r, via):
        r.call(via, "Remove-ClusterSharedVolume", {"Name": name})
    if name in _available(r, via):
        r.call(via, "Remove-ClusterResource", {"Name": name, "Force": None})


ACTIONS = {
    "create_csv": create_csv,
    "rename_csv": rename_csv,
    "remove_csv": remove_csv,
}
