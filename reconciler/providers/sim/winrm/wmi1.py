"""A Windows Server 2008 R2 host's WMI: ``root\\virtualization`` (v1) and the cimv2 classes
PowerShell 2.0 reaches with ``Get-WmiObject``, answered from the simulator's world.

Property names and wire types are those of the v1 classes (EnabledState and ResourceType
UInt16, VirtualQuantity UInt64, TrunkedVLANList UInt16[] ...). Settings are tied to their
virtual machine the way v1 ties them: by the VM's GUID in ``InstanceID``
(``Microsoft:<guid>\\...``) and by WMI object paths in ``Parent`` and ``Connection``.
Conventions of this peer that a real host does not promise (UNVERIFIED on a host): a switch's
uplink port is named after the physical adapter it binds, its host port ``InternalPort``,
and a port's VLAN settings carry the port's name in their InstanceID.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from psrpcore.types import PSObject, PSUInt16

from reconciler.model.records import Disk, VirtualMachine
from reconciler.providers.sim.winrm import objects as o
from reconciler.providers.sim.winrm.binding import Param, PeerError, Spec
from reconciler.providers.sim.winrm.cmdlets_read import get_cim
from reconciler.providers.sim.winrm.world import disk_numbers, vhd_path

if TYPE_CHECKING:
    from reconciler.providers.sim.winrm.cmdlets import Host

NAMESPACE = "root\\virtualization"
CIMV2 = "root\\cimv2"
# EnabledState of Msvm_ComputerSystem (CIM_EnabledLogicalElement, Hyper-V v1 values)
ENABLED_STATE = {"running": 2, "off": 3, "saved": 32769}
# ResourceType values of Msvm_ResourceAllocationSettingData
IDE_CONTROLLER, SCSI_CONTROLLER, DISK_IMAGE, DISK_DRIVE, ETHERNET = 5, 6, 21, 22, 10
MEMORY_SUFFIX = "4764334d-e001-4176-82ee-5594ec9b530e"
PROCESSOR_SUFFIX = "b637f346-6a0e-4dec-af52-bd70cb80a21d"
IDE_SUFFIX = "83f8638b-8dca-4152-9eda-2ca8b33039b4"
SCSI_SUFFIX = "d422512d-2bf2-4752-809d-7b82b5fcb1b4"


def types(cls: str, namespace: str = NAMESPACE) -> tuple[str, ...]:
    return (
        f"System.Management.ManagementObject#{namespace}\\{cls}",
        "System.Management.ManagementObject",
        "System.Management.ManagementBaseObject",
    )


def u16(n: int) -> PSUInt16:
    return PSUInt16(n)


def wmi_path(node: str, cls: str, key: str) -> str:
    return f"\\\\{node.upper()}\\{NAMESPACE}:{cls}.{key}"


def rasd_path(node: str, instance_id: str) -> str:
    escaped = instance_id.replace("\\", "\\\\")
    return wmi_path(node, "Msvm_ResourceAllocationSettingData", f'InstanceID="{escaped}"')


def port_path(node: str, switch_id: str, port_id: str) -> str:
    return wmi_path(
        node,
        "Msvm_SwitchPort",
        f'CreationClassName="Msvm_SwitchPort",Name="{port_id}",'
        f'SystemCreationClassName="Msvm_VirtualSwitch",SystemName="{switch_id}"',
    )


def obj(cls: str, props: dict[str, Any], namespace: str = NAMESPACE) -> PSObject:
    return o.ps_object(types(cls, namespace), {"__CLASS": cls, "__NAMESPACE": namespace, **props})


# --- the classes -------------------------------------------------------------------------------


def _computer_systems(host: Host) -> Iterator[PSObject]:
    node = host.this_node()
    yield obj(
        "Msvm_ComputerSystem",
        {
            "Name": node.name.upper(),
            "ElementName": node.name.upper(),
            "Caption": "Hosting Computer System",
            "EnabledState": u16(2),
        },
    )
    for vm in host.local_vms():
        yield obj(
            "Msvm_ComputerSystem",
            {
                "Name": host.vm_id(vm.name).upper(),
                "ElementName": vm.name,
                "Caption": "Virtual Machine",
                "Description": "Microsoft Virtual Machine",
                "EnabledState": u16(ENABLED_STATE[vm.power_state]),
                "HealthState": u16(5),
            },
        )


def _prefix(host: Host, vm: VirtualMachine) -> str:
    return f"Microsoft:{host.vm_id(vm.name).upper()}"


def _settings(host: Host) -> Iterator[PSObject]:
    for vm in host.local_vms():
        yield obj(
            "Msvm_VirtualSystemSettingData",
            {
                "InstanceID": _prefix(host, vm),
                "SystemName": host.vm_id(vm.name).upper(),
                "ElementName": vm.name,
                "SettingType": u16(3),  # the current settings, not a snapshot
            },
        )


def _memory(host: Host) -> Iterator[PSObject]:
    for vm in host.local_vms():
        yield obj(
            "Msvm_MemorySettingData",
            {
                "InstanceID": f"{_prefix(host, vm)}\\{MEMORY_SUFFIX}",
                "ElementName": "Memory",
                "AllocationUnits": "MB",
                "VirtualQuantity": o.u64(vm.memory_mib),
                "Reservation": o.u64(vm.memory_mib),
                "Limit": o.u64(vm.memory_mib),
                "DynamicMemoryEnabled": False,
            },
        )


def _processors(host: Host) -> Iterator[PSObject]:
    for vm in host.local_vms():
        yield obj(
            "Msvm_ProcessorSettingData",
            {
                "InstanceID": f"{_prefix(host, vm)}\\{PROCESSOR_SUFFIX}\\0",
                "ElementName": "Processor",
                "VirtualQuantity": o.u64(vm.vcpus),
                "Limit": o.u64(100000),
                "Weight": o.u64(100),
            },
        )


def controller_id(prefix: str, controller: str, number: int) -> str:
    suffix = IDE_SUFFIX if controller == "ide" else SCSI_SUFFIX
    return f"{prefix}\\{suffix}\\{number}"


def disk_ids(prefix: str, disk: Disk) -> tuple[str, str]:
    drive = f"{prefix}\\{disk.controller}{disk.controller_number}-{disk.slot}\\D"
    return drive, f"{prefix}\\{disk.controller}{disk.controller_number}-{disk.slot}\\L"


def _rasd(host: Host) -> Iterator[PSObject]:
    node = host.node
    for vm in host.local_vms():
        prefix = _prefix(host, vm)
        scsi = sorted({d.controller_number for d in vm.disks if d.controller == "scsi"} | {0})
        for number in (0, 1):
            yield obj(
                "Msvm_ResourceAllocationSettingData",
                {
                    "InstanceID": controller_id(prefix, "ide", number),
                    "ElementName": f"IDE Controller {number}",
                    "ResourceType": u16(IDE_CONTROLLER),
                    "ResourceSubType": "Microsoft Emulated IDE Controller",
                    "Address": str(number),
                    "Parent": None,
                    "Connection": None,
                },
            )
        for number in scsi:
            yield obj(
                "Msvm_ResourceAllocationSettingData",
                {
                    "InstanceID": controller_id(prefix, "scsi", number),
                    "ElementName": "SCSI Controller",
                    "ResourceType": u16(SCSI_CONTROLLER),
                    "ResourceSubType": "Microsoft Synthetic SCSI Controller",
                    "Address": str(number),
                    "Parent": None,
                    "Connection": None,
                },
            )
        for disk in vm.disks:
            drive, image = disk_ids(prefix, disk)
            parent = controller_id(prefix, disk.controller, disk.controller_number)
            yield obj(
                "Msvm_ResourceAllocationSettingData",
                {
                    "InstanceID": drive,
                    "ElementName": "Hard Drive",
                    "ResourceType": u16(DISK_DRIVE),
                    "ResourceSubType": "Microsoft Synthetic Disk Drive",
                    "Address": str(disk.slot),
                    "Parent": rasd_path(node, parent),
                    "Connection": None,
                },
            )
            yield obj(
                "Msvm_ResourceAllocationSettingData",
                {
                    "InstanceID": image,
                    "ElementName": "Hard Disk Image",
                    "ResourceType": u16(DISK_IMAGE),
                    "ResourceSubType": "Microsoft Virtual Hard Disk",
                    "Address": "",
                    "Parent": rasd_path(node, drive),
                    "Connection": o.ps_list([vhd_path(vm.name, disk)]),
                },
            )


def switch_id(host: Host, name: str) -> str:
    return host.peer.guid("switch", f"{host.node}:{name}")


def vm_port_id(host: Host, vm: str, nic: str) -> str:
    return host.peer.guid("port", f"{host.node}:{vm}:{nic}")


def uplink_port_name(nic: str | None) -> str:
    return f"{nic} Ethernet Adapter" if nic else ""


def _ethernet(host: Host) -> Iterator[PSObject]:
    for vm in host.local_vms():
        prefix = _prefix(host, vm)
        for nic in vm.nics:
            sid = switch_id(host, nic.switch)
            yield obj(
                "Msvm_SyntheticEthernetPortSettingData",
                {
                    "InstanceID": f"{prefix}\\{host.peer.guid('nic', vm.name + ':' + nic.name)}",
                    "ElementName": nic.name,
                    "ResourceType": u16(ETHERNET),
                    "ResourceSubType": "Microsoft Synthetic Ethernet Port",
                    "Connection": o.ps_list(
                        [port_path(host.node, sid, vm_port_id(host, vm.name, nic.name))]
                    ),
                },
            )


def _switches(host: Host) -> Iterator[PSObject]:
    for name in sorted(host.this_node().status.switches):
        yield obj(
            "Msvm_VirtualSwitch",
            {
                "Name": switch_id(host, name),
                "ElementName": name,
                "CreationClassName": "Msvm_VirtualSwitch",
                "NumLearnableAddresses": o.u32(1024),
            },
        )


def _ports(host: Host) -> Iterator[tuple[PSObject, PSObject | None]]:
    """Every switch port, with its VLAN settings (None for an untagged port)."""
    node = host.this_node()
    for name, cfg in sorted(node.status.switches.items()):
        sid = switch_id(host, name)
        uplinks: list[tuple[str, str]] = []
        if cfg.type == "external":
            uplinks.append((host.peer.guid("port", f"{node.name}:{name}:uplink"), "uplink"))
        if cfg.management_os or cfg.type == "internal":
            uplinks.append((host.peer.guid("port", f"{node.name}:{name}:host"), "host"))
        for pid, role in uplinks:
            port = obj(
                "Msvm_SwitchPort",
                {
                    "Name": pid,
                    "SystemName": sid,
                    "ElementName": uplink_port_name(cfg.uplink_nic)
                    if role == "uplink"
                    else "InternalPort",
                },
            )
            vlan = None
            if role == "uplink" and cfg.allowed_vlans:
                vlan = _vlan_settings(pid, None, cfg.native_vlan, sorted(cfg.allowed_vlans))
            yield port, vlan
    for vm in host.local_vms():
        for nic in vm.nics:
            pid = vm_port_id(host, vm.name, nic.name)
            port = obj(
                "Msvm_SwitchPort",
                {
                    "Name": pid,
                    "SystemName": switch_id(host, nic.switch),
                    "ElementName": "Dynamic Ethernet Switch Port",
                },
            )
            vlan = _vlan_settings(pid, nic.vlan, None, []) if nic.vlan else None
            yield port, vlan


def _vlan_settings(port: str, access: int | None, native: int | None, trunk: list[int]) -> PSObject:
    return obj(
        "Msvm_VLANEndpointSettingData",
        {
            "InstanceID": f"Microsoft:{port}",
            "ElementName": "VLAN settings",
            "AccessVLAN": u16(access or 0),
            "NativeVLAN": u16(native or 0),
            "TrunkedVLANList": o.ps_list([u16(v) for v in trunk]),
        },
    )


def _image_services(host: Host) -> Iterator[PSObject]:
    yield obj(
        "Msvm_ImageManagementService",
        {
            "Name": "vhdsvc",
            "ElementName": "Microsoft Image Management Service",
            "SystemName": host.node.upper(),
        },
    )


def _jobs(host: Host) -> Iterator[PSObject]:
    yield from host.peer.wmi_jobs.get(host.node, {}).values()


VIRTUALIZATION: dict[str, Any] = {
    "msvm_computersystem": _computer_systems,
    "msvm_virtualsystemsettingdata": _settings,
    "msvm_memorysettingdata": _memory,
    "msvm_processorsettingdata": _processors,
    "msvm_resourceallocationsettingdata": _rasd,
    "msvm_syntheticethernetportsettingdata": _ethernet,
    "msvm_virtualswitch": _switches,
    "msvm_switchport": lambda host: (p for p, _ in _ports(host)),
    "msvm_vlanendpointsettingdata": lambda host: (v for _, v in _ports(host) if v is not None),
    "msvm_imagemanagementservice": _image_services,
    "msvm_concretejob": _jobs,
}
# The only -Filter texts answered: constants of the provider (anything else would need a WQL
# parser, and the provider never builds a filter from a value).
FILTERS: dict[tuple[str, str], Any] = {
    ("msvm_computersystem", "caption='virtual machine'"): lambda x: (
        x["Caption"] == "Virtual Machine"
    ),
    ("msvm_virtualsystemsettingdata", "settingtype=3"): lambda x: int(x["SettingType"]) == 3,
}


def _nic_objects(host: Host) -> Iterator[PSObject]:
    for i, nic in enumerate(host.this_node().nics):
        yield obj(
            "Win32_NetworkAdapter",
            {
                "DeviceID": str(i + 1),
                "Index": o.u32(i + 1),
                "NetConnectionID": nic.name,
                "Description": uplink_port_name(nic.name),
                "Speed": o.u64(nic.speed_mbps * 1_000_000),
                "NetEnabled": True,
                "PhysicalAdapter": True,
            },
            CIMV2,
        )


def _nic_configurations(host: Host) -> Iterator[PSObject]:
    """An adapter's host address: in its network's subnet (this peer numbers the hosts of a
    cluster 11, 12, ... by name), none on a network without a subnet (VM traffic only)."""
    node = host.this_node()
    nets = {n.name: n for n in host.estate.clusters[node.cluster].networks}
    order = sorted(n.name for n in host.estate.nodes.values() if n.cluster == node.cluster)
    for i, nic in enumerate(node.nics):
        net = nets.get(nic.network or "")
        address: list[str] = []
        mask: list[str] = []
        if net is not None and net.subnet:
            subnet = ipaddress.ip_network(net.subnet, strict=False)
            address = [str(subnet.network_address + 11 + order.index(node.name))]
            mask = [str(subnet.netmask)]
        yield obj(
            "Win32_NetworkAdapterConfiguration",
            {
                "Index": o.u32(i + 1),
                "Description": uplink_port_name(nic.name),
                "IPEnabled": bool(address),
                "IPAddress": o.ps_list(address) if address else None,
                "IPSubnet": o.ps_list(mask) if mask else None,
            },
            CIMV2,
        )


def _disk_objects(host: Host) -> Iterator[PSObject]:
    node = host.this_node()
    numbers = disk_numbers(host.estate, node.cluster)
    for volume in host.estate.volumes_of(node.cluster):
        if volume.name not in node.status.luns:
            continue
        lun = host.peer.seen_lun_gib.get((host.node, volume.name), volume.lun_size_gib)
        yield obj(
            "Win32_DiskDrive",
            {
                "Index": o.u32(numbers[volume.name]),
                "Caption": volume.name,
                "Model": f"{volume.name} Multi-Path Disk Device",
                "Size": o.u64(lun * o.GIB),
                "Partitions": o.u32(2),
            },
            CIMV2,
        )


def _partition_objects(host: Host) -> Iterator[PSObject]:
    node = host.this_node()
    numbers = disk_numbers(host.estate, node.cluster)
    for volume in host.estate.volumes_of(node.cluster):
        if volume.name not in node.status.luns:
            continue
        n = numbers[volume.name]
        for index, size in ((0, 128 * 2**20), (1, volume.size_gib * o.GIB)):
            yield obj(
                "Win32_DiskPartition",
                {
                    "DeviceID": f"Disk #{n}, Partition #{index}",
                    "DiskIndex": o.u32(n),
                    "Index": o.u32(index),
                    "Size": o.u64(size),
                    "Type": "GPT: Basic Data" if index else "GPT: System",
                },
                CIMV2,
            )


CIM: dict[str, Any] = {
    "win32_networkadapter": _nic_objects,
    "win32_networkadapterconfiguration": _nic_configurations,
    "win32_diskdrive": _disk_objects,
    "win32_diskpartition": _partition_objects,
}


def _everything(_item: Any) -> bool:
    return True


def get_wmi_object(
    host: Host, spec: Spec, p: dict[str, Any], inputs: list[Any] | None
) -> Iterator[Any]:
    cls = str(p["Class"])
    namespace = str(p.get("Namespace") or CIMV2).lower().lstrip("\\")
    if namespace == CIMV2:
        table = CIM
    elif namespace == NAMESPACE:
        table = VIRTUALIZATION
    else:
        raise PeerError(
            "Invalid namespace ",
            "MetadataError",
            spec.fqid("GetWMIManagementException"),
            p.get("Namespace"),
        )
    produce = table.get(cls.lower())
    if produce is None:
        if namespace == CIMV2:
            yield from get_cim(host, spec, {"Class": cls}, inputs)
            return
        raise PeerError(
            "Invalid class ", "MetadataError", spec.fqid("GetWMIManagementException"), cls
        )
    keep: Any = _everything
    if p.get("Filter"):
        key = (cls.lower(), " ".join(str(p["Filter"]).lower().split()))
        found = FILTERS.get(key)
        if found is None:
            raise PeerError(
                "Invalid query ",
                "InvalidArgument",
                spec.fqid("GetWMIManagementException"),
                str(p["Filter"]),
            )
        keep = found
    for item in produce(host):
        if keep(item):
            yield item


SPECS: dict[str, tuple[Spec, Any]] = {
    "Get-WmiObject": (
        Spec(
            "Get-WmiObject",
            "Microsoft.PowerShell.Commands.GetWmiObjectCommand",
            {
                "Class": Param("str", True),
                "Namespace": Param("str"),
                "Filter": Param("str"),
                "Property": Param("strs"),
            },
            ("Class",),
        ),
        get_wmi_object,
    ),
}
