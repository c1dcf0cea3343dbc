"""Where a 2008 R2 cluster keeps its live-migration networks, as the peer's host answers.

2008 R2 has no ``Get-VMMigrationNetwork``: the networks live migration may use are a private
property of the "Virtual Machine" resource type, ``MigrationExcludeNetworks`` (the Ids of the
cluster networks it must not use, separated by ';'), next to ``MigrationNetworkOrder``. The
peer excludes every network of the world that lacks the live_migration role, and gives each
cluster network the ``Id`` a host gives it (a GUID; this peer's are stable per name).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from psrpcore.types import PSNoteProperty

from reconciler.providers.sim.winrm import objects as o
from reconciler.providers.sim.winrm.binding import Param, Spec
from reconciler.providers.sim.winrm.cmdlets_read import READ_SPECS

if TYPE_CHECKING:
    from reconciler.providers.sim.winrm.cmdlets import Host

FC = "Microsoft.FailoverClusters.PowerShell"
RESOURCE_TYPE_TYPES = (f"{FC}.ClusterResourceType",)
VM_RESOURCE_TYPE = "Virtual Machine"


def network_id(host: Host, name: str) -> str:
    return host.peer.guid("network", f"{host.cluster}:{name}")


def get_network(host: Host, spec: Spec, p: dict[str, Any], inputs: Any) -> Iterator[Any]:
    _spec, read = READ_SPECS["Get-ClusterNetwork"]
    for net in read(host, spec, p, inputs):
        net.PSObject.adapted_properties.append(PSNoteProperty("Id", network_id(host, net["Name"])))
        yield net


def get_resource_type(host: Host, spec: Spec, p: dict[str, Any], _in: Any) -> Iterator[Any]:
    names = [n.lower() for n in p.get("Name") or [VM_RESOURCE_TYPE]]
    if VM_RESOURCE_TYPE.lower() in names:
        yield o.ps_object(
            RESOURCE_TYPE_TYPES,
            {"Name": VM_RESOURCE_TYPE, "DisplayName": VM_RESOURCE_TYPE, "DllName": "vmclusres.dll"},
            VM_RESOURCE_TYPE,
        )


def get_parameter(host: Host, spec: Spec, p: dict[str, Any], inputs: Any) -> Iterator[Any]:
    """The VM resource type's migration properties; anything else as on later releases."""
    typed = [x for x in inputs or [] if RESOURCE_TYPE_TYPES[0] in x.PSObject.type_names]
    if not typed:
        _spec, read = READ_SPECS["Get-ClusterParameter"]
        yield from read(host, spec, p, inputs)
        return
    nets = host.this_cluster().networks
    values = {
        "MigrationExcludeNetworks": ";".join(
            network_id(host, n.name) for n in nets if "live_migration" not in n.roles
        ),
        "MigrationNetworkOrder": ";".join(
            network_id(host, n.name)
            for n in sorted(nets, key=lambda n: "live_migration" not in n.roles)
        ),
    }
    wanted = {n.lower() for n in p.get("Name") or values}
    for name, value in values.items():
        if name.lower() in wanted:
            yield o.ps_object(
                o.PARAMETER_TYPES,
                {
                    "ClusterObject": VM_RESOURCE_TYPE,
                    "Name": name,
                    "IsReadOnly": False,
                    "ParameterType": "String",
                    "Value": value,
                },
            )


CMDLETS: dict[str, tuple[Spec, Any]] = {
    "Get-ClusterNetwork": (READ_SPECS["Get-ClusterNetwork"][0], get_network),
    "Get-ClusterResourceType": (
        Spec(
            "Get-ClusterResourceType",
            f"{FC}.Commands.GetClusterResourceTypeCommand",
            {"Name": Param("strs")},
            ("Name",),
        ),
        get_resource_type,
    ),
    "Get-ClusterParameter": (READ_SPECS["Get-ClusterParameter"][0], get_parameter),
}
