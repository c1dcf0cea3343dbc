"""apply() for a VM's memory model and its SCSI controllers (modern path).

``set_vm_memory`` is one Set-VMMemory: startup memory and the dynamic-memory bounds together,
as the world rule moves them, so the startup memory never lies outside the range in between.
``set_scsi_controllers`` adds (Add-VMScsiController, the next number) or removes
(Remove-VMScsiController, the highest number first) until the VM has the planned count.
Both read what is there first, so a run cut short finishes instead of adding twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.model.actions import Action
from reconciler.model.records import VirtualMachine
from reconciler.providers.hyperv import model_map as m
from reconciler.providers.hyperv import targeting as t
from reconciler.providers.hyperv.act import Runner, _update_cluster_config
from reconciler.providers.hyperv.wire import i32, i64


def memory_params(
    vm: str,
    memory_mib: int,
    dynamic: Mapping[str, Any] | None,
    have: VirtualMachine | None = None,
) -> dict[str, Any]:
    """Set-VMMemory's parameters for (startup memory, bounds). Given ``have`` (the VM as
    observed), the startup memory and the on/off switch go only when they change: a running
    VM refuses a change of either, and whether it takes an unchanged value is UNVERIFIED."""
    params: dict[str, Any] = {"VMName": vm}
    enabled = dynamic is not None
    if have is None or (have.memory_model() is not None) != enabled:
        params["DynamicMemoryEnabled"] = enabled
    if have is None or have.memory_mib != memory_mib:
        params["StartupBytes"] = i64(memory_mib * m.MIB)
    if dynamic is not None:
        params["MinimumBytes"] = i64(int(dynamic["minimum_mib"]) * m.MIB)
        params["MaximumBytes"] = i64(int(dynamic["maximum_mib"]) * m.MIB)
        params["Buffer"] = i32(int(dynamic.get("buffer_pct", 20)))
    return params


def set_vm_memory(r: Runner, a: Action) -> None:
    name = a.params["vm"]
    have = r.estate.vms.get(name)
    memory_mib = int(a.params.get("memory_mib") or (have.memory_mib if have else 0))
    if not memory_mib:
        raise LookupError(f"{name} has no observed startup memory and the plan gives none")
    params = memory_params(name, memory_mib, a.params.get("dynamic"), have)
    r.call(t.vm_owner(r.estate, name), "Set-VMMemory", params)
    _update_cluster_config(r, a)


def scsi_numbers(r: Runner, node: str, vm: str) -> list[int]:
    """The VM's SCSI controller numbers, as the host has them now."""
    got = r.call(node, "Get-VMScsiController", {"VMName": [vm]})
    return sorted(int(c["ControllerNumber"]) for c in got if c.get("VMName", vm) == vm)


def converge_controllers(r: Runner, node: str, vm: str, count: int) -> None:
    """Add or remove SCSI controllers until ``vm`` has ``count`` (numbered 0..count-1)."""
    numbers = scsi_numbers(r, node, vm)
    for _ in range(count - len(numbers)):
        r.call(node, "Add-VMScsiController", {"VMName": vm})
    for number in sorted(numbers, reverse=True)[: max(0, len(numbers) - count)]:
        r.call(node, "Remove-VMScsiController", {"VMName": vm, "ControllerNumber": i32(number)})


def set_scsi_controllers(r: Runner, a: Action) -> None:
    name = a.params["vm"]
    converge_controllers(r, t.vm_owner(r.estate, name), name, int(a.params["count"]))
    _update_cluster_config(r, a)


def controllers_for(p: Mapping[str, Any]) -> int | None:
    """How many SCSI controllers a VM create_vm builds needs, or None: what New-VM gives
    (one on generation 2, none on generation 1) is enough."""
    used = [int(d["controller_number"]) + 1 for d in p["disks"] if d["controller"] == "scsi"]
    default = 1 if int(p["generation"]) == 2 else 0
    want = p.get("scsi_controllers")
    if want is None:
        return max(used) if used and max(used) > default else None
    return int(want)


ACTIONS = {"set_vm_memory": set_vm_memory, "set_scsi_controllers": set_scsi_controllers}
