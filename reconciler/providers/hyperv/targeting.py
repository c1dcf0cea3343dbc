"""Which node runs each step: always a node, never the cluster name.

A cluster name resolves round-robin to any member, where a node-local cmdlet (Get-VM,
Resize-VHD) does not see the VM ("not found"). So: a VM's cmdlets run on its owner node, a
CSV's partition is resized on its coordinator, a drain is driven from another member (the
drained node may reboot), a migration from its destination.
"""

from __future__ import annotations

from reconciler.model.records import Estate

CALL_SECONDS = 120.0
DRAIN_SECONDS = 1800.0
MIGRATION_SECONDS = 1800.0
DISK_SECONDS = 3600.0
POWER_SECONDS = 600.0


class NoTarget(LookupError):
    pass


def _up_members(estate: Estate, cluster: str) -> list[str]:
    c = estate.clusters.get(cluster)
    if c is None:
        raise NoTarget(f"cluster {cluster} was not observed")
    return [n for n in c.nodes if n in estate.nodes and estate.nodes[n].status.state == "up"]


def any_member(estate: Estate, cluster: str) -> str:
    members = _up_members(estate, cluster)
    if not members:
        raise NoTarget(f"no member of {cluster} is up")
    return members[0]


def other_member(estate: Estate, cluster: str, node: str) -> str:
    for name in _up_members(estate, cluster):
        if name != node:
            return name
    raise NoTarget(f"no member of {cluster} other than {node} is up")


def migration_node(estate: Estate, cluster: str, destination: str) -> str:
    if destination in _up_members(estate, cluster):
        return destination
    return any_member(estate, cluster)


def vm_owner(estate: Estate, vm: str) -> str:
    record = estate.vms.get(vm)
    if record is None or record.node is None:
        raise NoTarget(f"VM {vm} is on no observed node")
    return record.node


def volume_owner(estate: Estate, volume: str) -> str:
    record = estate.volumes.get(volume)
    if record is None or not record.status.coordinator:
        raise NoTarget(f"CSV {volume} has no observed coordinator node")
    return record.status.coordinator
