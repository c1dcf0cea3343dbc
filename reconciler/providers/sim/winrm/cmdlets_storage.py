r"""The peer's FailoverClusters storage cmdlets: a presented LUN made a CSV, renamed, removed.

Each step that changes the world applies the rule it amounts to (``model.rules_storage``):
Add-ClusterSharedVolume is ``create_csv`` (the resource's name, the partition's size), the
provider's constant ``Rename-ClusterResource.ps1`` on a CSV is ``rename_csv``,
Remove-ClusterSharedVolume is ``remove_csv`` (the disk stays in Available Storage, its data
on it); Remove-ClusterResource then gives the LUN back to Get-ClusterAvailableDisk. What lies
between (a disk in Available Storage, a CSV mounted as VolumeN) is the peer's own state
(``cmdlets_disks.StorageState``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from reconciler.providers.sim.winrm import objects as o
from reconciler.providers.sim.winrm.binding import Param, PeerError, Spec
from reconciler.providers.sim.winrm.cmdlets_disks import (
    DISK_SPECS,
    Lun,
    StorageState,
    folder,
    free_by_number,
    free_numbers,
    lun_id,
    lun_state,
    storage_of,
)
from reconciler.providers.sim.winrm.cmdlets_read import (
    FC,
    READ_SPECS,
    _match,
    _parameter,
    resource_object,
)
from reconciler.providers.sim.winrm.world import CSV_ROOT

if TYPE_CHECKING:
    from reconciler.providers.sim.winrm.cmdlets import Host

__all__ = [
    "STORAGE_SPECS",
    "StorageState",
    "available_storage",
    "remove_resource",
    "rename_resource",
]

AVAILABLE_STORAGE = "Available Storage"
DISK_INFO_TYPES = ("Microsoft.FailoverClusters.PowerShell.ClusterDiskInfo",)


def available_storage(host: Host) -> dict[str, str]:
    """Available Storage: resource name -> array id, in this cluster."""
    return {
        state.resource: lun
        for (cluster, lun), state in storage_of(host).luns.items()
        if cluster == host.cluster and state.resource
    }


def _not_found(spec: Spec, name: str) -> PeerError:
    return PeerError(
        f"The cluster resource '{name}' was not found.",
        "ObjectNotFound",
        spec.fqid("ClusterObjectNotFound"),
        name,
    )


# --- reads, widened: the CSVs' mount folders, Available Storage ------------------------------


def get_csv(host: Host, spec: Spec, p: dict[str, Any], inputs: Any) -> Iterator[Any]:
    for csv in READ_SPECS["Get-ClusterSharedVolume"][1](host, spec, p, inputs):
        info = csv["SharedVolumeInfo"][0]
        info["FriendlyVolumeName"] = f"{CSV_ROOT}\\{folder(host, str(csv['Name']))}"
        yield csv


def get_resource(host: Host, spec: Spec, p: dict[str, Any], inputs: Any) -> Iterator[Any]:
    names = p.get("Name")
    parked = [r for r in sorted(available_storage(host)) if _match(names, r)]
    rest = [n for n in names or [] if not any(r.lower() == n.lower() for r in parked)]
    if names is None or rest:
        yield from READ_SPECS["Get-ClusterResource"][1](
            host, spec, {**p, "Name": rest} if names else p, inputs
        )
    for name in parked:
        yield resource_object(name, "Physical Disk", AVAILABLE_STORAGE)


def get_parameter(host: Host, spec: Spec, p: dict[str, Any], inputs: Any) -> Iterator[Any]:
    yield from READ_SPECS["Get-ClusterParameter"][1](host, spec, p, inputs)
    parked = available_storage(host)
    for item in inputs or []:
        name = str(item["Name"])
        if name in parked and _match(p.get("Name"), "DiskIdGuid"):
            yield _parameter(name, "DiskIdGuid", f"{{{host.peer.guid('disk', parked[name])}}}")


# --- FailoverClusters: the disk into the cluster, into the CSVs, and out again --------------


def _common_luns(host: Host) -> dict[str, int]:
    """LUNs every member sees at one size, no cluster disk yet (Get-ClusterAvailableDisk)."""
    cluster = host.this_cluster()
    members = [host.estate.nodes[n] for n in cluster.nodes if n in host.estate.nodes]
    parked = set(available_storage(host).values())
    out: dict[str, int] = {}
    for lun, size in host.this_node().status.free_luns.items():
        if lun not in parked and all(m.status.free_luns.get(lun) == size for m in members):
            out[lun] = size
    return out


def _next_disk_name(host: Host) -> str:
    used = set(available_storage(host))
    n = 1
    while f"Cluster Disk {n}" in used:
        n += 1
    return f"Cluster Disk {n}"


def get_available(host: Host, spec: Spec, p: dict[str, Any], inputs: Any) -> Iterator[Any]:
    numbers = free_numbers(host)
    # Piped disks (Get-Disk -Number n | ...): only those; none piped in, none listed.
    only = {int(d["Number"]) for d in inputs} if inputs is not None else None
    for lun, size in sorted(_common_luns(host).items(), key=lambda x: numbers[x[0]]):
        number = numbers[lun]
        if only is not None and number not in only:
            continue
        state = lun_state(host, lun)
        count = (1 if state.initialized else 0) + (1 if state.partition_gib is not None else 0)
        parts = [
            f"\\\\?\\GLOBALROOT\\Device\\Harddisk{number}\\Partition{i}\\"
            for i in range(1, count + 1)
        ]
        yield o.ps_object(
            DISK_INFO_TYPES,
            {
                "Cluster": host.cluster,
                "Id": f"{{{host.peer.guid('disk', lun)}}}" if state.initialized else "",
                "Name": _next_disk_name(host),
                "Number": o.u32(number),
                "ScsiAddress": o.u32(0x03000000 + number),
                "Size": o.u64(size * o.GIB),
                "Partitions": o.ps_list(parts),
            },
        )


def add_cluster_disk(host: Host, spec: Spec, p: dict[str, Any], inputs: Any) -> Iterator[Any]:
    items = list(inputs or []) + ([p["InputObject"]] if "InputObject" in p else [])
    common = _common_luns(host)
    for item in items:
        lun = free_by_number(host, spec, int(item["Number"]))
        if lun not in common:
            raise PeerError(
                f"The disk {item['Number']} is not visible to every node, or is clustered "
                "already: it cannot be added.",
                "InvalidOperation",
                spec.fqid("AddClusterDisk"),
                str(item["Number"]),
            )
        name = _next_disk_name(host)
        lun_state(host, lun).resource = name
        yield resource_object(name, "Physical Disk", AVAILABLE_STORAGE)


def add_csv(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    parked = available_storage(host)
    for name in p.get("Name") or []:
        if name not in parked:
            raise _not_found(spec, name)
        lun = parked[name]
        state = lun_state(host, lun)
        if state.file_system not in ("NTFS", "ReFS") or state.partition_gib is None:
            raise PeerError(
                f"The disk '{name}' holds no NTFS or ReFS volume: it cannot be a CSV.",
                "InvalidOperation",
                spec.fqid("AddClusterSharedVolume"),
                name,
            )
        params = {"volume": name, "lun": lun, "size_gib": state.partition_gib,
                  "file_system": state.file_system}  # fmt: skip
        host.apply(spec, "create_csv", f"ClusterSharedVolume/{name}", params, name)
        del storage_of(host).luns[(host.cluster, lun)]
        taken = {folder(host, v.name).lower() for v in host.estate.volumes_of(host.cluster)}
        n = 1
        while f"volume{n}" in taken:
            n += 1
        storage_of(host).mounts[name] = f"Volume{n}"  # where a host mounts a new CSV
    return iter(())


def remove_csv(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    name = p["Name"]
    volume = host.estate.volumes.get(name)
    if volume is None or volume.cluster != host.cluster:
        raise _not_found(spec, name)
    host.apply(spec, "remove_csv", f"ClusterSharedVolume/{name}", {"volume": name,
               "lun": volume.lun}, name)  # fmt: skip
    storage_of(host).mounts.pop(name, None)
    # Back in Available Storage under its name, its data on it.
    storage_of(host).luns[(host.cluster, lun_id(volume))] = Lun(
        True, volume.size_gib, "NTFS", resource=name
    )
    return iter(())


def remove_resource(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    name = p["Name"]
    parked = available_storage(host)
    if name not in parked:
        if name in host.estate.volumes:
            raise PeerError(
                f"The resource '{name}' is a Cluster Shared Volume: Remove-ClusterSharedVolume "
                "first.",
                "InvalidOperation",
                spec.fqid("InvalidOperation"),
                name,
            )
        raise _not_found(spec, name)
    lun_state(host, parked[name]).resource = None
    return iter(())


def rename_resource(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    """``Rename-ClusterResource.ps1``: (Get-ClusterResource -Name $Name).Name = $NewName."""
    old, new = p["Name"], p["NewName"]
    parked = available_storage(host)
    if new in parked or new in host.estate.volumes:
        raise PeerError(
            f"A cluster resource named '{new}' exists already.",
            "InvalidOperation",
            spec.fqid("ResourceNameExists"),
            new,
        )
    if old in parked:
        lun_state(host, parked[old]).resource = new
        yield resource_object(new, "Physical Disk", AVAILABLE_STORAGE)
        return
    volume = host.estate.volumes.get(old)
    if volume is None or volume.cluster != host.cluster:
        raise _not_found(spec, old)
    params = {"volume": old, "name": new, "lun": volume.lun}
    host.apply(spec, "rename_csv", f"ClusterSharedVolume/{old}", params, old)
    mounts = storage_of(host).mounts
    mounts[new] = mounts.pop(old, old)  # the folder keeps its name until Rename-Item
    if mounts[new] == new:
        del mounts[new]
    yield resource_object(new, "Physical Disk", "Cluster Shared Volume")


def rename_item(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    path, new = p["LiteralPath"].rstrip("\\"), p["NewName"]
    prefix = CSV_ROOT.lower() + "\\"
    have = path[len(prefix) :] if path.lower().startswith(prefix) else ""
    volumes = host.estate.volumes_of(host.cluster)
    volume = next((v.name for v in volumes if folder(host, v.name).lower() == have.lower()), None)
    if not have or "\\" in have or volume is None:
        raise PeerError(
            f"Cannot rename because item at '{path}' does not exist.",
            "InvalidOperation",
            spec.fqid("InvalidOperation"),
            path,
        )
    if any(folder(host, v.name).lower() == new.lower() for v in volumes if v.name != volume):
        raise PeerError(
            f"Cannot create a file when that file already exists: {CSV_ROOT}\\{new}.",
            "WriteError",
            spec.fqid("RenameItemIOError"),
            path,
        )
    if new == volume:
        storage_of(host).mounts.pop(volume, None)
    else:
        storage_of(host).mounts[volume] = new
    return iter(())


# --- the declarations -------------------------------------------------------------------------

S, SS, SW, OBJ = Param("str"), Param("strs"), Param("switch"), Param("obj")
STORAGE_SPECS: dict[str, tuple[Spec, Any]] = {
    **DISK_SPECS,
    "Get-ClusterSharedVolume": (READ_SPECS["Get-ClusterSharedVolume"][0], get_csv),
    "Get-ClusterResource": (READ_SPECS["Get-ClusterResource"][0], get_resource),
    "Get-ClusterParameter": (READ_SPECS["Get-ClusterParameter"][0], get_parameter),
    "Get-ClusterAvailableDisk": (
        Spec(
            "Get-ClusterAvailableDisk",
            f"{FC}.Commands.GetClusterAvailableDiskCommand",
            {"Cluster": S, "Disk": OBJ, "All": SW, "InputObject": OBJ},
            takes_input=True,
        ),
        get_available,
    ),
    "Add-ClusterDisk": (
        Spec(
            "Add-ClusterDisk",
            f"{FC}.Commands.AddClusterDiskCommand",
            {"InputObject": OBJ, "Cluster": S},
            ("InputObject",),
            takes_input=True,
        ),
        add_cluster_disk,
    ),
    "Add-ClusterSharedVolume": (
        Spec(
            "Add-ClusterSharedVolume",
            f"{FC}.Commands.AddClusterSharedVolumeCommand",
            {"Name": SS, "InputObject": OBJ, "Cluster": S},
            ("Name",),
        ),
        add_csv,
    ),
    "Remove-ClusterSharedVolume": (
        Spec(
            "Remove-ClusterSharedVolume",
            f"{FC}.Commands.RemoveClusterSharedVolumeCommand",
            {"Name": Param("str", True), "InputObject": OBJ, "Cluster": S},
            ("Name",),
        ),
        remove_csv,
    ),
    "Remove-ClusterResource": (
        Spec(
            "Remove-ClusterResource",
            f"{FC}.Commands.RemoveClusterResourceCommand",
            {"Name": Param("str", True), "Force": SW, "InputObject": OBJ, "Cluster": S},
            ("Name",),
        ),
        remove_resource,
    ),
    "Rename-Item": (
        Spec(
            "Rename-Item",
            "Microsoft.PowerShell.Commands.RenameItemCommand",
            {"LiteralPath": Param("str", True), "NewName": Param("str", True)},
        ),
        rename_item,
    ),
}
