"""Unset means unmanaged: a field the manifest leaves out keeps the value the world has.

Operational state above all (a node an operator paused stays paused, a VM stays in the power
state it is in, a generation stays as built). Where a default does apply (policy fields, or an
object the plan creates), the plan's change line says "(default)". docs/semantics.md has the
table, field by field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from reconciler.model.actions import Action
from reconciler.model.records import Estate

# Fields whose observed value stands when the manifest leaves them out.
NODE_UNMANAGED = ("maintenance",)
VM_UNMANAGED = ("power_state", "generation")
# Fields with a default that applies when left out (schema descriptions say which).
DEFAULTED = frozenset(
    {
        "quorum.mode",
        "live_migration.max_parallel_migrations",
        "placement.failover_reserve_nodes",
        "placement.reserve_policy",
        "power_state",  # of a VM the plan creates
        "generation",  # likewise
        "highly_available",
        "migration_policy",
        "anti_affinity_mode",
        "allow_downtime",
        "type",
        "management_os",
    }
)


def adopt_unmanaged(desired: Estate, observed: Estate) -> Estate:
    """``desired`` with each field the manifests leave out set to what the world has."""
    out = desired
    cycling = _in_rolling_update(desired, observed)
    for name, node in desired.nodes.items():
        have = observed.nodes.get(name)
        fields = [f for f in NODE_UNMANAGED if f in node.unset and name not in cycling]
        if have is not None and fields:
            adopted = replace(node, **{f: getattr(have, f) for f in fields})
            if adopted != node:
                out = out.with_record(adopted)
    for name, vm in desired.vms.items():
        seen = observed.vms.get(name)
        fields = [f for f in VM_UNMANAGED if f in vm.unset]
        if seen is not None and fields:
            kept = replace(vm, **{f: getattr(seen, f) for f in fields})
            if kept != vm:
                out = out.with_record(kept)
    return out


def _in_rolling_update(desired: Estate, observed: Estate) -> set[str]:
    """Nodes a declared rolling update has yet to finish with: the cycle pauses and resumes
    them itself (an interrupted cycle must not leave them paused). An operator who wants one
    kept paused says ``maintenance: true`` or leaves it out of ``rolling_update.nodes``."""
    out: set[str] = set()
    for name, cluster in desired.clusters.items():
        seen = observed.clusters.get(name)
        ru = cluster.rolling_update
        if ru is None or seen is None or seen.status.rolling_update_done == ru.id:
            continue
        out.update(cluster.nodes if ru.nodes is None else ru.nodes)
    return out


def _defaulted_paths(desired: Estate, action: Action) -> set[str]:
    """Change keys of ``action`` whose new value is a default, not something the manifest says."""
    kind, _, name = action.target.partition("/")
    out: set[str] = set()
    record: Any = {
        "Cluster": desired.clusters,
        "Node": desired.nodes,
        "VirtualMachine": desired.vms,
    }.get(kind, {}).get(name)
    if record is not None:
        for path in record.unset & DEFAULTED:
            out.update({f"spec.{path}", path})
    for key in action.changes:
        # Switch changes are keyed "switch.NAME.FIELD" on the node they are made on.
        parts = key.split(".", 2)
        if parts[0] == "switch" and len(parts) == 3:
            switch = desired.switches.get(parts[1])
            if switch is not None and parts[2] in switch.unset & DEFAULTED:
                out.add(key)
    return out


def _text(value: Any) -> str:
    """As the plan shows values: YAML's spelling for booleans."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def mark_defaults(desired: Estate, actions: Sequence[Action]) -> list[Action]:
    """Each change whose new value comes from a default says so: ``after (default)``."""
    out: list[Action] = []
    for action in actions:
        defaulted = _defaulted_paths(desired, action) & set(action.changes)
        if defaulted:
            changes = {
                k: (b, f"{_text(a)} (default)") if k in defaulted else (b, a)
                for k, (b, a) in action.changes.items()
            }
            action = replace(action, changes=changes)
        out.append(action)
    return out
