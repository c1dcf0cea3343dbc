"""Observed health as conditions: facts about the world worth an admin's attention even when
no action follows (a node down, a VM failed or saved, a CSV in redirected access, a cluster
network down or partitioned, a switch missing on a member node).

Each condition has a type, a status ("True": it holds), a target (Kind/name), a reason and
``since``: when it began, in seconds on the world's clock. A provider that can tell keeps
``since`` in the ``status.since`` map of the record that holds the condition, under the
condition's key (its type, or type/subject when a record can hold several of one type);
``stamp_since`` keeps those maps up to date as the world changes (the simulator does).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from reconciler.model.records import Cluster, Estate, Record, frozen_map

PREFIX = "condition "
# Every type, in the order conditions are listed (and metrics are labelled).
CONDITION_TYPES = (
    "NodeDown",
    "NetworkDown",
    "NetworkPartitioned",
    "SwitchMissing",
    "CsvRedirected",
    "VmFailed",
    "VmSaved",
)
# What Get-ClusterSharedVolumeState reports as the cause of redirected I/O.
REDIRECT_REASONS = (
    "UserRequest",  # Suspend-ClusterResource -RedirectedAccess, e.g. for a backup
    "IncompatibleFileSystemFilter",
    "IncompatibleVolumeFilter",
    "FileSystemTiering",
    "BitLockerInitializing",
    "NoDiskConnectivity",  # block redirected: the node lost its path to the LUN
    "StorageSpaceNotAttached",
)


@dataclass(frozen=True, slots=True)
class Condition:
    type: str  # one of CONDITION_TYPES
    target: str  # Kind/name of the object that is unhealthy
    reason: str
    status: str = "True"
    since: float | None = None  # world clock seconds; None: the provider cannot tell
    key: str = ""  # where ``since`` is kept in the target's status.since map

    def note(self) -> str:
        since = f" (since t={self.since:.1f} s)" if self.since is not None else ""
        return f"{PREFIX}{self.type}={self.status} {self.target}: {self.reason}{since}"

    def as_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "status": self.status,
            "target": self.target,
            "reason": self.reason,
            "since": self.since,
        }


def network_states(estate: Estate, cluster: Cluster) -> dict[str, tuple[str, list[str]]]:
    """Cluster network -> ("Down" or "Partitioned", the up members it is down on); networks
    that are up are left out. A node that is down does not count either way."""
    up = [
        estate.nodes[n]
        for n in cluster.nodes
        if n in estate.nodes and estate.nodes[n].status.state == "up"
    ]
    out: dict[str, tuple[str, list[str]]] = {}
    for net in cluster.networks:
        cut = [n.name for n in up if net.name in n.status.networks_down]
        if cut:
            out[net.name] = ("Down" if len(cut) == len(up) else "Partitioned", cut)
    return out


def live_migration_networks(cluster: Cluster) -> list[str]:
    """The networks live migration may use: the configured one, else those with the role."""
    named = [n.name for n in cluster.networks if n.name == cluster.live_migration.network]
    return named or [n.name for n in cluster.networks if "live_migration" in n.roles]


def live_migration_cut(estate: Estate, cluster: Cluster, node_name: str) -> str | None:
    """Why ``node_name`` cannot take part in a live migration over the cluster's networks
    (every live-migration network is down on it), or None. A cluster that declares no
    live-migration network uses whatever is up; nothing is known to be cut then."""
    nets = live_migration_networks(cluster)
    node = estate.nodes.get(node_name)
    if not nets or node is None or any(n not in node.status.networks_down for n in nets):
        return None
    return f"live-migration network {', '.join(nets)} is down on {node_name}"


def _since(record: Record, key: str) -> float | None:
    status: Any = getattr(record, "status", None)
    since: Mapping[str, float] = getattr(status, "since", None) or {}
    return since.get(key)


def observed_conditions(observed: Estate, desired: Estate | None = None) -> list[Condition]:
    """Every unhealthy condition of the observed estate, in a stable order.

    With ``desired``: only its clusters, and a switch is missing on a member node when the
    manifests declare it; without: the switches the world has on some node.
    """
    out: list[Condition] = []
    wanted = set(desired.clusters) if desired is not None else None

    def add(record: Record, kind: str, type_: str, reason: str, subject: str = "") -> None:
        key = f"{type_}/{subject}" if subject else type_
        target = f"{kind}/{record.name}"
        out.append(Condition(type_, target, reason, since=_since(record, key), key=key))

    for name, node in sorted(observed.nodes.items()):
        if (wanted is None or node.cluster in wanted) and node.status.state != "up":
            add(node, "Node", "NodeDown", f"{name} is {node.status.state}")
    for name, cluster in sorted(observed.clusters.items()):
        if wanted is not None and name not in wanted:
            continue
        for net, (state, cut) in sorted(network_states(observed, cluster).items()):
            if state == "Down":
                add(cluster, "Cluster", "NetworkDown", f"cluster network {net} is down", net)
            else:
                reason = f"cluster network {net} is partitioned: down on {', '.join(cut)}"
                add(cluster, "Cluster", "NetworkPartitioned", reason, net)
    switches = desired.switches if desired is not None else observed.switches
    for switch_name, switch in sorted(switches.items()):
        cluster_rec = observed.clusters.get(switch.cluster)
        for node_name in cluster_rec.nodes if cluster_rec is not None else ():
            host = observed.nodes.get(node_name)
            if (
                host is not None
                and host.status.state == "up"
                and switch_name not in host.status.switches
            ):
                reason = f"switch {switch_name} is missing on {node_name}"
                add(host, "Node", "SwitchMissing", reason, switch_name)
    for name, volume in sorted(observed.volumes.items()):
        if (wanted is None or volume.cluster in wanted) and volume.status.redirected:
            redirected = volume.status.redirected
            how = ", ".join(f"{n} ({redirected[n]})" for n in sorted(redirected))
            add(volume, "ClusterSharedVolume", "CsvRedirected", f"{name}: redirected I/O on {how}")
    for name, vm in sorted(observed.vms.items()):
        if wanted is not None and vm.cluster not in wanted:
            continue
        where = f" on {vm.node}" if vm.node else ""
        if vm.status.failed:
            add(vm, "VirtualMachine", "VmFailed", f"{name}'s cluster role is failed{where}")
        if vm.power_state == "saved":
            add(vm, "VirtualMachine", "VmSaved", f"{name} is saved{where}")
    order = {t: i for i, t in enumerate(CONDITION_TYPES)}
    return sorted(out, key=lambda c: (order[c.type], c.target, c.key))


def stamp_since(estate: Estate, now: float) -> Estate:
    """``estate`` with each record's ``status.since`` brought up to date: a condition that
    still holds keeps when it began, a new one began ``now``, an ended one is dropped."""
    held: dict[tuple[str, str], dict[str, float]] = {}
    for c in observed_conditions(estate):
        kind, _, name = c.target.partition("/")
        held.setdefault((kind, name), {})[c.key] = c.since if c.since is not None else now
    out = estate
    for kind in ("Cluster", "Node", "ClusterSharedVolume", "VirtualMachine"):
        table: Mapping[str, Any] = estate.table(kind)  # the kinds with a status
        for name, record in table.items():
            status: Any = record.status
            wanted = held.get((kind, name), {})
            if dict(status.since) != wanted:
                since = frozen_map(dict(sorted(wanted.items())))
                changed: Any = replace(record, status=replace(status, since=since))
                out = out.with_record(changed)
    return out
