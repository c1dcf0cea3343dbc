"""Planning the whole life of an object: VMs created and removed, nodes evicted.

Each phase works on the cluster planner's projected state through the same ``emit`` and
``migrate`` as every other phase, so its choices (a node for a new VM, where an evicted
node's VMs go) see the effect of the actions before them. World rules: ``rules_lifecycle``.
"""

from __future__ import annotations

from dataclasses import replace

from reconciler.engine.placement import choose_destination, destination_problems
from reconciler.engine.planner.membership import Membership
from reconciler.model.records import Cluster, Estate, VirtualMachine
from reconciler.model.rules_lifecycle import vm_to_params


class Lifecycle(Membership):
    __slots__ = ()

    def _kept_out(self) -> set[str]:
        """Nodes no VM may be sent to: leaving the cluster, or kept in maintenance."""
        desired = self.desired.clusters[self.cluster]
        return set(self.leaving_nodes(desired)) | {
            n.name for n in self.desired.nodes_of(self.cluster) if n.maintenance
        }

    # --- create_vm --------------------------------------------------------------------------------

    def create_vms(self, wanted: list[VirtualMachine]) -> None:
        """Each VM of the manifests that does not exist: placed like a move, built, then started.

        A pin is honoured (and refused with its reason if the node cannot take the VM); otherwise
        the node is chosen as for a migration: in service, with the switches, VLANs and LUNs,
        memory for it when it is to run, hard anti-affinity kept, fewest soft conflicts.
        """
        excluded = self._kept_out()
        # Pinned VMs first: they have no choice, and an unpinned one placed before them could
        # take the room (or the anti-affinity slot) a pin needs.
        for want in sorted(wanted, key=lambda v: (v.node is None, v.name)):
            target = f"VirtualMachine/{want.name}"
            candidate = replace(want, node=None)
            destination: str | None
            if want.node is not None:
                destination = want.node
                problems = destination_problems(self.state, candidate, want.node)
                if want.node in excluded:
                    problems.append(f"{want.node} is leaving service")
                if problems:
                    self.block(
                        "no_placement",
                        target,
                        f"{want.name} cannot be created on {want.node}, where it is pinned: "
                        + "; ".join(problems),
                        "free memory there, fix its switches or LUNs, or pin it elsewhere",
                    )
                    continue
            else:
                destination = choose_destination(self.state, candidate, exclude=excluded)
                if destination is None:
                    self.block(
                        "no_placement",
                        target,
                        f"no node can take the new VM {want.name} ({want.memory_mib} MiB, "
                        f"switches {', '.join(sorted({n.switch for n in want.nics})) or 'none'})",
                        "free memory, fix switches, VLANs or LUNs, or relax anti-affinity",
                    )
                    continue
            if destination is None:
                continue
            volumes = sorted(want.volumes())
            create = self.emit(
                "create_vm",
                target,
                want.name,
                vm_to_params(want, destination),
                depends_on=[
                    *self.node_ready.get(destination, []),
                    *(a for v in volumes for a in self.volume_ready.get(v, [])),
                    *self._moves_out_of(destination),
                ],
                reason=f"{want.name} is in the manifests but not in the cluster"
                + ("" if want.node else f": placed on {destination}"),
                changes={
                    "node": (None, destination),
                    "memory_mib": (None, want.memory_mib),
                    "vcpus": (None, want.vcpus),
                    "disks": (
                        None,
                        [
                            f"{d.name} {d.size_gib} GiB {d.format} on {d.volume}"
                            + (f" (existing file {d.file})" if d.file else "")
                            for d in want.disks
                        ],
                    ),
                    "nics": (None, [f"{n.switch}/{n.vlan or 'untagged'}" for n in want.nics]),
                },
            )
            if want.power_state == "running":
                self.emit(
                    "start_vm",
                    target,
                    want.name,
                    {"vm": want.name},
                    depends_on=[create or ""],
                    reason="power_state: running in the manifest",
                    changes={"power_state": ("off", "running")},
                )

    # --- evict_node -------------------------------------------------------------------------------

    def evict_nodes(self, desired: Cluster) -> None:
        """The mirror of the add-node procedure, for each member that left ``spec.nodes``.

        Monitoring into maintenance; the node's VMs moved to nodes that stay (running ones as
        their policy allows, off ones offline); the node drained (paused) and evicted; quorum
        updated for the new count once every eviction is done; monitoring back on. A node whose
        VMs cannot all be placed is left in the cluster, and the plan says why.
        """
        leaving = self.leaving_nodes(desired)
        if not leaving:
            return
        after: list[str] | None = None  # monitoring maintenance, begun at the first eviction
        excluded = self._kept_out()
        evicted: list[tuple[str, str]] = []
        for name in leaving:
            target = f"Node/{name}"
            if name not in self.state.nodes:
                self.block(
                    "node_missing",
                    target,
                    f"{name} is a member but the provider does not see it",
                    "make the node visible, then plan again",
                )
                continue
            vms = self.state.vms_on(name)
            stuck = [
                vm.name
                for vm in vms
                if vm.power_state == "running"
                and (policy := self.desired.vms.get(vm.name, vm)).migration_policy
                in ("never", "offline")
                and not policy.allow_downtime
            ]
            if stuck:
                self.block(
                    "evict_node",
                    target,
                    f"{name} cannot leave the cluster: {', '.join(stuck)} may not be live-migrated "
                    "and allow no downtime",
                    f"set allow_downtime: true on those VMs, or keep {name} in spec.nodes",
                )
                continue
            unplaced = _unplaceable(self.state, vms, excluded)
            if unplaced:
                self.block(
                    "evict_node",
                    target,
                    f"{name} cannot leave the cluster: no node that stays can take "
                    f"{', '.join(unplaced)}",
                    f"free memory or add a node first, or keep {name} in spec.nodes",
                )
                continue
            if after is None:
                begin = self.emit(
                    "begin_monitoring_maintenance",
                    f"Cluster/{self.cluster}",
                    self.cluster,
                    {"cluster": self.cluster},
                    reason="monitoring in maintenance mode so the eviction raises no alerts",
                )
                earlier = [a.id for a in self.actions if a.type == "begin_monitoring_maintenance"]
                after = [begin] if begin else earlier[-1:]
            moves: list[str] = []
            for vm in sorted(vms, key=lambda v: (-v.memory_mib, v.name)):
                destination = choose_destination(self.state, vm, exclude=excluded)
                if destination is None:  # _unplaceable said every VM fits: a planner bug
                    raise RuntimeError(f"planner bug: no destination for {vm.name}")
                move = self.migrate(vm.name, destination, f"{name} leaves the cluster", after)
                if move:
                    moves.append(move)
            members = sorted(self.state.clusters[self.cluster].nodes)
            # A node that is down is evicted as it is: there is nothing to pause.
            drain = (
                self.emit(
                    "drain_node",
                    target,
                    name,
                    {"node": name},
                    depends_on=[*after, *moves],
                    reason=f"{name} leaves the cluster: paused before it is evicted",
                    changes={"spec.maintenance": (False, True)},
                )
                if self.state.nodes[name].status.state == "up"
                else None
            )
            evict = self.emit(
                "evict_node",
                target,
                name,
                {"node": name},
                depends_on=[*after, *moves, drain or ""],
                reason=f"{name} is no longer in the cluster's spec.nodes",
                changes={"spec.nodes": (members, [m for m in members if m != name])},
            )
            if evict:
                evicted.append((name, evict))
                after = [*after[:1], evict]  # one node leaves at a time
        quorum = self.update_quorum(desired, evicted)
        if (
            self.state.clusters[self.cluster].status.monitoring_maintenance
            and not self._cycle_pending()
        ):
            self.emit(
                "end_monitoring_maintenance",
                f"Cluster/{self.cluster}",
                self.cluster,
                {"cluster": self.cluster},
                depends_on=[quorum or "", *(e for _, e in evicted), *(after or ())],
                reason="eviction finished: monitoring back on"
                if evicted
                else "monitoring was left in maintenance mode",
            )

    def _cycle_pending(self) -> bool:
        """A rolling update follows in this plan and ends monitoring maintenance itself."""
        ru = self.desired.clusters[self.cluster].rolling_update
        cluster = self.state.clusters[self.cluster]
        return ru is not None and cluster.status.rolling_update_done != ru.id

    # --- remove_vm and unmanaged objects ----------------------------------------------------------

    def report_unmanaged(self, desired: Cluster) -> None:
        """Objects of the cluster, as observed, that no manifest declares: listed, left alone.

        VMs are listed only when the cluster does not prune (under prune they are removed, see
        ``prune_vms``), volumes likewise (``Storage.prune_volumes``); nodes and switches are
        never removed by a plan.
        """
        state = self.state
        members = set(state.clusters[self.cluster].nodes)
        for vm in sorted(state.vms.values(), key=lambda v: v.name):
            if (
                vm.cluster == self.cluster
                and vm.name not in self.desired.vms
                and not desired.prune.enabled
            ):
                self.unmanaged.append(f"VirtualMachine/{vm.name}")
        for node in state.nodes_of(self.cluster):
            if node.name not in self.desired.nodes and node.name not in members:
                self.unmanaged.append(f"Node/{node.name}")
        for switch in state.switches_of(self.cluster):
            if switch.name not in self.desired.switches:
                self.unmanaged.append(f"VirtualSwitch/{switch.name}")
        # A volume a manifest declares by its LUN under a new name is renamed, not unmanaged;
        # under prune, the others are removed (``Storage.prune_volumes``).
        declared_luns = {v.lun for v in self.desired.volumes_of(self.cluster) if v.lun is not None}
        for volume in state.volumes_of(self.cluster):
            if volume.name in self.desired.volumes or volume.lun in declared_luns:
                continue
            if not desired.prune.enabled:
                self.unmanaged.append(f"ClusterSharedVolume/{volume.name}")

    def prune_vms(self, desired: Cluster) -> None:
        """Under ``spec.prune.enabled``, each VM in no manifest is removed, last in the plan.

        Its disk files are deleted only with ``spec.prune.delete_disks``; otherwise they stay on
        their volumes, listed as unused files (and still taking their space).
        """
        prune = desired.prune
        if not prune.enabled:
            return
        for vm in sorted(self.state.vms.values(), key=lambda v: v.name):
            if vm.cluster != self.cluster or vm.name in self.desired.vms:
                continue
            ref = f"VirtualMachine/{vm.name}"
            files = [d.file_path(vm.name) for d in vm.disks]
            self.emit(
                "remove_vm",
                ref,
                vm.name,
                {
                    "vm": vm.name,
                    "node": vm.node,
                    "delete_disks": prune.delete_disks,
                    "files": files,
                },
                reason=f"{vm.name} is in no manifest and Cluster/{self.cluster} has "
                "spec.prune.enabled"
                + (
                    ": its disk files are deleted (spec.prune.delete_disks)"
                    if prune.delete_disks
                    else ": its disk files are kept"
                ),
                changes={
                    "vm": (f"{vm.memory_mib} MiB, {vm.power_state} on {vm.node}", None),
                    "disk_files": (files, [] if prune.delete_disks else files),
                },
            )


def _unplaceable(estate: Estate, vms: list[VirtualMachine], excluded: set[str]) -> list[str]:
    """The VMs that find no node, placing them one by one, largest first, as the moves will."""
    out: list[str] = []
    for vm in sorted(vms, key=lambda v: (-v.memory_mib, v.name)):
        destination = choose_destination(estate, vm, exclude=excluded)
        if destination is None:
            out.append(vm.name)
            continue
        estate = estate.with_record(replace(vm, node=destination))
    return out
