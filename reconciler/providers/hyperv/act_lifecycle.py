"""apply() for the whole life of a VM or node: create, remove, adapters, disk moves, settings.

Same rules as ``act``: values only ever become typed parameters, every step runs on a node
(the VM's owner, another member for a node leaving). Each sequence reads what is there first
and does only what is missing, so a run cut short (a lost connection, a retry, a saved plan
applied again) finishes the job instead of making a second VM or adapter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.model.actions import Action
from reconciler.model.records import VmNic
from reconciler.model.rules_base import nic_from_params
from reconciler.model.vlans import format_vlan_list
from reconciler.providers.hyperv import model_map as m
from reconciler.providers.hyperv import targeting as t
from reconciler.providers.hyperv.act import Runner, _update_cluster_config
from reconciler.providers.hyperv.act_hardware import ACTIONS as HARDWARE_ACTIONS
from reconciler.providers.hyperv.act_hardware import (
    controllers_for,
    converge_controllers,
    memory_params,
)
from reconciler.providers.hyperv.errors import CommandError
from reconciler.providers.hyperv.wire import i16, i32, i64, u64

START_ACTION = {v: k for k, v in m.START_ACTION.items()}  # model word -> Hyper-V name
STOP_ACTION = {v: k for k, v in m.STOP_ACTION.items()}
VHD_KIND = {"fixed": "Fixed", "dynamic": "Dynamic", "differencing": "Differencing"}


# --- reading what is there -----------------------------------------------------------------


def _vm(r: Runner, node: str, name: str) -> dict[str, Any] | None:
    """The VM of that exact name on ``node`` (Get-VM -Name is a wildcard: match here)."""
    return next((v for v in r.call(node, "Get-VM", {}) if v.get("Name") == name), None)


def _group(r: Runner, via: str, name: str) -> dict[str, Any] | None:
    return next((g for g in r.call(via, "Get-ClusterGroup", {}) if g.get("Name") == name), None)


def _nics(r: Runner, node: str, vm: str) -> dict[str, VmNic]:
    """The VM's adapters as the model sees them (switch, access VLAN or trunk, static MAC)."""
    adapters = r.call(node, "Get-VMNetworkAdapter", {"VMName": [vm]})
    vlans = {
        str((v.get("ParentAdapter") or {}).get("Name")): v
        for v in r.call(node, "Get-VMNetworkAdapterVlan", {"VMName": [vm]})
    }
    out: dict[str, VmNic] = {}
    for a in adapters:
        nic = m.vm_nic(a, vlans.get(str(a["Name"])), f"VirtualMachine/{vm}", m.Warnings())
        # An adapter whose VLAN mode the model has no word for: set it again from the plan.
        out[str(a["Name"])] = nic or VmNic(str(a["Name"]), str(a.get("SwitchName") or ""), -1)
    return out


def _exists(r: Runner, node: str, path: str) -> bool:
    try:
        r.call(node, "Get-VHD", {"Path": [path]})
    except CommandError as exc:
        if exc.category == "ObjectNotFound":
            return False
        raise
    return True


# --- adapters ------------------------------------------------------------------------------


def _vlan_params(vm: str, nic: VmNic) -> dict[str, Any]:
    base: dict[str, Any] = {"VMName": vm, "VMNetworkAdapterName": nic.name}
    if nic.trunk:
        return {
            **base,
            "Trunk": None,
            "AllowedVlanIdList": format_vlan_list(nic.trunk),
            "NativeVlanId": i32(nic.native_vlan or 0),
        }
    if nic.vlan is not None:
        return {**base, "Access": None, "VlanId": i32(nic.vlan)}
    return {**base, "Untagged": None}


def _vlans_of(nic: VmNic) -> tuple[int | None, frozenset[int], int | None]:
    return (nic.vlan, nic.trunk, nic.native_vlan)


def _converge_nic(r: Runner, node: str, vm: str, have: VmNic | None, want: VmNic) -> None:
    """From ``have`` (None: no such adapter) to ``want``: add or connect, VLANs, MAC."""
    untagged = VmNic(want.name, want.switch)
    if have is None:
        r.call(
            node,
            "Add-VMNetworkAdapter",
            {"VMName": vm, "Name": want.name, "SwitchName": want.switch},
        )
        have = untagged
    if have.switch != want.switch:
        if _vlans_of(have) != _vlans_of(want) and _vlans_of(have) != _vlans_of(untagged):
            # Neither switch need carry the other's VLANs: go through untagged.
            r.call(node, "Set-VMNetworkAdapterVlan", _vlan_params(vm, untagged))
            have = VmNic(have.name, have.switch, mac=have.mac)
        r.call(
            node,
            "Connect-VMNetworkAdapter",
            {"VMName": vm, "Name": want.name, "SwitchName": want.switch},
        )
    if _vlans_of(have) != _vlans_of(want):
        r.call(node, "Set-VMNetworkAdapterVlan", _vlan_params(vm, want))
    if have.mac != want.mac:
        mac: dict[str, Any] = (
            {"StaticMacAddress": want.mac} if want.mac else {"DynamicMacAddress": None}
        )
        r.call(node, "Set-VMNetworkAdapter", {"VMName": vm, "Name": want.name, **mac})


def add_vm_nic(r: Runner, a: Action) -> None:
    vm = a.params["vm"]
    node = t.vm_owner(r.estate, vm)
    want = nic_from_params(a.params["nic"])
    _converge_nic(r, node, vm, _nics(r, node, vm).get(want.name), want)
    _update_cluster_config(r, a)


def set_vm_nic(r: Runner, a: Action) -> None:
    vm = a.params["vm"]
    node = t.vm_owner(r.estate, vm)
    want = nic_from_params(a.params["nic"])
    have = _nics(r, node, vm).get(want.name)
    if have is None:
        raise LookupError(f"{vm} on {node} has no network adapter {want.name}")
    _converge_nic(r, node, vm, have, want)
    _update_cluster_config(r, a)


def remove_vm_nic(r: Runner, a: Action) -> None:
    vm, name = a.params["vm"], a.params["nic"]
    node = t.vm_owner(r.estate, vm)
    if name in _nics(r, node, vm):
        r.call(node, "Remove-VMNetworkAdapter", {"VMName": vm, "Name": name})
    _update_cluster_config(r, a)


# --- create_vm -----------------------------------------------------------------------------


def _refusals(p: Mapping[str, Any]) -> list[str]:
    """What this provider cannot build, said before anything is made."""
    out = []
    for d in p["disks"]:
        if d.get("file"):
            out.append(
                f"disk {d['name']}: attaching the existing file {d['file']} is not built in "
                "the hyperv provider (it keeps disks at <volume>\\<vm>\\<disk>): attach it by "
                "hand, or give the disk no file"
            )
    if p.get("anti_affinity_group"):
        out.append(
            f"anti_affinity_group {p['anti_affinity_group']}: AntiAffinityClassNames is a "
            "property of the cluster group with no cmdlet to set it, and this provider sends "
            "no script text"
        )
    return out


def _home(p: Mapping[str, Any]) -> str | None:
    """Where the VM's configuration lives: the CSV of its boot disk (else its first disk)."""
    disks = list(p["disks"])
    boot = next((d for d in disks if d.get("boot")), disks[0] if disks else None)
    return f"{m.CSV_ROOT}\\{boot['volume']}" if boot else None


def _disks(r: Runner, node: str, vm: str, disks: list[Mapping[str, Any]]) -> None:
    drives = {
        (
            str(h.get("ControllerType")).lower(),
            int(h["ControllerNumber"]),
            int(h["ControllerLocation"]),
        ): str(h.get("Path") or "")
        for h in r.call(node, "Get-VMHardDiskDrive", {"VMName": [vm]})
    }
    for d in disks:
        path = m.vhd_path(d["volume"], vm, d["name"], d["format"])
        slot = (d["controller"], int(d["controller_number"]), int(d["slot"]))
        there = drives.get(slot)
        if there is not None:
            if there.lower() != path.lower():
                raise ValueError(
                    f"{vm} on {node} has {there} at {slot[0].upper()} {slot[1]}:{slot[2]}, "
                    f"where the plan puts {path}: detach it by hand"
                )
            continue
        if not _exists(r, node, path):
            new: dict[str, Any] = {
                "Path": path,
                "SizeBytes": u64(int(d["size_gib"]) * m.GIB),
                VHD_KIND[d["type"]]: None,
            }
            if d["type"] == "differencing":
                new["ParentPath"] = d["parent"]
            r.call(node, "New-VHD", new, deadline=t.DISK_SECONDS)
        r.call(
            node,
            "Add-VMHardDiskDrive",
            {
                "VMName": vm,
                "ControllerType": d["controller"].upper(),
                "ControllerNumber": i32(slot[1]),
                "ControllerLocation": i32(slot[2]),
                "Path": path,
            },
        )


def create_vm(r: Runner, a: Action) -> None:
    """New-VM (no VHD), the clustered role, processors, memory, SCSI controllers, disks, adapters.

    A VM of that name already on the node, or a role of that name on any node (a run cut
    short), is finished, not made twice; one of another generation is refused.
    """
    p = a.params
    name, node = p["vm"], p["node"]
    refused = _refusals(p)
    if refused:
        raise ValueError("; ".join(refused))
    generation, memory = int(p["generation"]), i64(int(p["memory_mib"]) * m.MIB)
    group = _group(r, node, name)
    if group is not None and group.get("OwnerNode"):
        node = str(group["OwnerNode"])  # a cut-short run's role, failed over since: finish it
    vm = _vm(r, node, name)
    if vm is None:
        new: dict[str, Any] = {
            "Name": name,
            "Generation": i16(generation),
            "MemoryStartupBytes": memory,
            "NoVHD": None,
        }
        home = _home(p)
        if home is not None:
            new["Path"] = home
        r.call(node, "New-VM", new)
        clustered = False
    else:
        if int(vm.get("Generation", 0)) != generation:
            raise ValueError(
                f"{node} already has a generation-{vm.get('Generation')} VM named {name}, the "
                f"plan makes generation {generation}: rename or remove it"
            )
        clustered = bool(vm.get("IsClustered"))
    highly_available = bool(p.get("highly_available", True))
    if highly_available and not clustered:
        # At once: a run cut short after this leaves a clustered VM that a new plan finishes
        # with its own steps (the planner has no step that makes a standalone VM a role).
        r.call(node, "Add-ClusterVirtualMachineRole", {"VMName": name})
    r.call(node, "Set-VMProcessor", {"VMName": name, "Count": i64(int(p["vcpus"]))})
    r.call(node, "Set-VMMemory", memory_params(name, int(p["memory_mib"]), p.get("dynamic_memory")))
    controllers = controllers_for(p)
    if controllers is not None:  # before the disks that sit on them
        converge_controllers(r, node, name, controllers)
    _disks(r, node, name, list(p["disks"]))
    want = [nic_from_params(n) for n in p["nics"]]
    have = _nics(r, node, name)
    # New-VM's own "Network Adapter", or one a cut-short run left under another name.
    for extra in sorted(have.keys() - {n.name for n in want}):
        r.call(node, "Remove-VMNetworkAdapter", {"VMName": name, "Name": extra})
    for nic in want:
        _converge_nic(r, node, name, have.get(nic.name), nic)
    if highly_available:
        r.call(node, "Update-ClusterVirtualMachineConfiguration", {"Name": name})


# --- remove_vm -----------------------------------------------------------------------------


def remove_vm(r: Runner, a: Action) -> None:
    """Stop and remove the role and the VM; delete its disk files only under delete_disks.

    The files deleted are the drives' own paths read from the host before the VM goes, and
    only those the plan lists (``files``): nothing else is ever removed.
    """
    p = a.params
    name = p["vm"]
    record = r.estate.vms.get(name)
    node = (record.node if record is not None else None) or p.get("node")
    if not node:
        raise LookupError(f"VM {name} is on no observed node")
    via = t.any_member(r.estate, a.cluster)
    group = _group(r, via, name)
    if group is not None:
        if str(group.get("State")) != "Offline":
            r.call(via, "Stop-ClusterGroup", {"Name": name}, deadline=t.POWER_SECONDS)
        r.call(via, "Remove-ClusterGroup", {"Name": name, "RemoveResources": None, "Force": None})
    vm = _vm(r, node, name)
    paths: list[str] = []
    if vm is not None:
        consented = {str(f).lower() for f in p.get("files") or []}
        for h in r.call(node, "Get-VMHardDiskDrive", {"VMName": [name]}):
            parts = m.vhd_parts(str(h.get("Path") or ""))
            if parts is not None and f"{parts[1]}/{parts[2]}.{parts[3]}".lower() in consented:
                paths.append(str(h["Path"]))
        if str(vm.get("State")) != "Off":
            r.call(node, "Stop-VM", {"Name": name, "Force": None}, deadline=t.POWER_SECONDS)
        r.call(node, "Remove-VM", {"Name": name, "Force": None})
    if not p.get("delete_disks"):
        return
    for path in paths:
        try:
            r.call(node, "Remove-Item", {"LiteralPath": path})
        except CommandError as exc:
            if not exc.fq_error_id.startswith("PathNotFound"):
                raise


# --- nodes, disks, settings ----------------------------------------------------------------


def evict_node(r: Runner, a: Action) -> None:
    """Remove-ClusterNode from another member; the drain before it is its own action."""
    node = a.params["node"]
    via = t.other_member(r.estate, a.cluster, node)
    members = {str(n.get("Name")) for n in r.call(via, "Get-ClusterNode", {})}
    if node in members:
        r.call(via, "Remove-ClusterNode", {"Name": node, "Force": None})


def move_disk(r: Runner, a: Action) -> None:
    vm_name = a.params["vm"]
    vm = r.estate.vms.get(vm_name)
    disk = vm.disk(a.params["disk"]) if vm is not None else None
    if vm is None or disk is None:
        raise LookupError(f"{vm_name} has no observed disk {a.params['disk']}")
    node = t.vm_owner(r.estate, vm_name)
    path = m.vhd_path(disk.volume, vm_name, disk.name, disk.format).lower()
    drive = next(
        (
            h
            for h in r.call(node, "Get-VMHardDiskDrive", {"VMName": [vm_name]})
            if str(h.get("Path") or "").lower() == path
        ),
        None,
    )
    if drive is None:
        raise LookupError(f"{vm_name} on {node} has no drive for {path}")
    to = (
        str(a.params["controller"]).upper(),
        int(a.params["controller_number"]),
        int(a.params["slot"]),
    )
    at = (
        str(drive.get("ControllerType")).upper(),
        int(drive["ControllerNumber"]),
        int(drive["ControllerLocation"]),
    )
    if at != to:
        r.call(
            node,
            "Set-VMHardDiskDrive",
            {
                "VMName": vm_name,
                "ControllerType": at[0],
                "ControllerNumber": i32(at[1]),
                "ControllerLocation": i32(at[2]),
                "ToControllerType": to[0],
                "ToControllerNumber": i32(to[1]),
                "ToControllerLocation": i32(to[2]),
            },
        )
    _update_cluster_config(r, a)


def set_preferred_owners(r: Runner, a: Action) -> None:
    """Set-ClusterOwnerNode: a preference for the next failover; the VM does not move."""
    via = t.any_member(r.estate, a.cluster)
    owners = sorted(str(n) for n in a.params["owners"])
    r.call(via, "Set-ClusterOwnerNode", {"Group": a.params["vm"], "Owners": owners})


def set_automatic_actions(r: Runner, a: Action) -> None:
    vm = a.params["vm"]
    params: dict[str, Any] = {"Name": vm}
    if "start" in a.params:
        params["AutomaticStartAction"] = START_ACTION[a.params["start"]]
    if "stop" in a.params:
        params["AutomaticStopAction"] = STOP_ACTION[a.params["stop"]]
    r.call(t.vm_owner(r.estate, vm), "Set-VM", params)
    _update_cluster_config(r, a)


ACTIONS = {
    "create_vm": create_vm,
    "remove_vm": remove_vm,
    "evict_node": evict_node,
    "add_vm_nic": add_vm_nic,
    "remove_vm_nic": remove_vm_nic,
    "set_vm_nic": set_vm_nic,
    "move_disk": move_disk,
    "set_preferred_owners": set_preferred_owners,
    "set_automatic_actions": set_automatic_actions,
    **HARDWARE_ACTIONS,  # set_vm_memory, set_scsi_controllers
}
