"""What counts as the same: normal forms for values written more than one way.

Adapters are a set keyed by name (the order they are listed in is not a difference); VLAN sets
are frozensets already (``"1-3,5"`` and ``[1, 2, 3, 5]`` load the same).
"""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.model.records import NetworkRole, VmNic

NicKey = tuple[str, str, int | None, tuple[int, ...], int | None, str | None]


def nic_key(nics: Iterable[VmNic]) -> tuple[NicKey, ...]:
    """Each adapter by name: switch, access VLAN, trunk VLANs and native VLAN, static MAC."""
    return tuple(
        sorted(
            (n.name, n.switch, n.vlan, tuple(sorted(n.trunk)), n.native_vlan, n.mac) for n in nics
        )
    )


def same_nics(a: Iterable[VmNic], b: Iterable[VmNic]) -> bool:
    if isinstance(a, tuple) and a == b:
        return True  # the same adapters in the same order: no need to sort
    return nic_key(a) == nic_key(b)


def cluster_role(roles: Iterable[NetworkRole]) -> str:
    """The role Windows stores for a cluster network (ClusterNetworkRole), from what it carries.

    Client access with management; cluster traffic only (heartbeat, CSV, live migration)
    with heartbeat or live_migration; none (the cluster does not use it) for VM and iSCSI
    networks. Roles that map to one Windows role are no difference in the world.
    """
    carried = set(roles)
    if "management" in carried:
        return "cluster_and_client"
    if carried & {"heartbeat", "live_migration"}:
        return "cluster"
    return "none"
