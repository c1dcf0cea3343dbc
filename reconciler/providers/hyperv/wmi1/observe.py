r"""observe() on Windows Server 2008 R2: WMI ``root\virtualization`` (v1) as plain cmdlet calls.

Each class is read once per node (``Get-WmiObject -Namespace root\virtualization -Class X``,
with a constant ``-Filter`` at most) and joined here by the keys v1 uses: a VM's GUID in the
InstanceID of its settings, WMI paths in ``Parent`` and ``Connection``. The result has the
shape of the Hyper-V module's reads (``Get-VM``, ``Get-VMHardDiskDrive``...) so the same
mapping to the model serves both paths. Round trips grow with nodes, never with VMs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from reconciler.providers.hyperv.wmi1 import scripts

NAMESPACE = "root\\virtualization"
POWER = {2: "Running", 3: "Off", 32769: "Saved", 32768: "Paused"}
VHD_TYPE = {2: "Fixed", 3: "Dynamic", 4: "Differencing"}
IDE_CONTROLLER, SCSI_CONTROLLER, DISK_IMAGE, DISK_DRIVE = 5, 6, 21, 22
_INSTANCE = re.compile(r'InstanceID="((?:[^"\\]|\\.)*)"')
_PORT = re.compile(r'Msvm_SwitchPort\.(?:.*,)?Name="([^"]+)",.*,SystemName="([^"]+)"')

Call = Callable[..., list[dict[str, Any]]]


def wmi(call: Call, node: str, cls: str, filter_text: str | None = None) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"Namespace": NAMESPACE, "Class": cls}
    if filter_text is not None:
        params["Filter"] = filter_text  # constants only: never built from a value
    return call(node, "Get-WmiObject", params)


def _instance_of(path: Any) -> str:
    found = _INSTANCE.search(str(path or ""))
    return found.group(1).replace("\\\\", "\\") if found else ""


def _vm_guid(instance_id: str) -> str:
    return instance_id.removeprefix("Microsoft:").split("\\", 1)[0].upper()


def switch_reads(call: Call, node: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(switches as Get-VMSwitch gives them, host-side VLANs as Get-VMNetworkAdapterVlan
    -ManagementOS gives them) from Msvm_VirtualSwitch, Msvm_SwitchPort and their VLAN
    settings."""
    switches = wmi(call, node, "Msvm_VirtualSwitch")
    ports = wmi(call, node, "Msvm_SwitchPort")
    vlans = {str(v["InstanceID"]): v for v in wmi(call, node, "Msvm_VLANEndpointSettingData")}
    out: list[dict[str, Any]] = []
    host_vlans: list[dict[str, Any]] = []
    for sw in switches:
        mine = [p for p in ports if p.get("SystemName") == sw.get("Name")]
        uplink = next(
            (
                p
                for p in mine
                if p.get("ElementName") not in ("InternalPort", "Dynamic Ethernet Switch Port")
            ),
            None,
        )
        internal = any(p.get("ElementName") == "InternalPort" for p in mine)
        kind = "External" if uplink else ("Internal" if internal else "Private")
        name = str(sw["ElementName"])
        out.append(
            {
                "Name": name,
                "SwitchType": kind,
                "AllowManagementOS": internal,
                "NetAdapterInterfaceDescription": str(uplink.get("ElementName")) if uplink else "",
            }
        )
        vlan = vlans.get(f"Microsoft:{uplink['Name']}") if uplink else None
        trunk = [int(v) for v in (vlan or {}).get("TrunkedVLANList") or []]
        host_vlans.append(
            {
                "ParentAdapter": {"Name": name},
                "OperationMode": "Trunk" if trunk else "Untagged",
                "AllowedVlanIdListString": ",".join(str(v) for v in trunk),
                "NativeVlanId": int((vlan or {}).get("NativeVLAN") or 0),
            }
        )
    return out, host_vlans


def node_reads(
    call: Call, node: str, script: Callable[..., list[dict[str, Any]]] | None = None
) -> dict[str, Any]:
    """What ``Observer.node_reads`` gives on later releases, from 2008 R2's WMI (and, with
    ``script``, the adapters' offload keywords from the registry)."""
    r: dict[str, Any] = {}
    for cls in ("Win32_ComputerSystem", "Win32_Processor", "Win32_BIOS"):
        r[cls] = call(node, "Get-WmiObject", {"Class": cls})
    try:
        r["registry"] = call(node, "Get-ItemProperty", {"Path": "HKLM:\\SOFTWARE\\Reconciler"})
    except Exception as exc:  # not set on this host: warned about by the mapping
        if type(exc).__name__ == "NodeUnreachable":
            raise
        r["registry"] = []
    r["features"] = call(node, "Get-WindowsFeature", {"Name": ["Hyper-V", "Failover-Clustering"]})
    physical = [
        a
        for a in call(node, "Get-WmiObject", {"Class": "Win32_NetworkAdapter"})
        if a.get("NetConnectionID") and a.get("PhysicalAdapter")
    ]
    r["adapters"] = [
        {
            "Name": str(a.get("NetConnectionID")),
            "InterfaceDescription": str(a.get("Description")),
            "Speed": int(a.get("Speed") or 0),
        }
        for a in physical
    ]
    # Host addresses (tied to the adapter by Index): which cluster network an adapter of a
    # node still to join is on.
    config = {
        str(x.get("Index")): x
        for x in call(node, "Get-WmiObject", {"Class": "Win32_NetworkAdapterConfiguration"})
    }
    r["addresses"] = [
        {
            "Name": str(a.get("NetConnectionID")),
            "IPAddress": list((config.get(str(a.get("Index"))) or {}).get("IPAddress") or []),
        }
        for a in physical
    ]
    # 2008 R2 has no NetAdapter cmdlets: VMQ and jumbo frames are the adapters' standardized
    # registry keywords (Get-NicOffloads.ps1), given the shape Get-NetAdapterVmq and
    # Get-NetAdapterAdvancedProperty -RegistryKeyword *JumboPacket have later.
    r["vmq"], r["jumbo"] = [], []
    for nic in script(node, scripts.GET_NIC_OFFLOADS, {}) if script is not None else []:
        name = str(nic.get("Name"))
        if str(nic.get("Vmq") or ""):
            r["vmq"].append({"Name": name, "Enabled": str(nic.get("Vmq")) == "1"})
        jumbo = str(nic.get("JumboPacket") or "")
        if jumbo.isdigit():
            r["jumbo"].append({"Name": name, "RegistryValue": [jumbo]})
    r["offloads_unread"] = script is None  # without the script, nothing says what they are
    r["switches"], r["host_vlans"] = switch_reads(call, node)
    r["disks"] = [
        {
            "FriendlyName": str(d.get("Caption")),
            "Size": int(d.get("Size") or 0),
            "Number": d.get("Index"),
        }
        for d in call(node, "Get-WmiObject", {"Class": "Win32_DiskDrive"})
    ]
    return r


def vm_reads(
    call: Call,
    script: Callable[..., list[dict[str, Any]]],
    node: str,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """What ``Observer.vm_reads`` gives on later releases, from the v1 classes."""
    systems = wmi(call, node, "Msvm_ComputerSystem", "Caption='Virtual Machine'")
    wanted = set(names) if names else None
    vms = {
        str(s["Name"]).upper(): str(s["ElementName"])
        for s in systems
        if wanted is None or s.get("ElementName") in wanted
    }
    empty: dict[str, Any] = {"vms": [], "hdds": [], "vhds": [], "nics": [], "vlans": []}
    if not vms:
        return empty
    memory = {_vm_guid(str(m["InstanceID"])): m for m in wmi(call, node, "Msvm_MemorySettingData")}
    cpus = {_vm_guid(str(p["InstanceID"])): p for p in wmi(call, node, "Msvm_ProcessorSettingData")}
    rasd = wmi(call, node, "Msvm_ResourceAllocationSettingData")
    by_id = {str(x["InstanceID"]): x for x in rasd}
    r: dict[str, Any] = {key: [] for key in empty}
    for s in systems:
        guid = str(s["Name"]).upper()
        if guid not in vms:
            continue
        state = POWER.get(int(s.get("EnabledState") or 0), f"EnabledState {s.get('EnabledState')}")
        r["vms"].append(
            {
                "Name": vms[guid],
                "State": state,
                "MemoryStartup": int((memory.get(guid) or {}).get("VirtualQuantity") or 0) * 2**20,
                "ProcessorCount": int((cpus.get(guid) or {}).get("VirtualQuantity") or 1),
                "Generation": 1,  # 2008 R2 has generation 1 only
            }
        )
    for image in rasd:
        if int(image.get("ResourceType") or 0) != DISK_IMAGE:
            continue
        guid = _vm_guid(str(image["InstanceID"]))
        if guid not in vms:
            continue
        drive = by_id.get(_instance_of(image.get("Parent"))) or {}
        controller = by_id.get(_instance_of(drive.get("Parent"))) or {}
        kind = int(controller.get("ResourceType") or 0)
        paths = list(image.get("Connection") or [])
        r["hdds"].append(
            {
                "VMName": vms[guid],
                "Path": str(paths[0]) if paths else "",
                "ControllerType": {IDE_CONTROLLER: "IDE", SCSI_CONTROLLER: "SCSI"}.get(
                    kind, str(kind)
                ),
                "ControllerNumber": int(controller.get("Address") or 0),
                "ControllerLocation": int(drive.get("Address") or 0),
            }
        )
    ports_vlan = {
        str(v["InstanceID"]).removeprefix("Microsoft:"): v
        for v in wmi(call, node, "Msvm_VLANEndpointSettingData")
    }
    switch_names = {
        str(s["Name"]): str(s["ElementName"]) for s in wmi(call, node, "Msvm_VirtualSwitch")
    }
    for nic in wmi(call, node, "Msvm_SyntheticEthernetPortSettingData"):
        guid = _vm_guid(str(nic["InstanceID"]))
        if guid not in vms:
            continue
        connection = list(nic.get("Connection") or [])
        found = _PORT.search(str(connection[0])) if connection else None
        port, switch = (found.group(1), found.group(2)) if found else ("", "")
        vlan = ports_vlan.get(port)
        access = int((vlan or {}).get("AccessVLAN") or 0)
        r["nics"].append(
            {
                "VMName": vms[guid],
                "Name": str(nic["ElementName"]),
                "SwitchName": switch_names.get(switch, ""),
            }
        )
        r["vlans"].append(
            {
                "ParentAdapter": {"VMName": vms[guid], "Name": str(nic["ElementName"])},
                "OperationMode": "Access" if access else "Untagged",
                "AccessVlanId": access,
            }
        )
    paths = [h["Path"] for h in r["hdds"] if h["Path"]]
    if paths:
        for info in script(node, scripts.GET_VHD_INFO, {"Path": paths}):
            r["vhds"].append(
                {
                    "Path": info.get("Path"),
                    "VhdType": VHD_TYPE.get(int(info.get("Type") or 0), str(info.get("Type"))),
                    "Size": int(info.get("MaxInternalSize") or 0),
                    "FileSize": int(info.get("FileSize") or 0),
                    "ParentPath": info.get("ParentPath") or "",
                }
            )
    return r


def migration_networks(
    call: Call, via: str, networks: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """What ``Get-VMMigrationNetwork`` gives later (``Subnet`` per network live migration may
    use), from 2008 R2's own place for it: the "Virtual Machine" resource type's private
    property ``MigrationExcludeNetworks``, the Ids of the cluster networks it must not use."""
    got = call(
        via,
        "Get-ClusterResourceType",
        {"Name": ["Virtual Machine"]},
        then=[("Get-ClusterParameter", {"Name": ["MigrationExcludeNetworks"]})],
    )
    excluded = {x.strip().lower() for p in got for x in str(p.get("Value") or "").split(";")}
    out: list[dict[str, Any]] = []
    for net in networks:
        address, bits = str(net.get("Address") or ""), int(net.get("AddressPrefixLength") or 0)
        if str(net.get("Id") or "").lower() not in excluded and address and bits:
            out.append({"Subnet": f"{address}/{bits}"})
    return out


def by_name(items: Sequence[Mapping[str, Any]], key: str = "Name") -> dict[str, Mapping[str, Any]]:
    return {str(x.get(key)): x for x in items}
