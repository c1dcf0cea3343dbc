"""Where a VM may go: memory, switches, VLANs and storage, anti-affinity, nodes in service.

Deterministic: candidates are scored and ties broken by node name.
"""

from __future__ import annotations

from collections.abc import Collection

from reconciler.model.capacity import free_memory_mib, vm_cost_mib
from reconciler.model.conditions import live_migration_cut
from reconciler.model.records import Estate, VirtualMachine
from reconciler.model.rules import placement_problems


def in_service(estate: Estate, node_name: str) -> bool:
    """A member that is up, not paused, and not waiting for validation after a join."""
    node = estate.nodes.get(node_name)
    if node is None:
        return False
    cluster = estate.clusters.get(node.cluster)
    return (
        cluster is not None
        and node_name in cluster.nodes
        and node.status.state == "up"
        and not node.maintenance
        and node_name not in cluster.status.pending_nodes
    )


def hard_conflict(estate: Estate, vm: VirtualMachine, node_name: str) -> str | None:
    """Another VM of the VM's hard anti-affinity group already runs on the node."""
    if not vm.anti_affinity_group or vm.anti_affinity_mode != "hard":
        return None
    for other in estate.vms_on(node_name):
        if other.name != vm.name and other.anti_affinity_group == vm.anti_affinity_group:
            return other.name
    return None


def soft_conflicts(estate: Estate, vm: VirtualMachine, node_name: str) -> int:
    if not vm.anti_affinity_group:
        return 0
    return sum(
        1
        for other in estate.vms_on(node_name)
        if other.name != vm.name and other.anti_affinity_group == vm.anti_affinity_group
    )


def destination_problems(estate: Estate, vm: VirtualMachine, node_name: str) -> list[str]:
    problems = [] if in_service(estate, node_name) else [f"{node_name} is not in service"]
    problems.extend(placement_problems(estate, vm, node_name))
    cluster = estate.clusters[vm.cluster]
    node = estate.nodes.get(node_name)
    if node is not None and vm.power_state == "running":
        need = vm_cost_mib(vm, cluster, node)
        free = free_memory_mib(estate, node_name)
        if need > free:
            problems.append(f"{node_name} has {free} MiB free, {vm.name} needs {need} MiB")
        live = vm.migration_policy == "live"  # a running VM so allowed moves live
        if live and (cut := live_migration_cut(estate, cluster, node_name)):
            problems.append(cut)
    conflict = hard_conflict(estate, vm, node_name)
    if conflict:
        problems.append(
            f"{conflict} of hard anti-affinity group {vm.anti_affinity_group} runs on {node_name}"
        )
    return problems


def choose_destination(
    estate: Estate,
    vm: VirtualMachine,
    exclude: Collection[str] = (),
    prefer: Collection[str] = (),
) -> str | None:
    """The best node for ``vm``: valid, then preferred, fewest soft conflicts, most free memory."""
    cluster = estate.clusters[vm.cluster]
    grouped = bool(vm.anti_affinity_group)  # without a group, no soft conflicts to count
    known: dict[str, int] = estate.memo("free_mib")  # free_memory_mib's own memo, read here
    scored = sorted(
        (
            0 if name in prefer else 1,
            soft_conflicts(estate, vm, name) if grouped else 0,
            -(known[name] if name in known else free_memory_mib(estate, name)),
            name,
        )
        for name in cluster.nodes
        if name != vm.node and name not in exclude and name in estate.nodes
    )
    # Best score first: the first valid node is the best valid one, and checking stops there.
    for score in scored:
        if not destination_problems(estate, vm, score[3]):
            return score[3]
    return None


def why_nowhere(estate: Estate, vm: VirtualMachine, exclude: Collection[str] = ()) -> str:
    """Why no node can take ``vm``: the first problem of each candidate, by node."""
    cluster = estate.clusters[vm.cluster]
    reasons = [
        f"{name}: {problems[0]}"
        for name in sorted(cluster.nodes)
        if name != vm.node
        and name not in exclude
        and (problems := destination_problems(estate, vm, name))
    ]
    return "; ".join(reasons) or "no other member"
