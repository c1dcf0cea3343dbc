"""Cluster IP addresses and the cluster networks whose subnets hold them.

A cluster name's static address must lie in the subnet of one of its cluster networks:
Windows brings the "Cluster IP Address" resource online only on a network it can reach.
"""

from __future__ import annotations

import ipaddress

from reconciler.model.records import Cluster, ClusterNetwork


def subnets(networks: tuple[ClusterNetwork, ...]) -> list[str]:
    """The networks' subnets that parse, as written."""
    out: list[str] = []
    for network in networks:
        if network.subnet is None:
            continue
        try:
            ipaddress.ip_network(network.subnet, strict=False)
        except ValueError:
            continue
        out.append(network.subnet)
    return out


def network_of(networks: tuple[ClusterNetwork, ...], address: str) -> ClusterNetwork | None:
    """The cluster network whose subnet holds ``address``, or None."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    for network in networks:
        if network.subnet is None:
            continue
        try:
            if ip in ipaddress.ip_network(network.subnet, strict=False):
                return network
        except ValueError:
            continue
    return None


def address_problems(cluster: Cluster, addresses: tuple[str, ...]) -> list[str]:
    """Why ``addresses`` cannot be the cluster's static addresses."""
    listed = ", ".join(subnets(cluster.networks)) or "none"
    return [
        f"address {a} is in no cluster network's subnet ({listed})"
        for a in addresses
        if network_of(cluster.networks, a) is None
    ]
