"""Memory accounting: what a host can give to VMs and what each VM really costs.

A host keeps a parent-partition reserve; each VM costs its memory plus an overhead that grows
with its size (docs/domain.md section 7). Both come from the platform profile, overridable per
cluster.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

from reconciler.model.platforms import platform
from reconciler.model.records import MEMO_FOLLOWS, Cluster, Estate, MemoFollow, Node, VirtualMachine


def parent_reserve_mib(cluster: Cluster) -> int:
    if cluster.memory.parent_reserve_mib is not None:
        return cluster.memory.parent_reserve_mib
    return platform(cluster.platform).parent_reserve_mib


def usable_memory_mib(node: Node, cluster: Cluster) -> int:
    """Memory a host can give to VMs (and their overhead) after the parent reserve."""
    return max(0, node.hardware.memory_mib - parent_reserve_mib(cluster))


def vm_overhead_mib(memory_mib: int, cluster: Cluster, slat: bool = True) -> int:
    if cluster.memory.vm_overhead_mib is not None:
        return cluster.memory.vm_overhead_mib
    return _platform_overhead_mib(memory_mib, cluster.platform, slat)


@cache  # called for every VM on every check of a plan replay: the arithmetic is the same
def _platform_overhead_mib(memory_mib: int, platform_name: str, slat: bool) -> int:
    profile = platform(platform_name)
    extra_gib = max(0, math.ceil(memory_mib / 1024) - 1)
    overhead = profile.vm_overhead_base_mib + profile.vm_overhead_per_gib_mib * extra_gib
    return overhead - (profile.slat_saving_mib if slat else 0)


def vm_cost_mib(vm: VirtualMachine, cluster: Cluster, node: Node | None = None) -> int:
    """What a running VM takes from its host: memory plus overhead."""
    slat = node.hardware.slat if node is not None else True
    return vm.memory_mib + vm_overhead_mib(vm.memory_mib, cluster, slat)


def used_memory_mib(estate: Estate, node_name: str) -> int:
    """Memory taken on a host by the VMs running there (off VMs take none)."""
    memo = estate.memo("used_mib")
    cached: int | None = memo.get(node_name)
    if cached is not None:
        return cached
    node = estate.nodes[node_name]
    cluster = estate.clusters.get(node.cluster)
    if cluster is None:
        return 0
    used: int = sum(
        vm_cost_mib(vm, cluster, node)
        for vm in estate.vms_on(node_name)
        if vm.power_state == "running"
    )
    memo[node_name] = used
    return used


def _follow(sign: int) -> MemoFollow:
    """Memory used (sign 1) or free (-1) per node, moved by one VM's change."""

    def follow(
        after: Estate, old: VirtualMachine | None, new: VirtualMachine | None, memo: dict[str, Any]
    ) -> None:
        for vm, way in ((old, -sign), (new, sign)):
            if vm is None or vm.node is None or vm.node not in memo:
                continue
            node = after.nodes.get(vm.node)
            cluster = after.clusters.get(node.cluster) if node is not None else None
            if node is None or cluster is None:
                del memo[vm.node]  # computed again on demand
            elif vm.power_state == "running":
                memo[vm.node] += way * vm_cost_mib(vm, cluster, node)

    return follow


MEMO_FOLLOWS["used_mib"] = _follow(1)
MEMO_FOLLOWS["free_mib"] = _follow(-1)


def free_memory_mib(estate: Estate, node_name: str) -> int:
    # Asked of every node for every VM placed: kept per node, like the memory used.
    memo = estate.memo("free_mib")
    cached: int | None = memo.get(node_name)
    if cached is not None:
        return cached
    node = estate.nodes[node_name]
    cluster = estate.clusters[node.cluster]
    free = usable_memory_mib(node, cluster) - used_memory_mib(estate, node_name)
    memo[node_name] = free
    return free
