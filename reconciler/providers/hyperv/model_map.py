"""Decoded Hyper-V and FailoverClusters objects -> the model's records.

Pure functions over the dicts ``wire.decode`` gives (properties by name, enums by name). A
value the model has no word for is not guessed: the caller gets an observation warning and
the object (or field) is left out.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from reconciler.model.records import (
    AutomaticStartAction,
    AutomaticStopAction,
    ClusterNetwork,
    Disk,
    DynamicMemory,
    NetworkRole,
    QuorumMode,
    SwitchConfig,
    VmNic,
    Witness,
)
from reconciler.model.vlans import VlanListError, parse_vlan_list

GIB = 2**30
MIB = 2**20
CSV_ROOT = "C:\\ClusterStorage"
REGISTRY_KEY = "HKLM:\\SOFTWARE\\Reconciler"

# Win32_OperatingSystem.Version (major.minor.build) -> the model's platform name
PLATFORM_BY_VERSION = {
    "6.1.7601": "2008r2",
    "6.1.7600": "2008r2",
    "6.3.9600": "2012r2",
    "10.0.14393": "2016",
    "10.0.17763": "2019",
    "10.0.20348": "2022",
    "10.0.26100": "2025",
}
POWER = {"Running": "running", "Off": "off", "Saved": "saved"}
SWITCH_TYPE = {"External": "external", "Internal": "internal", "Private": "private"}
VHD_TYPE = {"Fixed": "fixed", "Dynamic": "dynamic", "Differencing": "differencing"}
QUORUM: dict[str, QuorumMode] = {
    "Majority": "recommended",
    "NodeMajority": "node_majority",
    "NodeAndDiskMajority": "node_and_disk_majority",
    "NodeAndFileShareMajority": "node_and_file_share_majority",
    "DiskOnly": "disk_only",
    "CloudWitness": "cloud_witness",
}
# Get-ClusterNetworkInterface states of an interface that carries nothing (the model's
# networks_down; "Unavailable" is a node that is down, already a condition of its own).
NETIF_DOWN = frozenset({"Failed", "Unreachable"})
GROUP_FAILED = "Failed"  # Get-ClusterGroup State of a role the cluster gave up restarting


def csv_redirected(rows: Sequence[Mapping[str, Any]], volume: str) -> dict[str, str]:
    """Get-ClusterSharedVolumeState rows -> node -> why the volume's I/O is redirected there."""
    out: dict[str, str] = {}
    for r in rows:
        state = str(r.get("StateInfo"))
        if str(r.get("Name")) != volume or state not in ("FileSystemRedirected", "BlockRedirected"):
            continue
        key = (
            "BlockRedirectedIOReason"
            if state == "BlockRedirected"
            else "FileSystemRedirectedIOReason"
        )
        out[str(r.get("Node"))] = str(r.get(key) or state)
    return out


# Which cluster-parameter name holds which ClusterStatus field.
STATUS_PARAMETERS = {
    "ReconcilerMonitoringMaintenance": "monitoring_maintenance",
    "ReconcilerRollingUpdateDone": "rolling_update_done",
    "ReconcilerRollingUpdateInProgress": "rolling_update_in_progress",
    "ReconcilerUpdatedNodes": "updated_nodes",
    "ReconcilerPendingNodes": "pending_nodes",
    "ReconcilerTestedNodes": "tested_nodes",
}


@dataclass
class Warnings:
    items: list[str] = field(default_factory=list)

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")


def platform_of(version: str) -> str | None:
    parts = str(version).split(".")
    return PLATFORM_BY_VERSION.get(".".join(parts[:3]))


def gib(value: Any, where: str, warnings: Warnings) -> int | None:
    n = int(value)
    if n % GIB:
        warnings.add(where, f"{n} bytes is not a whole number of GiB; the model counts GiB")
        return None
    return n // GIB


def vhd_parts(path: str) -> tuple[str, str, str, str] | None:
    """``C:\\ClusterStorage\\vol\\vm\\disk.vhdx`` -> (volume, vm, disk, format)."""
    prefix = CSV_ROOT.lower() + "\\"
    if not path.lower().startswith(prefix):
        return None
    parts = path[len(prefix) :].split("\\")
    if len(parts) != 3:
        return None
    stem, _, ext = parts[2].rpartition(".")
    if not stem or ext.lower() not in ("vhd", "vhdx"):
        return None
    return parts[0], parts[1], stem, ext.lower()


def vhd_path(volume: str, vm: str, disk: str, fmt: str) -> str:
    return f"{CSV_ROOT}\\{volume}\\{vm}\\{disk}.{fmt}"


def cpu_text(processors: Sequence[Mapping[str, Any]]) -> str:
    names = sorted({str(p.get("Name", "")).strip() for p in processors})
    if len(names) != 1:
        return " + ".join(names)
    return names[0] if len(processors) == 1 else f"{len(processors)}x {names[0]}"


def switch_config(
    switch: Mapping[str, Any],
    vlan: Mapping[str, Any] | None,
    nic_by_description: Mapping[str, str],
    where: str,
    warnings: Warnings,
) -> SwitchConfig | None:
    kind = SWITCH_TYPE.get(str(switch.get("SwitchType")))
    if kind is None:
        warnings.add(where, f"switch type {switch.get('SwitchType')} is not known to the model")
        return None
    uplink: str | None = None
    if kind == "external":
        desc = str(switch.get("NetAdapterInterfaceDescription") or "")
        uplink = nic_by_description.get(desc)
        if uplink is None:
            warnings.add(where, f"uplink '{desc}' is no network adapter of the host")
            return None
    allowed: frozenset[int] = frozenset()
    native: int | None = None
    if vlan is not None:
        mode = str(vlan.get("OperationMode"))
        if mode == "Trunk":
            try:
                allowed = parse_vlan_list(str(vlan.get("AllowedVlanIdListString") or ""))
            except VlanListError as exc:
                warnings.add(where, f"trunk list not understood: {exc}")
                return None
            native = int(vlan.get("NativeVlanId") or 0) or None
        elif mode != "Untagged":
            warnings.add(where, f"host adapter VLAN mode {mode} is not known to the model")
            return None
    return SwitchConfig(kind, uplink, bool(switch.get("AllowManagementOS")), allowed, native)  # type: ignore[arg-type]


def vm_nic(
    adapter: Mapping[str, Any], vlan: Mapping[str, Any] | None, where: str, warnings: Warnings
) -> VmNic | None:
    access: int | None = None
    trunk: frozenset[int] = frozenset()
    native: int | None = None
    if vlan is not None:
        mode = str(vlan.get("OperationMode"))
        if mode == "Access":
            access = int(vlan.get("AccessVlanId") or 0) or None
        elif mode == "Trunk":
            try:
                trunk = parse_vlan_list(str(vlan.get("AllowedVlanIdListString") or ""))
            except VlanListError as exc:
                warnings.add(where, f"trunk of adapter {adapter.get('Name')} not understood: {exc}")
                return None
            native = int(vlan.get("NativeVlanId") or 0) or None
        elif mode != "Untagged":
            warnings.add(where, f"VLAN mode {mode} on a VM adapter is not known to the model")
            return None
    mac = None
    if adapter.get("DynamicMacAddressEnabled") is False:  # absent (WMI v1 reads): dynamic
        mac = "".join(c for c in str(adapter.get("MacAddress") or "") if c not in "-:").upper()
    return VmNic(
        str(adapter["Name"]), str(adapter.get("SwitchName") or ""), access, trunk, native, mac
    )


# Get-VM's AutomaticStartAction / AutomaticStopAction -> the model's words
START_ACTION: dict[str, AutomaticStartAction] = {
    "Nothing": "nothing",
    "StartIfRunning": "start_if_running",
    "Start": "start",
}
STOP_ACTION: dict[str, AutomaticStopAction] = {
    "TurnOff": "turn_off",
    "Save": "save",
    "ShutDown": "shut_down",
}


def dynamic_memory(
    vm: Mapping[str, Any], memory: Mapping[str, Any] | None, where: str, warnings: Warnings
) -> DynamicMemory | Literal[False] | None:
    """Get-VM's ``DynamicMemoryEnabled`` and Get-VMMemory's ``Minimum`` / ``Maximum`` (Int64
    bytes) and ``Buffer`` (Int32 percent) -> the model's bounds; None: static memory (the
    bounds a static VM keeps are not the model's business); False: dynamic, but unreadable."""
    if vm.get("DynamicMemoryEnabled") is not True:
        return None
    if memory is None:
        warnings.add(where, "dynamic memory is on but Get-VMMemory gave nothing; left out")
        return False
    low, high = int(memory.get("Minimum") or 0), int(memory.get("Maximum") or 0)
    if low % MIB or high % MIB:
        warnings.add(where, f"dynamic memory {low}-{high} bytes is not whole MiB; left out")
        return False
    return DynamicMemory(True, low // MIB, high // MIB, int(memory.get("Buffer") or 20))


def scsi_counts(controllers: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """``Get-VMScsiController -VMName ...`` -> VM name -> how many SCSI controllers it has."""
    return dict(Counter(str(c.get("VMName")) for c in controllers))


def owner_lists(lists: Sequence[Mapping[str, Any]]) -> dict[str, frozenset[str]]:
    """``Get-ClusterGroup | Get-ClusterOwnerNode`` -> group name -> its preferred owners.

    Past the serialization depth a nested ClusterObject or ClusterNode may arrive as its
    ToString() text (the name) or as an object with a Name: both are read.
    """

    def name(x: Any) -> str:
        return str(x.get("Name") if isinstance(x, Mapping) else x)

    return {
        name(item.get("ClusterObject")): frozenset(name(n) for n in item.get("OwnerNodes") or [])
        for item in lists
    }


def disk_record(
    hdd: Mapping[str, Any], vhd: Mapping[str, Any] | None, where: str, warnings: Warnings
) -> Disk | None:
    path = str(hdd.get("Path") or "")
    parts = vhd_parts(path)
    if parts is None:
        warnings.add(where, f"disk path {path} is outside {CSV_ROOT}\\<volume>\\<vm>\\")
        return None
    if vhd is None:
        warnings.add(where, f"no Get-VHD answer for {path}")
        return None
    volume, _vm, name, fmt = parts
    kind = VHD_TYPE.get(str(vhd.get("VhdType")))
    controller = str(hdd.get("ControllerType", "")).lower()
    if kind is None or controller not in ("ide", "scsi"):
        warnings.add(
            where, f"{path}: {vhd.get('VhdType')} on {hdd.get('ControllerType')} is not known"
        )
        return None
    size = gib(vhd["Size"], f"{where} {path}", warnings)
    if size is None:
        return None
    return Disk(
        name=name,
        controller=controller,  # type: ignore[arg-type]
        controller_number=int(hdd.get("ControllerNumber", 0)),
        slot=int(hdd.get("ControllerLocation", 0)),
        type=kind,  # type: ignore[arg-type]
        format=fmt,  # type: ignore[arg-type]
        size_gib=size,
        volume=volume,
        parent=str(vhd.get("ParentPath") or "") or None,
        file_size_gib=round(int(vhd.get("FileSize", 0)) / GIB, 6),
    )


def witness_of(resource: Mapping[str, Any] | None, params: Mapping[str, Any]) -> Witness:
    if resource is None:
        return Witness()
    kind = str(resource.get("ResourceType"))
    if kind == "Physical Disk":
        return Witness(disk=str(resource["Name"]))
    if kind == "File Share Witness":
        return Witness(file_share=str(params.get("SharePath") or "") or None)
    if kind == "Cloud Witness":
        return Witness(cloud_account=str(params.get("AccountName") or "") or None)
    return Witness()


def network_roles(
    role: str, subnet: str | None, migration_subnets: set[str]
) -> tuple[NetworkRole, ...]:
    """ClusterNetworkRole plus the Hyper-V migration networks -> the model's roles."""
    if role == "ClusterAndClient":
        return ("management",)
    if role == "Cluster":
        return ("live_migration",) if subnet in migration_subnets else ("heartbeat",)
    return ("vm",)


def cluster_network(
    net: Mapping[str, Any], speeds: Sequence[int], migration_subnets: set[str]
) -> ClusterNetwork:
    address = str(net.get("Address") or "")
    bits = int(net.get("AddressPrefixLength") or 0)
    subnet = f"{address}/{bits}" if address and bits else None
    return ClusterNetwork(
        str(net["Name"]),
        network_roles(str(net.get("Role")), subnet, migration_subnets),
        min(speeds) if speeds else 1000,
        subnet,
    )


def node_list(text: Any) -> frozenset[str]:
    return frozenset(n for n in str(text or "").split(",") if n)


def netifs_by_address(
    node: str, addresses: Sequence[Mapping[str, Any]], networks: Sequence[ClusterNetwork]
) -> list[dict[str, str]]:
    """A node that is not a member has no cluster network interfaces yet: its adapters'
    networks are those whose subnet holds the adapter's IPv4 address, as the cluster will
    assign them on the join. An adapter with no host address is on the one network that has
    no subnet (the VM network of the four-NIC layout), if the cluster has exactly one."""
    subnets = [(ipaddress.ip_network(n.subnet, strict=False), n.name) for n in networks if n.subnet]
    unaddressed = [n.name for n in networks if not n.subnet]
    out: list[dict[str, str]] = []
    for a in addresses:
        ips = [ipaddress.ip_address(str(x)) for x in a.get("IPAddress") or [] if "." in str(x)]
        found = next((name for net, name in subnets for ip in ips if ip in net), None)
        if found is None and not ips and len(unaddressed) == 1:
            found = unaddressed[0]
        if found is not None:
            out.append({"Node": node, "Adapter": str(a["Name"]), "Network": found})
    return out


RESOURCE_ONLINE = "Online"  # Get-ClusterResource State


def address_owners(rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """``Get-ClusterResource <IP Address resources> | Get-ClusterParameter -Name Address`` ->
    address -> its resource's name (ClusterObject read as a name or an object with one)."""
    out: dict[str, str] = {}
    for row in rows:
        owner = row.get("ClusterObject")
        name = str(owner.get("Name") if isinstance(owner, Mapping) else owner)
        value = str(row.get("Value") or "")
        if str(row.get("Name")) == "Address" and value:
            out[value] = name
    return out
