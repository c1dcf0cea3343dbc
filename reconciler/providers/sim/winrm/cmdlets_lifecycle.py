"""The peer's lifecycle cmdlets: build and remove VMs, their adapters and roles, evict nodes.

Each write becomes the simulator action it amounts to, applied through the world rules:
New-VM is a ``create_vm`` of a bare, standalone VM (one processor, no disk, no adapter);
Set-VMProcessor is ``set_vm`` (Set-VMMemory and the SCSI controllers are in
``cmdlets_hardware``); the adapter cmdlets are ``add_vm_nic`` / ``remove_vm_nic`` /
``set_vm_nic``; Remove-VM is ``remove_vm`` (files kept, as on a host);
Remove-ClusterNode is ``evict_node``; Set-ClusterOwnerNode is ``set_preferred_owners``;
Set-VMHardDiskDrive -To* is ``move_disk``; Set-VM -Automatic*Action is
``set_automatic_actions``. Two host facts have no simulator action: whether a VM is a
clustered role (Add-ClusterVirtualMachineRole / Remove-ClusterGroup) and deleting a file no
VM uses (Remove-Item); the peer checks what the cluster would check and writes them to the
world as a change outside the rules (like ``delete_file``).

Simplification: a real New-VM gives the VM one adapter named "Network Adapter"; the world
keeps connected adapters only, so the peer's New-VM adds none. The provider removes any
adapter the plan does not name, which covers the host's default one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from reconciler.model.quorum import has_quorum, members_up
from reconciler.model.records import Estate, VirtualMachine, VmNic, frozen_map
from reconciler.model.rules_base import nic_to_params
from reconciler.model.vlans import VlanListError, parse_vlan_list
from reconciler.providers.sim.winrm import objects as o
from reconciler.providers.sim.winrm import wmi1_scripts
from reconciler.providers.sim.winrm.binding import Param, PeerError, Spec
from reconciler.providers.sim.winrm.cmdlets_read import FC, HV, vm_object
from reconciler.providers.sim.winrm.cmdlets_write import disk_at, set_vlan, set_vm
from reconciler.providers.sim.winrm.world import CSV_ROOT, parse_vhd_path

if TYPE_CHECKING:
    from reconciler.providers.sim.winrm.cmdlets import Host

START_ACTION = {"Nothing": "nothing", "StartIfRunning": "start_if_running", "Start": "start"}
STOP_ACTION = {"TurnOff": "turn_off", "Save": "save", "ShutDown": "shut_down"}


def _vm_here(host: Host, spec: Spec, name: str) -> VirtualMachine:
    for vm in host.local_vms():
        if vm.name.lower() == name.lower():
            return vm
    raise PeerError(
        f'{spec.name} : Hyper-V was unable to find a virtual machine with name "{name}".',
        "InvalidArgument",
        spec.fqid("InvalidParameter"),
        name,
    )


def _nic(host: Host, spec: Spec, vm: VirtualMachine, name: str) -> VmNic:
    for nic in vm.nics:
        if nic.name.lower() == name.lower():
            return nic
    raise PeerError(
        f'{spec.name} : No network adapter named "{name}" was found on {vm.name}.',
        "ObjectNotFound",
        spec.fqid("ObjectNotFound"),
        name,
    )


def _group(host: Host, spec: Spec, name: str) -> VirtualMachine:
    vm = host.estate.vms.get(name)
    if vm is None or vm.cluster != host.this_cluster().name or not vm.highly_available:
        raise PeerError(
            f"The cluster group '{name}' was not found.",
            "ObjectNotFound",
            spec.fqid("ClusterObjectNotFound"),
            name,
        )
    return vm


def _outside_rules(host: Host, record: Any, message: str) -> None:
    """A host fact with no simulator action, written to the world in one transaction."""
    before = host.sim.store.load(cluster=host.cluster)
    after = before.with_record(record)
    host.peer.forget()
    host.sim.change_behind_back(before, after, message)
    host.estate = host.peer.world()
    host.peer.writes += 1
    if host.peer.after_write is not None:
        host.peer.after_write(host.peer.writes)


def _set_nic(host: Host, spec: Spec, vm: VirtualMachine, nic: VmNic) -> None:
    host.apply(
        spec,
        "set_vm_nic",
        f"VirtualMachine/{vm.name}",
        {"vm": vm.name, "nic": nic_to_params(nic)},
        vm.name,
    )


# --- VMs -----------------------------------------------------------------------------------


def new_vm(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    if not p.get("NoVHD"):
        raise PeerError(
            "This peer creates VMs with -NoVHD only (disks are added with Add-VMHardDiskDrive).",
            "InvalidArgument",
            spec.fqid("InvalidParameter"),
        )
    name = p["Name"]
    where = p.get("Path")
    if where is not None:
        volume = where[len(CSV_ROOT) + 1 :].split("\\")[0] if where.startswith(CSV_ROOT) else ""
        if volume not in host.estate.volumes:
            raise PeerError(
                f"New-VM : The system cannot find the path specified ('{where}').",
                "ObjectNotFound",
                spec.fqid("ObjectNotFound"),
                where,
            )
    memory = p["MemoryStartupBytes"]
    if memory % o.MIB:
        raise PeerError(
            "Memory must be a multiple of 2 MB.", "InvalidArgument", spec.fqid("InvalidParameter")
        )
    host.apply(
        spec,
        "create_vm",
        f"VirtualMachine/{name}",
        {
            "vm": name,
            "node": host.node,
            "generation": int(p.get("Generation", 1)),
            "memory_mib": memory // o.MIB,
            "vcpus": 1,
            "highly_available": False,
            "nics": [],
            "disks": [],
            # As a host's New-VM: one SCSI controller on generation 2, none on generation 1.
            "scsi_controllers": 1 if int(p.get("Generation", 1)) == 2 else 0,
        },
        name,
    )
    yield vm_object(host, host.estate.vms[name])


def set_processor(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    vm = _vm_here(host, spec, p["VMName"])
    host.apply(
        spec, "set_vm", f"VirtualMachine/{vm.name}", {"vm": vm.name, "vcpus": p["Count"]}, vm.name
    )
    return iter(())


def set_vm_settings(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    """Set-VM: memory and processors (``set_vm``), automatic actions (``set_automatic_actions``)."""
    automatic = {k: p.pop(k) for k in ("AutomaticStartAction", "AutomaticStopAction") if k in p}
    if "MemoryStartupBytes" in p or "ProcessorCount" in p:
        yield from set_vm(host, spec, p, _in)
    if automatic:
        vm = _vm_here(host, spec, p["Name"])
        params: dict[str, Any] = {"vm": vm.name}
        if "AutomaticStartAction" in automatic:
            params["start"] = START_ACTION[automatic["AutomaticStartAction"]]
        if "AutomaticStopAction" in automatic:
            params["stop"] = STOP_ACTION[automatic["AutomaticStopAction"]]
        host.apply(spec, "set_automatic_actions", f"VirtualMachine/{vm.name}", params, vm.name)


def remove_vm(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    vm = _vm_here(host, spec, p["Name"])
    if vm.power_state != "off":
        raise PeerError(
            f"Remove-VM : The operation cannot be performed while the virtual machine "
            f"'{vm.name}' is in its current state ({vm.power_state}).",
            "InvalidOperation",
            spec.fqid("InvalidState"),
            vm.name,
        )
    host.apply(
        spec,
        "remove_vm",
        f"VirtualMachine/{vm.name}",
        {"vm": vm.name, "node": vm.node, "delete_disks": False},
        vm.name,
    )
    return iter(())


# --- adapters ------------------------------------------------------------------------------


def add_adapter(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    vm = _vm_here(host, spec, p["VMName"])
    if "SwitchName" not in p:
        raise PeerError(
            "This peer's world keeps connected adapters only: give -SwitchName.",
            "InvalidArgument",
            spec.fqid("InvalidParameter"),
        )
    if p["SwitchName"] not in host.this_node().status.switches:
        raise PeerError(
            f"Add-VMNetworkAdapter : Hyper-V was unable to find a virtual switch with name "
            f'"{p["SwitchName"]}".',
            "ObjectNotFound",
            spec.fqid("ObjectNotFound"),
            p["SwitchName"],
        )
    nic = VmNic(p["Name"], p["SwitchName"])
    host.apply(
        spec,
        "add_vm_nic",
        f"VirtualMachine/{vm.name}",
        {"vm": vm.name, "nic": nic_to_params(nic)},
        vm.name,
    )
    return iter(())


def remove_adapter(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    vm = _vm_here(host, spec, p["VMName"])
    nic = _nic(host, spec, vm, p["Name"])
    host.apply(
        spec,
        "remove_vm_nic",
        f"VirtualMachine/{vm.name}",
        {"vm": vm.name, "nic": nic.name},
        vm.name,
    )
    return iter(())


def connect_adapter(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    vm = _vm_here(host, spec, p["VMName"])
    nic = _nic(host, spec, vm, p["Name"])
    if p["SwitchName"] not in host.this_node().status.switches:
        raise PeerError(
            f"Connect-VMNetworkAdapter : Hyper-V was unable to find a virtual switch with name "
            f'"{p["SwitchName"]}".',
            "ObjectNotFound",
            spec.fqid("ObjectNotFound"),
            p["SwitchName"],
        )
    _set_nic(host, spec, vm, replace(nic, switch=p["SwitchName"]))
    return iter(())


def set_adapter(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    vm = _vm_here(host, spec, p["VMName"])
    nic = _nic(host, spec, vm, p["Name"])
    if ("StaticMacAddress" in p) == bool(p.get("DynamicMacAddress")):
        raise PeerError(
            "Parameter set cannot be resolved: give -StaticMacAddress or -DynamicMacAddress.",
            "InvalidArgument",
            spec.fqid("AmbiguousParameterSet"),
        )
    mac = p.get("StaticMacAddress")
    if mac is not None:
        mac = mac.upper()
        if len(mac) != 12 or any(c not in "0123456789ABCDEF" for c in mac):
            raise PeerError(
                f"Cannot validate argument on parameter 'StaticMacAddress': '{mac}' is not 12 "
                "hexadecimal digits.",
                "InvalidArgument",
                spec.fqid("InvalidParameter"),
                mac,
            )
    _set_nic(host, spec, vm, replace(nic, mac=mac))
    return iter(())


def set_adapter_vlan(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    """Set-VMNetworkAdapterVlan: a host adapter (``set_vlan_trunk``) or a VM's (``set_vm_nic``)."""
    if p.get("ManagementOS"):
        yield from set_vlan(host, spec, p, _in)
        return
    if "VMName" not in p:
        raise PeerError(
            "Parameter set cannot be resolved: give -ManagementOS or -VMName.",
            "InvalidArgument",
            spec.fqid("AmbiguousParameterSet"),
        )
    vm = _vm_here(host, spec, p["VMName"])
    nic = _nic(host, spec, vm, p["VMNetworkAdapterName"])
    modes = [m for m in ("Access", "Trunk", "Untagged") if p.get(m)]
    if len(modes) != 1:
        raise PeerError(
            "Parameter set cannot be resolved: give one of -Access, -Trunk, -Untagged.",
            "InvalidArgument",
            spec.fqid("AmbiguousParameterSet"),
        )
    if modes[0] == "Access":
        if not p.get("VlanId"):
            raise PeerError(
                "-Access needs -VlanId.", "InvalidArgument", spec.fqid("InvalidParameter")
            )
        changed = replace(nic, vlan=p["VlanId"], trunk=frozenset(), native_vlan=None)
    elif modes[0] == "Trunk":
        if "AllowedVlanIdList" not in p or "NativeVlanId" not in p:
            raise PeerError(
                "Trunk mode needs -AllowedVlanIdList and -NativeVlanId.",
                "InvalidArgument",
                spec.fqid("InvalidParameter"),
            )
        try:
            allowed = parse_vlan_list(p["AllowedVlanIdList"])
        except VlanListError as exc:
            raise PeerError(
                f"Cannot validate argument on parameter 'AllowedVlanIdList'. {exc}",
                "InvalidArgument",
                spec.fqid("InvalidParameter"),
                p["AllowedVlanIdList"],
            ) from None
        changed = replace(nic, vlan=None, trunk=allowed, native_vlan=p["NativeVlanId"] or None)
    else:
        changed = replace(nic, vlan=None, trunk=frozenset(), native_vlan=None)
    _set_nic(host, spec, vm, changed)


# --- disks ---------------------------------------------------------------------------------


def move_hdd(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    vm = _vm_here(host, spec, p["VMName"])
    disk = disk_at(spec, vm, p)
    host.apply(
        spec,
        "move_disk",
        f"VirtualMachine/{vm.name}",
        {
            "vm": vm.name,
            "disk": disk.name,
            "controller": p.get("ToControllerType", p["ControllerType"]).lower(),
            "controller_number": p.get("ToControllerNumber", disk.controller_number),
            "slot": p.get("ToControllerLocation", disk.slot),
        },
        vm.name,
    )
    return iter(())


def unused_file(estate: Estate, path: str) -> tuple[str, str] | None:
    """(volume, file) of a disk file no VM uses (kept by a detach or a removal)."""
    where = parse_vhd_path(path)
    if where is None or where.volume not in estate.volumes:
        return None
    name = f"{where.vm}/{where.disk}.{where.format}"
    files = estate.volumes[where.volume].status.files
    found = next((f for f in files if f.lower() == name.lower()), None)
    return (where.volume, found) if found is not None else None


def remove_file(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    """Remove-Item: a detached VHD (``delete_file``) or a file a removed VM left."""
    from reconciler.providers.sim.winrm.cmdlets_write import remove_item

    found = unused_file(host.estate, p["LiteralPath"])
    if found is None:
        yield from remove_item(host, spec, p, _in)
        return
    volume_name, name = found
    volume = host.estate.volumes[volume_name]
    files = dict(volume.status.files)
    files.pop(name)
    status = replace(volume.status, files=frozen_map(files))
    _outside_rules(host, replace(volume, status=status), f"deleted {p['LiteralPath']}")


# --- cluster roles and nodes ---------------------------------------------------------------


def _role_object(vm: VirtualMachine) -> Any:
    return o.ps_object(
        o.GROUP_TYPES,
        {
            "Name": vm.name,
            "OwnerNode": vm.node or "",
            "GroupType": o.GroupType.VirtualMachine,
            "State": o.ClusterGroupState.Online
            if vm.power_state == "running"
            else o.ClusterGroupState.Offline,
        },
        vm.name,
    )


def add_vm_role(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    vm = _vm_here(host, spec, p["VMName"])
    cluster = host.this_cluster()
    if vm.highly_available:
        raise PeerError(
            f"The virtual machine '{vm.name}' is already a clustered role.",
            "ResourceExists",
            spec.fqid("ClusterGroupExists"),
            vm.name,
        )
    if not has_quorum(cluster.quorum.mode, len(cluster.nodes), members_up(host.estate, cluster)):
        raise PeerError(
            f"Cluster {cluster.name} has no quorum: no role can be added.",
            "InvalidOperation",
            spec.fqid("InvalidOperation"),
            vm.name,
        )
    clustered = replace(vm, highly_available=True)
    _outside_rules(host, clustered, f"Add-ClusterVirtualMachineRole {vm.name}")
    yield _role_object(clustered)


def stop_group(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    vm = _group(host, spec, p["Name"])
    host.apply(spec, "stop_vm", f"VirtualMachine/{vm.name}", {"vm": vm.name}, vm.name)
    yield _role_object(host.estate.vms[vm.name])


def remove_group(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    vm = _group(host, spec, p["Name"])
    if not p.get("RemoveResources"):
        raise PeerError(
            f"The group '{vm.name}' has resources: give -RemoveResources.",
            "InvalidOperation",
            spec.fqid("InvalidOperation"),
            vm.name,
        )
    _outside_rules(host, replace(vm, highly_available=False), f"Remove-ClusterGroup {vm.name}")
    return iter(())


def remove_node(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    name = p["Name"]
    if name == host.node:
        raise PeerError(
            "Remove-ClusterNode : run it from another node of the cluster.",
            "InvalidOperation",
            spec.fqid("InvalidOperation"),
            name,
        )
    if name not in host.this_cluster().nodes:
        raise PeerError(
            f"The cluster node '{name}' was not found.",
            "ObjectNotFound",
            spec.fqid("ClusterObjectNotFound"),
            name,
        )
    host.apply(spec, "evict_node", f"Node/{name}", {"node": name}, name)
    return iter(())


def owner_list(vm: VirtualMachine) -> Any:
    """Get-ClusterOwnerNode: the group and its preferred owners (node names)."""
    return o.ps_object(
        ("Microsoft.FailoverClusters.PowerShell.ClusterOwnerNodeList",),
        {
            "ClusterObject": vm.name,
            "OwnerNodes": o.ps_list(sorted(vm.preferred_owners or ())),
        },
    )


def get_owners(host: Host, spec: Spec, p: dict[str, Any], inputs: Any) -> Iterator[Any]:
    names = [p["Group"]] if "Group" in p else [str(x["Name"]) for x in inputs or []]
    for name in names:
        yield owner_list(_group(host, spec, name))


def set_owners(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    vm = _group(host, spec, p["Group"])
    host.apply(
        spec,
        "set_preferred_owners",
        f"VirtualMachine/{vm.name}",
        {"vm": vm.name, "owners": sorted(p["Owners"])},
        vm.name,
    )
    yield owner_list(host.estate.vms[vm.name])


S = Param("str", True)
SO = Param("str")
I32 = Param("i32")
I64 = Param("i64")
SW = Param("switch")
CT = Param("choice", choices=("IDE", "SCSI"))

LIFECYCLE_SPECS: dict[str, tuple[Spec, Any]] = {
    "New-VM": (
        Spec(
            "New-VM",
            f"{HV}.NewVM",
            {
                "Name": S,
                "Generation": Param("i16"),
                "MemoryStartupBytes": Param("i64", True),
                "NoVHD": SW,
                "Path": SO,
            },
        ),
        new_vm,
    ),
    "Set-VMProcessor": (
        Spec("Set-VMProcessor", f"{HV}.SetVMProcessor", {"VMName": S, "Count": Param("i64", True)}),
        set_processor,
    ),
    "Set-VM": (
        Spec(
            "Set-VM",
            f"{HV}.SetVM",
            {
                "Name": S,
                "MemoryStartupBytes": I64,
                "ProcessorCount": I64,
                "AutomaticStartAction": Param("choice", choices=tuple(START_ACTION)),
                "AutomaticStopAction": Param("choice", choices=tuple(STOP_ACTION)),
            },
        ),
        set_vm_settings,
    ),
    "Remove-VM": (Spec("Remove-VM", f"{HV}.RemoveVM", {"Name": S, "Force": SW}), remove_vm),
    "Add-VMNetworkAdapter": (
        Spec(
            "Add-VMNetworkAdapter",
            f"{HV}.AddVMNetworkAdapter",
            {"VMName": S, "Name": S, "SwitchName": SO},
        ),
        add_adapter,
    ),
    "Remove-VMNetworkAdapter": (
        Spec("Remove-VMNetworkAdapter", f"{HV}.RemoveVMNetworkAdapter", {"VMName": S, "Name": S}),
        remove_adapter,
    ),
    "Connect-VMNetworkAdapter": (
        Spec(
            "Connect-VMNetworkAdapter",
            f"{HV}.ConnectVMNetworkAdapter",
            {"VMName": S, "Name": S, "SwitchName": S},
        ),
        connect_adapter,
    ),
    "Set-VMNetworkAdapter": (
        Spec(
            "Set-VMNetworkAdapter",
            f"{HV}.SetVMNetworkAdapter",
            {"VMName": S, "Name": S, "StaticMacAddress": SO, "DynamicMacAddress": SW},
        ),
        set_adapter,
    ),
    "Set-VMNetworkAdapterVlan": (
        Spec(
            "Set-VMNetworkAdapterVlan",
            f"{HV}.SetVMNetworkAdapterVlan",
            {
                "ManagementOS": SW,
                "VMName": SO,
                "VMNetworkAdapterName": S,
                "Access": SW,
                "VlanId": I32,
                "Trunk": SW,
                "Untagged": SW,
                "AllowedVlanIdList": SO,
                "NativeVlanId": I32,
            },
        ),
        set_adapter_vlan,
    ),
    "Set-VMHardDiskDrive": (
        Spec(
            "Set-VMHardDiskDrive",
            f"{HV}.SetVMHardDiskDrive",
            {
                "VMName": S,
                "ControllerType": Param("choice", True, ("IDE", "SCSI")),
                "ControllerNumber": Param("i32", True),
                "ControllerLocation": Param("i32", True),
                "ToControllerType": CT,
                "ToControllerNumber": I32,
                "ToControllerLocation": I32,
            },
        ),
        move_hdd,
    ),
    "Remove-Item": (
        Spec("Remove-Item", "Microsoft.PowerShell.Commands.RemoveItemCommand", {"LiteralPath": S}),
        remove_file,
    ),
    "Add-ClusterVirtualMachineRole": (
        Spec(
            "Add-ClusterVirtualMachineRole",
            f"{FC}.Commands.AddClusterVirtualMachineRoleCommand",
            {"VMName": S},
        ),
        add_vm_role,
    ),
    "Stop-ClusterGroup": (
        Spec("Stop-ClusterGroup", f"{FC}.Commands.StopClusterGroupCommand", {"Name": S}),
        stop_group,
    ),
    "Remove-ClusterGroup": (
        Spec(
            "Remove-ClusterGroup",
            f"{FC}.Commands.RemoveClusterGroupCommand",
            {"Name": S, "RemoveResources": SW, "Force": SW},
        ),
        remove_group,
    ),
    "Remove-ClusterNode": (
        Spec(
            "Remove-ClusterNode",
            f"{FC}.Commands.RemoveClusterNodeCommand",
            {"Name": S, "Force": SW},
        ),
        remove_node,
    ),
    "Get-ClusterOwnerNode": (
        Spec(
            "Get-ClusterOwnerNode",
            f"{FC}.Commands.GetClusterOwnerNodeCommand",
            {"Group": SO, "InputObject": Param("obj")},
            takes_input=True,
        ),
        get_owners,
    ),
    # The same cluster validation as on 2008 R2 (the validate_cluster rule).
    "Test-Cluster": wmi1_scripts.CMDLETS["Test-Cluster"],
    "Set-ClusterOwnerNode": (
        Spec(
            "Set-ClusterOwnerNode",
            f"{FC}.Commands.SetClusterOwnerNodeCommand",
            {"Group": S, "Owners": Param("strs", True)},
        ),
        set_owners,
    ),
}
