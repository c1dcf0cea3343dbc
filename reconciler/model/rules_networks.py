"""World rule of ``set_cluster_network``: rename a cluster network, set what it carries.

Windows makes a cluster network per IP subnet and names it itself ("Cluster Network 1"); an
administrator renames it and sets its role (Get-ClusterNetwork: Name, Role). The subnet is
the network: it comes from the nodes' addresses and no rule changes it. References by name
(the hosts' NICs, the live-migration network) follow a rename.
"""

from __future__ import annotations

from dataclasses import replace

from reconciler.model.actions import Action
from reconciler.model.compare import cluster_role
from reconciler.model.records import ClusterNetwork, Estate, NetworkRole
from reconciler.model.rules_base import RuleResult, already_done, cluster_of, fail


def _find(networks: tuple[ClusterNetwork, ...], action: Action) -> ClusterNetwork | None:
    subnet = action.params.get("subnet")
    for net in networks:
        if subnet is not None and net.subnet == subnet:
            return net
    if subnet is not None:
        return None
    # Found by its name now, or by the one it gets (a rename applied once already).
    for name in (action.params["network"], action.params["name"]):
        found = next((n for n in networks if n.name == name), None)
        if found is not None:
            return found
    return None


def _set_cluster_network(estate: Estate, action: Action) -> RuleResult:
    cluster = cluster_of(estate, action)
    if cluster is None:
        return fail(estate, f"cluster {action.cluster} does not exist")
    net = _find(cluster.networks, action)
    if net is None:
        where = action.params.get("subnet") or action.params["network"]
        return fail(estate, f"cluster {cluster.name} has no network {where}")
    name = str(action.params["name"])
    roles: tuple[NetworkRole, ...] = tuple(action.params["roles"])
    if net.name == name and cluster_role(net.roles) == cluster_role(roles):
        return already_done(estate)
    problems = []
    if any(n.name == name for n in cluster.networks if n is not net):
        problems.append(f"cluster {cluster.name} has another network named {name}")
    networks = tuple(
        replace(n, name=name, roles=roles) if n is net else n for n in cluster.networks
    )
    if not any(cluster_role(n.roles) != "none" for n in networks):
        problems.append(
            f"cluster {cluster.name} would have no network for its own traffic "
            "(heartbeat): keep one network with a cluster role"
        )
    if problems:
        return fail(estate, *problems)
    lm = cluster.live_migration
    if lm.network == net.name:
        lm = replace(lm, network=name)
    estate = estate.with_record(replace(cluster, networks=networks, live_migration=lm))
    for node in estate.nodes_of(cluster.name):
        if any(nic.network == net.name for nic in node.nics):
            nics = tuple(
                replace(nic, network=name) if nic.network == net.name else nic for nic in node.nics
            )
            estate = estate.with_record(replace(node, nics=nics))
    return RuleResult(estate)


NETWORK_RULES = {"set_cluster_network": _set_cluster_network}
