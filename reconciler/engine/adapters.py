"""Planning a VM's adapters and settings: which to remove, change and add, which need it off.

Steps come out in the cluster planner's step form, so they share its stop / change / start
handling: adapter removals first (they free adapter slots), then changes, then additions;
then preferred owners and automatic start and stop actions.
"""

from __future__ import annotations

from typing import Any

from reconciler.model.actions import ActionType
from reconciler.model.records import Estate, VirtualMachine
from reconciler.model.rules_adapters import hot_pluggable, nic_text
from reconciler.model.rules_base import nic_to_params
from reconciler.model.rules_memory import dynamic_text, dynamic_to_params, memory_needs_off

Step = tuple[ActionType, dict[str, Any], str, dict[str, tuple[Any, Any]], list[str]]


def adapter_steps(
    state: Estate, want: VirtualMachine, have: VirtualMachine
) -> tuple[list[Step], list[str]]:
    """The adapter steps from ``have`` to ``want``, and what among them needs the VM off."""
    steps: list[Step] = []
    needs_off: list[str] = []
    hot = hot_pluggable(state, have)
    current = {n.name: n for n in have.nics}
    wanted = {n.name: n for n in want.nics}
    for name in sorted(current.keys() - wanted.keys()):
        if not hot:
            needs_off.append(f"remove adapter {name}")
        steps.append(
            (
                "remove_vm_nic",
                {"vm": want.name, "nic": name},
                f"adapter {name} is no longer in the manifest",
                {f"nics.{name}": (nic_text(current[name]), None)},
                [],
            )
        )
    for nic in want.nics:
        old = current.get(nic.name)
        if old is None or old == nic:
            continue
        if old.mac != nic.mac:
            needs_off.append(f"set the MAC address of {nic.name}")
        steps.append(
            (
                "set_vm_nic",
                {"vm": want.name, "nic": nic_to_params(nic)},
                f"adapter {nic.name} differs from the manifest (switch, VLANs or MAC)",
                {f"nics.{nic.name}": (nic_text(old), nic_text(nic))},
                [],
            )
        )
    for nic in want.nics:
        if nic.name in current:
            continue
        if not hot:
            needs_off.append(f"add adapter {nic.name}")
        steps.append(
            (
                "add_vm_nic",
                {"vm": want.name, "nic": nic_to_params(nic)},
                f"adapter {nic.name} is in the manifest",
                {f"nics.{nic.name}": (None, nic_text(nic))},
                [],
            )
        )
    return steps, needs_off


def settings_steps(want: VirtualMachine, have: VirtualMachine) -> tuple[list[Step], list[str]]:
    """Preferred owners (as a set; never a move) and automatic actions the manifest declares."""
    steps: list[Step] = []
    needs_off: list[str] = []
    owners = want.preferred_owners
    if owners is not None and owners != have.preferred_owners:
        before = sorted(have.preferred_owners) if have.preferred_owners is not None else None
        steps.append(
            (
                "set_preferred_owners",
                {"vm": want.name, "owners": sorted(owners)},
                "preferred owners differ from the manifest (the VM stays where it is)",
                {"preferred_owners": (before, sorted(owners))},
                [],
            )
        )
    params: dict[str, Any] = {}
    changes: dict[str, tuple[Any, Any]] = {}
    start, stop = want.automatic_start_action, want.automatic_stop_action
    if start is not None and start != have.automatic_start_action:
        params["start"] = start
        changes["automatic_start_action"] = (have.automatic_start_action, start)
    if stop is not None and stop != have.automatic_stop_action:
        params["stop"] = stop
        changes["automatic_stop_action"] = (have.automatic_stop_action, stop)
        needs_off.append("change its automatic stop action")
    if params:
        steps.append(
            (
                "set_automatic_actions",
                {"vm": want.name, **params},
                "automatic start or stop action differs from the manifest",
                changes,
                [],
            )
        )
    return steps, needs_off


def memory_steps(
    platform_name: str, want: VirtualMachine, have: VirtualMachine
) -> tuple[list[Step], list[str]]:
    """Memory and vCPUs: ``set_vm_memory`` when dynamic memory changes (it carries the startup
    memory too, so startup and range move in one step), ``set_vm`` for the rest."""
    steps: list[Step] = []
    needs_off: list[str] = []
    memory_too = want.memory_mib != have.memory_mib
    # Left out of the manifest: not managed (the startup memory still is, by set_vm).
    wanted = want.memory_model()
    if want.dynamic_memory is not None and wanted != have.memory_model():
        why = memory_needs_off(platform_name, have, want.memory_mib, wanted)
        if why:
            needs_off.append(f"change its memory ({why})")
        changes: dict[str, tuple[Any, Any]] = {
            "dynamic_memory": (dynamic_text(have.memory_model()), dynamic_text(wanted))
        }
        if memory_too:
            changes["memory_mib"] = (have.memory_mib, want.memory_mib)
        steps.append(
            (
                "set_vm_memory",
                {
                    "vm": want.name,
                    "memory_mib": want.memory_mib,
                    "dynamic": dynamic_to_params(wanted),
                },
                "memory (static or dynamic, its bounds) differs from the manifest",
                changes,
                [],
            )
        )
        memory_too = False
    if memory_too or want.vcpus != have.vcpus:
        needs_off.append("change memory or vCPUs")
        params: dict[str, Any] = {"vm": want.name}
        set_changes: dict[str, tuple[Any, Any]] = {}
        if memory_too:
            params["memory_mib"] = want.memory_mib
            set_changes["memory_mib"] = (have.memory_mib, want.memory_mib)
        if want.vcpus != have.vcpus:
            params["vcpus"] = want.vcpus
            set_changes["vcpus"] = (have.vcpus, want.vcpus)
        steps.append(
            ("set_vm", params, "memory or vCPUs differ from the manifest", set_changes, [])
        )
    return steps, needs_off
