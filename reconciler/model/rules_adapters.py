"""World rules for a VM's network adapters: add, remove, and change one (switch, VLANs, MAC).

Hyper-V connects an adapter to another switch and changes its VLANs while the VM runs; it
adds and removes adapters of a running VM only on generation 2 from 2016 (hot add); a MAC
address is set only while the VM is off.
"""

from __future__ import annotations

from dataclasses import replace

from reconciler.model.actions import Action
from reconciler.model.platforms import platform
from reconciler.model.records import Estate, VirtualMachine, VmNic
from reconciler.model.rules_base import (
    RuleResult,
    already_done,
    fail,
    nic_from_params,
    placement_problems,
    vm_of,
)

MAX_ADAPTERS = 8  # synthetic network adapters per VM


def hot_pluggable(estate: Estate, vm: VirtualMachine) -> bool:
    """Adapters can be added to and removed from this VM while it runs."""
    return vm.generation == 2 and platform(estate.clusters[vm.cluster].platform).nic_hot_add


def _connectivity(estate: Estate, vm: VirtualMachine) -> list[str]:
    """A running VM keeps what its adapters need on its host."""
    if vm.power_state != "running" or vm.node is None:
        return []
    return placement_problems(estate, vm, vm.node)


def _add_vm_nic(estate: Estate, action: Action) -> RuleResult:
    vm = vm_of(estate, action)
    if vm is None:
        return fail(estate, f"VM {action.params['vm']} does not exist")
    nic = nic_from_params(action.params["nic"])
    existing = next((n for n in vm.nics if n.name == nic.name), None)
    if existing is not None:
        if existing == nic:
            return already_done(estate)
        return fail(estate, f"{vm.name} already has a different adapter {nic.name}")
    if vm.power_state == "running" and not hot_pluggable(estate, vm):
        return fail(
            estate,
            f"{vm.name} must be off to add an adapter (hot add needs a generation-2 VM "
            "on 2016 or later)",
        )
    if len(vm.nics) + 1 > MAX_ADAPTERS:
        return fail(estate, f"a VM has at most {MAX_ADAPTERS} network adapters")
    changed = replace(vm, nics=(*vm.nics, nic))
    problems = _connectivity(estate, changed)
    if problems:
        return fail(estate, *problems)
    return RuleResult(estate.with_record(changed))


def _remove_vm_nic(estate: Estate, action: Action) -> RuleResult:
    vm = vm_of(estate, action)
    if vm is None:
        return fail(estate, f"VM {action.params['vm']} does not exist")
    name = action.params["nic"]
    if all(n.name != name for n in vm.nics):
        return already_done(estate)
    if vm.power_state == "running" and not hot_pluggable(estate, vm):
        return fail(
            estate,
            f"{vm.name} must be off to remove an adapter (hot remove needs a generation-2 VM "
            "on 2016 or later)",
        )
    return RuleResult(
        estate.with_record(replace(vm, nics=tuple(n for n in vm.nics if n.name != name)))
    )


def _set_vm_nic(estate: Estate, action: Action) -> RuleResult:
    vm = vm_of(estate, action)
    if vm is None:
        return fail(estate, f"VM {action.params['vm']} does not exist")
    nic = nic_from_params(action.params["nic"])
    existing = next((n for n in vm.nics if n.name == nic.name), None)
    if existing is None:
        return fail(estate, f"{vm.name} has no adapter {nic.name}")
    if existing == nic:
        return already_done(estate)
    if existing.mac != nic.mac and vm.power_state == "running":
        return fail(estate, f"{vm.name} must be off to change the MAC address of {nic.name}")
    changed = replace(vm, nics=tuple(nic if n.name == nic.name else n for n in vm.nics))
    problems = _connectivity(estate, changed)
    if problems:
        return fail(estate, *problems)
    return RuleResult(estate.with_record(changed))


def nic_text(nic: VmNic) -> str:
    """An adapter in a line: switch, VLANs, MAC."""
    if nic.trunk:
        vlans = "trunk " + ",".join(str(v) for v in sorted(nic.trunk))
        if nic.native_vlan:
            vlans += f" native {nic.native_vlan}"
    else:
        vlans = str(nic.vlan) if nic.vlan is not None else "untagged"
    mac = f" mac {nic.mac}" if nic.mac else ""
    return f"{nic.name}: {nic.switch}/{vlans}{mac}"


ADAPTER_RULES = {
    "add_vm_nic": _add_vm_nic,
    "remove_vm_nic": _remove_vm_nic,
    "set_vm_nic": _set_vm_nic,
}
