"""apply(action) on Windows Server 2008 R2: FailoverClusters cmdlets of that release, and the
constant WMI v1 scripts (``scripts``) for what the Hyper-V and Storage modules do later.

A WMI method's result is checked in ``jobs``: 4096 means a job was started, polled through
``Msvm_ConcreteJob`` to completion within a deadline; any other non-zero value is an error
that quotes the method and the code. Cluster roles (drain, resume, moves, power) are in
``roles``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reconciler.model.actions import Action
from reconciler.model.platforms import VHD_MAX_GIB
from reconciler.model.vlans import parse_vlan_list
from reconciler.providers.hyperv import act as later
from reconciler.providers.hyperv import model_map as m
from reconciler.providers.hyperv import targeting as t
from reconciler.providers.hyperv.wire import i32, u64
from reconciler.providers.hyperv.wmi1 import roles, scripts
from reconciler.providers.hyperv.wmi1.jobs import JOB_STARTED, PLATFORM, Runner, run
from reconciler.providers.hyperv.wmi1.observe import wmi

__all__ = ["ACTIONS", "JOB_STARTED", "NOT_DONE", "PATH", "PLATFORM", "Runner", "reasons"]
PATH = "Windows Server 2008 R2 via WMI v1 (root\\virtualization) and FailoverClusters 2008 R2"


def _trunk(r: Runner, node: str, switch: str, allowed: str, native: int | None) -> None:
    vlans = sorted(parse_vlan_list(allowed)) if allowed else []
    run(
        r,
        node,
        scripts.SET_SWITCH_VLANS,
        {
            "SwitchName": switch,
            "TrunkedVlanId": [i32(v) for v in vlans],
            "NativeVlanId": i32(native or 0),
        },
    )


def set_vlan_trunk(r: Runner, a: Action) -> None:
    p = a.params
    _trunk(r, p["node"], p["switch"], p["allowed_vlans"], p.get("native_vlan"))


def match_vswitch(r: Runner, a: Action) -> None:
    """A missing switch is created (New-Switch.ps1); an existing one that differs is bound
    again (Set-SwitchBinding.ps1: TeardownSwitch, SetupSwitch). Then the uplink's trunk."""
    node, name, cfg = a.params["node"], a.params["switch"], a.params["config"]
    have = wmi(r.call, node, "Msvm_VirtualSwitch")
    exists = any(sw.get("ElementName") == name for sw in have)  # matched here, not in WQL
    kind = {"external": "External", "internal": "Internal", "private": "Private"}[cfg["type"]]
    params: dict[str, Any] = {"SwitchName": name, "SwitchType": kind}
    if kind == "External":
        adapters = {
            str(x.get("NetConnectionID")): str(x.get("Description"))
            for x in r.call(node, "Get-WmiObject", {"Class": "Win32_NetworkAdapter"})
        }
        if cfg["uplink_nic"] not in adapters:
            raise LookupError(f"{node} has no network adapter {cfg['uplink_nic']}")
        params["UplinkAdapter"] = adapters[cfg["uplink_nic"]]
    params["ManagementOS"] = bool(cfg["management_os"])
    if exists:
        run(r, node, scripts.SET_SWITCH_BINDING, params)
    else:
        run(r, node, scripts.NEW_SWITCH, params)
    _trunk(r, node, name, cfg.get("allowed_vlans") or "", cfg.get("native_vlan"))


def present_storage(r: Runner, a: Action) -> None:
    via = t.any_member(r.estate, a.cluster)
    run(
        r,
        via,
        scripts.UNMASK_LUNS,
        {"Lun": list(a.params["volumes"]), "HostName": a.params["node"]},
    )


def add_node(r: Runner, a: Action) -> None:
    via = t.any_member(r.estate, a.cluster)  # 2008 R2's Add-ClusterNode has no -NoStorage
    r.call(via, "Add-ClusterNode", {"Name": a.params["node"]}, deadline=t.DRAIN_SECONDS)


def test_live_migration(r: Runner, a: Action) -> None:
    via = t.any_member(r.estate, a.cluster)
    run(
        r,
        via,
        scripts.TEST_LIVE_MIGRATION,
        {"VMName": a.params["vm"], "Node": a.params["node"]},
        t.MIGRATION_SECONDS,
    )


def validate_cluster(r: Runner, a: Action) -> None:
    via = t.any_member(r.estate, a.cluster)
    nodes = list(r.estate.clusters[a.cluster].nodes)
    r.call(via, "Test-Cluster", {"Node": nodes}, deadline=t.DRAIN_SECONDS)


def extend_lun(r: Runner, a: Action) -> None:
    owner = t.volume_owner(r.estate, a.params["volume"])
    size = u64(int(a.params["lun_size_gib"]) * m.GIB)
    run(r, owner, scripts.EXTEND_LUN, {"Lun": a.params["volume"], "SizeBytes": size})


def extend_volume(r: Runner, a: Action) -> None:
    volume = a.params["volume"]
    owner = t.volume_owner(r.estate, volume)
    disks = r.call(owner, "Get-WmiObject", {"Class": "Win32_DiskDrive"})
    disk = next((d for d in disks if d.get("Caption") == volume), None)
    if disk is None:
        raise LookupError(f"{owner} has no disk for {volume}")
    number = int(disk["Index"])
    parts = [
        p
        for p in r.call(owner, "Get-WmiObject", {"Class": "Win32_DiskPartition"})
        if int(p.get("DiskIndex", -1)) == number
    ]
    if not parts:
        raise LookupError(f"disk {number} on {owner} has no partition")
    data = max(parts, key=lambda p: int(p.get("Size") or 0))
    run(
        r,
        owner,
        scripts.EXTEND_PARTITION,
        {
            "DiskNumber": i32(number),
            "PartitionNumber": i32(int(data["Index"]) + 1),  # diskpart counts from 1
            "SizeBytes": u64(int(a.params["size_gib"]) * m.GIB),
        },
    )


def add_disk(r: Runner, a: Action) -> None:
    vm, d = a.params["vm"], a.params["disk"]
    if d["format"] == "vhdx" and not PLATFORM.vhdx:
        raise ValueError("Windows Server 2008 R2 has no VHDX: the disk must be a .vhd")
    if int(d["size_gib"]) > VHD_MAX_GIB:
        raise ValueError(f"a VHD holds at most {VHD_MAX_GIB} GiB")
    owner = t.vm_owner(r.estate, vm)
    path = m.vhd_path(d["volume"], vm, d["name"], d["format"])
    new: dict[str, Any] = {
        "Path": path,
        "SizeBytes": u64(int(d["size_gib"]) * m.GIB),
        "Type": d["type"].title(),
    }
    if d["type"] == "differencing":
        new["ParentPath"] = d["parent"]
    run(r, owner, scripts.NEW_VHD, new)
    run(
        r,
        owner,
        scripts.ADD_VHD_DRIVE,
        {
            "VMName": vm,
            "ControllerType": d["controller"].upper(),
            "ControllerNumber": i32(int(d["controller_number"])),
            "ControllerLocation": i32(int(d["slot"])),
            "Path": path,
        },
    )
    later._update_cluster_config(r, a)


def set_vm(r: Runner, a: Action) -> None:
    vm = a.params["vm"]
    params: dict[str, Any] = {"VMName": vm}
    if "memory_mib" in a.params:
        params["MemoryMB"] = u64(int(a.params["memory_mib"]))  # v1 counts memory in MB
    if "vcpus" in a.params:
        params["ProcessorCount"] = u64(int(a.params["vcpus"]))
    run(r, t.vm_owner(r.estate, vm), scripts.SET_VM_RESOURCES, params)
    later._update_cluster_config(r, a)


def detach_disk(r: Runner, a: Action) -> None:
    vm_name = a.params["vm"]
    disk = r.estate.vms[vm_name].disk(a.params["disk"])
    if disk is None:
        return
    owner = t.vm_owner(r.estate, vm_name)
    run(
        r,
        owner,
        scripts.REMOVE_VHD_DRIVE,
        {
            "VMName": vm_name,
            "ControllerType": disk.controller.upper(),
            "ControllerNumber": i32(disk.controller_number),
            "ControllerLocation": i32(disk.slot),
        },
    )
    if a.params.get("delete_file"):
        path = m.vhd_path(disk.volume, vm_name, disk.name, disk.format)
        r.call(owner, "Remove-Item", {"LiteralPath": path})
    later._update_cluster_config(r, a)


def extend_vhd(r: Runner, a: Action) -> None:
    """ExpandVirtualHardDisk: on 2008 R2 only while the VM is off (the planner's table says
    no online resize, and plans a stop first; a running VM here is refused, not tried)."""
    vm_name = a.params["vm"]
    vm = r.estate.vms[vm_name]
    disk = vm.disk(a.params["disk"])
    if disk is None:
        raise LookupError(f"{vm_name} has no disk {a.params['disk']}")
    if vm.power_state == "running" and not PLATFORM.online_vhd_resize:
        raise LookupError(
            f"{vm_name} must be off to resize {disk.name}: Windows Server 2008 R2 has no "
            "online VHD resize"
        )
    if int(a.params["size_gib"]) > VHD_MAX_GIB:
        raise ValueError(f"a VHD holds at most {VHD_MAX_GIB} GiB")
    run(
        r,
        t.vm_owner(r.estate, vm_name),
        scripts.EXPAND_VHD,
        {
            "Path": m.vhd_path(disk.volume, vm_name, disk.name, disk.format),
            "SizeBytes": u64(int(a.params["size_gib"]) * m.GIB),
        },
    )


ACTIONS: dict[str, Callable[[Any, Action], None]] = {
    "begin_monitoring_maintenance": later.ACTIONS["begin_monitoring_maintenance"],
    "end_monitoring_maintenance": later.ACTIONS["end_monitoring_maintenance"],
    "complete_rolling_update": later.complete_rolling_update,
    "update_quorum": later.update_quorum,  # the legacy quorum switches are 2008 R2's own
    "set_vlan_trunk": set_vlan_trunk,
    "match_vswitch": match_vswitch,
    "present_storage": present_storage,
    "add_node": add_node,
    "test_live_migration": test_live_migration,
    "validate_cluster": validate_cluster,
    "extend_lun": extend_lun,
    "extend_volume": extend_volume,
    "add_disk": add_disk,
    "detach_disk": detach_disk,
    "extend_vhd": extend_vhd,
    "set_vm": set_vm,
    **roles.ACTIONS,  # drain_node, resume_node, migrate_vm, stop_vm, start_vm
}
NOT_DONE: dict[str, str] = {
    kind: "not built in the 2008 R2 (WMI v1) path yet"
    for kind in ("patch_node", "verify_node", "convert_disk")
}


def reasons() -> dict[str, str]:
    """Why each action the later path does is not done on 2008 R2 (shown in a blocked plan)."""
    out = {k: f"on Windows Server 2008 R2 (WMI v1 path): {v}" for k, v in later.NOT_DONE.items()}
    out.update({k: f"on Windows Server 2008 R2 (WMI v1 path): {v}" for k, v in NOT_DONE.items()})
    return {k: v for k, v in out.items() if k not in ACTIONS}
