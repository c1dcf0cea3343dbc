"""apply(action): one fixed cmdlet sequence per action type, typed parameters, polled deadlines.

Values from the plan only ever become parameter values (never PowerShell text). Sizes go as
UInt64, memory and processor counts as Int64, controller numbers and VLAN ids as Int32,
enums by name. Which node runs each step is in ``targeting``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.model.actions import Action
from reconciler.model.records import Estate
from reconciler.model.vlans import format_vlan_list, parse_vlan_list
from reconciler.providers.hyperv import model_map as m
from reconciler.providers.hyperv import targeting as t
from reconciler.providers.hyperv.wire import i32, i64, u64

MIGRATION_TYPE = {"live": "Live", "quick": "Quick", "offline": "Quick"}
QUORUM_SWITCH = {
    "node_majority": "NodeMajority",
    "node_and_disk_majority": "NodeAndDiskMajority",
    "node_and_file_share_majority": "NodeAndFileShareMajority",
    "disk_only": "DiskOnly",
}
PATH = "Windows Server 2012 R2 or later via the Hyper-V and FailoverClusters modules"
# The actions this provider performs, and why the others are not (shown in a blocked plan).
NOT_DONE: dict[str, str] = {
    "present_storage": "presenting a LUN to a host is done on the storage array, not through "
    "Hyper-V: present it there, then re-plan",
    "patch_node": "patching is the rolling-update hook's job (e.g. Cluster-Aware Updating); "
    "the hyperv provider does not install updates",
    "test_live_migration": "the there-and-back test migration of a joining node is not built in "
    "the hyperv provider yet",
    "verify_node": "post-patch verification is not built in the hyperv provider yet",
    "convert_disk": "Convert-VHD (a copy while the VM is off) is not built in the hyperv "
    "provider yet",
    "move_vm_storage": "Move-VMStorage (a disk moved to another CSV) is not built in the hyperv "
    "provider yet: move the disk by hand, then plan",
    "create_cluster": "Test-Cluster and New-Cluster (static address, no storage) are not built "
    "in the hyperv provider yet (its hosts are observed): create the cluster by hand, then "
    "plan",
}


def _no_scripts(*_: Any, **__: Any) -> list[Any]:
    raise ValueError("this runner runs cmdlets only, not the provider's constant scripts")


class Runner:
    """What an action step needs: call a cmdlet on a node, wait, know the estate."""

    def __init__(
        self,
        call: Callable[..., list[Any]],
        estate: Estate,
        poll: Callable[[Callable[[], bool], float, str], None],
        script: Callable[..., list[Any]] | None = None,
    ) -> None:
        self.call = call
        self.estate = estate
        self.poll = poll
        # A constant param() script of ``scripts`` (node, text, params): assignments only.
        self.script: Callable[..., list[Any]] = script or _no_scripts


@dataclass(frozen=True)
class Step:
    node: str
    cmdlet: str
    params: Mapping[str, Any]


def _monitoring(r: Runner, a: Action, on: bool) -> None:
    node = t.any_member(r.estate, a.cluster)
    r.call(
        node,
        "Get-Cluster",
        {},
        then=[
            (
                "Set-ClusterParameter",
                {
                    "Name": "ReconcilerMonitoringMaintenance",
                    "Value": i32(1 if on else 0),
                    "Create": None,
                },
            )
        ],
    )


def _trunk(r: Runner, node: str, switch: str, allowed: str, native: int | None) -> None:
    vlans = parse_vlan_list(allowed) if allowed else frozenset()
    if not vlans:
        r.call(
            node,
            "Set-VMNetworkAdapterVlan",
            {"ManagementOS": None, "VMNetworkAdapterName": switch, "Untagged": None},
        )
        return
    r.call(
        node,
        "Set-VMNetworkAdapterVlan",
        {
            "ManagementOS": None,
            "VMNetworkAdapterName": switch,
            "Trunk": None,
            "AllowedVlanIdList": format_vlan_list(vlans),
            "NativeVlanId": i32(native or 0),
        },
    )


def match_vswitch(r: Runner, a: Action) -> None:
    node, name, cfg = a.params["node"], a.params["switch"], a.params["config"]
    if cfg.get("embedded_team"):
        # Before any call: a team means removing and recreating the switch.
        raise ValueError(
            "Switch Embedded Teaming (Remove-VMSwitch, then New-VMSwitch "
            "-EnableEmbeddedTeaming) is not built in the hyperv provider yet: change the "
            f"team of {name} on {node} by hand"
        )
    have = r.call(node, "Get-VMSwitch", {})
    exists = any(sw.get("Name") == name for sw in have)  # -Name is a wildcard: match exactly
    params: dict[str, Any] = {"Name": name}
    if cfg["type"] == "external":
        params["NetAdapterName"] = cfg["uplink_nic"]
        params["AllowManagementOS"] = bool(cfg["management_os"])
    else:
        params["SwitchType"] = "Internal" if cfg["type"] == "internal" else "Private"
    r.call(node, "Set-VMSwitch" if exists else "New-VMSwitch", params)
    _trunk(r, node, name, cfg.get("allowed_vlans") or "", cfg.get("native_vlan"))


def set_vlan_trunk(r: Runner, a: Action) -> None:
    p = a.params
    _trunk(r, p["node"], p["switch"], p["allowed_vlans"], p.get("native_vlan"))


def add_node(r: Runner, a: Action) -> None:
    via = t.any_member(r.estate, a.cluster)
    r.call(via, "Add-ClusterNode", {"Name": a.params["node"], "NoStorage": None})


def update_quorum(r: Runner, a: Action) -> None:
    via = t.any_member(r.estate, a.cluster)
    mode, witness = a.params["mode"], a.params.get("witness") or {}
    if mode == "cloud_witness":
        raise ValueError(
            "a cloud witness needs its storage account key, which reconciler never holds: "
            "run Set-ClusterQuorum -CloudWitness by hand"
        )
    if mode not in QUORUM_SWITCH:
        raise ValueError(f"quorum mode {mode} has no Set-ClusterQuorum form")
    switch = QUORUM_SWITCH[mode]
    if mode == "node_majority":
        r.call(via, "Set-ClusterQuorum", {switch: None})
        return
    kind = "file_share" if mode == "node_and_file_share_majority" else "disk"
    if not witness.get(kind):
        raise ValueError(f"quorum mode {mode} needs a {kind} witness")
    r.call(via, "Set-ClusterQuorum", {switch: str(witness[kind])})


def _node_state(r: Runner, via: str, node: str) -> str:
    got = r.call(via, "Get-ClusterNode", {"Name": [node]})
    return str(got[0].get("State")) if got else ""


def drain_node(r: Runner, a: Action) -> None:
    node = a.params["node"]
    via = t.other_member(r.estate, a.cluster, node)
    r.call(via, "Suspend-ClusterNode", {"Name": node, "Drain": None})
    r.poll(lambda: _node_state(r, via, node) == "Paused", t.DRAIN_SECONDS, f"{node} to drain")


def resume_node(r: Runner, a: Action) -> None:
    node = a.params["node"]
    via = t.other_member(r.estate, a.cluster, node)
    r.call(via, "Resume-ClusterNode", {"Name": node, "Failback": "NoFailback"})
    r.poll(lambda: _node_state(r, via, node) == "Up", t.CALL_SECONDS, f"{node} to resume")


def migrate_vm(r: Runner, a: Action) -> None:
    vm, destination = a.params["vm"], a.params["destination"]
    via = t.migration_node(r.estate, a.cluster, destination)
    r.call(
        via,
        "Move-ClusterVirtualMachineRole",
        {"Name": vm, "Node": destination, "MigrationType": MIGRATION_TYPE[a.params["method"]]},
        deadline=t.MIGRATION_SECONDS,
    )


def extend_volume(r: Runner, a: Action) -> None:
    volume = a.params["volume"]
    owner = t.volume_owner(r.estate, volume)
    r.call(owner, "Update-HostStorageCache", {})  # rescan, or SizeMax is stale
    disk = next((d for d in r.call(owner, "Get-Disk", {}) if d.get("FriendlyName") == volume), None)
    if disk is None:
        raise LookupError(f"{owner} has no disk for {volume}")
    number = int(disk["Number"])
    parts = r.call(owner, "Get-Partition", {"DiskNumber": i32(number)})
    path = f"{m.CSV_ROOT}\\{volume}\\".lower()
    part = next(
        (p for p in parts if path in [str(x).lower() for x in p.get("AccessPaths") or []]), None
    )
    if part is None:
        raise LookupError(f"no partition of disk {number} on {owner} is mounted at {path}")
    pnum = int(part["PartitionNumber"])
    supported = r.call(
        owner,
        "Get-PartitionSupportedSize",
        {"DiskNumber": i32(number), "PartitionNumber": i32(pnum)},
    )
    want = int(a.params["size_gib"]) * m.GIB
    if supported and int(supported[0]["SizeMax"]) < want:
        raise ValueError(
            f"the disk of {volume} allows at most {int(supported[0]['SizeMax']) // m.GIB} GiB "
            f"after a rescan, the plan wants {want // m.GIB} GiB: grow the LUN first"
        )
    r.call(
        owner,
        "Resize-Partition",
        {"DiskNumber": i32(number), "PartitionNumber": i32(pnum), "Size": u64(want)},
    )


def extend_lun(r: Runner, a: Action) -> None:
    """Grow the LUN through the Storage module's management provider (Storage Spaces, or an
    array whose SMP provider is registered on the node); elsewhere grow it on the array."""
    volume = a.params["volume"]
    owner = t.volume_owner(r.estate, volume)
    size = u64(int(a.params["lun_size_gib"]) * m.GIB)
    r.call(
        owner, "Resize-VirtualDisk", {"FriendlyName": volume, "Size": size}, deadline=t.DISK_SECONDS
    )


def _disk_path(r: Runner, vm_name: str, disk_name: str) -> str:
    vm = r.estate.vms[vm_name]
    disk = vm.disk(disk_name)
    if disk is None:
        raise LookupError(f"{vm_name} has no disk {disk_name}")
    return m.vhd_path(disk.volume, vm_name, disk.name, disk.format)


def extend_vhd(r: Runner, a: Action) -> None:
    vm = a.params["vm"]
    owner = t.vm_owner(r.estate, vm)
    path = _disk_path(r, vm, a.params["disk"])
    r.call(
        owner,
        "Resize-VHD",
        {"Path": path, "SizeBytes": u64(int(a.params["size_gib"]) * m.GIB)},
        deadline=t.DISK_SECONDS,
    )


def add_disk(r: Runner, a: Action) -> None:
    vm = a.params["vm"]
    d = a.params["disk"]
    owner = t.vm_owner(r.estate, vm)
    path = m.vhd_path(d["volume"], vm, d["name"], d["format"])
    kind = {"fixed": "Fixed", "dynamic": "Dynamic", "differencing": "Differencing"}[d["type"]]
    new: dict[str, Any] = {"Path": path, "SizeBytes": u64(int(d["size_gib"]) * m.GIB), kind: None}
    if d["type"] == "differencing":
        new["ParentPath"] = d["parent"]
    r.call(owner, "New-VHD", new, deadline=t.DISK_SECONDS)
    r.call(
        owner,
        "Add-VMHardDiskDrive",
        {
            "VMName": vm,
            "ControllerType": d["controller"].upper(),
            "ControllerNumber": i32(int(d["controller_number"])),
            "ControllerLocation": i32(int(d["slot"])),
            "Path": path,
        },
    )
    _update_cluster_config(r, a)


def detach_disk(r: Runner, a: Action) -> None:
    vm_name = a.params["vm"]
    vm = r.estate.vms[vm_name]
    disk = vm.disk(a.params["disk"])
    if disk is None:
        return
    owner = t.vm_owner(r.estate, vm_name)
    r.call(
        owner,
        "Remove-VMHardDiskDrive",
        {
            "VMName": vm_name,
            "ControllerType": disk.controller.upper(),
            "ControllerNumber": i32(disk.controller_number),
            "ControllerLocation": i32(disk.slot),
        },
    )
    if a.params.get("delete_file"):
        r.call(
            owner,
            "Remove-Item",
            {"LiteralPath": m.vhd_path(disk.volume, vm_name, disk.name, disk.format)},
        )
    _update_cluster_config(r, a)


def _update_cluster_config(r: Runner, a: Action) -> None:
    """The cluster keeps its own copy of a clustered VM's configuration: refresh it."""
    vm = r.estate.vms.get(a.params["vm"])
    if vm is not None and vm.highly_available:
        via = t.vm_owner(r.estate, vm.name)
        r.call(via, "Update-ClusterVirtualMachineConfiguration", {"Name": vm.name})


def set_vm(r: Runner, a: Action) -> None:
    vm = a.params["vm"]
    owner = t.vm_owner(r.estate, vm)
    params: dict[str, Any] = {"Name": vm}
    if "memory_mib" in a.params:
        params["MemoryStartupBytes"] = i64(int(a.params["memory_mib"]) * m.MIB)
    if "vcpus" in a.params:
        params["ProcessorCount"] = i64(int(a.params["vcpus"]))
    r.call(owner, "Set-VM", params)
    _update_cluster_config(r, a)


def stop_vm(r: Runner, a: Action) -> None:
    vm = a.params["vm"]
    r.call(
        t.vm_owner(r.estate, vm), "Stop-VM", {"Name": vm, "Force": None}, deadline=t.POWER_SECONDS
    )


def start_vm(r: Runner, a: Action) -> None:
    vm = a.params["vm"]
    r.call(t.vm_owner(r.estate, vm), "Start-VM", {"Name": vm}, deadline=t.POWER_SECONDS)


def validate_cluster(r: Runner, a: Action) -> None:
    """Test-Cluster over every member (a failed validation is its error record)."""
    via = t.any_member(r.estate, a.cluster)
    nodes = list(r.estate.clusters[a.cluster].nodes)
    r.call(via, "Test-Cluster", {"Node": nodes}, deadline=t.DRAIN_SECONDS)


def complete_rolling_update(r: Runner, a: Action) -> None:
    node = t.any_member(r.estate, a.cluster)
    r.call(
        node,
        "Get-Cluster",
        {},
        then=[
            (
                "Set-ClusterParameter",
                {
                    "Name": "ReconcilerRollingUpdateDone",
                    "Value": str(a.params["cycle"]),
                    "Create": None,
                },
            )
        ],
    )


ACTIONS: dict[str, Callable[[Runner, Action], None]] = {
    "begin_monitoring_maintenance": lambda r, a: _monitoring(r, a, True),
    "end_monitoring_maintenance": lambda r, a: _monitoring(r, a, False),
    "match_vswitch": match_vswitch,
    "set_vlan_trunk": set_vlan_trunk,
    "add_node": add_node,
    "update_quorum": update_quorum,
    "drain_node": drain_node,
    "resume_node": resume_node,
    "complete_rolling_update": complete_rolling_update,
    "validate_cluster": validate_cluster,
    "migrate_vm": migrate_vm,
    "extend_lun": extend_lun,
    "extend_volume": extend_volume,
    "extend_vhd": extend_vhd,
    "add_disk": add_disk,
    "detach_disk": detach_disk,
    "set_vm": set_vm,
    "stop_vm": stop_vm,
    "start_vm": start_vm,
}
