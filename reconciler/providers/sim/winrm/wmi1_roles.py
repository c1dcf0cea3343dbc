"""Cluster roles on the peer's 2008 R2 host: pause and resume a node, move, stop and start a
VM role, and the scripts the provider sends for those (``Stop-VmRole``, ``Set-VmState``).

Every change goes through the simulator's rules (``Host.apply``): a move is ``migrate_vm``,
a stop ``stop_vm``. The one change no rule has is 2008 R2's pause of a node that still runs
VMs (the model's ``drain_node`` needs it empty): that pause is written as a world change,
and the roles are then moved off one by one by the caller, each through ``migrate_vm``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from reconciler.providers.sim.winrm import objects as o
from reconciler.providers.sim.winrm.binding import Param, PeerError, Spec
from reconciler.providers.sim.winrm.cmdlets_write import WRITE_SPECS, move_vm_role

if TYPE_CHECKING:
    from reconciler.providers.sim.winrm.cmdlets import Host

FC = "Microsoft.FailoverClusters.PowerShell.Commands"


def _result(method: str, code: int, job: str = "") -> Any:
    return o.ps_object(
        ("System.Management.Automation.PSCustomObject",),
        {"Method": method, "ReturnValue": code, "Job": job},
    )


def _group(host: Host, spec: Spec, name: str) -> Any:
    vm = host.estate.vms.get(name)
    if vm is None or vm.cluster != host.cluster or not vm.highly_available:
        raise PeerError(
            f"The cluster group '{name}' was not found.",
            "ObjectNotFound",
            spec.fqid("ClusterObjectNotFound"),
            name,
        )
    return vm


def _group_object(host: Host, name: str) -> Any:
    vm = host.estate.vms[name]
    state = (
        o.ClusterGroupState.Online if vm.power_state == "running" else o.ClusterGroupState.Offline
    )
    return o.ps_object(o.GROUP_TYPES, {"Name": vm.name, "OwnerNode": vm.node or "", "State": state})


def suspend_node(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    """2008 R2 pauses only (no -Drain): running roles stay until moved one by one."""
    name = p["Name"]
    node = host.estate.nodes.get(name)
    if node is None or node.cluster != host.cluster:
        raise PeerError(
            f"The node '{name}' was not found.",
            "ObjectNotFound",
            spec.fqid("ClusterObjectNotFound"),
            name,
        )
    if not any(vm.power_state == "running" for vm in host.estate.vms_on(name)):
        host.apply(spec, "drain_node", f"Node/{name}", {"node": name}, name)
        return iter(())
    host.peer.forget()
    before = host.sim.store.load(cluster=host.cluster)
    after = before.with_record(replace(before.nodes[name], maintenance=True))
    host.sim.change_behind_back(before, after, f"paused {name}")
    host.estate = host.peer.world()
    return iter(())


def resume_node(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    cmd_spec, fn = WRITE_SPECS["Resume-ClusterNode"]
    yield from fn(host, cmd_spec, {"Name": p["Name"]}, None)


def move_group(host: Host, spec: Spec, p: dict[str, Any], inputs: Any) -> Iterator[Any]:
    """Move-ClusterGroup of a VM role: 2008 R2's quick migration (save, move, restore), or
    the move of an off VM's registration."""
    yield from move_vm_role(host, spec, {**p, "MigrationType": "Quick"}, inputs)


def start_group(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    vm = _group(host, spec, p["Name"])
    host.apply(spec, "start_vm", f"VirtualMachine/{vm.name}", {"vm": vm.name}, vm.name)
    yield _group_object(host, vm.name)


def stop_group(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    vm = _group(host, spec, p["Name"])
    host.apply(spec, "stop_vm", f"VirtualMachine/{vm.name}", {"vm": vm.name}, vm.name)
    yield _group_object(host, vm.name)


def stop_vm_role(host: Host, spec: Spec, p: dict[str, Any], inputs: Any) -> Iterator[Any]:
    """The script: the group taken offline with the VM resource shutting the guest down."""
    list(stop_group(host, spec, {"Name": p["VMName"]}, inputs))
    yield _result("Stop-ClusterGroup", 0)


def set_vm_state(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    """The script for a VM that is not clustered: RequestStateChange(2) as a job, or the
    guest shutdown (returns 0 at once; the caller watches EnabledState)."""
    from reconciler.providers.sim.winrm.wmi1_scripts import job

    name = p["VMName"]
    vm = next((v for v in host.local_vms() if v.name == name), None)
    if vm is None:
        raise PeerError(
            f"no virtual machine named {name} on this host", "ObjectNotFound", "RuntimeException"
        )
    if p["State"] == "Running":
        try:
            host.apply(spec, "start_vm", f"VirtualMachine/{name}", {"vm": name}, name)
        except PeerError as err:
            yield job(host, "RequestStateChange", err)
            return
        yield job(host, "RequestStateChange", None)
        return
    if vm.power_state != "running":
        yield _result("InitiateShutdown", 32775)  # v1: invalid state for this operation
        return
    host.apply(spec, "stop_vm", f"VirtualMachine/{name}", {"vm": name}, name)
    yield _result("InitiateShutdown", 0)


SCRIPTS: dict[str, Any] = {"Stop-VmRole": stop_vm_role, "Set-VmState": set_vm_state}
NAME = Param("str", True)
CMDLETS: dict[str, tuple[Spec, Any]] = {
    # 2008 R2's Suspend-ClusterNode and Resume-ClusterNode: no -Drain, no -Failback.
    "Suspend-ClusterNode": (
        Spec("Suspend-ClusterNode", f"{FC}.SuspendClusterNodeCommand", {"Name": NAME}),
        suspend_node,
    ),
    "Resume-ClusterNode": (
        Spec("Resume-ClusterNode", f"{FC}.ResumeClusterNodeCommand", {"Name": NAME}),
        resume_node,
    ),
    "Move-ClusterGroup": (
        Spec("Move-ClusterGroup", f"{FC}.MoveClusterGroupCommand", {"Name": NAME, "Node": NAME}),
        move_group,
    ),
    "Start-ClusterGroup": (
        Spec("Start-ClusterGroup", f"{FC}.StartClusterGroupCommand", {"Name": NAME}),
        start_group,
    ),
    "Stop-ClusterGroup": (
        Spec("Stop-ClusterGroup", f"{FC}.StopClusterGroupCommand", {"Name": NAME}),
        stop_group,
    ),
}
