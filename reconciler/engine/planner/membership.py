"""Membership phases: the platform check, switches on members and joining nodes, adding
nodes, quorum, validating new nodes, resuming paused nodes, and node facts that differ."""

from __future__ import annotations

from reconciler.engine.changes import switch_changes
from reconciler.engine.planner.moves import Moves
from reconciler.model.quorum import effective_quorum
from reconciler.model.records import Cluster
from reconciler.model.rules import switch_to_params
from reconciler.model.vlans import format_vlan_list


class Membership(Moves):
    __slots__ = ()

    def leaving_nodes(self, desired: Cluster) -> list[str]:
        """Members the manifest no longer lists: they are evicted."""
        current = self.state.clusters[self.cluster]
        return sorted(n for n in current.nodes if n not in desired.nodes)

    def check_platform(self, desired: Cluster, observed: Cluster) -> None:
        if desired.platform != observed.platform:
            self.block(
                "unsupported",
                f"Cluster/{self.cluster}",
                f"the cluster runs {observed.platform}, the manifest says "
                f"{desired.platform}; upgrading a cluster is not done by a plan",
                f"set platform: {observed.platform}",
            )

    def _switch_actions(self, node_name: str, reason: str) -> list[str]:
        ids: list[str] = []
        node = self.state.nodes[node_name]
        for switch in self.desired.switches_of(self.cluster):
            want = switch.config
            have = node.status.switches.get(switch.name)
            subject = f"{node_name}/{switch.name}"
            if have is None or (
                have.type,
                have.uplink_nic,
                have.management_os,
                have.team_nics,
            ) != (want.type, want.uplink_nic, want.management_os, want.team_nics):
                aid = self.emit(
                    "match_vswitch",
                    f"Node/{node_name}",
                    subject,
                    {"node": node_name, "switch": switch.name, "config": switch_to_params(want)},
                    reason=f"{reason}: switch {switch.name} must be identical on every node",
                    changes=switch_changes(switch.name, have, want),
                )
            elif (have.allowed_vlans, have.native_vlan) != (want.allowed_vlans, want.native_vlan):
                aid = self.emit(
                    "set_vlan_trunk",
                    f"Node/{node_name}",
                    subject,
                    {
                        "node": node_name,
                        "switch": switch.name,
                        "allowed_vlans": format_vlan_list(want.allowed_vlans),
                        "native_vlan": want.native_vlan,
                    },
                    reason=f"{reason}: trunk of {switch.name} differs from the manifest",
                    changes=switch_changes(switch.name, have, want),
                )
            else:
                continue
            if aid:
                ids.append(aid)
                self.node_ready.setdefault(node_name, []).append(aid)
        return ids

    def fix_member_switches(self, observed: Cluster) -> list[str]:
        ids: list[str] = []
        for node_name in sorted(observed.nodes):
            if node_name in self.state.nodes:
                ids.extend(self._switch_actions(node_name, "member"))
        return ids

    def add_nodes(self, desired: Cluster, member_fixes: list[str]) -> list[tuple[str, str]]:
        """The add-node procedure of docs/domain.md section 2, steps 1-5, per new node."""
        joined: list[tuple[str, str]] = []
        current = self.state.clusters[self.cluster]
        new = [n for n in desired.nodes if n not in current.nodes]
        if not new:
            return joined
        begin = self.emit(
            "begin_monitoring_maintenance",
            f"Cluster/{self.cluster}",
            self.cluster,
            {"cluster": self.cluster},
            reason="monitoring in maintenance mode so the join raises no alerts",
        )
        for node_name in sorted(new):
            node = self.state.nodes.get(node_name)
            if node is None:
                self.block(
                    "node_missing",
                    f"Node/{node_name}",
                    f"{node_name} is not racked or not visible to the provider",
                    "build the node, install the roles, then plan again",
                )
                continue
            wanted = self.desired.nodes.get(node_name)
            members = [self.state.nodes[m] for m in current.nodes if m in self.state.nodes]
            if members and node.hardware.baseline() != members[0].hardware.baseline():
                self.block(
                    "baseline",
                    f"Node/{node_name}",
                    f"{node_name}'s hardware, firmware, drivers or patches differ from "
                    f"{members[0].name}: joining would be an unsupported configuration",
                    "patch the node to the cluster baseline first",
                )
            if wanted is not None and wanted.hardware.patch_level != node.hardware.patch_level:
                self.notes.append(
                    f"{node_name} is at patch level {node.hardware.patch_level}, "
                    f"the manifest says {wanted.hardware.patch_level}"
                )
            switches = self._switch_actions(node_name, f"before {node_name} joins")
            volumes = sorted(v.name for v in self.state.volumes_of(self.cluster))
            storage = self.emit(
                "present_storage",
                f"Node/{node_name}",
                node_name,
                {"node": node_name, "volumes": volumes},
                reason=f"every cluster LUN presented to {node_name} before it joins",
                changes={"luns": (sorted(node.status.luns), volumes)},
            )
            join = self.emit(
                "add_node",
                f"Node/{node_name}",
                node_name,
                {"node": node_name},
                depends_on=[begin or "", storage or "", *switches, *member_fixes],
                reason=f"{node_name} is in the manifest's spec.nodes",
                changes={
                    "spec.nodes": (sorted(current.nodes), sorted([*current.nodes, node_name]))
                },
            )
            if join:
                joined.append((node_name, join))
                current = self.state.clusters[self.cluster]
        if begin:
            joined.append(("", begin))
        return joined

    def update_quorum(self, desired: Cluster, joins: list[tuple[str, str]]) -> str | None:
        current = self.state.clusters[self.cluster]
        want = effective_quorum(desired.quorum, len(current.nodes))
        if want == current.quorum:
            return None
        witness = {
            k: v
            for k, v in (
                ("disk", want.witness.disk),
                ("file_share", want.witness.file_share),
                ("cloud_account", want.witness.cloud_account),
            )
            if v
        }
        return self.emit(
            "update_quorum",
            f"Cluster/{self.cluster}",
            self.cluster,
            {"mode": want.mode, "witness": witness},
            depends_on=[j for _, j in joins],
            reason=f"recommended quorum for {len(current.nodes)} nodes"
            if desired.quorum.mode == "recommended"
            else "quorum differs from the manifest",
            changes={"spec.quorum.mode": (current.quorum.mode, want.mode)},
        )

    def validate_new_nodes(
        self, desired: Cluster, joins: list[tuple[str, str]], quorum: str | None
    ) -> None:
        """Steps 6-9: test migrations to and from each new node, validation, monitoring back.

        Pending nodes come from the projected state, so a join interrupted after add_node
        is still tested and validated by the next plan.
        """
        begin = [j for n, j in joins if not n]
        cluster = self.state.clusters[self.cluster]
        pending = sorted(cluster.status.pending_nodes)
        after = [quorum or "", *(j for n, j in joins if n)]
        if pending:
            tests: list[str] = []
            test_vm = desired.test_vm
            for node_name in pending:
                if test_vm is None or test_vm not in self.state.vms:
                    self.notes.append(
                        f"no test_vm in the cluster manifest: {node_name} is "
                        "validated without a test migration"
                    )
                    continue
                aid = self.emit(
                    "test_live_migration",
                    f"Node/{node_name}",
                    f"{node_name}/{test_vm}",
                    {"vm": test_vm, "node": node_name},
                    depends_on=after,
                    reason=f"{test_vm} live-migrated to {node_name} and back before it takes load",
                )
                if aid:
                    tests.append(aid)
            validate = self.emit(
                "validate_cluster",
                f"Cluster/{self.cluster}",
                self.cluster,
                {"cluster": self.cluster},
                depends_on=[*after, *tests],
                reason="cluster validation re-run after the membership change",
            )
            for node_name in pending:
                self.node_ready.setdefault(node_name, []).extend([validate] if validate else [])
            after = [validate or ""]
        # The rolling update, or the evictions, end it after their own work.
        cycle_ends_it = self._cycle_active(desired) or bool(self.leaving_nodes(desired))
        if self.state.clusters[self.cluster].status.monitoring_maintenance and not cycle_ends_it:
            end = self.emit(
                "end_monitoring_maintenance",
                f"Cluster/{self.cluster}",
                self.cluster,
                {"cluster": self.cluster},
                depends_on=[*after, *begin],
                reason="join finished: monitoring back on"
                if begin
                else "monitoring was left in maintenance mode by an interrupted join",
            )
            for node_name in pending:
                self.node_ready.setdefault(node_name, []).extend([end] if end else [])

    def resume_nodes(self, desired: Cluster) -> None:
        # Nodes paused by a rolling update under way are resumed by it, after verification.
        cycle = self._cycle_nodes(desired) if self._cycle_active(desired) else []
        for node in self.desired.nodes_of(self.cluster):
            have = self.state.nodes.get(node.name)
            if node.name in cycle:
                continue
            if have is not None and have.maintenance and not node.maintenance:
                aid = self.emit(
                    "resume_node",
                    f"Node/{node.name}",
                    node.name,
                    {"node": node.name},
                    reason="maintenance: false in the manifest",
                    changes={"spec.maintenance": (True, False)},
                )
                if aid:
                    self.node_ready.setdefault(node.name, []).append(aid)

    def check_node_drift(self) -> None:
        for node in self.desired.nodes_of(self.cluster):
            have = self.state.nodes.get(node.name)
            if have is None or node.name not in self.state.clusters[self.cluster].nodes:
                continue
            if have.hardware.patch_level != node.hardware.patch_level:
                self.block(
                    "baseline",
                    f"Node/{node.name}",
                    f"{node.name} is at patch level {have.hardware.patch_level}, the "
                    f"manifest says {node.hardware.patch_level}",
                    "patch it (a rolling update patches nodes one by one)",
                    "warn",
                )
