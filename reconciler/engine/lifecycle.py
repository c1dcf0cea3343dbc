"""Planning the whole life of an object: VMs created and removed, nodes evicted.

Each phase works on the cluster planner's projected state through the same ``emit`` and
``migrate`` as every other phase, so its choices (a node for a new VM, where an evicted
node's VMs go) see the effect of the actions before them. World rules: ``rules_lifecycle``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from reconciler.engine.placement import choose_destination, destination_problems
from reconciler.engine.plan import PlanViolation
from reconciler.model.actions import Action, ActionType, Disruption
from reconciler.model.records import Cluster, Estate, VirtualMachine
from reconciler.model.rules_lifecycle import vm_to_params


class ClusterPlanning(Protocol):
    """What the lifecycle phases use of the cluster planner."""

    desired: Estate
    state: Estate
    cluster: str
    actions: list[Action]
    violations: list[PlanViolation]
    notes: list[str]
    unmanaged: list[str]
    node_ready: dict[str, list[str]]
    volume_ready: dict[str, list[str]]

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
    ) -> str | None: ...

    def block(
        self, rule: str, target: str, message: str, fix: str, severity: str = "block"
    ) -> None: ...

    def migrate(
        self, vm_name: str, destination: str, reason: str, depends_on: Sequence[str] = ()
    ) -> str | None: ...

    def update_quorum(self, desired: Cluster, joins: list[tuple[str, str]]) -> str | None: ...


def leaving_nodes(p: ClusterPlanning, desired: Cluster) -> list[str]:
    """Members the manifest no longer lists: they are evicted."""
    current = p.state.clusters[p.cluster]
    return sorted(n for n in current.nodes if n not in desired.nodes)


def _kept_out(p: ClusterPlanning) -> set[str]:
    """Nodes no VM may be sent to: leaving the cluster, or kept in maintenance."""
    desired = p.desired.clusters[p.cluster]
    return set(leaving_nodes(p, desired)) | {
        n.name for n in p.desired.nodes_of(p.cluster) if n.maintenance
    }


def _moves_out_of(p: ClusterPlanning, node_name: str) -> list[str]:
    return [
        a.id for a in p.actions if a.type == "migrate_vm" and a.params.get("source") == node_name
    ]


# --- create_vm ---------------------------------------------------------------------------------


def create_vms(p: ClusterPlanning, wanted: list[VirtualMachine]) -> None:
    """Each VM of the manifests that does not exist: placed like a move, built, then started.

    A pin is honoured (and refused with its reason if the node cannot take the VM); otherwise
    the node is chosen as for a migration: in service, with the switches, VLANs and LUNs,
    memory for it when it is to run, hard anti-affinity kept, fewest soft conflicts.
    """
    excluded = _kept_out(p)
    # Pinned VMs first: they have no choice, and an unpinned one placed before them could
    # take the room (or the anti-affinity slot) a pin needs.
    for want in sorted(wanted, key=lambda v: (v.node is None, v.name)):
        target = f"VirtualMachine/{want.name}"
        candidate = replace(want, node=None)
        destination: str | None
        if want.node is not None:
            destination = want.node
            problems = destination_problems(p.state, candidate, want.node)
            if want.node in excluded:
                problems.append(f"{want.node} is leaving service")
            if problems:
                p.block(
                    "no_placement",
                    target,
                    f"{want.name} cannot be created on {want.node}, where it is pinned: "
                    + "; ".join(problems),
                    "free memory there, fix its switches or LUNs, or pin it elsewhere",
                )
                continue
        else:
            destination = choose_destination(p.state, candidate, exclude=excluded)
            if destination is None:
                p.block(
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
        create = p.emit(
            "create_vm",
            target,
            want.name,
            vm_to_params(want, destination),
            depends_on=[
                *p.node_ready.get(destination, []),
                *(a for v in volumes for a in p.volume_ready.get(v, [])),
                *_moves_out_of(p, destination),
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
            p.emit(
                "start_vm",
                target,
                want.name,
                {"vm": want.name},
                depends_on=[create or ""],
                reason="power_state: running in the manifest",
                changes={"power_state": ("off", "running")},
            )


# --- evict_node --------------------------------------------------------------------------------


def evict_nodes(p: ClusterPlanning, desired: Cluster) -> None:
    """The mirror of the add-node procedure, for each member that left ``spec.nodes``.

    Monitoring into maintenance; the node's VMs moved to nodes that stay (running ones as
    their policy allows, off ones offline); the node drained (paused) and evicted; quorum
    updated for the new count once every eviction is done; monitoring back on. A node whose
    VMs cannot all be placed is left in the cluster, and the plan says why.
    """
    leaving = leaving_nodes(p, desired)
    if not leaving:
        return
    after: list[str] | None = None  # monitoring maintenance, begun at the first eviction
    excluded = _kept_out(p)
    evicted: list[tuple[str, str]] = []
    for name in leaving:
        target = f"Node/{name}"
        if name not in p.state.nodes:
            p.block(
                "node_missing",
                target,
                f"{name} is a member but the provider does not see it",
                "make the node visible, then plan again",
            )
            continue
        vms = p.state.vms_on(name)
        stuck = [
            vm.name
            for vm in vms
            if vm.power_state == "running"
            and (policy := p.desired.vms.get(vm.name, vm)).migration_policy in ("never", "offline")
            and not policy.allow_downtime
        ]
        if stuck:
            p.block(
                "evict_node",
                target,
                f"{name} cannot leave the cluster: {', '.join(stuck)} may not be live-migrated "
                "and allow no downtime",
                f"set allow_downtime: true on those VMs, or keep {name} in spec.nodes",
            )
            continue
        unplaced = _unplaceable(p.state, vms, excluded)
        if unplaced:
            p.block(
                "evict_node",
                target,
                f"{name} cannot leave the cluster: no node that stays can take "
                f"{', '.join(unplaced)}",
                f"free memory or add a node first, or keep {name} in spec.nodes",
            )
            continue
        if after is None:
            begin = p.emit(
                "begin_monitoring_maintenance",
                f"Cluster/{p.cluster}",
                p.cluster,
                {"cluster": p.cluster},
                reason="monitoring in maintenance mode so the eviction raises no alerts",
            )
            earlier = [a.id for a in p.actions if a.type == "begin_monitoring_maintenance"]
            after = [begin] if begin else earlier[-1:]
        moves: list[str] = []
        for vm in sorted(vms, key=lambda v: (-v.memory_mib, v.name)):
            destination = choose_destination(p.state, vm, exclude=excluded)
            if destination is None:  # _unplaceable said every VM fits: a planner bug
                raise RuntimeError(f"planner bug: no destination for {vm.name}")
            move = p.migrate(vm.name, destination, f"{name} leaves the cluster", after)
            if move:
                moves.append(move)
        members = sorted(p.state.clusters[p.cluster].nodes)
        # A node that is down is evicted as it is: there is nothing to pause.
        drain = (
            p.emit(
                "drain_node",
                target,
                name,
                {"node": name},
                depends_on=[*after, *moves],
                reason=f"{name} leaves the cluster: paused before it is evicted",
                changes={"spec.maintenance": (False, True)},
            )
            if p.state.nodes[name].status.state == "up"
            else None
        )
        evict = p.emit(
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
    quorum = p.update_quorum(desired, evicted)
    if p.state.clusters[p.cluster].status.monitoring_maintenance and not _cycle_pending(p):
        p.emit(
            "end_monitoring_maintenance",
            f"Cluster/{p.cluster}",
            p.cluster,
            {"cluster": p.cluster},
            depends_on=[quorum or "", *(e for _, e in evicted), *(after or ())],
            reason="eviction finished: monitoring back on"
            if evicted
            else "monitoring was left in maintenance mode",
        )


def _cycle_pending(p: ClusterPlanning) -> bool:
    """A rolling update follows in this plan and ends monitoring maintenance itself."""
    ru = p.desired.clusters[p.cluster].rolling_update
    cluster = p.state.clusters[p.cluster]
    return ru is not None and cluster.status.rolling_update_done != ru.id


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


# --- remove_vm and unmanaged objects -----------------------------------------------------------


def report_unmanaged(p: ClusterPlanning, desired: Cluster) -> None:
    """Objects of the cluster, as observed, that no manifest declares: listed, left alone.

    VMs are listed only when the cluster does not prune (under prune they are removed, see
    ``prune_vms``), volumes likewise (``Storage.prune_volumes``); nodes and switches are
    never removed by a plan.
    """
    state = p.state
    members = set(state.clusters[p.cluster].nodes)
    for vm in sorted(state.vms.values(), key=lambda v: v.name):
        if vm.cluster == p.cluster and vm.name not in p.desired.vms and not desired.prune.enabled:
            p.unmanaged.append(f"VirtualMachine/{vm.name}")
    for node in state.nodes_of(p.cluster):
        if node.name not in p.desired.nodes and node.name not in members:
            p.unmanaged.append(f"Node/{node.name}")
    for switch in state.switches_of(p.cluster):
        if switch.name not in p.desired.switches:
            p.unmanaged.append(f"VirtualSwitch/{switch.name}")
    # A volume a manifest declares by its LUN under a new name is renamed, not unmanaged;
    # under prune, the others are removed (``Storage.prune_volumes``).
    declared_luns = {v.lun for v in p.desired.volumes_of(p.cluster) if v.lun is not None}
    for volume in state.volumes_of(p.cluster):
        if volume.name in p.desired.volumes or volume.lun in declared_luns:
            continue
        if not desired.prune.enabled:
            p.unmanaged.append(f"ClusterSharedVolume/{volume.name}")


def prune_vms(p: ClusterPlanning, desired: Cluster) -> None:
    """Under ``spec.prune.enabled``, each VM in no manifest is removed, last in the plan.

    Its disk files are deleted only with ``spec.prune.delete_disks``; otherwise they stay on
    their volumes, listed as unused files (and still taking their space).
    """
    prune = desired.prune
    if not prune.enabled:
        return
    for vm in sorted(p.state.vms.values(), key=lambda v: v.name):
        if vm.cluster != p.cluster or vm.name in p.desired.vms:
            continue
        ref = f"VirtualMachine/{vm.name}"
        files = [d.file_path(vm.name) for d in vm.disks]
        p.emit(
            "remove_vm",
            ref,
            vm.name,
            {
                "vm": vm.name,
                "node": vm.node,
                "delete_disks": prune.delete_disks,
                "files": files,
            },
            reason=f"{vm.name} is in no manifest and Cluster/{p.cluster} has spec.prune.enabled"
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
