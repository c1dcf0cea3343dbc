"""Cluster roles on Windows Server 2008 R2: drain and resume a node, move and power VMs.

2008 R2's FailoverClusters has no ``Suspend-ClusterNode -Drain`` (2012): a drain is done the
way an administrator of that release does it. The node is paused (nothing fails over onto
it), each VM role still running there is live-migrated with Move-ClusterVirtualMachineRole
to a node the model's own placement rules accept, and the node is checked to run nothing.
Roles of VMs that are off stay owned by the paused node, as the model's drain has it
(``rules._drain_node``: nothing *runs* there).

A clustered VM is stopped and started through its cluster group (Stop-/Start-ClusterGroup),
as Failover Cluster Manager does: the cluster stays the authority on the role, so its
failover policy never fights the change. A VM that is not clustered is driven through WMI
(``Set-VmState.ps1``: RequestStateChange, or the guest shutdown of Msvm_ShutdownComponent).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from reconciler.model.actions import Action
from reconciler.model.capacity import free_memory_mib
from reconciler.model.records import Estate, VirtualMachine
from reconciler.model.rules import migration_problems
from reconciler.providers.hyperv import targeting as t
from reconciler.providers.hyperv.wmi1 import scripts
from reconciler.providers.hyperv.wmi1.jobs import Runner, run
from reconciler.providers.hyperv.wmi1.observe import wmi

RUNNING, OFF = 2, 3  # Msvm_ComputerSystem.EnabledState


def _node_state(r: Runner, via: str, node: str) -> str:
    got = r.call(via, "Get-ClusterNode", {"Name": [node]})
    return str(got[0].get("State")) if got else ""


def _running_roles(r: Runner, via: str, node: str) -> list[str]:
    """The VM roles owned by ``node`` whose group is online (the VM runs)."""
    return sorted(
        str(g["Name"])
        for g in r.call(via, "Get-ClusterGroup", {})
        if str(g.get("GroupType")) == "VirtualMachine"
        and str(g.get("OwnerNode")) == node
        and str(g.get("State")) == "Online"
    )


def destination(estate: Estate, vm: VirtualMachine, leaving: str) -> str:
    """Where a role leaving a paused node goes: a node the model's migration rules accept
    for a live migration, the one with the most free memory (then by name)."""
    cluster = estate.clusters[vm.cluster]
    why: dict[str, list[str]] = {}
    fits: list[tuple[int, str]] = []
    for name in sorted(cluster.nodes):
        if name == leaving or name not in estate.nodes:
            continue
        problems = migration_problems(estate, vm, name, "live")
        if problems:
            why[name] = problems
        else:
            fits.append((-free_memory_mib(estate, name), name))
    if not fits:
        detail = "; ".join(f"{n}: {', '.join(p)}" for n, p in why.items()) or "no other node"
        raise LookupError(f"no node can take {vm.name} from {leaving} ({detail})")
    return min(fits)[1]


def drain_node(r: Runner, a: Action) -> None:
    node = a.params["node"]
    via = t.other_member(r.estate, a.cluster, node)
    r.call(via, "Suspend-ClusterNode", {"Name": node})  # 2008 R2: pauses, moves nothing
    r.poll(lambda: _node_state(r, via, node) == "Paused", t.CALL_SECONDS, f"{node} to pause")
    estate = r.estate
    for name in _running_roles(r, via, node):
        vm = estate.vms.get(name)
        if vm is None:
            raise LookupError(f"{node} runs the role {name}, which was not observed: plan again")
        to = destination(estate, replace(vm, node=node), node)
        r.call(
            t.migration_node(estate, a.cluster, to),
            "Move-ClusterVirtualMachineRole",
            {"Name": name, "Node": to},
            deadline=t.MIGRATION_SECONDS,
        )
        estate = estate.with_record(replace(vm, node=to))
    roles = _running_roles(r, via, node)
    running = [
        str(s.get("ElementName"))
        for s in wmi(r.call, node, "Msvm_ComputerSystem", "Caption='Virtual Machine'")
        if int(s.get("EnabledState") or 0) == RUNNING
    ]
    left = sorted(set(roles) | set(running))
    if left:
        raise ValueError(
            f"{node} is paused but still runs {', '.join(left)} after moving its roles one by "
            "one (a VM that is not clustered is not moved by a drain): move or stop them, then "
            "apply again"
        )


def resume_node(r: Runner, a: Action) -> None:
    node = a.params["node"]
    via = t.other_member(r.estate, a.cluster, node)
    r.call(via, "Resume-ClusterNode", {"Name": node})  # 2008 R2: no -Failback
    r.poll(lambda: _node_state(r, via, node) == "Up", t.CALL_SECONDS, f"{node} to resume")


def migrate_vm(r: Runner, a: Action) -> None:
    """Live: Move-ClusterVirtualMachineRole (2008 R2's has no -MigrationType). Quick (save,
    move, restore) and offline (the VM is off): Move-ClusterGroup, which is what a quick
    migration is on that release."""
    vm, to = a.params["vm"], a.params["destination"]
    via = t.migration_node(r.estate, a.cluster, to)
    live = a.params["method"] == "live"
    cmdlet = "Move-ClusterVirtualMachineRole" if live else "Move-ClusterGroup"
    r.call(via, cmdlet, {"Name": vm, "Node": to}, deadline=t.MIGRATION_SECONDS)


def _clustered(r: Runner, vm: str) -> bool:
    record = r.estate.vms.get(vm)
    return record is None or record.highly_available


def _wait_power(r: Runner, node: str, vm: str, state: int) -> None:
    def there() -> bool:
        systems = wmi(r.call, node, "Msvm_ComputerSystem", "Caption='Virtual Machine'")
        found = [s for s in systems if s.get("ElementName") == vm]
        if not found:
            raise LookupError(f"{vm} is gone from {node}")
        return int(found[0].get("EnabledState") or 0) == state

    r.poll(there, t.POWER_SECONDS, f"{vm} to {'start' if state == RUNNING else 'shut down'}")


def stop_vm(r: Runner, a: Action) -> None:
    vm = a.params["vm"]
    owner = t.vm_owner(r.estate, vm)
    if _clustered(r, vm):
        # Its VM resource shut down (not saved, 2008 R2's default offline action) for this stop.
        run(r, owner, scripts.STOP_VM_ROLE, {"VMName": vm}, t.POWER_SECONDS)
        return
    run(r, owner, scripts.SET_VM_STATE, {"VMName": vm, "State": "Off"}, t.POWER_SECONDS)
    _wait_power(r, owner, vm, OFF)


def start_vm(r: Runner, a: Action) -> None:
    vm = a.params["vm"]
    owner = t.vm_owner(r.estate, vm)
    if _clustered(r, vm):
        r.call(owner, "Start-ClusterGroup", {"Name": vm}, deadline=t.POWER_SECONDS)
        return
    run(r, owner, scripts.SET_VM_STATE, {"VMName": vm, "State": "Running"}, t.POWER_SECONDS)


ACTIONS: dict[str, Any] = {
    "drain_node": drain_node,
    "resume_node": resume_node,
    "migrate_vm": migrate_vm,
    "stop_vm": stop_vm,
    "start_vm": start_vm,
}
