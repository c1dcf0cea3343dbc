"""Unhealthy states a real cluster gets into, injected by 'sim fault': a VM's cluster role
failed, a CSV in redirected access, a cluster network down on some nodes or on all of them.

Pure functions of the world: each returns the changed world and what happened, or raises
HealthFaultError naming what is wrong with the request. The simulator writes the result
(stamping when each condition began, model/conditions.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from reconciler.model.conditions import REDIRECT_REASONS, network_states
from reconciler.model.records import Cluster, Estate, frozen_map

__all__ = [
    "REDIRECT_REASONS",
    "HealthFaultError",
    "direct_volume",
    "fail_vm",
    "redirect_volume",
    "set_network",
]


class HealthFaultError(ValueError):
    """The fault cannot be made in this world (no such object, or a bad choice)."""


def fail_vm(estate: Estate, name: str) -> tuple[Estate, list[str]]:
    """The VM's cluster role fails: the VM is off and stays off until it is started."""
    vm = estate.vms.get(name)
    if vm is None:
        raise HealthFaultError(f"no VM {name}")
    if not vm.highly_available:
        raise HealthFaultError(f"{name} is not highly available: it has no cluster role to fail")
    failed = replace(vm, power_state="off", status=replace(vm.status, failed=True))
    return estate.with_record(failed), [f"{name}'s cluster role failed: {name} is off"]


def redirect_volume(
    estate: Estate, name: str, nodes: Sequence[str], reason: str
) -> tuple[Estate, list[str]]:
    """I/O to the CSV from ``nodes`` (default: every member) goes through the coordinator."""
    volume = estate.volumes.get(name)
    if volume is None:
        raise HealthFaultError(f"no cluster shared volume {name}")
    if reason not in REDIRECT_REASONS:
        raise HealthFaultError(f"reason {reason} is not one of {', '.join(REDIRECT_REASONS)}")
    members = _members(estate, volume.cluster, nodes)
    redirected = {**volume.status.redirected, **dict.fromkeys(members, reason)}
    status = replace(volume.status, redirected=frozen_map(redirected))
    changed = estate.with_record(replace(volume, status=status))
    return changed, [f"{name} is in redirected access on {', '.join(members)} ({reason})"]


def direct_volume(estate: Estate, name: str, nodes: Sequence[str]) -> tuple[Estate, list[str]]:
    """Direct I/O again from ``nodes`` (default: every member)."""
    volume = estate.volumes.get(name)
    if volume is None:
        raise HealthFaultError(f"no cluster shared volume {name}")
    members = _members(estate, volume.cluster, nodes)
    left = {n: r for n, r in volume.status.redirected.items() if n not in members}
    status = replace(volume.status, redirected=frozen_map(left))
    changed = estate.with_record(replace(volume, status=status))
    return changed, [f"{name} has direct access on {', '.join(members)}"]


def set_network(
    estate: Estate, cluster_name: str, network: str, nodes: Sequence[str], up: bool
) -> tuple[Estate, list[str]]:
    """The network's interface on ``nodes`` (default: every member) goes down, or up again.
    Down on some members only, the network is partitioned."""
    cluster = estate.clusters.get(cluster_name)
    if cluster is None:
        raise HealthFaultError(f"no cluster {cluster_name}")
    if network not in {n.name for n in cluster.networks}:
        known = ", ".join(n.name for n in cluster.networks) or "none"
        raise HealthFaultError(f"{cluster_name} has no network {network} (it has: {known})")
    members = _members(estate, cluster_name, nodes)
    for name in members:
        node = estate.nodes[name]
        down = (
            node.status.networks_down - {network} if up else node.status.networks_down | {network}
        )
        estate = estate.with_record(replace(node, status=replace(node.status, networks_down=down)))
    return estate, [_network_line(estate, cluster, network)]


def _network_line(estate: Estate, cluster: Cluster, network: str) -> str:
    state = network_states(estate, cluster).get(network)
    if state is None:
        return f"cluster network {network} is up"
    how, cut = state
    if how == "Down":
        return f"cluster network {network} is down"
    return f"cluster network {network} is partitioned: down on {', '.join(cut)}"


def _members(estate: Estate, cluster_name: str, nodes: Sequence[str]) -> list[str]:
    cluster = estate.clusters.get(cluster_name)
    members = list(cluster.nodes) if cluster is not None else []
    strangers = [n for n in nodes if n not in members]
    if strangers:
        raise HealthFaultError(f"{', '.join(strangers)}: not a member of {cluster_name}")
    chosen = [n for n in (nodes or members) if n in estate.nodes]
    if not chosen:
        raise HealthFaultError(f"{cluster_name} has no member nodes")
    return list(dict.fromkeys(chosen))
