"""The read cmdlets of the peer: Hyper-V, FailoverClusters, Storage, CIM, as one host answers."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from psrpcore.types import PSObject

from reconciler.model.compare import cluster_role
from reconciler.model.conditions import network_states
from reconciler.model.records import Cluster, Disk, Node, VirtualMachine
from reconciler.model.rules import volume_used_gib
from reconciler.providers.sim.winrm import objects as o
from reconciler.providers.sim.winrm.binding import Param, PeerError, Spec
from reconciler.providers.sim.winrm.world import (
    CSV_PARTITION,
    CSV_ROOT,
    OS_VERSIONS,
    disk_numbers,
    find_disk,
    vhd_path,
)

if TYPE_CHECKING:
    from reconciler.providers.sim.winrm.cmdlets import Host

HV = "Microsoft.HyperV.PowerShell.Commands"
FC = "Microsoft.FailoverClusters.PowerShell"

# Reconciler's own cluster private properties (Get-Cluster | Get-ClusterParameter).
CLUSTER_PARAMETERS = (
    "ReconcilerMonitoringMaintenance",
    "ReconcilerRollingUpdateDone",
    "ReconcilerRollingUpdateInProgress",
    "ReconcilerUpdatedNodes",
    "ReconcilerPendingNodes",
    "ReconcilerTestedNodes",
)
REGISTRY_KEY = "HKLM:\\SOFTWARE\\Reconciler"

STATE = {"running": o.VMState.Running, "off": o.VMState.Off, "saved": o.VMState.Saved}
START_ACTION = {"nothing": "Nothing", "start_if_running": "StartIfRunning", "start": "Start"}
STOP_ACTION = {"turn_off": "TurnOff", "save": "Save", "shut_down": "ShutDown"}
QUORUM_TYPE = {
    "recommended": o.ClusterQuorumType.Majority,
    "node_majority": o.ClusterQuorumType.NodeMajority,
    "node_and_disk_majority": o.ClusterQuorumType.NodeAndDiskMajority,
    "node_and_file_share_majority": o.ClusterQuorumType.NodeAndFileShareMajority,
    "disk_only": o.ClusterQuorumType.DiskOnly,
    "cloud_witness": o.ClusterQuorumType.CloudWitness,
}
# compare.cluster_role -> ClusterNetworkRole
STORED_ROLE = {
    "cluster_and_client": o.ClusterNetworkRole.ClusterAndClient,
    "cluster": o.ClusterNetworkRole.Cluster,
    "none": o.ClusterNetworkRole.none,
}


def _match(names: list[str] | None, value: str) -> bool:
    return names is None or any(fnmatch.fnmatchcase(value.lower(), n.lower()) for n in names)


def _not_found(spec: Spec, what: str, name: str, error_id: str) -> PeerError:
    return PeerError(
        f'{spec.name} : Hyper-V was unable to find a {what} with name "{name}".',
        "ObjectNotFound",
        spec.fqid(error_id),
        name,
    )


# --- Hyper-V -----------------------------------------------------------------------------------


def vm_object(host: Host, vm: VirtualMachine) -> PSObject:
    return o.ps_object(
        o.VM_TYPES,
        {
            "Name": vm.name,
            "VMName": vm.name,
            "ComputerName": vm.node,
            "State": STATE[vm.power_state],
            "MemoryStartup": o.i64(vm.memory_mib * o.MIB),
            # The bounds in full are Get-VMMemory's (with the buffer, which Get-VM lacks).
            "DynamicMemoryEnabled": vm.memory_model() is not None,
            "ProcessorCount": o.i64(vm.vcpus),
            "Generation": vm.generation,
            "IsClustered": vm.highly_available,
            # A host always has both; the world's None is the host's default.
            "AutomaticStartAction": o.StartAction[
                START_ACTION.get(vm.automatic_start_action or "", "StartIfRunning")
            ],
            "AutomaticStopAction": o.StopAction[
                STOP_ACTION.get(vm.automatic_stop_action or "", "Save")
            ],
            "Notes": "",
        },
        f"VirtualMachine (Name = '{vm.name}') [Id = '{host.vm_id(vm.name)}']",
    )


def get_vm(host: Host, spec: Spec, p: dict[str, Any], _in: list[Any] | None) -> Iterator[Any]:
    names = p.get("Name")
    found = [vm for vm in host.local_vms() if _match(names, vm.name)]
    for name in names or []:
        if "*" not in name and not any(vm.name.lower() == name.lower() for vm in found):
            host.error(_not_found(spec, "virtual machine", name, "InvalidParameter"))
    yield from (vm_object(host, vm) for vm in found)


def _vms_named(host: Host, spec: Spec, names: list[str] | None) -> list[VirtualMachine]:
    vms = [vm for vm in host.local_vms() if _match(names, vm.name)]
    for name in names or []:
        if "*" not in name and not any(vm.name.lower() == name.lower() for vm in vms):
            raise _not_found(spec, "virtual machine", name, "InvalidParameter")
    return vms


def hdd_object(vm: VirtualMachine, disk: Disk) -> PSObject:
    controller = o.ControllerType.SCSI if disk.controller == "scsi" else o.ControllerType.IDE
    name = (
        f"Hard Drive on {disk.controller.upper()} controller number {disk.controller_number} "
        f"at location {disk.slot}"
    )
    return o.ps_object(
        o.HDD_TYPES,
        {
            "Name": name,
            "VMName": vm.name,
            "ComputerName": vm.node,
            "ControllerType": controller,
            "ControllerNumber": disk.controller_number,
            "ControllerLocation": disk.slot,
            "Path": vhd_path(vm.name, disk),
        },
        f"HardDiskDrive (Name = '{name}') [VMName = '{vm.name}']",
    )


def get_hdd(host: Host, spec: Spec, p: dict[str, Any], _in: list[Any] | None) -> Iterator[Any]:
    for vm in _vms_named(host, spec, p.get("VMName")):
        yield from (hdd_object(vm, d) for d in vm.disks)


VHD_TYPE = {
    "fixed": o.VhdType.Fixed,
    "dynamic": o.VhdType.Dynamic,
    "differencing": o.VhdType.Differencing,
}


def vhd_object(host: Host, path: str, disk: Disk, attached: bool) -> PSObject:
    return o.ps_object(
        o.VHD_TYPES,
        {
            "ComputerName": host.node,
            "Path": path,
            "VhdFormat": o.VhdFormat.VHDX if disk.format == "vhdx" else o.VhdFormat.VHD,
            "VhdType": VHD_TYPE[disk.type],
            "Size": o.u64(disk.size_gib * o.GIB),
            "FileSize": o.u64(round(disk.used_gib() * o.GIB)),
            "ParentPath": disk.parent or "",
            "Attached": attached,
        },
    )


def get_vhd(host: Host, spec: Spec, p: dict[str, Any], _in: list[Any] | None) -> Iterator[Any]:
    for path in p["Path"]:
        found = find_disk(host.estate, path)
        if found is not None:
            vm, disk = found
            if vm.node != host.node and vm.power_state == "running":
                host.error(
                    PeerError(
                        f"Getting the mounted storage instance for the path '{path}' failed. "
                        "The process cannot access the file because it is being used by "
                        "another process.",
                        "ResourceBusy",
                        spec.fqid("ObjectInUse"),
                        path,
                    )
                )
                continue
            yield vhd_object(host, path, disk, True)
            continue
        loose = host.peer.loose_vhds.get(path.lower())
        if loose is not None:
            yield vhd_object(host, path, loose, False)
            continue
        host.error(
            PeerError(
                f"Getting the mounted storage instance for the path '{path}' failed. "
                "The system cannot find the file specified.",
                "ObjectNotFound",
                spec.fqid("ObjectNotFound"),
                path,
            )
        )


SWITCH_TYPE = {
    "external": o.VMSwitchType.External,
    "internal": o.VMSwitchType.Internal,
    "private": o.VMSwitchType.Private,
}


def _nic_description(node: Node, nic: str | None) -> str:
    for n in node.nics:
        if n.name == nic:
            return f"{nic} Ethernet Adapter"
    return f"{nic} Ethernet Adapter" if nic else ""


def get_vmswitch(host: Host, spec: Spec, p: dict[str, Any], _in: list[Any] | None) -> Iterator[Any]:
    node = host.this_node()
    name = p.get("Name")
    found = 0
    for sw_name, cfg in sorted(node.status.switches.items()):
        if not _match([name] if name else None, sw_name):
            continue
        found += 1
        yield o.ps_object(
            o.SWITCH_TYPES,
            {
                "Name": sw_name,
                "ComputerName": node.name,
                "SwitchType": SWITCH_TYPE[cfg.type],
                "AllowManagementOS": cfg.management_os,
                "NetAdapterInterfaceDescription": _nic_description(node, cfg.uplink_nic),
            },
            f"VMSwitch (Name = '{sw_name}')",
        )
    if name and "*" not in name and not found:
        host.error(_not_found(spec, "virtual switch", name, "InvalidParameter"))


def _adapter(
    vm: str | None, name: str, switch: str, node: str, mac: str | None = None, dynamic: str = ""
) -> PSObject:
    return o.ps_object(
        o.ADAPTER_TYPES,
        {
            "Name": name,
            "VMName": vm or "",
            "SwitchName": switch,
            "IsManagementOs": vm is None,
            "ComputerName": node,
            "MacAddress": mac or dynamic,
            "DynamicMacAddressEnabled": mac is None,
        },
        f"VMNetworkAdapter (Name = '{name}', VMName = '{vm or ''}')",
    )


def get_adapter(host: Host, spec: Spec, p: dict[str, Any], _in: list[Any] | None) -> Iterator[Any]:
    node = host.this_node()
    if p.get("ManagementOS"):
        for sw in sorted(node.status.switches):
            yield _adapter(None, sw, sw, node.name)
        return
    for vm in _vms_named(host, spec, p.get("VMName")):
        for nic in vm.nics:
            yield _adapter(
                vm.name, nic.name, nic.switch, node.name, nic.mac, _dynamic_mac(host, vm, nic.name)
            )


def _dynamic_mac(host: Host, vm: VirtualMachine, nic: str) -> str:
    """A stable address from Hyper-V's own range (00-15-5D), as a host assigns one."""
    return "00155D" + host.peer.guid("mac", f"{vm.name}/{nic}").replace("-", "")[:6].upper()


def _vlan(parent: PSObject, allowed: frozenset[int], native: int | None, access: int | None) -> Any:
    from reconciler.model.vlans import format_vlan_list

    if access is not None:
        mode = o.VlanMode.Access
    elif allowed:
        mode = o.VlanMode.Trunk
    else:
        mode = o.VlanMode.Untagged
    return o.ps_object(
        o.VLAN_TYPES,
        {
            "ParentAdapter": parent,
            "OperationMode": mode,
            "AccessVlanId": access or 0,
            "NativeVlanId": native or 0,
            "AllowedVlanIdList": o.ps_list(sorted(allowed)),
            "AllowedVlanIdListString": format_vlan_list(allowed),
        },
    )


def get_vlan(host: Host, spec: Spec, p: dict[str, Any], _in: list[Any] | None) -> Iterator[Any]:
    node = host.this_node()
    if p.get("ManagementOS"):
        for sw, cfg in sorted(node.status.switches.items()):
            parent = _adapter(None, sw, sw, node.name)
            yield _vlan(parent, cfg.allowed_vlans, cfg.native_vlan, None)
        return
    for vm in _vms_named(host, spec, p.get("VMName")):
        for nic in vm.nics:
            parent = _adapter(vm.name, nic.name, nic.switch, node.name, nic.mac)
            yield _vlan(parent, nic.trunk, nic.native_vlan, nic.vlan)


def get_migration_networks(
    host: Host, spec: Spec, p: dict[str, Any], _in: list[Any] | None
) -> Iterator[Any]:
    cluster = host.this_cluster()
    for net in cluster.networks:
        if "live_migration" in net.roles and net.subnet:
            yield o.ps_object(
                ("Microsoft.HyperV.PowerShell.VMMigrationNetwork",),
                {"Subnet": net.subnet, "Priority": o.u32(0)},
            )


# --- node facts: NICs, disks, CIM, registry, features --------------------------------------------


def get_netadapter(
    host: Host, spec: Spec, p: dict[str, Any], _in: list[Any] | None
) -> Iterator[Any]:
    node = host.this_node()
    for nic in node.nics:
        yield o.ps_object(
            o.NETADAPTER_TYPES,
            {
                "Name": nic.name,
                "InterfaceDescription": f"{nic.name} Ethernet Adapter",
                "Speed": o.u64(nic.speed_mbps * 1_000_000),
                "Status": "Up",
            },
        )


def get_vmq(host: Host, spec: Spec, p: dict[str, Any], _in: list[Any] | None) -> Iterator[Any]:
    for nic in host.this_node().nics:
        yield o.ps_object(
            (
                "Microsoft.Management.Infrastructure.CimInstance#ROOT/StandardCimv2/MSFT_NetAdapterVmqSettingData",
            ),
            {"Name": nic.name, "Enabled": nic.offloads.vmq},
        )


def get_advanced(host: Host, spec: Spec, p: dict[str, Any], _in: list[Any] | None) -> Iterator[Any]:
    keywords = [k.lower() for k in p.get("RegistryKeyword") or ["*JumboPacket"]]
    for nic in host.this_node().nics:
        if "*jumbopacket" in keywords:
            yield o.ps_object(
                (
                    "Microsoft.Management.Infrastructure.CimInstance#ROOT/StandardCimv2/MSFT_NetAdapterAdvancedPropertySettingData",
                ),
                {
                    "Name": nic.name,
                    "RegistryKeyword": "*JumboPacket",
                    "RegistryValue": o.ps_list(["9014" if nic.offloads.jumbo_frames else "1514"]),
                },
            )


def get_disk(host: Host, spec: Spec, p: dict[str, Any], _in: list[Any] | None) -> Iterator[Any]:
    node = host.this_node()
    numbers = disk_numbers(host.estate, node.cluster)
    for volume in host.estate.volumes_of(node.cluster):
        if volume.name not in node.status.luns:
            continue
        yield o.ps_object(
            o.DISK_TYPES,
            {
                "Number": o.u32(numbers[volume.name]),
                "FriendlyName": volume.name,
                "Size": o.u64(volume.lun_size_gib * o.GIB),
                "IsClustered": True,
                "PartitionStyle": "GPT",
            },
        )


def _volume_by_disk(host: Host, spec: Spec, number: int, partition: int | None) -> Any:
    node = host.this_node()
    for name, n in disk_numbers(host.estate, node.cluster).items():
        if n == number and name in node.status.luns:
            if partition is not None and partition != CSV_PARTITION:
                break
            return host.estate.volumes[name]
    raise PeerError(
        f"No MSFT_Partition objects found with property 'DiskNumber' equal to '{number}'. "
        "Verify the value of the property and retry.",
        "ObjectNotFound",
        spec.fqid("CmdletizationQuery_NotFound_DiskNumber"),
        str(number),
    )


def get_partition(
    host: Host, spec: Spec, p: dict[str, Any], _in: list[Any] | None
) -> Iterator[Any]:
    node = host.this_node()
    for name, number in disk_numbers(host.estate, node.cluster).items():
        if name not in node.status.luns:
            continue
        if "DiskNumber" in p and p["DiskNumber"] != number:
            continue
        volume = host.estate.volumes[name]
        yield o.ps_object(
            o.PARTITION_TYPES,
            {
                "DiskNumber": o.u32(number),
                "PartitionNumber": o.u32(CSV_PARTITION),
                "Size": o.u64(volume.size_gib * o.GIB),
                "AccessPaths": o.ps_list([f"{CSV_ROOT}\\{name}\\"]),
            },
        )


def get_supported_size(
    host: Host, spec: Spec, p: dict[str, Any], _in: list[Any] | None
) -> Iterator[Any]:
    volume = _volume_by_disk(host, spec, p["DiskNumber"], p["PartitionNumber"])
    # What the partition may grow to is what the LUN was last seen as (after a rescan).
    lun = host.peer.seen_lun_gib.get((host.node, volume.name), volume.lun_size_gib)
    yield o.ps_object(
        o.SUPPORTED_SIZE_TYPES,
        {"SizeMin": o.u64(volume.size_gib * o.GIB), "SizeMax": o.u64(lun * o.GIB)},
    )


def get_cim(host: Host, spec: Spec, p: dict[str, Any], _in: list[Any] | None) -> Iterator[Any]:
    cls = p.get("ClassName") or p.get("Class") or ""
    wmi = spec.name == "Get-WmiObject"
    types = o.wmi_types(cls) if wmi else o.cim_types(cls)
    node = host.this_node()
    hw = node.hardware
    if cls.lower() == "win32_operatingsystem":
        # A host answers WMI before it joins, and in no cluster at all.
        version, caption = OS_VERSIONS[host.peer.release_of(node)]
        yield o.ps_object(
            types,
            {
                "Caption": caption,
                "Version": version,
                "BuildNumber": version.rsplit(".", 1)[-1],
                "CSName": node.name,
            },
        )
        return
    if cls.lower() == "win32_computersystem":
        yield o.ps_object(
            types,
            {
                "Name": node.name,
                "Model": hw.model,
                "TotalPhysicalMemory": o.u64(hw.memory_mib * o.MIB),
                "Domain": "example.test",
            },
        )
    elif cls.lower() == "win32_processor":
        count, _, name = hw.cpu.partition("x ")
        sockets = int(count) if count.isdigit() and name else 1
        for i in range(sockets):
            yield o.ps_object(
                types,
                {
                    "DeviceID": f"CPU{i}",
                    "Name": name if count.isdigit() and name else hw.cpu,
                    "SecondLevelAddressTranslationExtensions": hw.slat,
                },
            )
    elif cls.lower() == "win32_bios":
        yield o.ps_object(types, {"SMBIOSBIOSVersion": hw.firmware})
    else:
        raise PeerError(
            f'Invalid class "{cls}"',
            "MetadataError",
            spec.fqid("HRESULT 0x80041010"),
            cls,
        )


def get_item_property(
    host: Host, spec: Spec, p: dict[str, Any], _in: list[Any] | None
) -> Iterator[Any]:
    if p["Path"].lower() != REGISTRY_KEY.lower():
        raise PeerError(
            f"Cannot find path '{p['Path']}' because it does not exist.",
            "ObjectNotFound",
            "PathNotFound,Microsoft.PowerShell.Commands.GetItemPropertyCommand",
            p["Path"],
        )
    hw = host.this_node().hardware
    yield o.ps_object(
        o.REGISTRY_TYPES,
        {"DriverSet": hw.driver_set, "PatchLevel": hw.patch_level, "PSPath": REGISTRY_KEY},
    )


def get_feature(host: Host, spec: Spec, p: dict[str, Any], _in: list[Any] | None) -> Iterator[Any]:
    node = host.this_node()
    for name in p.get("Name") or ["Hyper-V", "Failover-Clustering"]:
        yield o.ps_object(
            o.FEATURE_TYPES,
            {
                "Name": name,
                "Installed": node.status.roles_installed,
                "InstallState": ("Installed" if node.status.roles_installed else "Available"),
            },
        )


# --- FailoverClusters --------------------------------------------------------------------------


def cluster_object(cluster: Cluster) -> PSObject:
    return o.ps_object(
        o.CLUSTER_TYPES,
        {"Name": cluster.name, "Domain": "example.test", "SharedVolumesRoot": CSV_ROOT},
        cluster.name,
    )


def get_cluster(host: Host, spec: Spec, p: dict[str, Any], _in: list[Any] | None) -> Iterator[Any]:
    yield cluster_object(host.this_cluster())


def node_state(host: Host, node: Node) -> Any:
    if node.status.state != "up":
        return o.ClusterNodeState.Down
    return o.ClusterNodeState.Paused if node.maintenance else o.ClusterNodeState.Up


def node_object(host: Host, node: Node) -> PSObject:
    return o.ps_object(
        o.NODE_TYPES,
        {
            "Name": node.name,
            "State": node_state(host, node),
            "DrainStatus": "Completed" if node.maintenance else "NotInitiated",
            "Cluster": node.cluster,
        },
        node.name,
    )


def get_cluster_node(
    host: Host, spec: Spec, p: dict[str, Any], _in: list[Any] | None
) -> Iterator[Any]:
    cluster = host.this_cluster()
    names = p.get("Name")
    for name in cluster.nodes:
        if _match(names, name) and name in host.estate.nodes:
            yield node_object(host, host.estate.nodes[name])
    for name in names or []:
        if "*" not in name and name not in cluster.nodes:
            raise PeerError(
                f"The cluster node '{name}' was not found.",
                "ObjectNotFound",
                spec.fqid(
                    ["Get-ClusterNode", "Microsoft.FailoverClusters.PowerShell.GetNodeCommand"][0]
                ),
                name,
            )


def _witness_resource(cluster: Cluster) -> tuple[str, str] | None:
    w = cluster.quorum.witness
    if w.disk:
        return w.disk, "Physical Disk"
    if w.file_share:
        return "File Share Witness", "File Share Witness"
    if w.cloud_account:
        return "Cloud Witness", "Cloud Witness"
    return None


def resources(host: Host) -> list[tuple[str, str, str]]:
    """(name, resource type, owner group) of the cluster's resources the provider reads."""
    cluster = host.this_cluster()
    out = [("Cluster Name", "Network Name", "Cluster Group")]
    witness = _witness_resource(cluster)
    if witness is not None:
        out.append((witness[0], witness[1], "Cluster Group"))
    for vm in host.estate.vms.values():
        if vm.cluster == cluster.name and vm.highly_available:
            out.append((f"Virtual Machine {vm.name}", "Virtual Machine", vm.name))
    return out


def resource_object(name: str, kind: str, group: str) -> PSObject:
    return o.ps_object(
        o.RESOURCE_TYPES,
        {
            "Name": name,
            "ResourceType": kind,
            "OwnerGroup": group,
            "State": o.ClusterResourceState.Online,
        },
        name,
    )


def get_resource(host: Host, spec: Spec, p: dict[str, Any], _in: list[Any] | None) -> Iterator[Any]:
    names = p.get("Name")
    found = [r for r in resources(host) if _match(names, r[0])]
    for name in names or []:
        if "*" not in name and not any(r[0].lower() == name.lower() for r in found):
            raise PeerError(
                f"The cluster resource '{name}' was not found.",
                "ObjectNotFound",
                spec.fqid("ClusterObjectNotFound"),
                name,
            )
    yield from (resource_object(*r) for r in found)


def get_quorum(host: Host, spec: Spec, p: dict[str, Any], _in: list[Any] | None) -> Iterator[Any]:
    cluster = host.this_cluster()
    witness = _witness_resource(cluster)
    yield o.ps_object(
        o.QUORUM_TYPES,
        {
            "Cluster": cluster.name,
            "QuorumResource": witness[0] if witness else "",
            "QuorumType": QUORUM_TYPE[cluster.quorum.mode],
        },
    )


def _parameter(owner: str, name: str, value: Any) -> PSObject:
    return o.ps_object(
        o.PARAMETER_TYPES,
        {
            "ClusterObject": owner,
            "Name": name,
            "IsReadOnly": False,
            "ParameterType": ("UInt32" if isinstance(value, int) else "String"),
            "Value": value,
        },
    )


def cluster_parameters(cluster: Cluster) -> dict[str, Any]:
    s = cluster.status
    return {
        "ReconcilerMonitoringMaintenance": o.u32(1 if s.monitoring_maintenance else 0),
        "ReconcilerRollingUpdateDone": s.rolling_update_done or "",
        "ReconcilerRollingUpdateInProgress": s.rolling_update_in_progress or "",
        "ReconcilerUpdatedNodes": ",".join(sorted(s.updated_nodes)),
        "ReconcilerPendingNodes": ",".join(sorted(s.pending_nodes)),
        "ReconcilerTestedNodes": ",".join(sorted(s.tested_nodes)),
    }


def get_parameter(
    host: Host, spec: Spec, p: dict[str, Any], inputs: list[Any] | None
) -> Iterator[Any]:
    cluster = host.this_cluster()
    names = p.get("Name")
    for item in inputs or [cluster_object(cluster)]:
        types = list(item.PSObject.type_names)
        owner = str(item["Name"])
        values: dict[str, Any] = {}
        if o.CLUSTER_TYPES[0] in types:
            values = cluster_parameters(cluster)
        elif o.RESOURCE_TYPES[0] in types:
            w = cluster.quorum.witness
            kind = str(item["ResourceType"])
            if kind == "File Share Witness":
                values = {"SharePath": w.file_share or ""}
            elif kind == "Cloud Witness":
                values = {"AccountName": w.cloud_account or "", "EndpointInfo": "core.windows.net"}
            elif kind == "Physical Disk":
                values = {"DiskIdType": o.u32(0), "MaintenanceMode": o.u32(0)}
        for name, value in values.items():
            if _match(names, name):
                yield _parameter(owner, name, value)


def _csv_object(host: Host, name: str) -> PSObject:
    volume = host.estate.volumes[name]
    used = volume_used_gib(host.estate, name)
    partition = o.ps_object(
        o.PARTITION_INFO_TYPES,
        {
            "Name": f"\\\\?\\Volume{{{host.peer.guid('volume', name)}}}\\",
            "Size": o.u64(volume.size_gib * o.GIB),
            "UsedSpace": o.u64(round(used * o.GIB)),
            "FreeSpace": o.u64(max(0, round((volume.size_gib - used) * o.GIB))),
            "FileSystem": "CSVFS",
        },
    )
    info = o.ps_object(
        o.CSV_INFO_TYPES,
        {
            "FriendlyVolumeName": f"{CSV_ROOT}\\{name}",
            "Partition": partition,
            "PartitionNumber": o.u32(CSV_PARTITION),
            "MaintenanceMode": False,
        },
    )
    return o.ps_object(
        o.CSV_TYPES,
        {
            "Name": name,
            "OwnerNode": volume.status.coordinator or "",
            "State": o.ClusterResourceState.Online,
            "SharedVolumeInfo": o.ps_list([info]),
        },
        name,
    )


def get_csv(host: Host, spec: Spec, p: dict[str, Any], _in: list[Any] | None) -> Iterator[Any]:
    cluster = host.this_cluster()
    names = p.get("Name")
    for volume in host.estate.volumes_of(cluster.name):
        if _match(names, volume.name):
            yield _csv_object(host, volume.name)


def get_network(host: Host, spec: Spec, p: dict[str, Any], _in: list[Any] | None) -> Iterator[Any]:
    cluster = host.this_cluster()
    states = {name: how for name, (how, _) in network_states(host.estate, cluster).items()}
    for net in cluster.networks:
        address, _, bits = (net.subnet or "").partition("/")
        yield o.ps_object(
            o.NETWORK_TYPES,
            {
                "Name": net.name,
                # The role Windows stores for all the network carries, not its first.
                "Role": STORED_ROLE[cluster_role(net.roles)],
                "Address": address,
                "AddressPrefixLength": int(bits) if bits else 0,
                "State": states.get(net.name, "Up"),
            },
            net.name,
        )


def get_netif(host: Host, spec: Spec, p: dict[str, Any], _in: list[Any] | None) -> Iterator[Any]:
    cluster = host.this_cluster()
    for name in cluster.nodes:
        node = host.estate.nodes.get(name)
        if node is None:
            continue
        for nic in node.nics:
            if nic.network:
                yield o.ps_object(
                    o.NETIF_TYPES,
                    {
                        "Name": f"{name} - {nic.name}",
                        "Node": name,
                        "Network": nic.network,
                        "Adapter": nic.name,
                        "State": _netif_state(node, nic.network),
                    },
                )


def _netif_state(node: Node, network: str) -> str:
    if node.status.state != "up":
        return "Unavailable"
    return "Failed" if network in node.status.networks_down else "Up"


# Which cause Get-ClusterSharedVolumeState reports under which heading.
BLOCK_REASONS = frozenset({"NoDiskConnectivity", "StorageSpaceNotAttached"})


def get_csv_state(
    host: Host, spec: Spec, p: dict[str, Any], _in: list[Any] | None
) -> Iterator[Any]:
    """One row per volume and member node: direct, or redirected and why (WS2012 R2 on)."""
    cluster = host.this_cluster()
    names = p.get("Name")
    for volume in host.estate.volumes_of(cluster.name):
        if not _match(names, volume.name):
            continue
        for node in cluster.nodes:
            reason = volume.status.redirected.get(node)
            block = reason in BLOCK_REASONS
            state = "Direct" if reason is None else "FileSystemRedirected"
            yield o.ps_object(
                o.CSV_STATE_TYPES,
                {
                    "Name": volume.name,
                    "Node": node,
                    "VolumeFriendlyName": volume.name,
                    "StateInfo": "BlockRedirected" if block else state,
                    "FileSystemRedirectedIOReason": (
                        reason if reason and not block else "NotFileSystemRedirected"
                    ),
                    "BlockRedirectedIOReason": reason if block else "NotBlockRedirected",
                },
            )


def get_group(host: Host, spec: Spec, p: dict[str, Any], _in: list[Any] | None) -> Iterator[Any]:
    cluster = host.this_cluster()
    names = p.get("Name")
    for vm in sorted(host.estate.vms.values(), key=lambda v: v.name):
        if vm.cluster != cluster.name or not vm.highly_available or not _match(names, vm.name):
            continue
        yield o.ps_object(
            o.GROUP_TYPES,
            {
                "Name": vm.name,
                "OwnerNode": vm.node or "",
                "GroupType": o.GroupType.VirtualMachine,
                "State": o.ClusterGroupState.Failed
                if vm.status.failed
                else o.ClusterGroupState.Online
                if vm.power_state == "running"
                else o.ClusterGroupState.Offline,
                "AntiAffinityClassNames": o.ps_list(
                    [vm.anti_affinity_group] if vm.anti_affinity_group else []
                ),
            },
            vm.name,
        )


# --- the declarations -------------------------------------------------------------------------

S = Param("str")
SS = Param("strs")
SW = Param("switch")

READ_SPECS: dict[str, tuple[Spec, Any]] = {
    "Get-VM": (Spec("Get-VM", f"{HV}.GetVM", {"Name": SS, "ComputerName": SS}, ("Name",)), get_vm),
    "Get-VMHardDiskDrive": (
        Spec("Get-VMHardDiskDrive", f"{HV}.GetVMHardDiskDrive", {"VMName": SS}, ("VMName",)),
        get_hdd,
    ),
    "Get-VHD": (
        Spec(
            "Get-VHD",
            "Microsoft.Vhd.PowerShell.Cmdlets.GetVHD",
            {"Path": Param("strs", True)},
            ("Path",),
        ),
        get_vhd,
    ),
    "Get-VMSwitch": (
        Spec("Get-VMSwitch", f"{HV}.GetVMSwitch", {"Name": S}, ("Name",)),
        get_vmswitch,
    ),
    "Get-VMNetworkAdapter": (
        Spec(
            "Get-VMNetworkAdapter", f"{HV}.GetVMNetworkAdapter", {"VMName": SS, "ManagementOS": SW}
        ),
        get_adapter,
    ),
    "Get-VMNetworkAdapterVlan": (
        Spec(
            "Get-VMNetworkAdapterVlan",
            f"{HV}.GetVMNetworkAdapterVlan",
            {"VMName": SS, "ManagementOS": SW},
        ),
        get_vlan,
    ),
    "Get-VMMigrationNetwork": (
        Spec("Get-VMMigrationNetwork", f"{HV}.GetVMMigrationNetwork", {}),
        get_migration_networks,
    ),
    "Get-NetAdapter": (
        Spec("Get-NetAdapter", "Get-NetAdapter", {"Name": SS}),
        get_netadapter,
    ),
    "Get-NetAdapterVmq": (Spec("Get-NetAdapterVmq", "Get-NetAdapterVmq", {"Name": SS}), get_vmq),
    "Get-NetAdapterAdvancedProperty": (
        Spec(
            "Get-NetAdapterAdvancedProperty",
            "Get-NetAdapterAdvancedProperty",
            {"Name": SS, "RegistryKeyword": SS},
        ),
        get_advanced,
    ),
    "Get-Disk": (Spec("Get-Disk", "Get-Disk", {"Number": Param("i32")}), get_disk),
    "Get-Partition": (
        Spec("Get-Partition", "Get-Partition", {"DiskNumber": Param("i32")}),
        get_partition,
    ),
    "Get-PartitionSupportedSize": (
        Spec(
            "Get-PartitionSupportedSize",
            "Get-PartitionSupportedSize",
            {"DiskNumber": Param("i32", True), "PartitionNumber": Param("i32", True)},
        ),
        get_supported_size,
    ),
    "Get-CimInstance": (
        Spec(
            "Get-CimInstance",
            "Microsoft.Management.Infrastructure.CimCmdlets.GetCimInstanceCommand",
            {"ClassName": Param("str", True)},
            ("ClassName",),
        ),
        get_cim,
    ),
    "Get-WmiObject": (
        Spec(
            "Get-WmiObject",
            "Microsoft.PowerShell.Commands.GetWmiObjectCommand",
            {"Class": Param("str", True)},
            ("Class",),
        ),
        get_cim,
    ),
    "Get-ItemProperty": (
        Spec(
            "Get-ItemProperty",
            "Microsoft.PowerShell.Commands.GetItemPropertyCommand",
            {"Path": Param("str", True)},
            ("Path",),
        ),
        get_item_property,
    ),
    "Get-WindowsFeature": (
        Spec(
            "Get-WindowsFeature",
            "Microsoft.Windows.ServerManager.Commands.GetWindowsFeatureCommand",
            {"Name": SS},
            ("Name",),
        ),
        get_feature,
    ),
    "Get-Cluster": (Spec("Get-Cluster", f"{FC}.Commands.GetClusterCommand", {}), get_cluster),
    "Get-ClusterNode": (
        Spec("Get-ClusterNode", f"{FC}.Commands.GetNodeCommand", {"Name": SS}, ("Name",)),
        get_cluster_node,
    ),
    "Get-ClusterQuorum": (
        Spec("Get-ClusterQuorum", f"{FC}.Commands.GetClusterQuorumCommand", {}),
        get_quorum,
    ),
    "Get-ClusterResource": (
        Spec("Get-ClusterResource", f"{FC}.Commands.GetResourceCommand", {"Name": SS}, ("Name",)),
        get_resource,
    ),
    "Get-ClusterParameter": (
        Spec(
            "Get-ClusterParameter",
            f"{FC}.Commands.GetClusterParameterCommand",
            {"Name": SS, "InputObject": Param("obj")},
            ("Name",),
            takes_input=True,
        ),
        get_parameter,
    ),
    "Get-ClusterSharedVolume": (
        Spec(
            "Get-ClusterSharedVolume",
            f"{FC}.Commands.GetClusterSharedVolumeCommand",
            {"Name": SS},
            ("Name",),
        ),
        get_csv,
    ),
    "Get-ClusterSharedVolumeState": (
        Spec(
            "Get-ClusterSharedVolumeState",
            f"{FC}.Commands.GetClusterSharedVolumeStateCommand",
            {"Name": SS},
            ("Name",),
        ),
        get_csv_state,
    ),
    "Get-ClusterNetwork": (
        Spec("Get-ClusterNetwork", f"{FC}.Commands.GetClusterNetworkCommand", {}),
        get_network,
    ),
    "Get-ClusterNetworkInterface": (
        Spec("Get-ClusterNetworkInterface", f"{FC}.Commands.GetClusterNetworkInterfaceCommand", {}),
        get_netif,
    ),
    "Get-ClusterGroup": (
        Spec("Get-ClusterGroup", f"{FC}.Commands.GetClusterGroupCommand", {"Name": SS}, ("Name",)),
        get_group,
    ),
}
