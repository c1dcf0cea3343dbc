"""World rule for a VM's memory model: static, or dynamic between a minimum and a maximum.

``set_vm_memory`` sets the startup memory and the dynamic-memory bounds together, so a change
that moves both (startup 4 GiB -> 16 GiB with a range that moves above 4 GiB) is one step and
never passes through a state where the startup memory lies outside the range.

What needs the VM off (Microsoft's Dynamic Memory documentation): turning dynamic memory on
or off, and a new startup memory. From 2012 a running VM's minimum may be lowered, its
maximum raised and its buffer changed; anything else needs it off. 2008 R2 SP1 changes
dynamic memory only with the VM off. Memory accounting counts the startup memory (see
``capacity``), so a runtime change to the bounds never spends host memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from reconciler.model.actions import Action
from reconciler.model.platforms import platform
from reconciler.model.records import DynamicMemory, Estate, VirtualMachine
from reconciler.model.rules_base import RuleResult, already_done, fail, vm_of


def dynamic_to_params(dynamic: DynamicMemory | None) -> dict[str, int] | None:
    if dynamic is None:
        return None
    return {
        "minimum_mib": dynamic.minimum_mib,
        "maximum_mib": dynamic.maximum_mib,
        "buffer_pct": dynamic.buffer_pct,
    }


def dynamic_from_params(p: Mapping[str, Any] | None) -> DynamicMemory | None:
    if p is None:
        return None
    return DynamicMemory(
        enabled=True,
        minimum_mib=int(p["minimum_mib"]),
        maximum_mib=int(p["maximum_mib"]),
        buffer_pct=int(p.get("buffer_pct", 20)),
    )


def dynamic_text(dynamic: DynamicMemory | None) -> str:
    if dynamic is None:
        return "static"
    return f"dynamic {dynamic.minimum_mib}-{dynamic.maximum_mib} MiB, buffer {dynamic.buffer_pct}%"


def memory_needs_off(
    platform_name: str, vm: VirtualMachine, memory_mib: int, dynamic: DynamicMemory | None
) -> str | None:
    """Why going from ``vm``'s memory to (``memory_mib``, ``dynamic``) needs it off, or None."""
    old = vm.memory_model()
    if memory_mib != vm.memory_mib:
        return "the startup memory changes only while the VM is off"
    if (old is None) != (dynamic is None):
        return "dynamic memory is turned on or off only while the VM is off"
    if old is None or dynamic is None or old == dynamic:
        return None
    profile = platform(platform_name)
    if not profile.dynamic_memory_runtime:
        return f"platform {profile.name} changes dynamic memory only while the VM is off"
    if dynamic.minimum_mib > old.minimum_mib:
        return "a running VM's minimum memory may only be lowered"
    if dynamic.maximum_mib < old.maximum_mib:
        return "a running VM's maximum memory may only be raised"
    return None


def memory_problems(
    estate: Estate, vm: VirtualMachine, memory_mib: int, dynamic: DynamicMemory | None
) -> list[str]:
    """Why (``memory_mib``, ``dynamic``) is not a memory model ``vm`` can have."""
    cluster = estate.clusters[vm.cluster]
    profile = platform(cluster.platform)
    problems: list[str] = []
    largest = profile.max_vm_memory_mib(vm.generation)
    if memory_mib > largest:
        problems.append(f"{memory_mib} MiB is more than a VM has on platform {profile.name}")
    if dynamic is None:
        return problems
    if not dynamic.minimum_mib <= memory_mib <= dynamic.maximum_mib:
        problems.append(
            f"startup memory {memory_mib} MiB is outside {dynamic.minimum_mib}-"
            f"{dynamic.maximum_mib} MiB"
        )
    if not profile.dynamic_memory_minimum and dynamic.minimum_mib != memory_mib:
        problems.append(f"platform {profile.name} has no minimum below the startup memory")
    if dynamic.maximum_mib > largest:
        problems.append(
            f"maximum {dynamic.maximum_mib} MiB is more than a VM has on platform {profile.name}"
        )
    return problems


def _set_vm_memory(estate: Estate, action: Action) -> RuleResult:
    vm = vm_of(estate, action)
    if vm is None:
        return fail(estate, f"VM {action.params['vm']} does not exist")
    memory_mib = int(action.params.get("memory_mib", vm.memory_mib))
    dynamic = dynamic_from_params(action.params.get("dynamic"))
    if (vm.memory_mib, vm.memory_model()) == (memory_mib, dynamic):
        return already_done(estate)
    problems = memory_problems(estate, vm, memory_mib, dynamic)
    why = memory_needs_off(estate.clusters[vm.cluster].platform, vm, memory_mib, dynamic)
    if why and vm.power_state != "off":
        problems.append(f"{vm.name} must be off: {why}")
    if problems:
        return fail(estate, *problems)
    changed = replace(vm, memory_mib=memory_mib, dynamic_memory=dynamic)
    return RuleResult(estate.with_record(changed))


MEMORY_RULES = {"set_vm_memory": _set_vm_memory}
