r"""The peer's storage cmdlets: presented LUNs made cluster shared volumes, renamed, removed.

The world rules (``model.rules_storage``) know a LUN as presented (``free_luns``) or a CSV.
What a host goes through in between has no simulator action, so the peer keeps it per
cluster and LUN (``StorageState``, in memory, like ``loose_vhds``): initialized GPT, its data
partition, the file system, and the Physical Disk resource while the disk sits in Available
Storage; and each CSV's mount folder while it differs from the volume's name. Each step
that changes the world applies the rule it amounts to: Add-ClusterSharedVolume is
``create_csv`` (the resource's name, the partition's size), the constant
``Rename-ClusterResource.ps1`` on a CSV is ``rename_csv``, Remove-ClusterSharedVolume is
``remove_csv`` (the disk stays in Available Storage, its data on it); Remove-ClusterResource
then gives the LUN back to Get-ClusterAvailableDisk.

A LUN is a disk whose ``UniqueId`` is its array id (a CSV the world knows no id for has none
here); free LUNs are numbered from 100 on each node, after the CSVs' disks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psrpcore.types import PSNoteProperty, PSObject

from reconciler.model.records import ClusterSharedVolume
from reconciler.providers.sim.winrm import objects as o
from reconciler.providers.sim.winrm.binding import Param, PeerError, Spec
from reconciler.providers.sim.winrm.cmdlets_read import (
    FC,
    READ_SPECS,
    _match,
    _parameter,
    resource_object,
)
from reconciler.providers.sim.winrm.world import CSV_PARTITION, CSV_ROOT, disk_numbers

if TYPE_CHECKING:
    from reconciler.providers.sim.winrm.cmdlets import Host

AVAILABLE_STORAGE = "Available Storage"
FREE_DISK_BASE = 100
RESERVED_BYTES = 128 * o.MIB  # the GPT reserved partition Initialize-Disk makes
STORAGE = "Microsoft.Management.Infrastructure.CimCmdlets"
VOLUME_TYPES = (
    "Microsoft.Management.Infrastructure.CimInstance#ROOT/Microsoft/Windows/Storage/MSFT_Volume",
    "Microsoft.Management.Infrastructure.CimInstance",
)
DISK_INFO_TYPES = ("Microsoft.FailoverClusters.PowerShell.ClusterDiskInfo",)
SCRIPT_MARKER = "# reconciler: Rename-ClusterResource"


@dataclass
class Lun:
    """What a host did to one presented LUN that the world rules have no word for."""

    initialized: bool = False
    partition_gib: int | None = None
    file_system: str = ""
    resource: str | None = None  # its Physical Disk resource, in Available Storage


@dataclass
class StorageState:
    luns: dict[tuple[str, str], Lun] = field(default_factory=dict)  # (cluster, array id)
    mounts: dict[str, str] = field(default_factory=dict)  # volume -> its folder, if another


def _state(host: Host) -> StorageState:
    return host.peer.storage


def _lun(host: Host, lun: str) -> Lun:
    return _state(host).luns.setdefault((host.cluster, lun), Lun())


def _lun_id(volume: ClusterSharedVolume) -> str:
    return volume.lun or volume.name  # remove_csv gives an unnamed LUN back under the volume's


def folder(host: Host, volume: str) -> str:
    return _state(host).mounts.get(volume, volume)


def _free_numbers(host: Host) -> dict[str, int]:
    node = host.this_node()
    return {lun: FREE_DISK_BASE + i for i, lun in enumerate(sorted(node.status.free_luns))}


def _free_by_number(host: Host, spec: Spec, number: int) -> str:
    for lun, n in _free_numbers(host).items():
        if n == number:
            return lun
    raise PeerError(
        f"No MSFT_Disk objects found with property 'Number' equal to '{number}'. "
        "Verify the value of the property and retry.",
        "ObjectNotFound",
        spec.fqid("CmdletizationQuery_NotFound_Number"),
        str(number),
    )


def _parked(host: Host) -> dict[str, str]:
    """Available Storage: resource name -> array id, in this cluster."""
    return {
        state.resource: lun
        for (cluster, lun), state in _state(host).luns.items()
        if cluster == host.cluster and state.resource
    }


def _not_found(spec: Spec, name: str) -> PeerError:
    return PeerError(
        f"The cluster resource '{name}' was not found.",
        "ObjectNotFound",
        spec.fqid("ClusterObjectNotFound"),
        name,
    )


def _set(obj: PSObject, name: str, value: Any) -> PSObject:
    obj[name] = value
    return obj


# --- reads, widened: the free LUNs' disks, partitions and resources --------------------------


def get_disk(host: Host, spec: Spec, p: dict[str, Any], inputs: Any) -> Iterator[Any]:
    node = host.this_node()
    numbers = disk_numbers(host.estate, node.cluster)
    wanted = p.get("Number")
    found = False
    for disk in READ_SPECS["Get-Disk"][1](host, spec, p, inputs):
        volume = host.estate.volumes[str(disk["FriendlyName"])]
        if wanted is not None and numbers[volume.name] != wanted:
            continue
        found = True
        _with(disk, "UniqueId", volume.lun or "")
        yield _with(disk, "Guid", f"{{{host.peer.guid('disk', _lun_id(volume))}}}")
    for lun, number in _free_numbers(host).items():
        if wanted is not None and number != wanted:
            continue
        found = True
        state = _lun(host, lun)
        yield o.ps_object(
            o.DISK_TYPES,
            {
                "Number": o.u32(number),
                "FriendlyName": "PEER SAN LUN",
                "UniqueId": lun,
                "Guid": f"{{{host.peer.guid('disk', lun)}}}" if state.initialized else "",
                "Size": o.u64(node.status.free_luns[lun] * o.GIB),
                "IsClustered": state.resource is not None,
                "PartitionStyle": "GPT" if state.initialized else "RAW",
            },
        )
    if wanted is not None and not found:
        _free_by_number(host, spec, wanted)  # the host's ObjectNotFound


def _partition(number: int, pnum: int, kind: str, size: int, paths: list[str]) -> PSObject:
    return o.ps_object(
        o.PARTITION_TYPES,
        {
            "DiskNumber": o.u32(number),
            "PartitionNumber": o.u32(pnum),
            "Type": kind,
            "Size": o.u64(size),
            "AccessPaths": o.ps_list(paths),
        },
    )


def get_partition(host: Host, spec: Spec, p: dict[str, Any], inputs: Any) -> Iterator[Any]:
    number, pnum = p.get("DiskNumber"), p.get("PartitionNumber")
    found = False
    if number is None or number < FREE_DISK_BASE:
        for part in READ_SPECS["Get-Partition"][1](host, spec, p, inputs):
            name = next(
                v for v, n in disk_numbers(host.estate, host.cluster).items()
                if n == int(part["DiskNumber"])
            )  # fmt: skip
            if pnum is not None and pnum != CSV_PARTITION:
                continue
            found = True
            _set(part, "AccessPaths", o.ps_list([f"{CSV_ROOT}\\{folder(host, name)}\\"]))
            yield _with(part, "Type", "Basic")
    for lun, n in _free_numbers(host).items():
        state = _lun(host, lun)
        if (number is not None and n != number) or not state.initialized:
            continue
        parts = [_partition(n, 1, "Reserved", RESERVED_BYTES, [])]
        if state.partition_gib is not None:
            guid = host.peer.guid("partition", lun)
            parts.append(
                _partition(
                    n, 2, "Basic", state.partition_gib * o.GIB, [f"\\\\?\\Volume{{{guid}}}\\"]
                )
            )
        for part in parts:
            if pnum is None or int(part["PartitionNumber"]) == pnum:
                found = True
                yield part
    if number is not None and not found:
        raise PeerError(
            f"No MSFT_Partition objects found with property 'DiskNumber' equal to '{number}'. "
            "Verify the value of the property and retry.",
            "ObjectNotFound",
            spec.fqid("CmdletizationQuery_NotFound_DiskNumber"),
            str(number),
        )


def _with(obj: PSObject, name: str, value: Any) -> PSObject:
    obj.PSObject.adapted_properties.append(PSNoteProperty(name, value))
    return obj


def get_csv(host: Host, spec: Spec, p: dict[str, Any], inputs: Any) -> Iterator[Any]:
    for csv in READ_SPECS["Get-ClusterSharedVolume"][1](host, spec, p, inputs):
        info = csv["SharedVolumeInfo"][0]
        info["FriendlyVolumeName"] = f"{CSV_ROOT}\\{folder(host, str(csv['Name']))}"
        yield csv


def get_resource(host: Host, spec: Spec, p: dict[str, Any], inputs: Any) -> Iterator[Any]:
    names = p.get("Name")
    parked = [r for r in sorted(_parked(host)) if _match(names, r)]
    rest = [n for n in names or [] if not any(r.lower() == n.lower() for r in parked)]
    if names is None or rest:
        yield from READ_SPECS["Get-ClusterResource"][1](
            host, spec, {**p, "Name": rest} if names else p, inputs
        )
    for name in parked:
        yield resource_object(name, "Physical Disk", AVAILABLE_STORAGE)


def get_parameter(host: Host, spec: Spec, p: dict[str, Any], inputs: Any) -> Iterator[Any]:
    yield from READ_SPECS["Get-ClusterParameter"][1](host, spec, p, inputs)
    parked = _parked(host)
    for item in inputs or []:
        name = str(item["Name"])
        if name in parked and _match(p.get("Name"), "DiskIdGuid"):
            yield _parameter(name, "DiskIdGuid", f"{{{host.peer.guid('disk', parked[name])}}}")


# --- the Storage module: a presented LUN made ready -----------------------------------------


def initialize_disk(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    state = _lun(host, _free_by_number(host, spec, p["Number"]))
    if state.initialized:
        raise PeerError(
            "The disk has already been initialized.",
            "InvalidOperation",
            spec.fqid("MI RESULT 4,Initialize-Disk"),
            str(p["Number"]),
        )
    if p.get("PartitionStyle", "GPT") != "GPT":
        raise PeerError(
            "This peer initializes GPT disks only (a CSV larger than 2 TiB needs GPT).",
            "InvalidArgument",
            spec.fqid("InvalidParameter"),
        )
    state.initialized = True
    return iter(())


def new_partition(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    number = p["DiskNumber"]
    lun = _free_by_number(host, spec, number)
    state = _lun(host, lun)
    lun_gib = host.this_node().status.free_luns[lun]
    size = lun_gib * o.GIB if p.get("UseMaximumSize") else p.get("Size")
    problem = None
    if not state.initialized:
        problem = "The disk is not initialized: Initialize-Disk first."
    elif state.partition_gib is not None:
        problem = "This peer makes one data partition per LUN, and it has one."
    elif size is None or size % o.GIB or not 0 < size <= lun_gib * o.GIB:
        problem = f"Size must be whole GiB, at most the LUN's {lun_gib} GiB (or -UseMaximumSize)."
    if problem is not None:
        raise PeerError(problem, "InvalidOperation", spec.fqid("MI RESULT 4,New-Partition"))
    # The model counts whole GiB: the partition after the reserved one is taken as the LUN's
    # size with -UseMaximumSize (a host's is 128 MiB short).
    state.partition_gib = int(size or 0) // o.GIB
    yield from get_partition(host, spec, {"DiskNumber": number, "PartitionNumber": 2}, None)


def _partition_of(host: Host, spec: Spec, part: Any) -> tuple[str | None, Lun | None]:
    """(CSV name, None) or (None, the free LUN's state) of a partition object piped in."""
    number = int(part["DiskNumber"])
    for name, n in disk_numbers(host.estate, host.cluster).items():
        if n == number:
            return name, None
    return None, _lun(host, _free_by_number(host, spec, number))


def _volume(fs: str, label: str, size: int) -> PSObject:
    return o.ps_object(
        VOLUME_TYPES, {"FileSystem": fs, "FileSystemLabel": label, "Size": o.u64(size)}
    )


def get_volume(host: Host, spec: Spec, p: dict[str, Any], inputs: Any) -> Iterator[Any]:
    for part in inputs or []:
        csv, state = _partition_of(host, spec, part)
        if int(part["PartitionNumber"]) == 1 and csv is None:
            continue  # the reserved partition holds no volume
        fs = "CSVFS" if csv is not None else (state.file_system if state else "")
        yield _volume(fs, csv or "", int(part["Size"]))


def format_volume(host: Host, spec: Spec, p: dict[str, Any], inputs: Any) -> Iterator[Any]:
    for part in inputs or []:
        csv, state = _partition_of(host, spec, part)
        if csv is not None or state is None or int(part["PartitionNumber"]) != 2:
            raise PeerError(
                "The volume is in use by the cluster (or is no data partition): not formatted.",
                "InvalidOperation",
                spec.fqid("MI RESULT 5,Format-Volume"),
            )
        state.file_system = p["FileSystem"]
        yield _volume(state.file_system, p.get("NewFileSystemLabel", ""), int(part["Size"]))


# --- FailoverClusters: the disk into the cluster, into the CSVs, and out again --------------


def _common_luns(host: Host) -> dict[str, int]:
    """LUNs every member sees at one size, no cluster disk yet (Get-ClusterAvailableDisk)."""
    cluster = host.this_cluster()
    members = [host.estate.nodes[n] for n in cluster.nodes if n in host.estate.nodes]
    parked = set(_parked(host).values())
    out: dict[str, int] = {}
    for lun, size in host.this_node().status.free_luns.items():
        if lun not in parked and all(m.status.free_luns.get(lun) == size for m in members):
            out[lun] = size
    return out


def _next_disk_name(host: Host) -> str:
    used = set(_parked(host))
    n = 1
    while f"Cluster Disk {n}" in used:
        n += 1
    return f"Cluster Disk {n}"


def get_available(host: Host, spec: Spec, p: dict[str, Any], inputs: Any) -> Iterator[Any]:
    numbers = _free_numbers(host)
    # Piped disks (Get-Disk -Number n | ...): only those; none piped in, none listed.
    only = {int(d["Number"]) for d in inputs} if inputs is not None else None
    for lun, size in sorted(_common_luns(host).items(), key=lambda x: numbers[x[0]]):
        number = numbers[lun]
        if only is not None and number not in only:
            continue
        state = _lun(host, lun)
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
        lun = _free_by_number(host, spec, int(item["Number"]))
        if lun not in common:
            raise PeerError(
                f"The disk {item['Number']} is not visible to every node, or is clustered "
                "already: it cannot be added.",
                "InvalidOperation",
                spec.fqid("AddClusterDisk"),
                str(item["Number"]),
            )
        name = _next_disk_name(host)
        _lun(host, lun).resource = name
        yield resource_object(name, "Physical Disk", AVAILABLE_STORAGE)


def add_csv(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    parked = _parked(host)
    for name in p.get("Name") or []:
        if name not in parked:
            raise _not_found(spec, name)
        lun = parked[name]
        state = _lun(host, lun)
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
        del _state(host).luns[(host.cluster, lun)]
        taken = {folder(host, v.name).lower() for v in host.estate.volumes_of(host.cluster)}
        n = 1
        while f"volume{n}" in taken:
            n += 1
        _state(host).mounts[name] = f"Volume{n}"  # where a host mounts a new CSV
    return iter(())


def remove_csv(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    name = p["Name"]
    volume = host.estate.volumes.get(name)
    if volume is None or volume.cluster != host.cluster:
        raise _not_found(spec, name)
    host.apply(spec, "remove_csv", f"ClusterSharedVolume/{name}", {"volume": name,
               "lun": volume.lun}, name)  # fmt: skip
    _state(host).mounts.pop(name, None)
    # Back in Available Storage under its name, its data on it.
    _state(host).luns[(host.cluster, _lun_id(volume))] = Lun(
        True, volume.size_gib, "NTFS", resource=name
    )
    return iter(())


def remove_resource(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    name = p["Name"]
    parked = _parked(host)
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
    _lun(host, parked[name]).resource = None
    return iter(())


def rename_resource(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    """``Rename-ClusterResource.ps1``: (Get-ClusterResource -Name $Name).Name = $NewName."""
    old, new = p["Name"], p["NewName"]
    parked = _parked(host)
    if new in parked or new in host.estate.volumes:
        raise PeerError(
            f"A cluster resource named '{new}' exists already.",
            "InvalidOperation",
            spec.fqid("ResourceNameExists"),
            new,
        )
    if old in parked:
        _lun(host, parked[old]).resource = new
        yield resource_object(new, "Physical Disk", AVAILABLE_STORAGE)
        return
    volume = host.estate.volumes.get(old)
    if volume is None or volume.cluster != host.cluster:
        raise _not_found(spec, old)
    params = {"volume": old, "name": new, "lun": volume.lun}
    host.apply(spec, "rename_csv", f"ClusterSharedVolume/{old}", params, old)
    mounts = _state(host).mounts
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
        _state(host).mounts.pop(volume, None)
    else:
        _state(host).mounts[volume] = new
    return iter(())


# --- the declarations -------------------------------------------------------------------------

S, SS, SW, OBJ, I32 = Param("str"), Param("strs"), Param("switch"), Param("obj"), Param("i32")
STORAGE_SPECS: dict[str, tuple[Spec, Any]] = {
    "Get-Disk": (Spec("Get-Disk", "Get-Disk", {"Number": I32}), get_disk),
    "Get-Partition": (
        Spec("Get-Partition", "Get-Partition", {"DiskNumber": I32, "PartitionNumber": I32}),
        get_partition,
    ),
    "Get-ClusterSharedVolume": (READ_SPECS["Get-ClusterSharedVolume"][0], get_csv),
    "Get-ClusterResource": (READ_SPECS["Get-ClusterResource"][0], get_resource),
    "Get-ClusterParameter": (READ_SPECS["Get-ClusterParameter"][0], get_parameter),
    "Initialize-Disk": (
        Spec(
            "Initialize-Disk",
            "Initialize-Disk",
            {
                "Number": Param("i32", True),
                "PartitionStyle": Param("choice", False, ("MBR", "GPT")),
            },
        ),
        initialize_disk,
    ),
    "New-Partition": (
        Spec(
            "New-Partition",
            "New-Partition",
            {"DiskNumber": Param("i32", True), "Size": Param("u64"), "UseMaximumSize": SW},
        ),
        new_partition,
    ),
    "Get-Volume": (
        Spec("Get-Volume", "Get-Volume", {"Partition": OBJ}, takes_input=True),
        get_volume,
    ),
    "Format-Volume": (
        Spec(
            "Format-Volume",
            "Format-Volume",
            {
                "Partition": OBJ,
                "FileSystem": Param("choice", True, ("NTFS", "ReFS")),
                "NewFileSystemLabel": S,
                "Force": SW,
            },
            takes_input=True,
        ),
        format_volume,
    ),
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

RENAME_SPEC = Spec(
    "Rename-ClusterResource",
    "System.Management.Automation.ScriptBlock",
    {"Name": Param("str", True), "NewName": Param("str", True)},
)


def script_entry(text: str) -> tuple[Spec, Any]:
    """A later release's host runs the provider's one constant script, no other text."""
    if text.startswith("[CmdletBinding()] param(") and SCRIPT_MARKER in text:
        return RENAME_SPEC, rename_resource
    raise PeerError(
        "This host runs cmdlets and the hyperv provider's constant scripts only: script text "
        "is refused.",
        "PermissionDenied",
        "ScriptsNotAllowed",
    )
