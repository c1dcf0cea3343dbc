"""The write cmdlets of the peer: each becomes the simulator action it amounts to.

A write is applied through the simulator's own apply (the world rules), so what the hyperv
provider changes is what a plan with the sim provider on the same state directory sees. A
rule that refuses becomes the error record a host writes (InvalidOperation), an injected
migration fault a transient one (ResourceBusy).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from reconciler.model.records import Disk, SwitchConfig, VirtualMachine
from reconciler.model.rules import disk_to_params, switch_to_params
from reconciler.model.vlans import VlanListError, parse_vlan_list
from reconciler.providers.sim.winrm import objects as o
from reconciler.providers.sim.winrm.binding import Param, PeerError, Spec
from reconciler.providers.sim.winrm.cmdlets_read import FC, HV
from reconciler.providers.sim.winrm.world import (
    CSV_PARTITION,
    disk_numbers,
    find_disk,
    parse_vhd_path,
    vhd_path,
)

if TYPE_CHECKING:
    from reconciler.providers.sim.winrm.cmdlets import Host


def _switch(host: Host, spec: Spec, name: str) -> SwitchConfig:
    cfg = host.this_node().status.switches.get(name)
    if cfg is None:
        raise PeerError(
            f'{spec.name} : Hyper-V was unable to find a virtual switch with name "{name}".',
            "ObjectNotFound",
            spec.fqid("ObjectNotFound"),
            name,
        )
    return cfg


def _match_switch(host: Host, spec: Spec, name: str, cfg: SwitchConfig) -> None:
    host.apply(
        spec,
        "match_vswitch",
        f"Node/{host.node}",
        {"node": host.node, "switch": name, "config": switch_to_params(cfg)},
        name,
    )


def new_vmswitch(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    name = p["Name"]
    if name in host.this_node().status.switches:
        raise PeerError(
            f"New-VMSwitch : Failed while adding virtual Ethernet switch: a switch named "
            f"'{name}' already exists.",
            "ResourceExists",
            spec.fqid("ObjectExists"),
            name,
        )
    if "NetAdapterName" in p:
        kind = "external"
    elif "SwitchType" in p:
        kind = p["SwitchType"].lower()
    else:
        raise PeerError(
            "Parameter set cannot be resolved using the specified named parameters.",
            "InvalidArgument",
            spec.fqid("AmbiguousParameterSet"),
        )
    uplink = p.get("NetAdapterName")
    # An internal switch always has its host adapter; external ones as asked.
    management = kind == "internal" or bool(p.get("AllowManagementOS", False))
    cfg = SwitchConfig(kind, uplink, management, frozenset(), None)  # type: ignore[arg-type]
    _match_switch(host, spec, name, cfg)
    return iter(())


def set_vmswitch(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    name = p["Name"]
    cfg = _switch(host, spec, name)
    if "NetAdapterName" in p:
        cfg = replace(cfg, type="external", uplink_nic=p["NetAdapterName"])
    if "SwitchType" in p:
        cfg = replace(cfg, type=p["SwitchType"].lower(), uplink_nic=None)
    if "AllowManagementOS" in p:
        cfg = replace(cfg, management_os=bool(p["AllowManagementOS"]))
    _match_switch(host, spec, name, cfg)
    return iter(())


def set_vlan(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    if not p.get("ManagementOS"):
        raise PeerError(
            "This peer sets the VLANs of host (ManagementOS) adapters only.",
            "InvalidArgument",
            spec.fqid("InvalidParameter"),
        )
    name = p["VMNetworkAdapterName"]
    _switch(host, spec, name)
    if p.get("Untagged"):
        allowed, native = "", None
    elif p.get("Trunk"):
        if "AllowedVlanIdList" not in p or "NativeVlanId" not in p:
            raise PeerError(
                "Trunk mode needs -AllowedVlanIdList and -NativeVlanId.",
                "InvalidArgument",
                spec.fqid("InvalidParameter"),
            )
        try:
            allowed = ",".join(str(v) for v in sorted(parse_vlan_list(p["AllowedVlanIdList"])))
        except VlanListError as exc:
            raise PeerError(
                f"Cannot validate argument on parameter 'AllowedVlanIdList'. {exc}",
                "InvalidArgument",
                spec.fqid("InvalidParameter"),
                p["AllowedVlanIdList"],
            ) from None
        native = p["NativeVlanId"] or None
    else:
        raise PeerError(
            "Parameter set cannot be resolved: give -Trunk or -Untagged.",
            "InvalidArgument",
            spec.fqid("AmbiguousParameterSet"),
        )
    host.apply(
        spec,
        "set_vlan_trunk",
        f"Node/{host.node}",
        {"node": host.node, "switch": name, "allowed_vlans": allowed, "native_vlan": native},
        name,
    )
    return iter(())


QUORUM_SWITCHES = {
    "NodeMajority": ("node_majority", None),
    "NodeAndDiskMajority": ("node_and_disk_majority", "disk"),
    "NodeAndFileShareMajority": ("node_and_file_share_majority", "file_share"),
    "DiskOnly": ("disk_only", "disk"),
    "DiskWitness": ("node_and_disk_majority", "disk"),
    "FileShareWitness": ("node_and_file_share_majority", "file_share"),
}


def set_quorum(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    chosen = [k for k in (*QUORUM_SWITCHES, "CloudWitness", "NoWitness") if k in p]
    if len(chosen) != 1:
        raise PeerError(
            "Parameter set cannot be resolved using the specified named parameters.",
            "InvalidArgument",
            spec.fqid("AmbiguousParameterSet"),
        )
    key = chosen[0]
    witness: dict[str, str] = {}
    if key == "CloudWitness":
        if "AccountName" not in p or "AccessKey" not in p:
            raise PeerError(
                "-CloudWitness needs -AccountName and -AccessKey.",
                "InvalidArgument",
                spec.fqid("InvalidParameter"),
            )
        mode, witness = "cloud_witness", {"cloud_account": p["AccountName"]}
    elif key == "NoWitness":
        mode = "node_majority"
    else:
        mode, kind = QUORUM_SWITCHES[key]
        if kind is not None:
            value = p[key]
            if not isinstance(value, str) or not value:
                raise PeerError(
                    f"-{key} needs the witness resource or share.",
                    "InvalidArgument",
                    spec.fqid("InvalidParameter"),
                )
            witness = {kind: value}
    host.apply(
        spec, "update_quorum", f"Cluster/{host.cluster}", {"mode": mode, "witness": witness}, None
    )
    return iter(())


MIGRATION = {"Live": "live", "Quick": "quick", "Shutdown": "offline", "TurnOff": "offline"}


def move_vm_role(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    vm = host.estate.vms.get(p["Name"])
    if vm is None or vm.cluster != host.cluster or not vm.highly_available:
        raise PeerError(
            f"The cluster group '{p['Name']}' was not found.",
            "ObjectNotFound",
            spec.fqid("ClusterObjectNotFound"),
            p["Name"],
        )
    method = MIGRATION[p.get("MigrationType", "Live")]
    if method == "quick" and vm.power_state != "running":
        method = "offline"  # an off VM moves as its registration only
    host.apply(
        spec,
        "migrate_vm",
        f"VirtualMachine/{vm.name}",
        {"vm": vm.name, "destination": p["Node"], "method": method},
        vm.name,
    )
    yield o.ps_object(o.GROUP_TYPES, {"Name": vm.name, "OwnerNode": p["Node"]}, vm.name)


def suspend_node(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    name = p["Name"]
    host.apply(spec, "drain_node", f"Node/{name}", {"node": name}, name)
    return iter(())


def resume_node(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    name = p["Name"]
    host.apply(spec, "resume_node", f"Node/{name}", {"node": name}, name)
    return iter(())


def add_cluster_node(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    if not p.get("NoStorage"):
        raise PeerError(
            "This peer adds nodes with -NoStorage only (otherwise every shared disk is pulled "
            "into Available Storage).",
            "InvalidArgument",
            spec.fqid("InvalidParameter"),
        )
    name = p["Name"]
    host.apply(spec, "add_node", f"Node/{name}", {"node": name}, name)
    return iter(())


VHD_KIND = {"Dynamic": "dynamic", "Fixed": "fixed", "Differencing": "differencing"}


def new_vhd(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    path = p["Path"]
    where = parse_vhd_path(path)
    if where is None or where.volume not in host.estate.volumes:
        raise PeerError(
            f"Failed to create the virtual hard disk. The system cannot find the path "
            f"specified ('{path}').",
            "ObjectNotFound",
            spec.fqid("ObjectNotFound"),
            path,
        )
    if find_disk(host.estate, path) is not None or path.lower() in host.peer.loose_vhds:
        raise PeerError(
            f"Failed to create the virtual hard disk. The file '{path}' exists.",
            "ResourceExists",
            spec.fqid("ObjectExists"),
            path,
        )
    kinds = [k for k in VHD_KIND if p.get(k)]
    size = p["SizeBytes"]
    if len(kinds) > 1 or size % o.GIB:
        raise PeerError(
            "Give one of -Dynamic, -Fixed, -Differencing and a size in whole GiB.",
            "InvalidArgument",
            spec.fqid("InvalidParameter"),
        )
    disk = Disk(
        name=where.disk,
        controller="scsi",
        controller_number=0,
        slot=0,
        type=VHD_KIND[kinds[0]] if kinds else "dynamic",  # type: ignore[arg-type]
        format=where.format,  # type: ignore[arg-type]
        size_gib=size // o.GIB,
        volume=where.volume,
        parent=p.get("ParentPath"),
    )
    host.peer.loose_vhds[path.lower()] = disk
    from reconciler.providers.sim.winrm.cmdlets_read import vhd_object

    yield vhd_object(host, path, disk, False)


def _vm_here(host: Host, spec: Spec, name: str) -> Any:
    for vm in host.local_vms():
        if vm.name.lower() == name.lower():
            return vm
    raise PeerError(
        f'{spec.name} : Hyper-V was unable to find a virtual machine with name "{name}".',
        "InvalidArgument",
        spec.fqid("InvalidParameter"),
        name,
    )


def add_hdd(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    vm = _vm_here(host, spec, p["VMName"])
    path = p["Path"]
    loose = host.peer.loose_vhds.get(path.lower())
    if loose is None:
        raise PeerError(
            f"Failed to add device 'Virtual Hard Disk'. The system cannot find the file "
            f"specified ('{path}').",
            "ObjectNotFound",
            spec.fqid("ObjectNotFound"),
            path,
        )
    where = parse_vhd_path(path)
    if where is None or where.vm != vm.name:
        raise PeerError(
            f"This peer keeps each VM's disks in its own folder: {path} is not under {vm.name}.",
            "InvalidArgument",
            spec.fqid("InvalidParameter"),
            path,
        )
    disk = replace(
        loose,
        controller=p.get("ControllerType", "IDE").lower(),
        controller_number=p.get("ControllerNumber", 0),
        slot=p.get("ControllerLocation", 0),
    )
    host.apply(
        spec,
        "add_disk",
        f"VirtualMachine/{vm.name}",
        {"vm": vm.name, "disk": disk_to_params(disk)},
        vm.name,
    )
    host.peer.loose_vhds.pop(path.lower(), None)
    return iter(())


def disk_at(spec: Spec, vm: VirtualMachine, p: dict[str, Any]) -> Disk:
    """The disk at the -ControllerType/-ControllerNumber/-ControllerLocation a cmdlet names."""
    slot = (p["ControllerType"].lower(), p["ControllerNumber"], p["ControllerLocation"])
    disk = next((d for d in vm.disks if (d.controller, d.controller_number, d.slot) == slot), None)
    if disk is None:
        raise PeerError(
            f"No disk drive at {slot[0].upper()} {slot[1]}:{slot[2]} of {vm.name}.",
            "ObjectNotFound",
            spec.fqid("ObjectNotFound"),
            vm.name,
        )
    return disk


def remove_hdd(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    vm = _vm_here(host, spec, p["VMName"])
    disk = disk_at(spec, vm, p)
    host.apply(
        spec,
        "detach_disk",
        f"VirtualMachine/{vm.name}",
        {"vm": vm.name, "disk": disk.name, "delete_file": False},
        vm.name,
    )
    # The file stays on the volume (counted as other files) until Remove-Item deletes it.
    host.peer.loose_vhds[vhd_path(vm.name, disk).lower()] = disk
    return iter(())


def remove_item(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    path = p["LiteralPath"]
    disk = host.peer.loose_vhds.get(path.lower())
    if disk is None or find_disk(host.estate, path) is not None:
        raise PeerError(
            f"Cannot find path '{path}' because it does not exist or is in use.",
            "ObjectNotFound",
            "PathNotFound,Microsoft.PowerShell.Commands.RemoveItemCommand",
            path,
        )
    host.delete_file(disk)
    host.peer.loose_vhds.pop(path.lower(), None)
    return iter(())


def resize_vhd(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    found = find_disk(host.estate, p["Path"])
    if found is None or found[0].node != host.node:
        raise PeerError(
            f"Failed to resize the virtual disk. The system cannot find the file specified "
            f"('{p['Path']}').",
            "ObjectNotFound",
            spec.fqid("ObjectNotFound"),
            p["Path"],
        )
    vm, disk = found
    size = p["SizeBytes"]
    if size % o.GIB:
        raise PeerError(
            "This peer resizes to whole GiB.", "InvalidArgument", spec.fqid("InvalidParameter")
        )
    host.apply(
        spec,
        "extend_vhd",
        f"VirtualMachine/{vm.name}",
        {"vm": vm.name, "disk": disk.name, "size_gib": size // o.GIB},
        p["Path"],
    )
    return iter(())


def rescan(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    node = host.this_node()
    for volume in host.estate.volumes_of(node.cluster):
        host.peer.seen_lun_gib[(host.node, volume.name)] = volume.lun_size_gib
    return iter(())


def resize_partition(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    node = host.this_node()
    volume = next(
        (
            host.estate.volumes[name]
            for name, n in disk_numbers(host.estate, node.cluster).items()
            if n == p["DiskNumber"] and name in node.status.luns
        ),
        None,
    )
    if volume is None or p["PartitionNumber"] != CSV_PARTITION:
        raise PeerError(
            f"No MSFT_Partition objects found with property 'DiskNumber' equal to "
            f"'{p['DiskNumber']}'.",
            "ObjectNotFound",
            spec.fqid("CmdletizationQuery_NotFound"),
        )
    if volume.status.coordinator != host.node:
        raise PeerError(
            f"The CSV {volume.name} is owned by {volume.status.coordinator}: resize its "
            "partition on the coordinator node.",
            "InvalidOperation",
            spec.fqid("MI RESULT 4"),
            volume.name,
        )
    size = p["Size"]
    if size % o.GIB:
        raise PeerError(
            "Size Not Supported: this peer resizes to whole GiB.",
            "InvalidArgument",
            spec.fqid("MI RESULT 4097"),
        )
    seen = host.peer.seen_lun_gib.get((host.node, volume.name), volume.lun_size_gib)
    if size // o.GIB > seen:
        raise PeerError(
            "Size Not Supported: the size is beyond the disk's extent (rescan the disks?).",
            "InvalidArgument",
            spec.fqid("StorageWMI 4097"),
            volume.name,
        )
    host.apply(
        spec,
        "extend_volume",
        f"ClusterSharedVolume/{volume.name}",
        {"volume": volume.name, "size_gib": size // o.GIB},
        volume.name,
    )
    return iter(())


def resize_virtual_disk(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    name = p["FriendlyName"]
    node = host.this_node()
    volume = host.estate.volumes.get(name)
    if volume is None or volume.cluster != node.cluster or name not in node.status.luns:
        raise PeerError(
            f"No MSFT_VirtualDisk objects found with property 'FriendlyName' equal to '{name}'.",
            "ObjectNotFound",
            spec.fqid("CmdletizationQuery_NotFound_FriendlyName"),
            name,
        )
    size = p["Size"]
    if size % o.GIB:
        raise PeerError(
            "Size Not Supported: this peer resizes to whole GiB.",
            "InvalidArgument",
            spec.fqid("StorageWMI 4097"),
        )
    host.apply(
        spec,
        "extend_lun",
        f"ClusterSharedVolume/{name}",
        {"volume": name, "lun_size_gib": size // o.GIB},
        name,
    )
    return iter(())


def set_vm(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    vm = _vm_here(host, spec, p["Name"])
    params: dict[str, Any] = {"vm": vm.name}
    if "MemoryStartupBytes" in p:
        if p["MemoryStartupBytes"] % o.MIB:
            raise PeerError(
                "Memory must be a multiple of 2 MB.",
                "InvalidArgument",
                spec.fqid("InvalidParameter"),
            )
        params["memory_mib"] = p["MemoryStartupBytes"] // o.MIB
    if "ProcessorCount" in p:
        params["vcpus"] = p["ProcessorCount"]
    host.apply(spec, "set_vm", f"VirtualMachine/{vm.name}", params, vm.name)
    return iter(())


def update_vm_config(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    vm = host.estate.vms.get(p["Name"])
    if vm is None or vm.cluster != host.cluster or not vm.highly_available:
        raise PeerError(
            f"The cluster resource '{p['Name']}' was not found.",
            "ObjectNotFound",
            spec.fqid("ClusterObjectNotFound"),
            p["Name"],
        )
    return iter(())


def stop_vm(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    vm = _vm_here(host, spec, p["Name"])
    host.apply(spec, "stop_vm", f"VirtualMachine/{vm.name}", {"vm": vm.name}, vm.name)
    return iter(())


def start_vm(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    vm = _vm_here(host, spec, p["Name"])
    host.apply(spec, "start_vm", f"VirtualMachine/{vm.name}", {"vm": vm.name}, vm.name)
    return iter(())


def set_parameter(host: Host, spec: Spec, p: dict[str, Any], inputs: Any) -> Iterator[Any]:
    if not inputs or not any(o.CLUSTER_TYPES[0] in x.PSObject.type_names for x in inputs):
        raise PeerError(
            "This peer sets reconciler's cluster private properties only (pipe Get-Cluster).",
            "InvalidArgument",
            spec.fqid("InvalidParameter"),
        )
    name, value = p["Name"], p.get("Value")
    cluster = host.this_cluster()
    if name == "ReconcilerMonitoringMaintenance":
        kind = "begin_monitoring_maintenance" if value else "end_monitoring_maintenance"
        host.apply(spec, kind, f"Cluster/{cluster.name}", {}, name)
    elif name == "ReconcilerRollingUpdateDone" and isinstance(value, str) and value:
        nodes = sorted(cluster.status.updated_nodes)
        host.apply(
            spec,
            "complete_rolling_update",
            f"Cluster/{cluster.name}",
            {"cycle": value, "nodes": nodes},
            name,
        )
    else:
        raise PeerError(
            f"The property '{name}' cannot be set here.",
            "InvalidArgument",
            spec.fqid("InvalidParameter"),
            name,
        )
    return iter(())


S = Param("str", True)
SO = Param("str")
I32 = Param("i32")
SW = Param("switch")
CT = Param("choice", choices=("IDE", "SCSI"))

WRITE_SPECS: dict[str, tuple[Spec, Any]] = {
    "New-VMSwitch": (
        Spec(
            "New-VMSwitch",
            f"{HV}.NewVMSwitch",
            {
                "Name": S,
                "NetAdapterName": SO,
                "AllowManagementOS": Param("bool"),
                "SwitchType": Param("choice", choices=("Internal", "Private")),
            },
        ),
        new_vmswitch,
    ),
    "Set-VMSwitch": (
        Spec(
            "Set-VMSwitch",
            f"{HV}.SetVMSwitch",
            {
                "Name": S,
                "NetAdapterName": SO,
                "AllowManagementOS": Param("bool"),
                "SwitchType": Param("choice", choices=("Internal", "Private")),
            },
        ),
        set_vmswitch,
    ),
    "Set-VMNetworkAdapterVlan": (
        Spec(
            "Set-VMNetworkAdapterVlan",
            f"{HV}.SetVMNetworkAdapterVlan",
            {
                "ManagementOS": SW,
                "VMNetworkAdapterName": S,
                "Trunk": SW,
                "Untagged": SW,
                "AllowedVlanIdList": SO,
                "NativeVlanId": I32,
            },
        ),
        set_vlan,
    ),
    "Set-ClusterQuorum": (
        Spec(
            "Set-ClusterQuorum",
            f"{FC}.Commands.SetClusterQuorumCommand",
            {
                "NodeMajority": SW,
                "NodeAndDiskMajority": SO,
                "NodeAndFileShareMajority": SO,
                "DiskOnly": SO,
                "DiskWitness": SO,
                "FileShareWitness": SO,
                "CloudWitness": SW,
                "AccountName": SO,
                "AccessKey": SO,
                "NoWitness": SW,
            },
        ),
        set_quorum,
    ),
    "Move-ClusterVirtualMachineRole": (
        Spec(
            "Move-ClusterVirtualMachineRole",
            f"{FC}.Commands.MoveClusterVirtualMachineRoleCommand",
            {
                "Name": S,
                "Node": S,
                "Wait": I32,
                "MigrationType": Param("choice", choices=tuple(MIGRATION)),
            },
        ),
        move_vm_role,
    ),
    "Suspend-ClusterNode": (
        Spec(
            "Suspend-ClusterNode",
            f"{FC}.Commands.SuspendClusterNodeCommand",
            {"Name": S, "Drain": SW, "ForceDrain": SW, "Wait": SW},
        ),
        suspend_node,
    ),
    "Resume-ClusterNode": (
        Spec(
            "Resume-ClusterNode",
            f"{FC}.Commands.ResumeClusterNodeCommand",
            {"Name": S, "Failback": Param("choice", choices=("Immediate", "Policy", "NoFailback"))},
        ),
        resume_node,
    ),
    "Add-ClusterNode": (
        Spec(
            "Add-ClusterNode", f"{FC}.Commands.AddClusterNodeCommand", {"Name": S, "NoStorage": SW}
        ),
        add_cluster_node,
    ),
    "New-VHD": (
        Spec(
            "New-VHD",
            "Microsoft.Vhd.PowerShell.Cmdlets.NewVHD",
            {
                "Path": S,
                "SizeBytes": Param("u64", True),
                "Dynamic": SW,
                "Fixed": SW,
                "Differencing": SW,
                "ParentPath": SO,
            },
        ),
        new_vhd,
    ),
    "Add-VMHardDiskDrive": (
        Spec(
            "Add-VMHardDiskDrive",
            f"{HV}.AddVMHardDiskDrive",
            {
                "VMName": S,
                "ControllerType": CT,
                "ControllerNumber": I32,
                "ControllerLocation": I32,
                "Path": S,
            },
        ),
        add_hdd,
    ),
    "Remove-VMHardDiskDrive": (
        Spec(
            "Remove-VMHardDiskDrive",
            f"{HV}.RemoveVMHardDiskDrive",
            {
                "VMName": S,
                "ControllerType": Param("choice", True, ("IDE", "SCSI")),
                "ControllerNumber": Param("i32", True),
                "ControllerLocation": Param("i32", True),
            },
        ),
        remove_hdd,
    ),
    "Remove-Item": (
        Spec("Remove-Item", "Microsoft.PowerShell.Commands.RemoveItemCommand", {"LiteralPath": S}),
        remove_item,
    ),
    "Resize-VHD": (
        Spec(
            "Resize-VHD",
            "Microsoft.Vhd.PowerShell.Cmdlets.ResizeVHD",
            {"Path": S, "SizeBytes": Param("u64", True)},
        ),
        resize_vhd,
    ),
    "Update-HostStorageCache": (
        Spec("Update-HostStorageCache", "Update-HostStorageCache", {}),
        rescan,
    ),
    "Resize-Partition": (
        Spec(
            "Resize-Partition",
            "Resize-Partition",
            {
                "DiskNumber": Param("i32", True),
                "PartitionNumber": Param("i32", True),
                "Size": Param("u64", True),
            },
        ),
        resize_partition,
    ),
    "Resize-VirtualDisk": (
        Spec(
            "Resize-VirtualDisk",
            "Resize-VirtualDisk",
            {"FriendlyName": S, "Size": Param("u64", True)},
        ),
        resize_virtual_disk,
    ),
    "Set-VM": (
        Spec(
            "Set-VM",
            f"{HV}.SetVM",
            {"Name": S, "MemoryStartupBytes": Param("i64"), "ProcessorCount": Param("i64")},
        ),
        set_vm,
    ),
    "Update-ClusterVirtualMachineConfiguration": (
        Spec(
            "Update-ClusterVirtualMachineConfiguration",
            f"{FC}.Commands.UpdateClusterVirtualMachineConfigurationCommand",
            {"Name": S},
        ),
        update_vm_config,
    ),
    "Stop-VM": (
        Spec("Stop-VM", f"{HV}.StopVM", {"Name": S, "Force": SW, "TurnOff": SW}),
        stop_vm,
    ),
    "Start-VM": (Spec("Start-VM", f"{HV}.StartVM", {"Name": S}), start_vm),
    "Set-ClusterParameter": (
        Spec(
            "Set-ClusterParameter",
            f"{FC}.Commands.SetClusterParameterCommand",
            {"Name": S, "Value": Param("obj"), "Create": SW, "InputObject": Param("obj")},
            takes_input=True,
        ),
        set_parameter,
    ),
}
