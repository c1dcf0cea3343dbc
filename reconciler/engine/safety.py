"""Safety by replay: run the plan step by step on the observed state with the world's own rules.

After every step: the world invariants (quorum, memory, controller limits, volume size,
connectivity), then policy from the manifests (failover reserve, hard anti-affinity, no
live migration of `never` VMs, downtime and deletion only where allowed).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from reconciler.engine.plan import PlanViolation, Severity
from reconciler.model.actions import Action
from reconciler.model.capacity import free_memory_mib, vm_cost_mib
from reconciler.model.records import Estate, VirtualMachine
from reconciler.model.rules import apply_rules, invariants, touched_between

FIXES: dict[str, str] = {
    "quorum": "take fewer nodes out of service at once, or fix quorum first",
    "memory": "place fewer VMs on the node, or add capacity",
    "controller_limits": "use a free slot within the controller limits",
    "volume_size": "grow the LUN before the volume",
    "volume_space": "grow the volume or put the disk on another volume",
    "connectivity": "fix the switch or LUN on that node first",
}


# Only these can take free memory away from the cluster (moves, starts, resizes, drains);
# the failover reserve is checked after them, and need not be after anything else.
SPENDS_RESERVE = frozenset({"migrate_vm", "start_vm", "set_vm", "drain_node", "evict_node"})


def reserve_shortfall(estate: Estate, cluster_name: str) -> str | None:
    """Can the running HA VMs of any one node restart on the others? First-fit decreasing.

    The exact check runs only for nodes whose slack cannot prove it: if the others' free
    memory exceeds the load by (number of other nodes) x (largest VM), first-fit cannot fail.
    """
    cluster = estate.clusters.get(cluster_name)
    if cluster is None or cluster.placement.failover_reserve_nodes <= 0:
        return None
    serving = [
        n
        for n in sorted(cluster.nodes)
        if n in estate.nodes
        and estate.nodes[n].status.state == "up"
        and not estate.nodes[n].maintenance
    ]
    free = {n: free_memory_mib(estate, n) for n in serving}
    total_free = sum(free.values())
    # Each node's HA load, kept per state: a move changes two nodes' loads, not all of them.
    memo = estate.memo("ha_victims")
    for failed in serving:
        entry: tuple[list[tuple[int, str, int]], int, int] | None = memo.get(failed)
        if entry is None:
            found = [
                (vm_cost_mib(vm, cluster), vm.name, vm.memory_mib)
                for vm in estate.vms_on(failed)
                if vm.power_state == "running" and vm.highly_available
            ]
            entry = memo[failed] = (
                found,
                sum(c for c, _, _ in found),
                max((c for c, _, _ in found), default=0),
            )
        victims, load, largest = entry
        if not victims:
            continue
        room_total = total_free - free[failed]
        if room_total - load >= (len(serving) - 1) * largest:
            continue
        rooms = [-free[n] for n in serving if n != failed]
        heapq.heapify(rooms)
        for cost, name, memory in sorted(victims, key=lambda v: (-v[0], v[1])):
            most = -rooms[0] if rooms else 0
            if most < cost:
                return (
                    f"if {failed} failed, {name} ({memory} MiB) could not restart: "
                    "the cluster lacks one node's worth of free memory (N+1)"
                )
            heapq.heapreplace(rooms, -(most - cost))
    return None


def hard_affinity_breaches(estate: Estate, cluster_name: str) -> list[str]:
    seen: dict[tuple[str, str], str] = {}
    out: list[str] = []
    hard = [
        vm
        for vm in estate.vms.values()
        if vm.anti_affinity_mode == "hard"
        and vm.anti_affinity_group
        and vm.cluster == cluster_name
        and vm.node is not None
        and vm.power_state == "running"
    ]
    for vm in sorted(hard, key=lambda v: v.name):
        key = (vm.anti_affinity_group or "", vm.node or "")  # both set: filtered above
        if key in seen:
            out.append(
                f"{seen[key]} and {vm.name} (group {vm.anti_affinity_group}) share {vm.node}"
            )
        else:
            seen[key] = vm.name
    return out


# The rules action_policy draws from the manifests (the rest are the world's own rules).
MANIFEST_POLICY_RULES = frozenset(
    {"never_live_migrate", "downtime_not_allowed", "delete_not_allowed"}
)


def _policy(desired: Estate, observed_vm: VirtualMachine) -> VirtualMachine:
    """The manifest is the authority for policy; fall back to what was observed."""
    return desired.vms.get(observed_vm.name, observed_vm)


def action_policy(desired: Estate, state: Estate, action: Action) -> list[PlanViolation]:
    out: list[PlanViolation] = []
    vm_name = action.params.get("vm")
    vm = state.vms.get(vm_name) if isinstance(vm_name, str) else None
    policy = _policy(desired, vm) if vm is not None else None
    if action.type == "migrate_vm" and policy is not None and vm is not None:
        method = action.params["method"]
        if method == "live" and policy.migration_policy == "never":
            out.append(
                PlanViolation(
                    "never_live_migrate",
                    action.target,
                    f"{vm.name}'s migration policy is never: it must not be live-migrated",
                    "set allow_downtime: true to allow a quick migration or shutdown in a "
                    "maintenance window, or leave it where it is",
                    "block",
                    action.id,
                )
            )
        # A quick migration saves and restores the VM: downtime, which only the manifest allows
        # for a VM whose policy keeps it from moving live (an "offline" VM is moved this way too).
        if (
            method == "quick"
            and policy.migration_policy in ("never", "offline")
            and not policy.allow_downtime
        ):
            out.append(
                PlanViolation(
                    "downtime_not_allowed",
                    action.target,
                    f"a quick migration stops {vm.name} for seconds and its manifest allows no "
                    "downtime",
                    "set allow_downtime: true",
                    "block",
                    action.id,
                )
            )
    if action.type == "stop_vm" and policy is not None and vm is not None:
        wants_off = policy.power_state == "off"
        if not wants_off and not policy.allow_downtime:
            out.append(
                PlanViolation(
                    "downtime_not_allowed",
                    action.target,
                    f"stopping {vm.name} needs allow_downtime: true in its manifest",
                    "set allow_downtime: true, or make the change by hand in a window",
                    "block",
                    action.id,
                )
            )
    if action.type == "detach_disk" and vm is not None and action.params.get("delete_file"):
        disk = vm.disk(action.params["disk"])
        allowed = disk is not None and disk.allow_delete
        wanted = desired.vms.get(vm.name)
        declared = wanted.disk(action.params["disk"]) if wanted else None
        if not (allowed or (declared is not None and declared.allow_delete)):
            out.append(
                PlanViolation(
                    "delete_not_allowed",
                    action.target,
                    f"deleting the file of disk {action.params['disk']} is not allowed",
                    "set allow_delete: true on the disk, or detach it and keep the file",
                    "block",
                    action.id,
                )
            )
    if action.type == "remove_vm":
        out.extend(_removal_policy(desired, action))
    return out


def _removal_policy(desired: Estate, action: Action) -> list[PlanViolation]:
    """A VM is removed only with its cluster's consent, and its files deleted only with more."""
    out: list[PlanViolation] = []
    vm_name = action.params["vm"]
    cluster = desired.clusters.get(action.cluster)
    prune = cluster.prune if cluster is not None else None
    if vm_name in desired.vms:
        out.append(
            PlanViolation(
                "remove_managed",
                action.target,
                f"{vm_name} is in the manifests: it is not removed",
                "make the plan again; only VMs in no manifest are removed",
                "block",
                action.id,
            )
        )
    if prune is None or not prune.enabled:
        out.append(
            PlanViolation(
                "prune_not_enabled",
                action.target,
                f"Cluster/{action.cluster} does not allow removals (spec.prune.enabled)",
                "set spec.prune.enabled: true on the cluster, or leave the VM alone",
                "block",
                action.id,
            )
        )
    elif action.params.get("delete_disks") and not prune.delete_disks:
        out.append(
            PlanViolation(
                "delete_not_allowed",
                action.target,
                f"deleting the disk files of {vm_name} is not allowed",
                "set spec.prune.delete_disks: true on the cluster, or keep the files",
                "block",
                action.id,
            )
        )
    return out


def replay(
    observed: Estate, desired: Estate, actions: Sequence[Action]
) -> tuple[Estate, list[PlanViolation]]:
    """The state after the plan, and every rule the plan breaks on the way (each once).

    Clusters share nothing, so each is replayed on its own slice of the estate.
    """
    parts: dict[str, Estate] = {}
    out: list[PlanViolation] = []
    by_cluster: dict[str, list[Action]] = {}
    for action in actions:
        by_cluster.setdefault(action.cluster, []).append(action)
    for cluster, cluster_actions in by_cluster.items():
        part, found = _replay_cluster(
            observed.of_cluster(cluster), desired.of_cluster(cluster), cluster_actions
        )
        parts[cluster] = part
        out.extend(found)
    return observed.with_clusters(parts), out


def _replay_cluster(
    observed: Estate, desired: Estate, actions: Sequence[Action]
) -> tuple[Estate, list[PlanViolation]]:
    state = observed
    out: list[PlanViolation] = []
    seen: set[tuple[str, str, str]] = set()
    clusters = sorted({a.cluster for a in actions})
    baseline = {(v.rule, v.target) for c in clusters for v in invariants(observed, c)}
    reserve_before = {c: reserve_shortfall(observed, c) is not None for c in clusters}
    # Breaches in the state before the current step: a breach is reported by the step that
    # makes it, not again by every later step while it lasts.
    affinity_before = {c: set(hard_affinity_breaches(observed, c)) for c in clusters}

    def add(v: PlanViolation) -> None:
        key = (v.rule, v.target, v.message)
        if key not in seen:
            seen.add(key)
            out.append(v)

    for action in actions:
        for v in action_policy(desired, state, action):
            add(v)
        result = apply_rules(state, action)
        if result.failures:
            add(
                PlanViolation(
                    "precondition",
                    action.target,
                    "; ".join(result.failures),
                    "fix what the message names first, or change the manifest",
                    "block",
                    action.id,
                )
            )
            continue
        touched = touched_between(state, result.estate)
        state = result.estate
        for inv in invariants(state, action.cluster, touched):
            if (inv.rule, inv.target) not in baseline:
                add(
                    PlanViolation(
                        inv.rule,
                        inv.target,
                        inv.message,
                        FIXES.get(inv.rule, inv.fix),
                        "block",
                        action.id,
                    )
                )
        cluster = state.clusters.get(action.cluster)
        if cluster is not None and action.type == "evict_node":
            # Capacity given up for good: refused whatever reserve_policy says for moves.
            short = reserve_shortfall(state, action.cluster)
            if short:
                add(
                    PlanViolation(
                        "failover_reserve",
                        action.target,
                        f"after evicting {action.params['node']}: {short}",
                        "add capacity before the node leaves, or keep it in spec.nodes",
                        "block",
                        action.id,
                    )
                )
        reserve_at_risk = action.type in SPENDS_RESERVE
        if cluster is not None and reserve_at_risk and not reserve_before.get(action.cluster):
            short = reserve_shortfall(state, action.cluster)
            if short:
                severity: Severity = (
                    "block" if cluster.placement.reserve_policy == "block" else "warn"
                )
                add(
                    PlanViolation(
                        "failover_reserve",
                        f"Cluster/{cluster.name}",
                        short,
                        "keep one node's worth of memory free, or add a node",
                        severity,
                        action.id,
                    )
                )
        breaches = hard_affinity_breaches(state, action.cluster)
        for breach in breaches:
            if breach not in affinity_before.get(action.cluster, set()):
                add(
                    PlanViolation(
                        "anti_affinity",
                        action.target,
                        breach,
                        "place the group's VMs on different nodes",
                        "block",
                        action.id,
                    )
                )
        affinity_before[action.cluster] = set(breaches)
    return state, out
