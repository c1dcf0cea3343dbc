"""Forming a cluster from standalone hosts, and the cluster name's static addresses.

The estate is built from zero: the hosts' switches matched, Test-Cluster and New-Cluster
(static addresses, no storage), then the rest of the cluster's plan as for any cluster
(quorum and witness, CSVs from presented LUNs, VMs). World rules: ``rules_cluster``.
"""

from __future__ import annotations

from reconciler.engine.planner.membership import Membership
from reconciler.model.records import Cluster
from reconciler.model.rules_cluster import network_to_params


class Formation(Membership):
    __slots__ = ()

    def form_cluster(self, desired: Cluster) -> str | None:
        """create_cluster for a cluster the manifests declare and the world does not have."""
        target = f"Cluster/{self.cluster}"
        missing = [n for n in desired.nodes if n not in self.state.nodes]
        if missing:
            self.block(
                "node_missing",
                target,
                f"cluster {self.cluster} does not exist and the provider does not see "
                f"{', '.join(missing)} to form it from",
                "rack the hosts, install the roles, then plan again",
            )
            return None
        if not desired.addresses:
            self.block(
                "create_cluster",
                target,
                f"cluster {self.cluster} does not exist; forming it needs a static address",
                "set spec.addresses to an address in a cluster network's subnet",
            )
            return None
        switches: list[str] = []
        for node in desired.nodes:
            switches.extend(self._switch_actions(node, f"before {self.cluster} is formed"))
        return self.emit(
            "create_cluster",
            target,
            self.cluster,
            {
                "cluster": self.cluster,
                "platform": desired.platform,
                "nodes": list(desired.nodes),
                "addresses": list(desired.addresses),
                "networks": [network_to_params(n) for n in desired.networks],
                "no_storage": True,
            },
            depends_on=switches,
            reason=f"{self.cluster} is in the manifests, its hosts are in no cluster: "
            "Test-Cluster, then New-Cluster with a static address and no storage",
            changes={
                "spec.nodes": (None, list(desired.nodes)),
                "spec.addresses": (None, list(desired.addresses)),
            },
        )

    def cluster_addresses(self, desired: Cluster) -> None:
        have = self.state.clusters[self.cluster]
        if not desired.addresses or sorted(desired.addresses) == sorted(have.addresses):
            return
        self.emit(
            "set_cluster_addresses",
            f"Cluster/{self.cluster}",
            self.cluster,
            {"addresses": sorted(desired.addresses)},
            reason="the cluster name's static addresses differ from the manifest",
            changes={"spec.addresses": (sorted(have.addresses), sorted(desired.addresses))},
        )
