"""World rules for a cluster as a whole: forming it from standalone hosts, its addresses.

``create_cluster`` is Test-Cluster, then New-Cluster with static addresses and no storage:
the hosts must be up with the roles, on one hardware and patch baseline, with identical
virtual switches, in no cluster yet. Windows then picks node majority (no disk was added);
the quorum the manifest wants, and its witness, come after (``update_quorum``), as do the
CSVs (``create_csv``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from reconciler.model.actions import Action
from reconciler.model.addresses import address_problems
from reconciler.model.platforms import platform
from reconciler.model.records import Cluster, ClusterNetwork, Estate, Quorum
from reconciler.model.rules_base import RuleResult, already_done, fail


def network_to_params(n: ClusterNetwork) -> dict[str, Any]:
    return {
        "name": n.name,
        "roles": list(n.roles),
        "subnet": n.subnet,
        "bandwidth_mbps": n.bandwidth_mbps,
    }


def network_from_params(p: Mapping[str, Any]) -> ClusterNetwork:
    return ClusterNetwork(
        name=p["name"],
        roles=tuple(p["roles"]),
        bandwidth_mbps=int(p.get("bandwidth_mbps", 1000)),
        subnet=p.get("subnet"),
    )


def formation_problems(
    estate: Estate,
    name: str,
    platform_name: str,
    nodes: Sequence[str],
    networks: tuple[ClusterNetwork, ...],
    addresses: tuple[str, ...],
) -> list[str]:
    """What Test-Cluster and New-Cluster would refuse: the validation report, in short."""
    problems: list[str] = []
    if not nodes:
        return ["a cluster needs at least one node"]
    profile = platform(platform_name)
    if len(nodes) > profile.max_nodes:
        problems.append(f"platform {platform_name} allows at most {profile.max_nodes} nodes")
    members = {n for c in estate.clusters.values() for n in c.nodes}
    hosts = []
    for node_name in nodes:
        node = estate.nodes.get(node_name)
        if node is None:
            problems.append(f"node {node_name} does not exist")
            continue
        hosts.append(node)
        if node_name in members:
            problems.append(f"{node_name} is already a member of a cluster")
        if node.status.state != "up":
            problems.append(f"{node_name} is down")
        if not node.status.roles_installed:
            problems.append(f"{node_name} lacks the Hyper-V and Failover Clustering roles")
    if hosts:
        first = hosts[0]
        for node in hosts[1:]:
            if node.hardware.baseline() != first.hardware.baseline():
                problems.append(
                    f"{node.name}'s hardware, drivers or patches differ from {first.name}"
                )
            for switch in sorted(set(first.status.switches) | set(node.status.switches)):
                if first.status.switches.get(switch) != node.status.switches.get(switch):
                    problems.append(f"switch {switch} on {node.name} differs from {first.name}")
    if not addresses:
        problems.append("New-Cluster needs a static address (spec.addresses)")
    probe = Cluster(name=name, platform=platform_name, nodes=tuple(nodes), networks=networks)  # type: ignore[arg-type]
    problems.extend(address_problems(probe, addresses))
    return problems


def _create_cluster(estate: Estate, action: Action) -> RuleResult:
    name = action.cluster
    nodes = tuple(action.params["nodes"])
    networks = tuple(network_from_params(n) for n in action.params.get("networks") or ())
    addresses = tuple(action.params["addresses"])
    existing = estate.clusters.get(name)
    if existing is not None:
        if sorted(existing.nodes) == sorted(nodes):
            return already_done(estate)
        return fail(estate, f"a cluster named {name} exists already with other nodes")
    problems = formation_problems(
        estate, name, action.params["platform"], nodes, networks, addresses
    )
    if problems:
        return fail(estate, "cluster validation failed: " + "; ".join(problems))
    cluster = Cluster(
        name=name,
        platform=action.params["platform"],
        nodes=nodes,
        quorum=Quorum("node_majority"),  # no storage yet, so no disk witness
        networks=networks,
        addresses=addresses,
    )
    estate = estate.with_record(cluster)
    for node_name in nodes:
        node = estate.nodes[node_name]
        estate = estate.with_record(replace(node, cluster=name, maintenance=False))
    return RuleResult(estate)


def _set_cluster_addresses(estate: Estate, action: Action) -> RuleResult:
    """The cluster name's IP Address resources: added or removed so the set is as given."""
    cluster = estate.clusters.get(action.cluster)
    if cluster is None:
        return fail(estate, f"cluster {action.cluster} does not exist")
    addresses = tuple(sorted(action.params["addresses"]))
    if tuple(sorted(cluster.addresses)) == addresses:
        return already_done(estate)
    problems = address_problems(cluster, addresses)
    if not addresses:
        problems.append("the cluster name needs at least one address")
    if problems:
        return fail(estate, *problems)
    return RuleResult(estate.with_record(replace(cluster, addresses=addresses)))


CLUSTER_RULES = {
    "create_cluster": _create_cluster,
    "set_cluster_addresses": _set_cluster_addresses,
}
