"""How long things take: migration inputs from a cluster and a VM, and the cost of other actions.

The simulator advances its clock with these figures and the planner estimates with them,
so a plan's estimate and a simulated apply agree.
"""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.model.actions import Action
from reconciler.model.migration import (
    LiveMigrationInputs,
    MigrationEstimate,
    quick_migration,
    simulate_live,
)
from reconciler.model.platforms import platform
from reconciler.model.records import Cluster, Estate, VirtualMachine
from reconciler.model.timing import (
    RESUME_SECONDS,
    MigrationTiming,
    QueuedMigration,
    makespan,
    migration_groups,
    schedule_group,
)

MIGRATION_RESUME_SECONDS = RESUME_SECONDS
STOP_THRESHOLD_KIB = 256.0
STORAGE_MIB_S = 200.0  # SAN throughput for quick migration's save and restore
# A storage migration reads every block of the file and writes it on the other CSV through the
# same SAN: half its throughput. Assumed, not fitted: no published timings were found.
STORAGE_COPY_MIB_S = STORAGE_MIB_S / 2
OFFLINE_MOVE_SECONDS = 10.0  # an off VM's configuration moves; no memory to copy
DEFAULT_LINK_MBPS = 1000

# Typical durations of actions that move no memory (seconds), from the field notes.
ACTION_SECONDS: dict[str, float] = {
    "begin_monitoring_maintenance": 5.0,
    "end_monitoring_maintenance": 5.0,
    "match_vswitch": 30.0,
    "set_vlan_trunk": 10.0,
    "present_storage": 120.0,
    "add_node": 180.0,
    "update_quorum": 20.0,
    "validate_cluster": 300.0,
    "drain_node": 5.0,
    "patch_node": 1800.0,  # the hook: install updates and reboot
    "verify_node": 120.0,
    "resume_node": 5.0,
    "complete_rolling_update": 1.0,
    "extend_lun": 60.0,
    "extend_volume": 30.0,
    "extend_vhd": 60.0,
    "add_disk": 20.0,
    "detach_disk": 10.0,
    "convert_disk": 600.0,
    "set_vm": 5.0,
    "stop_vm": 60.0,
    "start_vm": 90.0,
    "create_vm": 60.0,  # New-VM, adapters, Add-ClusterVirtualMachineRole; new files on top
    "remove_vm": 60.0,  # stop, Remove-ClusterGroup, Remove-VM (files deleted on top)
    "evict_node": 120.0,  # Remove-ClusterNode
    "add_vm_nic": 10.0,
    "remove_vm_nic": 10.0,
    "set_vm_nic": 5.0,
    "move_disk": 20.0,
    "set_preferred_owners": 2.0,
    "set_automatic_actions": 2.0,
    "set_vm_memory": 3.0,
    "create_csv": 60.0,  # add the disk, format, add to CSVs
    "rename_csv": 10.0,
    "remove_csv": 20.0,
    "create_cluster": 300.0,  # Test-Cluster, then New-Cluster
    "set_cluster_addresses": 10.0,
    "set_scsi_controllers": 5.0,
    "set_cluster_network": 2.0,  # Name and Role of a cluster network
    "move_vm_storage": 30.0,  # Move-VMStorage's setup and switch-over; the copy on top
}


def migration_timing(cluster: Cluster) -> MigrationTiming:
    return MigrationTiming.of(platform(cluster.platform))


def migration_link_mbps(cluster: Cluster) -> int:
    """Line rate of the live-migration network (named, or the first with the role)."""
    networks = cluster.networks
    chosen = next((n for n in networks if n.name == cluster.live_migration.network), None)
    if chosen is None:
        chosen = next((n for n in networks if "live_migration" in n.roles), None)
    return chosen.bandwidth_mbps if chosen is not None else DEFAULT_LINK_MBPS


def migration_bandwidth_mib_s(cluster: Cluster) -> float:
    """Payload bandwidth of the live-migration link, shared by concurrent migrations."""
    return migration_timing(cluster).link_mib_s(migration_link_mbps(cluster))


def single_stream_mib_s(cluster: Cluster, link_factor: float = 1.0) -> float:
    """What one migration alone gets: the link, or the platform's per-stream cap if lower."""
    timing = migration_timing(cluster)
    return min(migration_bandwidth_mib_s(cluster) * link_factor, timing.stream_cap_mib_s)


def max_parallel_migrations(cluster: Cluster) -> int:
    configured = cluster.live_migration.max_parallel_migrations
    return configured or platform(cluster.platform).default_max_parallel_migrations


def live_inputs(
    cluster: Cluster, vm: VirtualMachine, link_factor: float = 1.0
) -> LiveMigrationInputs:
    return LiveMigrationInputs(
        memory_mib=vm.memory_mib,
        dirty_mib_s=vm.status.dirty_rate_mib_s,
        bandwidth_mib_s=single_stream_mib_s(cluster, link_factor),
        max_passes=platform(cluster.platform).live_migration_max_passes,
        threshold_kib=STOP_THRESHOLD_KIB,
        setup_seconds=migration_timing(cluster).setup_seconds,
        resume_seconds=MIGRATION_RESUME_SECONDS,
    )


def schedule_live_moves(
    cluster: Cluster, vms: Sequence[VirtualMachine], link_factor: float = 1.0
) -> tuple[list[float], list[MigrationEstimate]]:
    """Live moves of one cluster handed over together: start times and shared-link physics."""
    return schedule_group(
        [QueuedMigration(vm.memory_mib, vm.status.dirty_rate_mib_s) for vm in vms],
        max_parallel_migrations(cluster),
        migration_bandwidth_mib_s(cluster) * link_factor,
        migration_timing(cluster),
        platform(cluster.platform).live_migration_max_passes,
        STOP_THRESHOLD_KIB,
    )


def estimate_move(
    cluster: Cluster, vm: VirtualMachine, method: str, link_factor: float = 1.0
) -> MigrationEstimate:
    if method == "live":
        return simulate_live(live_inputs(cluster, vm, link_factor))
    if method == "quick":
        return quick_migration(vm.memory_mib, STORAGE_MIB_S)
    return MigrationEstimate(OFFLINE_MOVE_SECONDS, 0.0, 0, 0)


def create_seconds(action: Action) -> float:
    """A new VM's configuration, plus its new files: a fixed disk is written in full."""
    disks = action.params.get("disks", ())
    written_gib = sum(
        int(d["size_gib"]) for d in disks if d["type"] == "fixed" and not d.get("file")
    )
    return ACTION_SECONDS["create_vm"] + written_gib * 1024 / STORAGE_MIB_S


def storage_move_seconds(vm: VirtualMachine | None, disk_name: str) -> float:
    """A disk's file copied to another volume: the space it takes, at the copy throughput."""
    disk = vm.disk(disk_name) if vm is not None else None
    copied_gib = disk.used_gib() if disk is not None else 0.0
    return ACTION_SECONDS["move_vm_storage"] + copied_gib * 1024 / STORAGE_COPY_MIB_S


def action_seconds(action: Action, cluster: Cluster | None, vm: VirtualMachine | None) -> float:
    """Estimated duration of an action; moves use the migration model."""
    if action.type == "create_vm":
        return create_seconds(action)
    if action.type == "move_vm_storage":
        return storage_move_seconds(vm, str(action.params["disk"]))
    if action.type == "migrate_vm" and cluster is not None and vm is not None:
        return estimate_move(cluster, vm, action.params["method"]).total_seconds
    if action.type == "test_live_migration" and cluster is not None and vm is not None:
        return 2 * estimate_move(cluster, vm, "live").total_seconds
    return ACTION_SECONDS.get(action.type, 10.0)


def actions_makespan(actions: Sequence[Action], estate: Estate) -> float:
    """Start to end of the actions as apply runs them: one after another, except that live
    moves handed over together overlap (up to max_parallel_migrations) and share the link."""
    slots = {name: max_parallel_migrations(c) for name, c in estate.clusters.items()}
    total = 0.0
    for group in migration_groups(actions, slots):
        vms = [estate.vms.get(str(a.params.get("vm"))) for a in group]
        cluster = estate.clusters.get(group[0].cluster)
        if len(group) == 1 or cluster is None or any(vm is None for vm in vms):
            total += sum(round(a.estimate_seconds, 3) for a in group)
            continue
        starts, estimates = schedule_live_moves(cluster, [vm for vm in vms if vm is not None])
        total += makespan(starts, estimates)
    return round(total, 3)
