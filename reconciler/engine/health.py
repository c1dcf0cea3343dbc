"""Observed health in the plan: the conditions (model/conditions.py) are reported even when no
action follows, and a plan that would move VMs onto an unhealthy node is blocked.

Unhealthy, for a move: the node is down; the move is live and every live-migration network
is down on the node; or the node lacks a switch the VM's adapters use (and no earlier step
of the plan creates it). Conditions alone block nothing (docs/semantics.md, "Conditions").
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

from reconciler.engine.plan import PlanViolation
from reconciler.model.actions import Action
from reconciler.model.conditions import (
    CONDITION_TYPES,
    PREFIX,
    Condition,
    live_migration_cut,
    observed_conditions,
)
from reconciler.model.records import Estate

__all__ = [
    "CONDITION_TYPES",
    "PREFIX",
    "Condition",
    "condition_counts",
    "moves_onto_unhealthy",
    "observed_conditions",
    "unhealthy_nodes",
]

_NOTE = re.compile(r"^condition (\w+)=True ")


def unhealthy_nodes(observed: Estate) -> set[str]:
    return {name for name, node in observed.nodes.items() if node.status.state != "up"}


def _move(action: Action) -> tuple[str, str, bool] | None:
    """(VM, destination, live) of a step that puts a VM on another node, else None."""
    p = action.params
    if action.type == "migrate_vm":
        return str(p.get("vm")), str(p["destination"]), p.get("method") == "live"
    if action.type == "test_live_migration" or (action.type == "verify_node" and p.get("test_vm")):
        return str(p.get("test_vm") or p.get("vm")), str(p["node"]), True
    return None


def _why_unhealthy(
    observed: Estate,
    vm_name: str,
    destination: str,
    live: bool,
    switches_made: set[tuple[str, str]],
) -> str | None:
    node = observed.nodes.get(destination)
    if node is None:
        return None  # a node the plan adds: its own steps check it
    if node.status.state != "up":
        return f"which is {node.status.state}"
    cluster = observed.clusters.get(node.cluster)
    if live and cluster is not None and (cut := live_migration_cut(observed, cluster, destination)):
        return f"but its {cut.removesuffix(f' on {destination}')}"
    vm = observed.vms.get(vm_name)
    for nic in vm.nics if vm is not None else ():
        if (
            nic.switch not in node.status.switches
            and (destination, nic.switch) not in switches_made
        ):
            return f"which has no switch {nic.switch} (adapter {nic.name})"
    return None


def moves_onto_unhealthy(actions: Sequence[Action], observed: Estate) -> list[PlanViolation]:
    """A block for each step that would put a VM onto an unhealthy node."""
    out: list[PlanViolation] = []
    switches_made: set[tuple[str, str]] = set()
    for a in actions:
        if a.type == "match_vswitch":
            switches_made.add((str(a.params["node"]), str(a.params["switch"])))
            continue
        move = _move(a)
        if move is None:
            continue
        vm, destination, live = move
        why = _why_unhealthy(observed, vm, destination, live, switches_made)
        if why is not None:
            out.append(
                PlanViolation(
                    "unhealthy_destination",
                    a.target,
                    f"{a.id} would move {vm} onto {destination}, {why}",
                    "recover the node (or its network or switch) first, or pin the VM elsewhere",
                    action=a.id,
                )
            )
    return out


def condition_counts(notes: Iterable[str]) -> Counter[str]:
    """How many conditions of each type a plan's (or a tick's) notes report."""
    return Counter(m.group(1) for n in notes if (m := _NOTE.match(n)))
