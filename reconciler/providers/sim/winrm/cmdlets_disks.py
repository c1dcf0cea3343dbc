r"""The peer's Storage module for presented LUNs: disks, partitions, volumes, formatting.

The world rules (``model.rules_storage``) know a LUN as presented (``free_luns``) or a CSV.
What a host goes through in between has no simulator action, so the peer keeps it per
cluster and LUN (``StorageState``, in memory, like ``loose_vhds``): initialized GPT, its data
partition, the file system, and its Physical Disk resource while the disk sits in Available
Storage; and each CSV's mount folder while it differs from the volume's name
(``cmdlets_storage`` has the cluster side).

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
from reconciler.providers.sim.winrm.cmdlets_read import READ_SPECS
from reconciler.providers.sim.winrm.world import CSV_PARTITION, CSV_ROOT, disk_numbers

if TYPE_CHECKING:
    from reconciler.providers.sim.winrm.cmdlets import Host

FREE_DISK_BASE = 100
RESERVED_BYTES = 128 * o.MIB  # the GPT reserved partition Initialize-Disk makes
VOLUME_TYPES = (
    "Microsoft.Management.Infrastructure.CimInstance#ROOT/Microsoft/Windows/Storage/MSFT_Volume",
    "Microsoft.Management.Infrastructure.CimInstance",
)


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


def storage_of(host: Host) -> StorageState:
    return host.peer.storage


def lun_state(host: Host, lun: str) -> Lun:
    return storage_of(host).luns.setdefault((host.cluster, lun), Lun())


def lun_id(volume: ClusterSharedVolume) -> str:
    return volume.lun or volume.name  # remove_csv gives an unnamed LUN back under the volume's


def folder(host: Host, volume: str) -> str:
    return storage_of(host).mounts.get(volume, volume)


def free_numbers(host: Host) -> dict[str, int]:
    node = host.this_node()
    return {lun: FREE_DISK_BASE + i for i, lun in enumerate(sorted(node.status.free_luns))}


def free_by_number(host: Host, spec: Spec, number: int) -> str:
    for lun, n in free_numbers(host).items():
        if n == number:
            return lun
    raise PeerError(
        f"No MSFT_Disk objects found with property 'Number' equal to '{number}'. "
        "Verify the value of the property and retry.",
        "ObjectNotFound",
        spec.fqid("CmdletizationQuery_NotFound_Number"),
        str(number),
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
        yield _with(disk, "Guid", f"{{{host.peer.guid('disk', lun_id(volume))}}}")
    for lun, number in free_numbers(host).items():
        if wanted is not None and number != wanted:
            continue
        found = True
        state = lun_state(host, lun)
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
        free_by_number(host, spec, wanted)  # the host's ObjectNotFound


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
    for lun, n in free_numbers(host).items():
        state = lun_state(host, lun)
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


# --- the Storage module: a presented LUN made ready -----------------------------------------


def initialize_disk(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    state = lun_state(host, free_by_number(host, spec, p["Number"]))
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
    lun = free_by_number(host, spec, number)
    state = lun_state(host, lun)
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
    return None, lun_state(host, free_by_number(host, spec, number))


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


# --- the declarations -------------------------------------------------------------------------

S, SS, SW, OBJ, I32 = Param("str"), Param("strs"), Param("switch"), Param("obj"), Param("i32")
DISK_SPECS: dict[str, tuple[Spec, Any]] = {
    "Get-Disk": (Spec("Get-Disk", "Get-Disk", {"Number": I32}), get_disk),
    "Get-Partition": (
        Spec("Get-Partition", "Get-Partition", {"DiskNumber": I32, "PartitionNumber": I32}),
        get_partition,
    ),
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
}
