"""Observed health, reported even when no action follows: a node down, a VM saved, a switch
missing on a member node. Shown as conditions in ``plan`` (and so in ``drift`` and the loop's
metrics) and ``observe``; a plan that would move VMs onto an unhealthy node is blocked.

The simulator does not record when a condition began, so ``since`` is unknown there.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from reconciler.engine.plan import PlanViolation
from reconciler.model.actions import Action
from reconciler.model.records import Estate

PREFIX = "condition "
CONDITION_TYPES = ("NodeDown", "VmSaved", "SwitchMissing")
_NOTE = re.compile(r"^condition (\w+)=True ")


@dataclass(frozen=True, slots=True)
class Condition:
    type: str  # NodeDown, VmSaved, SwitchMissing
    target: str  # Kind/name
    reason: str
    status: str = "True"
    since: str | None = None  # when it began, where the provider reports it

    def note(self) -> str:
        since = f" (since {self.since})" if self.since else ""
        return f"{PREFIX}{self.type}={self.status} {self.target}: {self.reason}{since}"


def observed_conditions(observed: Estate, desired: Estate | None = None) -> list[Condition]:
    """Every unhealthy condition of the observed estate, in a stable order (with ``desired``,
    only its clusters, and switches it declares that a member node lacks)."""
    out: list[Condition] = []
    wanted = set(desired.clusters) if desired is not None else None
    for name, node in sorted(observed.nodes.items()):
        if wanted is not None and node.cluster not in wanted:
            continue
        if node.status.state != "up":
            out.append(Condition("NodeDown", f"Node/{name}", f"{name} is {node.status.state}"))
    for name, vm in sorted(observed.vms.items()):
        if wanted is not None and vm.cluster not in wanted:
            continue
        if vm.power_state == "saved":
            where = f" on {vm.node}" if vm.node else ""
            out.append(Condition("VmSaved", f"VirtualMachine/{name}", f"{name} is saved{where}"))
    switches = desired.switches if desired is not None else {}
    for name, switch in sorted(switches.items()):
        cluster = observed.clusters.get(switch.cluster)
        for node_name in cluster.nodes if cluster is not None else ():
            host = observed.nodes.get(node_name)
            if host is not None and host.status.state == "up" and name not in host.status.switches:
                out.append(
                    Condition(
                        "SwitchMissing",
                        f"Node/{node_name}",
                        f"switch {name} is missing on {node_name}",
                    )
                )
    return out


def unhealthy_nodes(observed: Estate) -> set[str]:
    return {name for name, node in observed.nodes.items() if node.status.state != "up"}


def moves_onto_unhealthy(actions: Sequence[Action], observed: Estate) -> list[PlanViolation]:
    """A block for each move whose destination is a node that is down."""
    down = unhealthy_nodes(observed)
    return [
        PlanViolation(
            "unhealthy_destination",
            a.target,
            f"{a.id} would move {a.params.get('vm')} onto {a.params['destination']}, "
            f"which is {observed.nodes[str(a.params['destination'])].status.state}",
            "recover the node first, or pin the VM elsewhere",
            action=a.id,
        )
        for a in actions
        if a.type == "migrate_vm" and a.params.get("destination") in down
    ]


def condition_counts(notes: Iterable[str]) -> Counter[str]:
    """How many conditions of each type a plan's (or a tick's) notes report."""
    return Counter(m.group(1) for n in notes if (m := _NOTE.match(n)))
