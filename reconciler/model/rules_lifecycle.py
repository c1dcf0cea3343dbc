"""World rules for the whole life of an object: create a VM, remove a VM, evict a node.

The mirror images of what exists already: ``create_vm`` builds what ``remove_vm`` takes
away, ``evict_node`` undoes ``add_node``. Same contract as ``rules``: preconditions, then
the state after; an action whose effect is already there is ``done``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from reconciler.model.actions import Action
from reconciler.model.capacity import free_memory_mib, vm_cost_mib
from reconciler.model.platforms import platform
from reconciler.model.quorum import has_quorum, members_up
from reconciler.model.records import (
    ClusterSharedVolume,
    Disk,
    Estate,
    VirtualMachine,
    frozen_map,
)
from reconciler.model.rules_base import (
    RuleResult,
    already_done,
    disk_from_params,
    disk_to_params,
    fail,
    nic_from_params,
    nic_to_params,
    placement_problems,
    slot_problems,
    volume_free_gib,
)
from reconciler.model.rules_memory import (
    dynamic_from_params,
    dynamic_to_params,
    memory_problems,
)

# --- parameters ------------------------------------------------------------------------------


def vm_to_params(vm: VirtualMachine, node: str) -> dict[str, Any]:
    """What create_vm needs to build ``vm`` on ``node``: configuration, adapters, disks."""
    return {
        "vm": vm.name,
        "node": node,
        "generation": vm.generation,
        "memory_mib": vm.memory_mib,
        "vcpus": vm.vcpus,
        "highly_available": vm.highly_available,
        "migration_policy": vm.migration_policy,
        "anti_affinity_group": vm.anti_affinity_group,
        "anti_affinity_mode": vm.anti_affinity_mode,
        "allow_downtime": vm.allow_downtime,
        "nics": [nic_to_params(n) for n in vm.nics],
        "disks": [disk_to_params(d) for d in vm.disks],
        **({"scsi_controllers": vm.scsi_controllers} if vm.scsi_controllers is not None else {}),
        # Only when dynamic, so plans of static-memory VMs read as they always did.
        **(
            {"dynamic_memory": dynamic_to_params(vm.memory_model())}
            if vm.memory_model() is not None
            else {}
        ),
    }


def vm_from_params(cluster: str, p: Mapping[str, Any]) -> VirtualMachine:
    """The VM create_vm builds: off, on its node, with new (or attached) disk files."""
    return VirtualMachine(
        name=p["vm"],
        cluster=cluster,
        memory_mib=int(p["memory_mib"]),
        vcpus=int(p["vcpus"]),
        generation=int(p["generation"]),
        node=p["node"],
        power_state="off",
        highly_available=bool(p.get("highly_available", True)),
        migration_policy=p.get("migration_policy", "live"),
        anti_affinity_group=p.get("anti_affinity_group"),
        anti_affinity_mode=p.get("anti_affinity_mode", "soft"),
        allow_downtime=bool(p.get("allow_downtime", False)),
        nics=tuple(nic_from_params(n) for n in p["nics"]),
        disks=tuple(disk_from_params(d) for d in p["disks"]),
        dynamic_memory=dynamic_from_params(p.get("dynamic_memory")),
        scsi_controllers=p.get("scsi_controllers"),
    )


def _config(vm: VirtualMachine) -> tuple[Any, ...]:
    """What makes two VMs the same VM, whatever their node, power state or file sizes."""
    disks = tuple(replace(d, file_size_gib=None) for d in vm.disks)
    return (
        vm.cluster,
        vm.generation,
        vm.memory_mib,
        vm.memory_model(),
        vm.vcpus,
        vm.nics,
        disks,
    )


def _with_files(volume: ClusterSharedVolume, files: Mapping[str, float]) -> ClusterSharedVolume:
    return replace(volume, status=replace(volume.status, files=frozen_map(files)))


def keep_disk_files(estate: Estate, vm: VirtualMachine, disks: tuple[Disk, ...]) -> Estate:
    """The files of ``disks`` stay on their volumes, unused, taking the space they took."""
    for disk in disks:
        volume = estate.volumes.get(disk.volume)
        if volume is None:
            continue
        files = dict(volume.status.files)
        files[disk.file_path(vm.name)] = disk.used_gib()
        estate = estate.with_record(_with_files(volume, files))
    return estate


# --- create_vm ---------------------------------------------------------------------------------


def _disk_problems(estate: Estate, vm: VirtualMachine) -> list[str]:
    problems: list[str] = []
    new_gib: dict[str, float] = {}
    profile = platform(estate.clusters[vm.cluster].platform)
    for disk in vm.disks:
        problems.extend(slot_problems(vm, disk))
        if disk.format == "vhdx" and not profile.vhdx:
            problems.append(f"platform {profile.name} has no VHDX for {disk.name}")
        volume = estate.volumes.get(disk.volume)
        if volume is None or volume.cluster != vm.cluster:
            problems.append(f"volume {disk.volume} does not exist in {vm.cluster}")
            continue
        if disk.file is not None:
            if disk.file not in volume.status.files:
                problems.append(f"{disk.volume} holds no unused file {disk.file} to attach")
            continue
        new_gib[disk.volume] = new_gib.get(disk.volume, 0.0) + disk.used_gib()
    for name, need in sorted(new_gib.items()):
        free = volume_free_gib(estate, name)
        if need > free:
            problems.append(f"{name} has {free:.1f} GiB free, the new disk files need {need:.1f}")
    return problems


def create_problems(estate: Estate, vm: VirtualMachine) -> list[str]:
    """Why ``vm`` cannot be built on ``vm.node`` now (memory is checked when it starts)."""
    cluster = estate.clusters.get(vm.cluster)
    node = estate.nodes.get(vm.node or "")
    if cluster is None or node is None:
        return [f"cluster {vm.cluster} or node {vm.node} does not exist"]
    problems: list[str] = []
    profile = platform(cluster.platform)
    if node.name not in cluster.nodes:
        problems.append(f"{node.name} is not a member of {cluster.name}")
    if node.status.state != "up":
        problems.append(f"{node.name} is down")
    if node.maintenance:
        problems.append(f"{node.name} is in maintenance")
    if not has_quorum(cluster.quorum.mode, len(cluster.nodes), members_up(estate, cluster)):
        problems.append(f"cluster {cluster.name} has lost quorum: no role can be added")
    if vm.generation == 2 and not profile.generation2:
        problems.append(f"platform {cluster.platform} has no generation-2 VMs")
    count = sum(1 for other in estate.vms.values() if other.cluster == cluster.name)
    if count + 1 > profile.max_vms_per_cluster:
        problems.append(
            f"platform {cluster.platform} allows at most {profile.max_vms_per_cluster} VMs "
            "per cluster"
        )
    problems.extend(placement_problems(estate, vm, node.name))
    problems.extend(memory_problems(estate, vm, vm.memory_mib, vm.memory_model()))
    problems.extend(_disk_problems(estate, vm))
    return problems


def _create_vm(estate: Estate, action: Action) -> RuleResult:
    """New-VM with its disks and adapters, added as a clustered role; it starts off."""
    vm = vm_from_params(action.cluster, action.params)
    existing = estate.vms.get(vm.name)
    if existing is not None:
        if _config(existing) == _config(vm):
            return already_done(estate)
        return fail(estate, f"a different VM named {vm.name} exists already")
    problems = create_problems(estate, vm)
    if problems:
        return fail(estate, *problems)
    disks: list[Disk] = []
    for disk in vm.disks:
        if disk.file is None:
            disks.append(disk)
            continue
        # The file is attached, not copied: it stops being an unused file on its volume.
        volume = estate.volumes[disk.volume]
        files = dict(volume.status.files)
        disks.append(replace(disk, file_size_gib=files.pop(disk.file)))
        estate = estate.with_record(_with_files(volume, files))
    return RuleResult(estate.with_record(replace(vm, disks=tuple(disks))))


def start_problems(estate: Estate, vm: VirtualMachine, node_name: str) -> list[str]:
    """Memory on the node for a VM about to start there (placement is checked apart)."""
    cluster = estate.clusters[vm.cluster]
    node = estate.nodes[node_name]
    need = vm_cost_mib(vm, cluster, node)
    free = free_memory_mib(estate, node_name)
    return [] if need <= free else [f"{node_name} has {free} MiB free, {vm.name} needs {need} MiB"]


# --- remove_vm ---------------------------------------------------------------------------------


def _remove_vm(estate: Estate, action: Action) -> RuleResult:
    """Stop the VM, remove its clustered role and the VM; delete its files only if told to."""
    vm = estate.vms.get(action.params["vm"])
    if vm is None:
        return already_done(estate)
    cluster = estate.clusters.get(vm.cluster)
    if cluster is None:
        return fail(estate, f"cluster {vm.cluster} does not exist")
    if not has_quorum(cluster.quorum.mode, len(cluster.nodes), members_up(estate, cluster)):
        return fail(estate, f"cluster {cluster.name} has lost quorum: no role can be removed")
    if cluster.test_vm == vm.name:
        return fail(estate, f"{vm.name} is the test VM of {cluster.name}")
    estate = estate.without("VirtualMachine", vm.name)
    if not action.params.get("delete_disks", False):
        estate = keep_disk_files(estate, vm, vm.disks)
    return RuleResult(estate)


# --- evict_node --------------------------------------------------------------------------------


def evict_problems(estate: Estate, cluster_name: str, node_name: str) -> list[str]:
    """Why ``node_name`` cannot leave its cluster now: VMs, its state, quorum after."""
    cluster = estate.clusters[cluster_name]
    node = estate.nodes[node_name]
    problems: list[str] = []
    if len(cluster.nodes) <= 1:
        problems.append(f"{node_name} is the last node of {cluster_name}")
    registered = [vm.name for vm in estate.vms_on(node_name) if vm.cluster == cluster_name]
    if registered:
        problems.append(f"{node_name} still holds {', '.join(registered)}: move them first")
    if node.status.state == "up" and not node.maintenance:
        problems.append(f"{node_name} must be drained (paused) before it is evicted")
    up_after = members_up(estate, cluster) - (1 if node.status.state == "up" else 0)
    if not has_quorum(cluster.quorum.mode, len(cluster.nodes) - 1, up_after):
        problems.append(
            f"evicting {node_name} would lose quorum ({cluster.quorum.mode}, "
            f"{up_after} of {len(cluster.nodes) - 1} nodes up)"
        )
    return problems


def _evict_node(estate: Estate, action: Action) -> RuleResult:
    """Remove-ClusterNode: the node leaves; CSVs it coordinated move to a node that stays."""
    cluster = estate.clusters.get(action.cluster)
    node = estate.nodes.get(action.params["node"])
    if cluster is None or node is None:
        return fail(estate, "cluster or node does not exist")
    if node.name not in cluster.nodes:
        return already_done(estate)
    problems = evict_problems(estate, cluster.name, node.name)
    if problems:
        return fail(estate, *problems)
    remaining = tuple(n for n in cluster.nodes if n != node.name)
    status = replace(
        cluster.status,
        pending_nodes=cluster.status.pending_nodes - {node.name},
        tested_nodes=cluster.status.tested_nodes - {node.name},
        updated_nodes=cluster.status.updated_nodes - {node.name},
    )
    estate = estate.with_record(replace(cluster, nodes=remaining, status=status))
    # No longer a cluster node, so no longer paused by the cluster.
    estate = estate.with_record(replace(node, maintenance=False))
    up = [n for n in remaining if n in estate.nodes and estate.nodes[n].status.state == "up"]
    for volume in estate.volumes_of(cluster.name):
        if volume.status.coordinator == node.name:
            owner = up[0] if up else None
            status_v = replace(volume.status, coordinator=owner)
            estate = estate.with_record(replace(volume, status=status_v))
    return RuleResult(estate)


LIFECYCLE_RULES = {
    "create_vm": _create_vm,
    "remove_vm": _remove_vm,
    "evict_node": _evict_node,
}
