"""apply() for the cluster as a whole (2012 R2+): its networks' names and roles, the cluster
name's static addresses.

A cluster network's Name and Role are set by assigning properties of the Get-ClusterNetwork
object (no cmdlet parameter does it): that is the one constant script, ``scripts/ps1``, every
value a typed parameter. The addresses are IP Address resources of the core cluster group,
changed with typed FailoverClusters cmdlets only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from reconciler.model.actions import Action
from reconciler.model.addresses import network_of
from reconciler.model.compare import cluster_role
from reconciler.providers.hyperv import act
from reconciler.providers.hyperv import model_map as m
from reconciler.providers.hyperv import targeting as t
from reconciler.providers.hyperv.scripts import SET_CLUSTER_NETWORK

# The model's cluster role (``compare.cluster_role``) -> ClusterNetworkRole by name.
ROLE = {"none": "None", "cluster": "Cluster", "cluster_and_client": "ClusterAndClient"}


def _network_now(
    networks: Sequence[Mapping[str, Any]], p: Mapping[str, Any]
) -> Mapping[str, Any] | None:
    """The Get-ClusterNetwork row the action means: by subnet when it names one, else by the
    name it has, or the one it gets (a rename made once already)."""
    subnet = p.get("subnet")
    if subnet is not None:
        want = ipaddress.ip_network(str(subnet), strict=False)
        for net in networks:
            address, bits = str(net.get("Address") or ""), int(net.get("AddressPrefixLength") or 0)
            if address and bits and ipaddress.ip_network(f"{address}/{bits}", strict=False) == want:
                return net
        return None
    for name in (p["network"], p["name"]):
        found = next((n for n in networks if str(n.get("Name")) == name), None)
        if found is not None:
            return found
    return None


def set_cluster_network(r: act.Runner, a: Action) -> None:
    via = t.any_member(r.estate, a.cluster)
    p = a.params
    net = _network_now(r.call(via, "Get-ClusterNetwork", {}), p)
    if net is None:
        raise LookupError(f"cluster {a.cluster} has no network {p.get('subnet') or p['network']}")
    role = ROLE[str(p.get("role") or cluster_role(p["roles"]))]
    if str(net.get("Name")) == p["name"] and str(net.get("Role")) == role:
        return  # as desired already: nothing is assigned
    r.script(
        via,
        SET_CLUSTER_NETWORK,
        {"Name": str(net["Name"]), "NewName": str(p["name"]), "Role": role},
    )


# --- the cluster name's static addresses --------------------------------------------------------

CORE_GROUP = "Cluster Group"
IP_TYPE = "IP Address"
NAME_TYPE = "Network Name"


def _core(resources: Sequence[Mapping[str, Any]], kind: str) -> list[Mapping[str, Any]]:
    return [
        x
        for x in resources
        if str(x.get("ResourceType")) == kind and str(x.get("OwnerGroup")) == CORE_GROUP
    ]


def address_resources(
    call: Callable[..., list[Any]], via: str, resources: Sequence[Mapping[str, Any]]
) -> dict[str, str]:
    """Address -> the name of its IP Address resource in the core cluster group."""
    ips = [str(x["Name"]) for x in _core(resources, IP_TYPE)]
    if not ips:
        return {}
    rows = call(
        via,
        "Get-ClusterResource",
        {"Name": ips},
        then=[("Get-ClusterParameter", {"Name": ["Address"]})],
    )
    return m.address_owners(rows)


def set_cluster_addresses(r: act.Runner, a: Action) -> None:
    """New addresses first (Add-ClusterResource, its parameters, a dependency of the cluster
    name, online), then the ones the manifest no longer has: the name stays reachable."""
    via = t.any_member(r.estate, a.cluster)
    cluster = r.estate.clusters[a.cluster]
    want = sorted(str(x) for x in a.params["addresses"])
    masks: dict[str, tuple[str, str]] = {}
    for address in want:
        net = network_of(cluster.networks, address)
        if net is None or net.subnet is None:
            raise ValueError(f"address {address} is in no cluster network's subnet")
        masks[address] = (net.name, str(ipaddress.ip_network(net.subnet, strict=False).netmask))
    every = r.call(via, "Get-ClusterResource", {})
    names = _core(every, NAME_TYPE)
    if not names:
        raise LookupError(f"cluster {a.cluster} has no Network Name resource in {CORE_GROUP}")
    cluster_name = str(names[0]["Name"])
    online = {str(x["Name"]) for x in every if str(x.get("State")) == m.RESOURCE_ONLINE}
    have = address_resources(r.call, via, every)
    taken = {str(x.get("Name")) for x in every}
    for address in want:
        resource = have.get(address)
        if resource in online:
            continue
        if resource is None:  # else a cut-short run made it: finish it
            resource = f"IP Address {address}"
        if resource not in taken:
            r.call(
                via,
                "Add-ClusterResource",
                {"Name": resource, "ResourceType": IP_TYPE, "Group": CORE_GROUP},
            )
        network, mask = masks[address]
        for key, value in (("Network", network), ("Address", address), ("SubnetMask", mask)):
            r.call(
                via,
                "Get-ClusterResource",
                {"Name": [resource]},
                then=[("Set-ClusterParameter", {"Name": key, "Value": value})],
            )
        r.call(
            via, "Add-ClusterResourceDependency", {"Resource": cluster_name, "Provider": resource}
        )
        r.call(via, "Start-ClusterResource", {"Name": resource})
    for address, resource in sorted(have.items()):
        if address in want:
            continue
        r.call(
            via,
            "Remove-ClusterResourceDependency",
            {"Resource": cluster_name, "Provider": resource},
        )
        r.call(via, "Remove-ClusterResource", {"Name": resource, "Force": None})


ACTIONS: dict[str, Callable[[act.Runner, Action], None]] = {
    "set_cluster_network": set_cluster_network,
    "set_cluster_addresses": set_cluster_addresses,
}
