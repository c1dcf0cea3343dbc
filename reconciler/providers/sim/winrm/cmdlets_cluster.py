"""The peer's cluster-wide writes (2012 R2+ hosts): a cluster network's Name and Role, the
cluster name's IP Address resources.

``Set-ClusterNetwork.ps1`` (the provider's constant script, recognised by its marker) is the
network's Name and Role assigned, applied as ``set_cluster_network``. The cluster name's
addresses are the core group's IP Address resources: a new one is made (Add-ClusterResource),
given its parameters (Set-ClusterParameter) and made a dependency of the cluster name; the
world's address set changes (``set_cluster_addresses``) when such a resource comes online,
or when one leaves the cluster name's dependencies or is removed. A resource on its way in
or out is held by the peer (``HyperVPeer.ip_pending``), not in the world.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psrpcore.types import PSObject

from reconciler.model.addresses import network_of
from reconciler.model.compare import cluster_role
from reconciler.model.records import Cluster, NetworkRole
from reconciler.providers.sim.winrm import cmdlets_read as read
from reconciler.providers.sim.winrm import cmdlets_storage as storage
from reconciler.providers.sim.winrm import cmdlets_write as write
from reconciler.providers.sim.winrm import objects as o
from reconciler.providers.sim.winrm import wmi1_scripts
from reconciler.providers.sim.winrm.binding import Param, PeerError, Spec
from reconciler.providers.sim.winrm.cmdlets_storage import rename_resource

if TYPE_CHECKING:
    from reconciler.providers.sim.winrm.cmdlets import Host

FC = "Microsoft.FailoverClusters.PowerShell"
CORE_GROUP = "Cluster Group"
CLUSTER_NAME = "Cluster Name"  # the core Network Name resource (``read.resources``)
IP_TYPE = "IP Address"
IP_PARAMETERS = ("Address", "SubnetMask", "Network", "EnableDhcp")

# --- the constant script -------------------------------------------------------------------------

MARKER = re.compile(r"#\s*reconciler-modern:\s*([A-Za-z-]+)")
ROLE_WORD = {"None": "none", "Cluster": "cluster", "ClusterAndClient": "cluster_and_client"}
# The roles a network gets when its Windows role changes (finer roles are the manifest's).
ROLES_OF: dict[str, tuple[NetworkRole, ...]] = {
    "none": ("vm",),
    "cluster": ("heartbeat",),
    "cluster_and_client": ("management",),
}


def set_cluster_network(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    cluster = host.this_cluster()
    net = next((n for n in cluster.networks if n.name == p["Name"]), None)
    if net is None:  # the script's throw
        raise PeerError(
            f"no cluster network named {p['Name']}", "OperationStopped", "RuntimeException"
        )
    role = ROLE_WORD[p["Role"]]
    roles = net.roles if cluster_role(net.roles) == role else ROLES_OF[role]
    params = {"network": net.name, "subnet": net.subnet, "name": p["NewName"], "roles": roles}
    host.apply(spec, "set_cluster_network", f"Cluster/{cluster.name}", params, p["NewName"])
    for row in read.get_network(host, spec, {}, None):
        if str(row["Name"]) == p["NewName"]:  # Select-Object Name, Role, Address, ...
            yield o.ps_object(
                (f"Selected.{o.NETWORK_TYPES[0]}", "System.Management.Automation.PSCustomObject"),
                {k: row[k] for k in ("Name", "Role", "Address", "AddressPrefixLength")},
            )


# The modern path's shipped scripts, by marker (a CSV's rename is the storage cmdlets').
SCRIPTS = {"Set-ClusterNetwork": set_cluster_network, "Rename-ClusterResource": rename_resource}


def script_entry(text: str) -> tuple[Spec, Any] | None:
    """A shipped script of the modern path, bound as its param() block declares; None for
    any other text (which a 2012 R2+ host of this peer refuses)."""
    if MARKER.search(text) is None:
        return None
    name, spec, patterns = wmi1_scripts.parse(text, MARKER, SCRIPTS)
    handler = SCRIPTS[name]

    def run(host: Host, s: Spec, bound: dict[str, Any], inputs: Any) -> Iterator[Any]:
        wmi1_scripts.check_patterns(s, patterns, bound)
        yield from handler(host, s, bound, inputs)

    return spec, run


# --- IP Address resources ------------------------------------------------------------------------


@dataclass
class IpResource:
    name: str
    address: str
    mask: str
    network: str
    online: bool
    depends: bool  # a dependency of the cluster name
    pending: bool  # held by the peer, not (or no longer) one of the world's addresses


def _mask(cluster: Cluster, address: str) -> tuple[str, str]:
    net = network_of(cluster.networks, address)
    if net is None or net.subnet is None:
        return "", ""
    return net.name, str(ipaddress.ip_network(net.subnet, strict=False).netmask)


def ip_resources(host: Host, cluster: Cluster) -> list[IpResource]:
    """The world's addresses (named once, kept by the peer), then those on their way."""
    names = host.peer.ip_names.setdefault(cluster.name, {})
    pending = host.peer.ip_pending.setdefault(cluster.name, {})
    for address in [a for a in names if a not in cluster.addresses]:
        del names[address]  # changed behind the peer's back (a sim command, a test)
    used = set(names.values()) | set(pending)
    out: list[IpResource] = []
    for address in sorted(cluster.addresses):
        if address not in names:
            first = "Cluster IP Address"
            names[address] = first if first not in used else f"{first} {address}"
            used.add(names[address])
        network, mask = _mask(cluster, address)
        out.append(IpResource(names[address], address, mask, network, True, True, False))
    for name, held in sorted(pending.items()):
        out.append(
            IpResource(
                name,
                str(held.get("Address") or ""),
                str(held.get("SubnetMask") or ""),
                str(held.get("Network") or ""),
                bool(held.get("online")),
                bool(held.get("depends")),
                True,
            )
        )
    return out


def _ip_object(r: IpResource) -> PSObject:
    state = o.ClusterResourceState.Online if r.online else o.ClusterResourceState.Offline
    return o.ps_object(
        o.RESOURCE_TYPES,
        {"Name": r.name, "ResourceType": IP_TYPE, "OwnerGroup": CORE_GROUP, "State": state},
        r.name,
    )


def _find(host: Host, spec: Spec, name: str) -> IpResource:
    found = next((r for r in ip_resources(host, host.this_cluster()) if r.name == name), None)
    if found is None:
        raise PeerError(
            f"The cluster resource '{name}' was not found.",
            "ObjectNotFound",
            spec.fqid("ClusterObjectNotFound"),
            name,
        )
    return found


def _set_addresses(host: Host, spec: Spec, addresses: set[str], subject: str) -> None:
    cluster = host.this_cluster()
    host.apply(
        spec,
        "set_cluster_addresses",
        f"Cluster/{cluster.name}",
        {"addresses": sorted(addresses)},
        subject,
    )


def get_resource(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    cluster = host.this_cluster()
    rows = [(r[0], read.resource_object(*r)) for r in read.resources(host)]
    rows += [(r.name, _ip_object(r)) for r in ip_resources(host, cluster)]
    # Disks a CSV's creation (or removal) left in Available Storage (cmdlets_storage).
    rows += [
        (name, read.resource_object(name, "Physical Disk", storage.AVAILABLE_STORAGE))
        for name in sorted(storage.available_storage(host))
    ]
    names = p.get("Name")
    found = [(n, x) for n, x in rows if read._match(names, n)]
    for name in names or []:
        if "*" not in name and not any(n.lower() == name.lower() for n, _ in found):
            raise PeerError(
                f"The cluster resource '{name}' was not found.",
                "ObjectNotFound",
                spec.fqid("ClusterObjectNotFound"),
                name,
            )
    yield from (x for _, x in found)


def _is_ip(item: Any) -> bool:
    return o.RESOURCE_TYPES[0] in item.PSObject.type_names and str(item["ResourceType"]) == IP_TYPE


def get_parameter(host: Host, spec: Spec, p: dict[str, Any], inputs: Any) -> Iterator[Any]:
    others = [x for x in inputs or [] if not _is_ip(x)]
    if inputs is None or others:
        yield from storage.get_parameter(host, spec, p, others or None)
    names = p.get("Name")
    for item in inputs or []:
        if not _is_ip(item):
            continue
        r = _find(host, spec, str(item["Name"]))
        values = {
            "Address": r.address,
            "SubnetMask": r.mask,
            "Network": r.network,
            "EnableDhcp": o.u32(0),
        }
        for name, value in values.items():
            if read._match(names, name):
                yield read._parameter(r.name, name, value)


def set_parameter(host: Host, spec: Spec, p: dict[str, Any], inputs: Any) -> Iterator[Any]:
    if not inputs or not all(_is_ip(x) for x in inputs):
        yield from write.set_parameter(host, spec, p, inputs)
        return
    name, value = str(p["Name"]), p.get("Value")
    if name not in IP_PARAMETERS:
        raise PeerError(
            f"The property '{name}' cannot be set here.",
            "InvalidArgument",
            spec.fqid("InvalidParameter"),
            name,
        )
    for item in inputs:
        r = _find(host, spec, str(item["Name"]))
        if not r.pending or r.online:
            raise PeerError(
                f"This peer does not change {name} of '{r.name}' while it is online: add a "
                "resource for the new address, then remove the old one.",
                "InvalidOperation",
                spec.fqid("InvalidOperation"),
                r.name,
            )
        if name == "Address":
            try:
                ipaddress.IPv4Address(str(value))
            except ValueError:
                raise PeerError(
                    f"'{value}' is not a valid IPv4 address.",
                    "InvalidArgument",
                    spec.fqid("InvalidParameter"),
                    r.name,
                ) from None
        host.peer.ip_pending[host.this_cluster().name][r.name][name] = value


def add_resource(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    cluster = host.this_cluster()
    name, kind = str(p["Name"]), str(p["ResourceType"])
    if kind != IP_TYPE or p.get("Group", CORE_GROUP) != CORE_GROUP:
        raise PeerError(
            f"This peer adds {IP_TYPE} resources to the {CORE_GROUP} only.",
            "NotImplemented",
            spec.fqid("NotImplemented"),
            name,
        )
    taken = {r[0] for r in read.resources(host)} | {r.name for r in ip_resources(host, cluster)}
    if name in taken:
        raise PeerError(
            f"A cluster resource named '{name}' exists already.",
            "ResourceExists",
            spec.fqid("ClusterObjectExists"),
            name,
        )
    host.peer.ip_pending[cluster.name][name] = {"online": False, "depends": False}
    yield _ip_object(_find(host, spec, name))


def _dependency(host: Host, spec: Spec, p: dict[str, Any]) -> IpResource:
    if p.get("Resource") != CLUSTER_NAME:
        raise PeerError(
            f"This peer keeps the dependencies of '{CLUSTER_NAME}' only.",
            "NotImplemented",
            spec.fqid("NotImplemented"),
            str(p.get("Resource")),
        )
    return _find(host, spec, str(p.get("Provider")))


def add_dependency(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    r = _dependency(host, spec, p)
    if r.pending:
        held = host.peer.ip_pending[host.this_cluster().name][r.name]
        held["depends"] = True
        if r.online and r.address:  # online already: now the cluster name's address
            _enter(host, spec, r)
    return iter(())


def _enter(host: Host, spec: Spec, r: IpResource) -> None:
    cluster = host.this_cluster()
    _set_addresses(host, spec, {*cluster.addresses, r.address}, r.name)
    del host.peer.ip_pending[cluster.name][r.name]
    host.peer.ip_names[cluster.name][r.address] = r.name


def _leave(host: Host, spec: Spec, r: IpResource) -> None:
    cluster = host.this_cluster()
    _set_addresses(host, spec, set(cluster.addresses) - {r.address}, r.name)
    host.peer.ip_names[cluster.name].pop(r.address, None)


def remove_dependency(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    r = _dependency(host, spec, p)
    cluster = host.this_cluster()
    if not r.pending:
        _leave(host, spec, r)
        host.peer.ip_pending[cluster.name][r.name] = {
            "Address": r.address,
            "SubnetMask": r.mask,
            "Network": r.network,
            "online": True,
            "depends": False,
        }
    else:
        host.peer.ip_pending[cluster.name][r.name]["depends"] = False
    return iter(())


def start_resource(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    name = str(p["Name"])
    if name in {r[0] for r in read.resources(host)}:
        yield from get_resource(host, spec, {"Name": [name]}, None)  # online already
        return
    r = _find(host, spec, name)
    if r.pending and not r.online:
        if not r.address or not r.mask:
            raise PeerError(
                f"The resource '{name}' failed to come online: it has no address.",
                "OperationStopped",
                spec.fqid("ClusterResourceFailed"),
                name,
            )
        if r.depends:
            _enter(host, spec, r)
        else:
            host.peer.ip_pending[host.this_cluster().name][name]["online"] = True
    yield from get_resource(host, spec, {"Name": [name]}, None)


def remove_resource(host: Host, spec: Spec, p: dict[str, Any], inputs: Any) -> Iterator[Any]:
    name = str(p["Name"])
    if name in storage.available_storage(host):  # a disk in Available Storage: the storage cmdlets'
        return storage.remove_resource(host, spec, p, inputs)
    if name in {r[0] for r in read.resources(host)}:
        raise PeerError(
            f"This peer removes {IP_TYPE} resources only.",
            "NotImplemented",
            spec.fqid("NotImplemented"),
            name,
        )
    r = _find(host, spec, name)
    if not r.pending:
        _leave(host, spec, r)  # Windows takes it out of the cluster name's dependencies
    else:
        del host.peer.ip_pending[host.this_cluster().name][name]
    return iter(())


S = Param("str")
M = Param("str", True)
OBJ = Param("obj")
CLUSTER_SPECS: dict[str, tuple[Spec, Any]] = {
    "Get-ClusterResource": (read.READ_SPECS["Get-ClusterResource"][0], get_resource),
    "Get-ClusterParameter": (read.READ_SPECS["Get-ClusterParameter"][0], get_parameter),
    "Set-ClusterParameter": (write.WRITE_SPECS["Set-ClusterParameter"][0], set_parameter),
    "Add-ClusterResource": (
        Spec(
            "Add-ClusterResource",
            f"{FC}.Commands.AddClusterResourceCommand",
            {"Name": M, "ResourceType": M, "Group": S},
            ("Name",),
        ),
        add_resource,
    ),
    "Add-ClusterResourceDependency": (
        Spec(
            "Add-ClusterResourceDependency",
            f"{FC}.Commands.AddClusterResourceDependencyCommand",
            {"Resource": S, "Provider": S, "InputObject": OBJ},
            ("Resource", "Provider"),
        ),
        add_dependency,
    ),
    "Remove-ClusterResourceDependency": (
        Spec(
            "Remove-ClusterResourceDependency",
            f"{FC}.Commands.RemoveClusterResourceDependencyCommand",
            {"Resource": S, "Provider": S, "InputObject": OBJ},
            ("Resource", "Provider"),
        ),
        remove_dependency,
    ),
    "Start-ClusterResource": (
        Spec(
            "Start-ClusterResource",
            f"{FC}.Commands.StartClusterResourceCommand",
            {"Name": M, "Wait": Param("i32"), "InputObject": OBJ},
            ("Name",),
        ),
        start_resource,
    ),
    "Remove-ClusterResource": (
        Spec(
            "Remove-ClusterResource",
            f"{FC}.Commands.RemoveClusterResourceCommand",
            {"Name": M, "Force": Param("switch"), "InputObject": OBJ},
            ("Name",),
        ),
        remove_resource,
    ),
}
