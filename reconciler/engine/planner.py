"""The planner: from desired and observed state, an ordered, dependency-linked list of actions.

Pure: same inputs, same plan. Actions are built phase by phase on a projected state moved
by the world rules, so each choice (a destination, a join) sees the effect of the ones
before it; the finished plan is then replayed independently by ``safety.replay``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from graphlib import CycleError, TopologicalSorter
from typing import Any

from reconciler.engine.adapters import adapter_steps, settings_steps
from reconciler.engine.changes import switch_changes
from reconciler.engine.diff import ObjectDiff, diff_estates
from reconciler.engine.health import moves_onto_unhealthy, observed_conditions
from reconciler.engine.lifecycle import (
    create_vms,
    evict_nodes,
    leaving_nodes,
    prune_vms,
    report_unmanaged,
)
from reconciler.engine.placement import (
    choose_destination,
    destination_problems,
    in_service,
)
from reconciler.engine.plan import (
    Plan,
    PlanViolation,
    fingerprint,
    object_digests,
    prior_state_of,
)
from reconciler.engine.residual import unresolved
from reconciler.engine.safety import replay
from reconciler.engine.targets import target_closure
from reconciler.engine.unset import adopt_unmanaged, mark_defaults
from reconciler.model.actions import DISRUPTION, Action, ActionType, Disruption
from reconciler.model.capacity import usable_memory_mib, used_memory_mib, vm_cost_mib
from reconciler.model.compare import same_nics
from reconciler.model.physics import (
    action_seconds,
    actions_makespan,
    estimate_move,
    max_parallel_migrations,
)
from reconciler.model.platforms import platform
from reconciler.model.quorum import effective_quorum, failures_tolerated
from reconciler.model.records import Cluster, Disk, Estate, VirtualMachine
from reconciler.model.rules import (
    apply_rules,
    disk_to_params,
    placement_problems,
    switch_to_params,
)
from reconciler.model.rules_disks import move_needs_off
from reconciler.model.vlans import format_vlan_list


@dataclass(slots=True)
class _ClusterPlanner:
    desired: Estate
    state: Estate  # projected: the observed state moved by every action emitted so far
    cluster: str
    actions: list[Action] = field(default_factory=list)
    violations: list[PlanViolation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unmanaged: list[str] = field(default_factory=list)  # in the world, in no manifest
    ids: set[str] = field(default_factory=set)
    node_ready: dict[str, list[str]] = field(default_factory=dict)  # before a node is a target
    volume_ready: dict[str, list[str]] = field(default_factory=dict)
    migrations: list[str] = field(default_factory=list)
    leaving: dict[str, list[str]] = field(default_factory=dict)  # source node -> its moves

    # --- emitting ---------------------------------------------------------------------------

    def emit(
        self,
        type_: ActionType,
        target: str,
        subject: str,
        params: Mapping[str, Any],
        depends_on: Sequence[str] = (),
        reason: str = "",
        changes: Mapping[str, tuple[Any, Any]] | None = None,
        disruption: Disruption | None = None,
    ) -> str | None:
        """Add an action if the projected state is not already as it wants; returns its id."""
        action_id = f"{type_}:{subject}"
        n = 2
        while action_id in self.ids:
            action_id = f"{type_}:{subject}#{n}"
            n += 1
        action = Action(
            id=action_id,
            type=type_,
            target=target,
            cluster=self.cluster,
            params=dict(params),
            depends_on=tuple(sorted(set(d for d in depends_on if d))),
            disruption=disruption or DISRUPTION[type_],
            reason=reason,
            changes=dict(changes or {}),
        )
        result = apply_rules(self.state, action)
        if result.done:
            return None
        vm_name = params.get("vm")
        vm = self.state.vms.get(vm_name) if isinstance(vm_name, str) else None
        cluster = self.state.clusters.get(self.cluster)
        seconds = action_seconds(action, cluster, vm)
        moved = 0
        if type_ == "migrate_vm" and cluster is not None and vm is not None:
            moved = estimate_move(cluster, vm, params["method"]).bytes_sent
        elif type_ == "test_live_migration" and cluster is not None and vm is not None:
            moved = 2 * estimate_move(cluster, vm, "live").bytes_sent
        action = replace(action, estimate_seconds=seconds, estimate_bytes=moved)
        self.actions.append(action)
        self.ids.add(action_id)
        if result.ok:
            self.state = result.estate
        return action_id

    def block(
        self, rule: str, target: str, message: str, fix: str, severity: str = "block"
    ) -> None:
        self.violations.append(
            PlanViolation(rule, target, message, fix, "warn" if severity == "warn" else "block")
        )

    # --- phases -----------------------------------------------------------------------------

    def plan(self) -> None:
        desired_cluster = self.desired.clusters[self.cluster]
        observed_cluster = self.state.clusters.get(self.cluster)
        if observed_cluster is None:
            self.block(
                "unsupported",
                f"Cluster/{self.cluster}",
                f"cluster {self.cluster} does not exist; creating clusters is not supported",
                "create the cluster by hand, then adopt it with observe",
            )
            return
        report_unmanaged(self, desired_cluster)
        self.check_platform(desired_cluster, observed_cluster)
        member_fixes = self.fix_member_switches(observed_cluster)
        joins = self.add_nodes(desired_cluster, member_fixes)
        # With evictions to come, quorum is set once, for the membership after them.
        leaving = leaving_nodes(self, desired_cluster)
        quorum = None if leaving else self.update_quorum(desired_cluster, joins)
        self.validate_new_nodes(desired_cluster, joins, quorum)
        evict_nodes(self, desired_cluster)
        self.extend_storage()
        self.resume_nodes(desired_cluster)
        self.place_vms()
        self.balance(desired_cluster)
        self.drain_nodes()
        self.rolling_update(desired_cluster)
        self.check_node_drift()
        prune_vms(self, desired_cluster)  # removals come last

    def _cycle_active(self, desired: Cluster) -> bool:
        """A rolling update is declared and not yet recorded as complete."""
        ru = desired.rolling_update
        cluster = self.state.clusters.get(self.cluster)
        return (
            ru is not None and cluster is not None and cluster.status.rolling_update_done != ru.id
        )

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
            if have is None or (have.type, have.uplink_nic, have.management_os) != (
                want.type,
                want.uplink_nic,
                want.management_os,
            ):
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
        cycle_ends_it = self._cycle_active(desired) or bool(leaving_nodes(self, desired))
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

    def extend_storage(self) -> None:
        for volume in self.desired.volumes_of(self.cluster):
            have = self.state.volumes.get(volume.name)
            if have is None:
                self.block(
                    "unsupported",
                    f"ClusterSharedVolume/{volume.name}",
                    f"volume {volume.name} does not exist; creating LUNs and volumes "
                    "is not supported",
                    "create and add the CSV by hand, then plan",
                )
                continue
            target = f"ClusterSharedVolume/{volume.name}"
            if volume.lun_size_gib < have.lun_size_gib or volume.size_gib < have.size_gib:
                self.block(
                    "no_shrink",
                    target,
                    f"{volume.name} is {have.size_gib} GiB on a {have.lun_size_gib} GiB "
                    f"LUN; the manifest asks for {volume.size_gib} on "
                    f"{volume.lun_size_gib}: volumes and LUNs never shrink",
                    f"set size_gib >= {have.size_gib} and lun_size_gib >= {have.lun_size_gib}",
                )
                continue
            lun = None
            if volume.lun_size_gib > have.lun_size_gib:
                lun = self.emit(
                    "extend_lun",
                    target,
                    volume.name,
                    {"volume": volume.name, "lun_size_gib": volume.lun_size_gib},
                    reason="grow the LUN on the storage array before the volume",
                    changes={"spec.lun_size_gib": (have.lun_size_gib, volume.lun_size_gib)},
                )
            if volume.size_gib > have.size_gib:
                ext = self.emit(
                    "extend_volume",
                    target,
                    volume.name,
                    {
                        "volume": volume.name,
                        "size_gib": volume.size_gib,
                        "coordinator": have.status.coordinator,
                    },
                    depends_on=[lun or ""],
                    reason=f"rescan and extend on the coordinator node {have.status.coordinator}",
                    changes={"spec.size_gib": (have.size_gib, volume.size_gib)},
                )
                if ext:
                    self.volume_ready.setdefault(volume.name, []).append(ext)

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

    # --- VMs --------------------------------------------------------------------------------

    def _method(self, vm: VirtualMachine, policy: VirtualMachine) -> str:
        """How a VM moves; ``never`` and ``offline`` VMs with downtime allowed move off instead.

        Without allow_downtime those get the move their policy forbids, so the replay blocks
        it and says why (``never``: live; ``offline``: quick, which is downtime).
        """
        if vm.power_state != "running":
            return "offline"
        if policy.migration_policy == "live":
            return "live"
        return "live" if policy.migration_policy == "never" else "quick"

    def migrate(
        self, vm_name: str, destination: str, reason: str, depends_on: Sequence[str] = ()
    ) -> str | None:
        vm = self.state.vms[vm_name]
        policy = self.desired.vms.get(vm_name, vm)
        target = f"VirtualMachine/{vm_name}"
        stop: str | None = None
        if (
            vm.power_state == "running"
            and policy.migration_policy in ("never", "offline")
            and policy.allow_downtime
        ):
            # Saved state is not supported for such workloads (an Exchange DAG member):
            # shut down, move the VM while it is off, start it on the destination.
            stop = self.emit(
                "stop_vm",
                target,
                vm_name,
                {"vm": vm_name},
                depends_on=[*self.node_ready.get(destination, []), *depends_on],
                reason=f"{reason}: migration_policy {policy.migration_policy} moves it off "
                "(shut down, move, start), never saved",
                changes={"power_state": ("running", "off")},
            )
            vm = self.state.vms[vm_name]
            depends_on = [*depends_on, stop or ""]
        method = self._method(vm, policy)
        cluster = self.state.clusters[self.cluster]
        parallel = max_parallel_migrations(cluster)
        chain = self.migrations[-parallel:] if len(self.migrations) >= parallel else []
        disruption: Disruption = {"live": "live-migration", "quick": "downtime", "offline": "none"}[
            method
        ]  # type: ignore[assignment]
        aid = self.emit(
            "migrate_vm",
            f"VirtualMachine/{vm_name}",
            vm_name,
            {
                "vm": vm_name,
                "source": vm.node,
                "destination": destination,
                "method": method,
                "memory_mib": vm.memory_mib,
            },
            depends_on=[
                *self.node_ready.get(destination, []),
                *chain[:1],
                *self._moves_out_of(destination),
                *depends_on,
            ],
            reason=reason,
            changes={"node": (vm.node, destination)},
            disruption=disruption,
        )
        if aid:
            self.migrations.append(aid)
            if vm.node is not None:
                self.leaving.setdefault(vm.node, []).append(aid)
        if stop is not None:
            start = self.emit(
                "start_vm",
                target,
                vm_name,
                {"vm": vm_name},
                depends_on=[aid or ""],
                reason=f"started again on {destination} after its offline move",
                changes={"power_state": ("off", "running")},
            )
            return start or aid
        return aid

    def _moves_out_of(self, node_name: str) -> list[str]:
        """Moves planned so far that leave ``node_name``: they make room there."""
        return list(self.leaving.get(node_name, ()))

    def _pin_not_ready(self, want: VirtualMachine) -> bool:
        """A running VM pinned to a node that cannot take it yet (memory, hard anti-affinity)."""
        have = self.state.vms[want.name]
        if want.node is None or want.node == have.node or have.power_state != "running":
            return False
        return bool(destination_problems(self.state, have, want.node))

    def place_vms(self) -> None:
        waiting: list[VirtualMachine] = []
        missing: list[VirtualMachine] = []
        for vm in self.desired.vms.values():
            if vm.cluster != self.cluster:
                continue
            if vm.name not in self.state.vms:
                missing.append(vm)
                continue
            waiting.append(vm)
        # A VM pinned to a node that the VMs leaving it have not made ready yet waits for
        # them; once a round frees nothing, the rest are planned and replay says why not.
        while waiting:
            later: list[VirtualMachine] = []
            for vm in waiting:
                if self._pin_not_ready(vm):
                    later.append(vm)
                else:
                    self.plan_vm(vm)
            if len(later) == len(waiting):
                break
            waiting = later
        for vm in waiting:
            self.plan_vm(vm)
        # New VMs after the moves of existing ones, which may make room for them.
        create_vms(self, missing)

    def plan_vm(self, want: VirtualMachine) -> None:
        have = self.state.vms[want.name]
        target = f"VirtualMachine/{want.name}"
        cluster = self.state.clusters[self.cluster]
        needs_off: list[str] = []
        steps: list[
            tuple[ActionType, dict[str, Any], str, dict[str, tuple[Any, Any]], list[str]]
        ] = []
        online_resize = platform(cluster.platform).online_vhd_resize
        current = {d.name: d for d in have.disks}
        for disk in want.disks:
            old = current.pop(disk.name, None)
            if old is None:
                if disk.controller == "ide":
                    needs_off.append(f"add IDE disk {disk.name}")
                steps.append(
                    (
                        "add_disk",
                        {"vm": want.name, "disk": disk_to_params(disk)},
                        f"disk {disk.name} is in the manifest",
                        {
                            f"disks.{disk.name}": (
                                None,
                                f"{disk.size_gib} GiB "
                                f"{disk.controller} {disk.controller_number}:"
                                f"{disk.slot}",
                            )
                        },
                        self.volume_ready.get(disk.volume, []),
                    )
                )
                continue
            self.plan_disk(want, have, old, disk, steps, needs_off, online_resize)
        for name, old in sorted(current.items()):
            if old.controller == "ide":
                needs_off.append(f"remove IDE disk {name}")
            steps.append(
                (
                    "detach_disk",
                    {"vm": want.name, "disk": name, "delete_file": False},
                    f"disk {name} is no longer in the manifest: detached, file kept",
                    {f"disks.{name}": (f"{old.size_gib} GiB on {old.volume}", None)},
                    [],
                )
            )
        if (want.memory_mib, want.vcpus) != (have.memory_mib, have.vcpus):
            needs_off.append("change memory or vCPUs")
            params: dict[str, Any] = {"vm": want.name}
            changes: dict[str, tuple[Any, Any]] = {}
            if want.memory_mib != have.memory_mib:
                params["memory_mib"] = want.memory_mib
                changes["memory_mib"] = (have.memory_mib, want.memory_mib)
            if want.vcpus != have.vcpus:
                params["vcpus"] = want.vcpus
                changes["vcpus"] = (have.vcpus, want.vcpus)
            steps.append(
                ("set_vm", params, "memory or vCPUs differ from the manifest", changes, [])
            )
        if not same_nics(want.nics, have.nics):
            nic_steps, nic_off = adapter_steps(self.state, want, have)
            steps.extend(nic_steps)
            needs_off.extend(nic_off)
        if (want.preferred_owners, want.automatic_start_action, want.automatic_stop_action) != (
            None,
            None,
            None,
        ):
            settings, settings_off = settings_steps(want, have)
            steps.extend(settings)
            needs_off.extend(settings_off)
        if want.generation != have.generation:
            self.block(
                "unsupported",
                target,
                f"generation {have.generation} cannot become {want.generation}",
                f"set generation: {have.generation}",
            )
        running = have.power_state == "running"
        stop_id: str | None = None
        if needs_off and running:
            if want.allow_downtime:
                stop_id = self.emit(
                    "stop_vm",
                    target,
                    want.name,
                    {"vm": want.name},
                    reason="needs the VM off: " + ", ".join(needs_off),
                    changes={"power_state": ("running", "off")},
                )
            else:
                self.block(
                    "downtime_not_allowed",
                    target,
                    f"{want.name} must be off to "
                    + ", ".join(needs_off)
                    + " and its manifest allows no downtime",
                    "set allow_downtime: true, or make the change by hand in a window",
                )
        last: list[str] = []
        for type_, params, reason, changes, deps in steps:
            aid = self.emit(
                type_,
                target,
                want.name,
                params,
                depends_on=[stop_id or "", *deps],
                reason=reason,
                changes=changes,
            )
            if aid:
                last.append(aid)
        moved = self.plan_move(want, [stop_id or "", *last])
        if moved:
            last.append(moved)
        have = self.state.vms[want.name]
        if want.power_state == "running" and have.power_state != "running":
            self.emit(
                "start_vm",
                target,
                want.name,
                {"vm": want.name},
                depends_on=last,
                reason="started again after its change"
                if stop_id
                else "power_state: running in the manifest",
                changes={"power_state": (have.power_state, "running")},
            )
        elif want.power_state == "off" and have.power_state == "running":
            self.emit(
                "stop_vm",
                target,
                want.name,
                {"vm": want.name},
                reason="power_state: off in the manifest",
                changes={"power_state": ("running", "off")},
            )

    def plan_disk(
        self,
        want: VirtualMachine,
        have: VirtualMachine,
        old: Disk,
        disk: Disk,
        steps: list[tuple[ActionType, dict[str, Any], str, dict[str, tuple[Any, Any]], list[str]]],
        needs_off: list[str],
        online_resize: bool,
    ) -> None:
        target = f"VirtualMachine/{want.name}"
        if old.volume != disk.volume:
            self.block(
                "unsupported",
                target,
                f"disk {disk.name} moved to another volume; storage migration is not supported yet",
                f"keep volume: {old.volume}",
            )
        elif (old.controller, old.controller_number, old.slot) != (
            disk.controller,
            disk.controller_number,
            disk.slot,
        ):
            why = move_needs_off(have, old, disk)
            if why:
                needs_off.append(f"move {disk.name} ({why})")
            # Before disks are added: one may take the slot this one leaves.
            steps.insert(
                0,
                (
                    "move_disk",
                    {
                        "vm": want.name,
                        "disk": disk.name,
                        "controller": disk.controller,
                        "controller_number": disk.controller_number,
                        "slot": disk.slot,
                    },
                    f"disk {disk.name} is on another controller or slot in the manifest",
                    {
                        f"disks.{disk.name}": (
                            f"{old.controller} {old.controller_number}:{old.slot}",
                            f"{disk.controller} {disk.controller_number}:{disk.slot}",
                        )
                    },
                    [],
                ),
            )
        if disk.size_gib < old.size_gib:
            self.block(
                "no_shrink",
                target,
                f"disk {disk.name} is {old.size_gib} GiB, the manifest says "
                f"{disk.size_gib}: virtual disks are never shrunk",
                f"set size_gib >= {old.size_gib}",
            )
        elif disk.size_gib > old.size_gib:
            if not (online_resize and disk.format == "vhdx" and disk.controller == "scsi"):
                needs_off.append(f"resize {disk.name}")
            steps.append(
                (
                    "extend_vhd",
                    {"vm": want.name, "disk": disk.name, "size_gib": disk.size_gib},
                    f"grow {disk.name}; then extend the guest's partition too "
                    "(DISKPART extend or Resize-Partition)",
                    {f"disks.{disk.name}.size_gib": (old.size_gib, disk.size_gib)},
                    self.volume_ready.get(disk.volume, []),
                )
            )
        if disk.type != old.type or disk.format != old.format:
            if disk.format != old.format:
                self.block(
                    "unsupported",
                    target,
                    f"disk {disk.name}: converting {old.format} to "
                    f"{disk.format} is not supported yet",
                    f"set format: {old.format}",
                )
            else:
                needs_off.append(f"convert {disk.name}")
                steps.append(
                    (
                        "convert_disk",
                        {"vm": want.name, "disk": disk.name, "type": disk.type},
                        f"convert {disk.name} {old.type} -> {disk.type}",
                        {f"disks.{disk.name}.type": (old.type, disk.type)},
                        self.volume_ready.get(disk.volume, []),
                    )
                )

    def plan_move(self, want: VirtualMachine, after: list[str]) -> str | None:
        have = self.state.vms[want.name]
        if want.node is not None and want.node != have.node:
            if self._cycle_returns_to(want.node):
                return None  # the rolling update brings it back once its node is patched
            return self.migrate(
                want.name, want.node, f"pinned to {want.node} in the manifest", after
            )
        desired_node = self.desired.nodes.get(have.node or "")
        leaving = desired_node is not None and desired_node.maintenance
        # Its host lacks a switch, VLAN or LUN even after this plan's fixes.
        broken = (
            have.node is not None
            and have.power_state == "running"
            and bool(placement_problems(self.state, have, have.node))
        )
        if not leaving and not broken:
            return None
        exclude = {n.name for n in self.desired.nodes_of(self.cluster) if n.maintenance}
        destination = choose_destination(self.state, have, exclude=exclude)
        if destination is None:
            self.block(
                "no_placement",
                f"VirtualMachine/{want.name}",
                f"no node can take {want.name} ({have.memory_mib} MiB)",
                "free memory or relax anti-affinity",
            )
            return None
        why = f"{have.node} goes into maintenance" if leaving else f"{have.node} cannot run it"
        return self.migrate(want.name, destination, why, after)

    def _cycle_returns_to(self, node_name: str) -> bool:
        """The rolling update under way has yet to patch or resume ``node_name``.

        VMs pinned there go back once it has (``_return_pinned``), not before: they would
        only have to leave again, or the node is paused and cannot take them.
        """
        desired = self.desired.clusters[self.cluster]
        ru = desired.rolling_update
        if ru is None or not self._cycle_active(desired):
            return False
        if node_name not in self._cycle_nodes(desired):
            return False
        status = self.state.clusters[self.cluster].status
        patched = status.rolling_update_in_progress == ru.id and node_name in status.updated_nodes
        node = self.state.nodes.get(node_name)
        return not patched or (node is not None and node.maintenance)

    def drain_nodes(self) -> None:
        for node in self.desired.nodes_of(self.cluster):
            have = self.state.nodes.get(node.name)
            if have is None or have.maintenance or not node.maintenance:
                continue
            moves = [
                a.id
                for a in self.actions
                if a.type == "migrate_vm" and a.params.get("source") == node.name
            ]
            self.emit(
                "drain_node",
                f"Node/{node.name}",
                node.name,
                {"node": node.name},
                depends_on=moves,
                reason="maintenance: true in the manifest",
                changes={"spec.maintenance": (False, True)},
            )

    # --- balance and rolling updates ---------------------------------------------------------

    def _serving(self) -> list[str]:
        cluster = self.state.clusters[self.cluster]
        excluded = {n.name for n in self.desired.nodes_of(self.cluster) if n.maintenance}
        return [n for n in sorted(cluster.nodes) if in_service(self.state, n) and n not in excluded]

    def _used_pct(self, node_name: str) -> float:
        cluster = self.state.clusters[self.cluster]
        usable = usable_memory_mib(self.state.nodes[node_name], cluster)
        return 100.0 * used_memory_mib(self.state, node_name) / usable if usable else 100.0

    def balance(self, desired: Cluster) -> None:
        """Move VMs from the fullest to the emptiest node until memory use is within the spread."""
        if desired.balance is None:
            return
        spread = desired.balance.max_memory_spread_pct
        for _ in range(len(self.state.vms)):
            serving = self._serving()
            if len(serving) < 2:
                return
            pct = {n: self._used_pct(n) for n in serving}
            high = max(serving, key=lambda n: (pct[n], n))
            low = min(serving, key=lambda n: (pct[n], n))
            if pct[high] - pct[low] <= spread:
                return
            if not self._balance_step(high, low, pct):
                self.notes.append(
                    f"memory use spread {pct[high] - pct[low]:.0f} points "
                    f"({high} to {low}) stays above {spread}: no VM can move"
                )
                return

    def _balance_step(self, high: str, low: str, pct: dict[str, float]) -> bool:
        cluster = self.state.clusters[self.cluster]
        usable_high = usable_memory_mib(self.state.nodes[high], cluster)
        usable_low = usable_memory_mib(self.state.nodes[low], cluster)
        movable = [
            vm
            for vm in self.state.vms_on(high)
            if vm.power_state == "running"
            and self.desired.vms.get(vm.name, vm).node is None
            and self.desired.vms.get(vm.name, vm).migration_policy == "live"
        ]
        for vm in sorted(movable, key=lambda v: (-v.memory_mib, v.name)):
            cost = 100.0 * vm_cost_mib(vm, cluster) / max(1, min(usable_high, usable_low))
            # Only moves that bring the pair closer together, so balancing always ends.
            if max(pct[high] - cost, pct[low] + cost) >= pct[high]:
                continue
            if destination_problems(self.state, vm, low):
                continue
            return (
                self.migrate(
                    vm.name,
                    low,
                    f"balance: {high} at {pct[high]:.0f}% memory, {low} at {pct[low]:.0f}%",
                )
                is not None
            )
        return False

    def _cycle_nodes(self, desired: Cluster) -> list[str]:
        ru = desired.rolling_update
        members = self.state.clusters[self.cluster].nodes
        if ru is None:
            return []
        listed = list(ru.nodes) if ru.nodes is not None else list(members)
        return [n for n in listed if n in members]

    def rolling_update(self, desired: Cluster) -> None:
        """Patch every listed node in turn: drain, hook, verify, resume; no fail-back.

        Drained VMs go to nodes already patched in this cycle (or outside it), so with one
        node's worth of spare capacity each VM moves once. The least-loaded node goes first.
        """
        ru = desired.rolling_update
        if ru is None or not self._cycle_active(desired):
            return
        cluster = self.state.clusters[self.cluster]
        members = cluster.nodes
        listed = list(ru.nodes) if ru.nodes is not None else list(members)
        for name in listed:
            if name not in members:
                self.block(
                    "rolling_update",
                    f"Cluster/{self.cluster}",
                    f"rolling update {ru.id} lists {name}, which is not a member",
                    "list member nodes only, or all",
                )
        cycle = [n for n in listed if n in members]
        started = cluster.status.rolling_update_in_progress == ru.id
        done = set(cluster.status.updated_nodes) if started else set()
        patched = done | {n for n in members if n not in cycle}
        tolerated = failures_tolerated(cluster.quorum.mode, len(members))
        batch_size = max(1, min(ru.max_unavailable, tolerated))
        if ru.max_unavailable > batch_size:
            self.notes.append(
                f"rolling update {ru.id}: quorum ({cluster.quorum.mode}, "
                f"{len(members)} nodes) allows {batch_size} node(s) out at once"
            )
        begin = self.emit(
            "begin_monitoring_maintenance",
            f"Cluster/{self.cluster}",
            self.cluster,
            {"cluster": self.cluster},
            reason=f"rolling update {ru.id}: monitoring in maintenance mode",
        )
        previous: list[str] = [begin] if begin else []
        resumed: list[str] = []
        # Nodes patched before an interruption but not yet back in service.
        finished = [n for n in sorted(done) if self.state.nodes[n].maintenance]
        for name in finished:
            resumed.extend(self._finish_node(desired, name, previous))
        resumed.extend(self._return_pinned(ru.id, finished, resumed))
        if resumed:
            previous = [*previous, *resumed]  # the next node waits for these to be back
        todo = [n for n in cycle if n not in done]
        blocked = False
        while todo:
            load = {n: used_memory_mib(self.state, n) for n in todo}
            batch = sorted(todo, key=lambda n: (load[n], n))[:batch_size]
            moves: list[str] = []
            ready: list[str] = []
            for name in batch:
                node_moves = self._drain_for_cycle(ru.id, name, batch, patched, previous)
                if node_moves is None:
                    blocked = True
                    continue
                moves.extend(node_moves)
                ready.append(name)
            batch_done: list[str] = []
            for name in ready:
                drain = self.emit(
                    "drain_node",
                    f"Node/{name}",
                    name,
                    {"node": name},
                    depends_on=[*previous, *moves],
                    reason=f"rolling update {ru.id}: pause {name} for patching",
                    changes={"spec.maintenance": (False, True)},
                )
                level = ru.patch_level or self._target_level(name)
                patch = self.emit(
                    "patch_node",
                    f"Node/{name}",
                    name,
                    {
                        "node": name,
                        "cycle": ru.id,
                        "patch_level": level,
                        "command": list(ru.hook.command),
                        "timeout_seconds": ru.hook.timeout_seconds,
                    },
                    # Drained by this phase, or earlier by maintenance: true.
                    depends_on=[drain or self._emitted(f"drain_node:{name}"), *previous],
                    reason=f"rolling update {ru.id}: run the hook, reboot",
                    changes={
                        "spec.hardware.patch_level": (
                            self.state.nodes[name].hardware.patch_level,
                            level,
                        )
                    },
                )
                batch_done.extend(self._finish_node(desired, name, [patch or "", *previous]))
            batch_done.extend(self._return_pinned(ru.id, ready, batch_done))
            patched |= set(ready)
            todo = [n for n in todo if n not in batch]
            previous = batch_done or previous
            resumed.extend(batch_done)
        if blocked:
            return  # the cycle cannot complete; what could be patched is in the plan
        # Nodes kept in maintenance by their manifest are patched but stay paused.
        kept = {n.name for n in self.desired.nodes_of(self.cluster) if n.maintenance}
        complete = self.emit(
            "complete_rolling_update",
            f"Cluster/{self.cluster}",
            self.cluster,
            {"cycle": ru.id, "nodes": [n for n in cycle if n not in kept]},
            depends_on=[*resumed, *previous],
            reason=f"every listed node patched: cycle {ru.id} recorded as done",
            changes={"status.rolling_update_done": (cluster.status.rolling_update_done, ru.id)},
        )
        if self.state.clusters[self.cluster].status.monitoring_maintenance:
            self.emit(
                "end_monitoring_maintenance",
                f"Cluster/{self.cluster}",
                self.cluster,
                {"cluster": self.cluster},
                depends_on=[complete or "", *resumed],
                reason=f"rolling update {ru.id} finished: monitoring back on",
            )

    def _emitted(self, action_id: str) -> str:
        return action_id if action_id in self.ids else ""

    def _return_pinned(self, cycle: str, nodes: list[str], after: list[str]) -> list[str]:
        """VMs pinned to a node go back to it once it is patched and in service again."""
        moves: list[str] = []
        for vm in sorted(self.desired.vms.values(), key=lambda v: v.name):
            have = self.state.vms.get(vm.name)
            if vm.node not in nodes or have is None or have.node == vm.node:
                continue
            aid = self.migrate(
                vm.name,
                vm.node or "",
                f"rolling update {cycle}: back to {vm.node}, where it is pinned",
                after,
            )
            if aid:
                moves.append(aid)
        return moves

    def _target_level(self, name: str) -> str:
        wanted = self.desired.nodes.get(name)
        node = self.state.nodes[name]
        return wanted.hardware.patch_level if wanted else node.hardware.patch_level

    def _drain_for_cycle(
        self, cycle: str, name: str, batch: list[str], patched: set[str], after: list[str]
    ) -> list[str] | None:
        """Moves that empty ``name`` for patching; None when a VM's policy forbids it."""
        running = [vm for vm in self.state.vms_on(name) if vm.power_state == "running"]
        stuck = [
            vm.name
            for vm in running
            if (policy := self.desired.vms.get(vm.name, vm)).migration_policy
            in ("never", "offline")
            and not policy.allow_downtime
        ]
        if stuck:
            self.block(
                "rolling_update",
                f"Node/{name}",
                f"rolling update {cycle} cannot patch {name}: {', '.join(stuck)} may "
                "not be live-migrated and allows no downtime; the node is left as it is",
                "set allow_downtime: true on those VMs (quick migration or shutdown), "
                "or leave the node out of rolling_update.nodes",
            )
            return None
        moves: list[str] = []
        excluded = set(batch) | {
            n.name for n in self.desired.nodes_of(self.cluster) if n.maintenance
        }
        for vm in sorted(running, key=lambda v: (-v.memory_mib, v.name)):
            destination = choose_destination(self.state, vm, exclude=excluded, prefer=patched)
            if destination is None:
                self.block(
                    "no_placement",
                    f"VirtualMachine/{vm.name}",
                    f"rolling update {cycle}: no node can take {vm.name} "
                    f"({vm.memory_mib} MiB) while {name} is patched",
                    "free memory, add a node, or relax anti-affinity",
                )
                return None
            aid = self.migrate(
                vm.name, destination, f"rolling update {cycle}: {name} is patched next", after
            )
            if aid:
                moves.append(aid)
        return moves

    def _finish_node(self, desired: Cluster, name: str, after: list[str]) -> list[str]:
        ru = desired.rolling_update
        assert ru is not None
        level = ru.patch_level or self._target_level(name)
        test_vm = desired.test_vm if ru.test_migration else None
        verify = self.emit(
            "verify_node",
            f"Node/{name}",
            name,
            {
                "node": name,
                "patch_level": level,
                "test_vm": test_vm,
                # What the manifests say the node's switches are: verified against them.
                "switches": {
                    sw.name: switch_to_params(sw.config)
                    for sw in self.desired.switches_of(self.cluster)
                },
            },
            depends_on=after,
            reason=f"{name} up, at {level}" + (f", {test_vm} can run there" if test_vm else ""),
        )
        wanted = self.desired.nodes.get(name)
        if wanted is not None and wanted.maintenance:
            return [verify] if verify else []
        resume = self.emit(
            "resume_node",
            f"Node/{name}",
            name,
            {"node": name},
            depends_on=[verify or "", *after],
            reason=f"rolling update {ru.id}: {name} back in service",
            changes={"spec.maintenance": (True, False)},
        )
        return [x for x in (verify, resume) if x]

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


def _refused(
    actions: Sequence[Action], observed: Estate, refuse: Callable[[str, str], str | None]
) -> list[PlanViolation]:
    out: list[PlanViolation] = []
    for action in actions:
        cluster = observed.clusters.get(action.cluster)
        why = refuse(action.type, cluster.platform) if cluster is not None else None
        if why:
            fix = "do this step by hand (or with a provider that can), then plan again"
            out.append(PlanViolation("unsupported", action.target, why, fix, "block", action.id))
    return out


def make_plan(
    desired: Estate,
    observed: Estate,
    manifests: Sequence[str] = (),
    target: str | None = None,
    diffs: Sequence[ObjectDiff] | None = None,
    on_cluster: Callable[[str], None] | None = None,
    refuse: Callable[[str, str], str | None] | None = None,
) -> Plan:
    """Plan every cluster of the desired state against the observed state.

    ``diffs``: ``diff_estates(desired, observed)`` when the caller has it already.
    ``on_cluster``: called with each cluster's name once it is planned (progress).
    ``refuse(action type, platform)``: why the provider cannot do a step (its capabilities).
    """
    desired = adopt_unmanaged(desired, observed)  # a field left out keeps the world's value
    actions: list[Action] = []
    violations: list[PlanViolation] = []
    notes: list[str] = []
    # Clusters in the world that no manifest declares: reported, never touched.
    unmanaged = [f"Cluster/{c}" for c in sorted(observed.clusters) if c not in desired.clusters]
    for cluster_name in sorted(desired.clusters):
        planner = _ClusterPlanner(
            desired=desired.of_cluster(cluster_name),
            state=observed.of_cluster(cluster_name),
            cluster=cluster_name,
        )
        planner.plan()
        actions.extend(planner.actions)
        violations.extend(planner.violations)
        notes.extend(planner.notes)
        unmanaged.extend(planner.unmanaged)
        if on_cluster is not None:
            on_cluster(cluster_name)
    # Removals last in the whole plan, after every cluster's other work (nothing needs them).
    actions = [a for a in actions if a.disruption != "destructive"] + [
        a for a in actions if a.disruption == "destructive"
    ]
    actions = _ordered(actions)
    if target is not None:
        actions = target_closure(actions, target)
    if refuse is not None:
        violations.extend(_refused(actions, observed, refuse))
    projected, replayed = replay(observed, desired, actions)
    known = {(v.rule, v.target) for v in violations}
    # A step already named by a policy rule (never, downtime, delete) needs no second,
    # generic "precondition" entry saying the same thing.
    explained = {v.action for v in replayed if v.rule != "precondition" and v.action}
    violations.extend(
        v
        for v in replayed
        if (v.rule, v.target) not in known
        and not (v.rule == "precondition" and v.action in explained)
    )
    violations.extend(moves_onto_unhealthy(actions, observed))
    violations = unresolved(desired, projected, violations, target)
    notes.extend(c.note() for c in observed_conditions(observed, desired))
    digests = object_digests(observed)
    if diffs is None:
        diffs = diff_estates(desired, observed)
    changed = sorted({d.ref for d in diffs})
    return Plan(
        actions=tuple(mark_defaults(desired, actions)),
        violations=tuple(violations),
        fingerprint=fingerprint(digests),
        prior_state=prior_state_of(actions, digests),
        notes=tuple(notes),
        manifests=tuple(manifests),
        changed_objects=tuple(changed),
        makespan_seconds=actions_makespan(actions, observed),
        unmanaged=tuple(unmanaged),
    )


def _ordered(actions: list[Action]) -> list[Action]:
    """Emission order, checked to be a topological order of the dependency graph.

    The planner emits on a projected state, so its sequence is the one that was proven
    valid; graphlib confirms there is no cycle and every dependency comes first.
    """
    sorter: TopologicalSorter[str] = TopologicalSorter()
    position = {a.id: i for i, a in enumerate(actions)}
    for a in actions:
        sorter.add(a.id, *[d for d in a.depends_on if d in position])
        late = [d for d in a.depends_on if position.get(d, -1) >= position[a.id]]
        if late:
            raise RuntimeError(f"planner bug: {a.id} depends on later {', '.join(late)}")
    try:
        sorter.prepare()
    except CycleError as exc:  # a planner bug, never a user error
        raise RuntimeError(f"dependency cycle in the plan: {' -> '.join(exc.args[1])}") from exc
    return actions
