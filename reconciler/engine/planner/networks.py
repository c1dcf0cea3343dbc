"""Cluster networks and host facts: rename a network and set its role; what no plan changes
(a subnet, a host's NIC wiring and offloads, SLAT) is blocked with its reason."""

from __future__ import annotations

from reconciler.engine.diff import match_network
from reconciler.engine.planner.base import PlannerBase
from reconciler.model.compare import cluster_role
from reconciler.model.records import Cluster

# Windows' own words for the roles (Get-ClusterNetwork .Role), shown in reasons.
ROLE_WORDS = {
    "none": "None (not used by the cluster)",
    "cluster": "Cluster (cluster traffic only)",
    "cluster_and_client": "ClusterAndClient",
}


class Networks(PlannerBase):
    __slots__ = ()

    def set_networks(self, desired: Cluster, observed: Cluster) -> list[str]:
        """One set_cluster_network per declared network whose name or role differs."""
        ids: list[str] = []
        target = f"Cluster/{self.cluster}"
        for want in desired.networks:
            have = match_network(want, observed)
            if have is None:
                self._no_such_network(desired, observed, want.name, want.subnet)
                continue
            role, had = cluster_role(want.roles), cluster_role(have.roles)
            if have.name == want.name and role == had:
                continue
            changes: dict[str, tuple[object, object]] = {}
            if have.name != want.name:
                changes[f"networks.{have.name}.name"] = (have.name, want.name)
            if role != had:
                changes[f"networks.{want.name}.role"] = (had, role)
            aid = self.emit(
                "set_cluster_network",
                target,
                want.name,
                {
                    "network": have.name,
                    "subnet": want.subnet,
                    "name": want.name,
                    "roles": list(want.roles),
                    "role": role,
                },
                reason=f"cluster network on {have.subnet or have.name}: "
                + ", ".join(
                    part
                    for part in (
                        f"named {want.name}" if have.name != want.name else "",
                        f"role {ROLE_WORDS[role]}" if role != had else "",
                    )
                    if part
                )
                + " in the manifest",
                changes=changes,
            )
            if aid:
                ids.append(aid)
        return ids

    def _no_such_network(
        self, desired: Cluster, observed: Cluster, name: str, subnet: str | None
    ) -> None:
        same_name = next((n for n in observed.networks if n.name == name), None)
        if same_name is not None and subnet is not None:
            message = (
                f"cluster network {name} is on subnet {same_name.subnet}, the manifest says "
                f"{subnet}: a cluster network is its IP subnet, which comes from the nodes' "
                "addresses; no plan changes it"
            )
            fix = f"readdress the nodes' NICs, or set subnet: {same_name.subnet}"
        else:
            where = f"on subnet {subnet}" if subnet else f"named {name}"
            message = (
                f"the cluster has no network {where}: Windows makes a cluster network for "
                "each subnet the nodes have addresses on; a plan cannot create one"
            )
            fix = "give the nodes addresses on that subnet, or remove the network"
        self.block("unsupported", f"Cluster/{self.cluster}", message, fix)

    def check_host_facts(self) -> None:
        """A host's NICs (where each is wired, VMQ, jumbo frames) and SLAT: compared, never
        changed by a plan; a difference is blocked with what to do by hand."""
        members = self.state.clusters[self.cluster].nodes
        for node in self.desired.nodes_of(self.cluster):
            have = self.state.nodes.get(node.name)
            if have is None or node.name not in members:
                continue
            target = f"Node/{node.name}"
            if have.hardware.slat != node.hardware.slat:
                self.block(
                    "hardware",
                    target,
                    f"{node.name}'s CPU {'has' if have.hardware.slat else 'lacks'} SLAT, the "
                    f"manifest says slat: {str(node.hardware.slat).lower()}; memory overhead "
                    "is counted from what the host has",
                    f"set slat: {str(have.hardware.slat).lower()}",
                )
            host = {n.name: n for n in have.nics}
            for nic in node.nics:
                seen = host.get(nic.name)
                if seen is None:
                    self.block(
                        "hardware",
                        target,
                        f"{node.name} has no NIC {nic.name}"
                        + (f" (it has {', '.join(sorted(host))})" if host else ""),
                        "rename the adapter on the host, or make the manifest name it as "
                        "the host does",
                    )
                    continue
                if nic.network is not None and seen.network != nic.network:
                    self.block(
                        "hardware",
                        target,
                        f"{node.name}'s {nic.name} is on cluster network "
                        f"{seen.network or '(none)'}, the manifest says {nic.network}: "
                        "cabling and addresses are not changed by a plan",
                        "recable or readdress it, or make the manifest say what the host has",
                    )
                for attr, words, cmdlet in (
                    ("vmq", "VMQ", "Set-NetAdapterVmq"),
                    ("jumbo_frames", "jumbo frames", "the *JumboPacket advanced property"),
                ):
                    a, b = getattr(seen.offloads, attr), getattr(nic.offloads, attr)
                    if a != b and attr in seen.offloads.reported:
                        self.block(
                            "hardware",
                            target,
                            f"{node.name}'s {nic.name} has {words} {'on' if a else 'off'}, the "
                            f"manifest says {'on' if b else 'off'}: NIC settings are not "
                            "changed by a plan",
                            f"set it on the host ({cmdlet}), or make the manifest say "
                            "what the host has",
                        )
