"""One cluster's plan: the phases in the order the cluster needs them."""

from __future__ import annotations

from reconciler.engine.planner.formation import Formation
from reconciler.engine.planner.networks import Networks
from reconciler.engine.planner.rolling import Rolling
from reconciler.engine.planner.storage import Storage
from reconciler.engine.planner.teaming import Teaming
from reconciler.engine.planner.vms import Vms


class ClusterPlanner(Vms, Rolling, Storage, Networks, Formation, Teaming):
    __slots__ = ()

    def plan(self) -> None:
        desired_cluster = self.desired.clusters[self.cluster]
        observed_cluster = self.state.clusters.get(self.cluster)
        formed: list[tuple[str, str]] = []
        if observed_cluster is None:
            created = self.form_cluster(desired_cluster)
            observed_cluster = self.state.clusters.get(self.cluster)
            if observed_cluster is None:
                return  # not formed: the plan says why
            formed = [(self.cluster, created or "")]
        self.report_unmanaged(desired_cluster)
        self.check_platform(desired_cluster, observed_cluster)
        self.set_networks(desired_cluster, observed_cluster)
        self.cluster_addresses(desired_cluster)
        recreated = self.recreate_teamed_switches(observed_cluster)
        member_fixes = [*recreated, *self.fix_member_switches(observed_cluster)]
        joins = [*formed, *self.add_nodes(desired_cluster, member_fixes)]
        # With evictions to come, quorum is set once, for the membership after them.
        leaving = self.leaving_nodes(desired_cluster)
        quorum = None if leaving else self.update_quorum(desired_cluster, joins)
        self.validate_new_nodes(desired_cluster, joins, quorum)
        self.evict_nodes(desired_cluster)
        self.extend_storage()
        self.resume_nodes(desired_cluster)
        self.place_vms()
        self.balance(desired_cluster)
        self.drain_nodes()
        self.rolling_update(desired_cluster)
        self.check_node_drift()
        self.check_host_facts()
        self.prune_vms(desired_cluster)  # removals come last
        self.prune_volumes()  # after the VMs that may have had disks on them
