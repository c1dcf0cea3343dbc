"""Safety by replay: run the plan step by step on the observed state with the world's own rules.

After every step: the world invariants (quorum, memory, controller limits, volume size,
connectivity), then policy from the manifests (failover reserve, hard anti-affinity, no
live migration of `never` VMs, downtime and deletion only where allowed).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from reconciler.engine.plan import PlanViolation, Severity
from reconciler.model.actions import Action
from reconciler.model.capacity import free_memory_mib, vm_cost_mib
from reconciler.model.records import Cluster, Estate, VirtualMachine
from reconciler.model.rules import Touched, apply_rules, invariants, touched_between

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


@dataclass(slots=True)
class _NodeReserve:
    serving: bool
    free: int
    victims: list[tuple[int, str, int]]  # (cost, name, memory) of its running HA VMs
    load: int
    largest: int


class ReserveTracker:
    """``reserve_shortfall`` of a replay's successive states, kept per node.

    A step changes a few nodes (a move: two); only theirs are recomputed, with the cluster's
    free memory and each node's slack test adjusted by their difference: the test that proves
    most nodes' failure harmless is then one max() over the cluster. The answer is
    ``reserve_shortfall``'s, message for message (the exact test runs as it does there).
    """

    def __init__(self, cluster_name: str) -> None:
        self.cluster_name = cluster_name
        self.cluster: Cluster | None = None
        self.nodes: dict[str, _NodeReserve] = {}
        self.node_count = -1  # nodes in the state (a node gone means starting over)
        self.serving: list[str] = []  # by name
        self.total_free = 0
        # free + load + (others x largest) of each serving node with HA VMs: above the
        # cluster's free memory, first-fit could fail, and the exact test must run.
        self.keys: dict[str, int] = {}
        self.dirty: set[str] = set()
        self.rebuild = True
        self.cost_of: dict[int, int] = {}  # a VM's memory -> its cost (same cluster costs)

    def step(self, touched: Touched | None) -> None:
        """Note what the next state changed (None: not known, recompute every node)."""
        if touched is None:
            self.rebuild = True
        else:
            self.dirty |= touched.nodes

    def _entry(self, state: Estate, cluster: Cluster, name: str) -> _NodeReserve:
        node = state.nodes[name]
        serving = node.status.state == "up" and not node.maintenance
        # A restart's cost depends on the VM's memory and the cluster's costs alone.
        cost_of = self.cost_of
        victims = [
            (
                cost_of[vm.memory_mib]
                if vm.memory_mib in cost_of
                else cost_of.setdefault(vm.memory_mib, vm_cost_mib(vm, cluster)),
                vm.name,
                vm.memory_mib,
            )
            for vm in state.vms_on(name)
            if vm.power_state == "running" and vm.highly_available
        ]
        costs = [c for c, _, _ in victims]
        return _NodeReserve(
            serving, free_memory_mib(state, name), victims, sum(costs), max(costs, default=0)
        )

    def _same_costs(self, cluster: Cluster) -> bool:
        """Memory costs and usable memory depend on these of the cluster, not its status."""
        seen = self.cluster
        return seen is cluster or (
            seen is not None
            and (seen.platform, seen.memory, seen.nodes, seen.placement)
            == (cluster.platform, cluster.memory, cluster.nodes, cluster.placement)
        )

    def _key(self, name: str) -> None:
        entry = self.nodes[name]
        if entry.serving and entry.victims:
            others = len(self.serving) - 1
            self.keys[name] = entry.free + entry.load + others * entry.largest
        else:
            self.keys.pop(name, None)

    def _totals(self) -> None:
        self.serving = [n for n in sorted(self.nodes) if self.nodes[n].serving]
        self.total_free = sum(self.nodes[n].free for n in self.serving)
        self.keys = {}
        for name in self.serving:
            self._key(name)

    def _refresh(self, state: Estate, cluster: Cluster) -> None:
        dirty, self.dirty = self.dirty, set()
        members = cluster.nodes
        whole = (
            self.rebuild
            or not self._same_costs(cluster)
            or len(state.nodes) != self.node_count
            or any(n not in self.nodes and n in state.nodes and n in members for n in dirty)
        )
        self.rebuild, self.cluster, self.node_count = False, cluster, len(state.nodes)
        if whole:
            self.cost_of = {}
            self.nodes = {n: self._entry(state, cluster, n) for n in members if n in state.nodes}
            self._totals()
            return
        serving_changed = False
        for name in sorted(dirty):
            old = self.nodes.get(name)
            if old is None:
                continue  # not a member of this cluster
            new = self.nodes[name] = self._entry(state, cluster, name)
            if old.serving != new.serving:
                serving_changed = True
            elif new.serving:
                self.total_free += new.free - old.free
        if serving_changed:
            self._totals()  # every node's slack test counts the others
            return
        for name in dirty:
            if name in self.nodes:
                self._key(name)

    def shortfall(self, state: Estate) -> str | None:
        cluster = state.clusters.get(self.cluster_name)
        if cluster is None or cluster.placement.failover_reserve_nodes <= 0:
            self.rebuild = True
            return None
        self._refresh(state, cluster)
        if not self.keys or max(self.keys.values()) <= self.total_free:
            return None  # the slack proves every node's failure harmless
        serving, total_free = self.serving, self.total_free
        others = len(serving) - 1
        for failed in serving:
            entry = self.nodes[failed]
            if not entry.victims:
                continue
            if total_free - entry.free - entry.load >= others * entry.largest:
                continue
            rooms = [-self.nodes[n].free for n in serving if n != failed]
            heapq.heapify(rooms)
            for cost, name, memory in sorted(entry.victims, key=lambda v: (-v[0], v[1])):
                most = -rooms[0] if rooms else 0
                if most < cost:
                    return (
                        f"if {failed} failed, {name} ({memory} MiB) could not restart: "
                        "the cluster lacks one node's worth of free memory (N+1)"
                    )
                heapq.heapreplace(rooms, -(most - cost))
        return None


def _hard_member(vm: VirtualMachine, cluster_name: str) -> bool:
    return (
        vm.anti_affinity_mode == "hard"
        and bool(vm.anti_affinity_group)
        and vm.cluster == cluster_name
        and vm.node is not None
        and vm.power_state == "running"
    )


def _group_breaches(
    estate: Estate, cluster_name: str, group: str, node: str
) -> list[tuple[str, str]]:
    """(second VM, message) of each breach of one group on one node, as the full scan says."""
    members = [
        vm.name
        for vm in estate.vms_on(node)  # by name
        if _hard_member(vm, cluster_name) and vm.anti_affinity_group == group
    ]
    return [(m, f"{members[0]} and {m} (group {group}) share {node}") for m in members[1:]]


class AffinityTracker:
    """``hard_affinity_breaches`` of a replay's successive states, kept per (group, node).

    A breach is two running VMs of one hard group on one node: only the (group, node) pairs
    of the VMs a step changed can gain or lose one, so only those are looked at.
    """

    def __init__(self, estate: Estate, cluster_name: str) -> None:
        self.cluster_name = cluster_name
        self.reset(estate)

    def reset(self, estate: Estate) -> None:
        self.state = estate  # the state the breaches are of
        self.breaches = Counter(hard_affinity_breaches(estate, self.cluster_name))

    def new_breaches(self, before: Estate, after: Estate, touched: Touched | None) -> list[str]:
        """The breaches of ``after`` not in the last state looked at, in the full scan's order.

        ``touched``: what changed from ``before`` to ``after``; None when not known.
        """
        if touched is None or before is not self.state:
            found = hard_affinity_breaches(after, self.cluster_name)
            new = [b for b in found if b not in self.breaches]
            self.state, self.breaches = after, Counter(found)
            return new
        self.state = after
        pairs: set[tuple[str, str]] = set()
        for name in touched.changed_vms:
            for state in (before, after):
                vm = state.vms.get(name)
                if vm is not None and _hard_member(vm, self.cluster_name):
                    pairs.add((vm.anti_affinity_group or "", vm.node or ""))
        if not pairs:
            return []
        gained: list[tuple[str, str]] = []
        lost: list[str] = []
        for group, node in pairs:
            gained.extend(_group_breaches(after, self.cluster_name, group, node))
            lost.extend(m for _, m in _group_breaches(before, self.cluster_name, group, node))
        # The full scan lists breaches by the name of their second VM.
        new = [m for _, m in sorted(gained) if m not in self.breaches]
        self.breaches.subtract(lost)
        self.breaches.update(m for _, m in gained)
        self.breaches = +self.breaches  # drop the pairs no longer in breach
        return new


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
    reserves = {c: ReserveTracker(c) for c in clusters}
    # Breaches in the state before the current step: a breach is reported by the step that
    # makes it, not again by every later step while it lasts.
    affinity = {c: AffinityTracker(observed, c) for c in clusters}

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
        before, state = state, result.estate
        touched = touched_between(before, state)
        # Known only when the step's records were found one by one (see changes_since); a
        # step whose intermediate states are gone is rechecked whole by the trackers.
        exact = touched if state.changes_since(before) is not None else None
        for tracker in reserves.values():
            tracker.step(exact)
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
            short = reserves[action.cluster].shortfall(state)
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
        watch = affinity.get(action.cluster)
        for breach in watch.new_breaches(before, state, exact) if watch else ():
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
    return state, out
