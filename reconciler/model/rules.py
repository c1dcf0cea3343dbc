"""The pure rules of the world: what must hold before an action, and what it does after.

One truth, two users: the simulator moves its world with ``apply_rules``; the planner
replays a plan with the same function to prove it safe. ``invariants`` lists what must
hold in every state (quorum, memory, controller limits, volume sizes, connectivity).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from reconciler.model.actions import Action
from reconciler.model.capacity import (
    free_memory_mib,
    usable_memory_mib,
    used_memory_mib,
    vm_cost_mib,
)
from reconciler.model.conditions import live_migration_cut
from reconciler.model.platforms import (
    VHD_MAX_GIB,
    VHDX_MAX_GIB,
    platform,
)
from reconciler.model.quorum import WITNESS_MODES, has_quorum, members_up
from reconciler.model.records import (
    Cluster,
    ClusterSharedVolume,
    Disk,
    Estate,
    Node,
    Quorum,
    SwitchConfig,
    VirtualMachine,
    Witness,
    frozen_map,
)
from reconciler.model.rules_adapters import ADAPTER_RULES
from reconciler.model.rules_base import (
    RuleResult,
    Violation,
    already_done,
    cluster_of,
    disk_from_params,
    disk_to_params,
    fail,
    node_of,
    placement_problems,
    set_switch,
    slot_problems,
    switch_from_params,
    switch_to_params,
    vm_of,
    volume_free_gib,
    volume_used_gib,
)
from reconciler.model.rules_cluster import CLUSTER_RULES
from reconciler.model.rules_disks import DISK_RULES
from reconciler.model.rules_lifecycle import LIFECYCLE_RULES, keep_disk_files
from reconciler.model.rules_memory import MEMORY_RULES
from reconciler.model.rules_networks import NETWORK_RULES
from reconciler.model.rules_storage import STORAGE_RULES
from reconciler.model.rules_vm_settings import SETTINGS_RULES
from reconciler.model.vlans import parse_vlan_list

# What callers import from here (the helpers live in rules_base, shared with rules_lifecycle).
__all__ = [
    "CONVERT_MARGIN",
    "RULES",
    "RuleResult",
    "Touched",
    "Violation",
    "apply_rules",
    "disk_from_params",
    "disk_to_params",
    "invariants",
    "join_problems",
    "migration_problems",
    "placement_problems",
    "slot_problems",
    "switch_from_params",
    "switch_to_params",
    "touched_between",
    "volume_free_gib",
    "volume_used_gib",
]

CONVERT_MARGIN = 1.1  # a converted file needs its data size plus 10% free while both exist


# --- the rules, one per action type -------------------------------------------------------


def _monitoring(on: bool) -> Callable[[Estate, Action], RuleResult]:
    def rule(estate: Estate, action: Action) -> RuleResult:
        cluster = cluster_of(estate, action)
        if cluster is None:
            return fail(estate, f"cluster {action.cluster} does not exist")
        if cluster.status.monitoring_maintenance == on:
            return already_done(estate)
        status = replace(cluster.status, monitoring_maintenance=on)
        return RuleResult(estate.with_record(replace(cluster, status=status)))

    return rule


def _match_vswitch(estate: Estate, action: Action) -> RuleResult:
    node = node_of(estate, action.params["node"])
    if node is None:
        return fail(estate, f"node {action.params['node']} does not exist")
    name = action.params["switch"]
    cfg = switch_from_params(action.params["config"])
    current = node.status.switches.get(name)
    if current == cfg:
        return already_done(estate)
    cluster = estate.clusters.get(node.cluster)
    if cfg.team_nics and cluster is not None and not platform(cluster.platform).embedded_teaming:
        return fail(
            estate, f"switch embedded teaming needs 2016 or later (cluster runs {cluster.platform})"
        )
    missing = [n for n in cfg.team_nics if node.nics and n not in {x.name for x in node.nics}]
    if missing:
        return fail(estate, f"{node.name} has no NIC {', '.join(missing)} to team in {name}")
    if current is not None and (current.type, current.uplink_nic, current.team_nics) != (
        cfg.type,
        cfg.uplink_nic,
        cfg.team_nics,
    ):
        # The switch is removed and made again: whatever runs on it here would be cut off.
        users = [
            vm.name
            for vm in estate.vms_on(node.name)
            if vm.power_state == "running" and any(n.switch == name for n in vm.nics)
        ]
        if users:
            return fail(
                estate,
                f"changing the type, uplink or team of {name} on {node.name} would cut off running "
                f"VMs {', '.join(users)}: move them first",
            )
    if cfg.uplink_nic and node.nics and cfg.uplink_nic not in {n.name for n in node.nics}:
        return fail(estate, f"{node.name} has no NIC {cfg.uplink_nic} to bind {name} to")
    if current is not None:
        # A whole new config can drop VLANs too: the same guard as set_vlan_trunk.
        for vm in estate.vms_on(node.name):
            if vm.power_state != "running":
                continue
            for nic in vm.nics:
                if nic.switch != name:
                    continue
                for vlan in sorted(nic.vlans()):
                    if _carries(current, vlan) and not _carries(cfg, vlan):
                        return fail(
                            estate,
                            f"VLAN {vlan} is in use by {vm.name} on {node.name}: "
                            f"the new {name} config would cut it off",
                        )
    return RuleResult(estate.with_record(set_switch(node, name, cfg)))


def _carries(cfg: SwitchConfig, vlan: int | None) -> bool:
    """Whether a host switch connects a NIC on ``vlan`` (as ``placement_problems`` reads it)."""
    return (
        vlan is None
        or not cfg.allowed_vlans
        or vlan in cfg.allowed_vlans
        or vlan == cfg.native_vlan
    )


def _set_vlan_trunk(estate: Estate, action: Action) -> RuleResult:
    node = node_of(estate, action.params["node"])
    if node is None:
        return fail(estate, f"node {action.params['node']} does not exist")
    name = action.params["switch"]
    current = node.status.switches.get(name)
    if current is None:
        return fail(estate, f"{node.name} has no switch {name}: match the switch first")
    allowed = parse_vlan_list(action.params["allowed_vlans"])
    native = action.params.get("native_vlan")
    if current.allowed_vlans == allowed and current.native_vlan == native:
        return already_done(estate)
    for vm in estate.vms_on(node.name):
        if vm.power_state != "running":
            continue
        for nic in vm.nics:
            if nic.switch != name:
                continue
            for vlan in sorted(nic.vlans()):
                if vlan not in allowed and vlan != native:
                    return fail(
                        estate,
                        f"VLAN {vlan} is in use by {vm.name} on {node.name}: "
                        "removing it from the trunk would cut it off",
                    )
    cfg = replace(current, allowed_vlans=allowed, native_vlan=native)
    return RuleResult(estate.with_record(set_switch(node, name, cfg)))


def _present_storage(estate: Estate, action: Action) -> RuleResult:
    node = node_of(estate, action.params["node"])
    if node is None:
        return fail(estate, f"node {action.params['node']} does not exist")
    volumes = frozenset(action.params["volumes"])
    missing = sorted(v for v in volumes if v not in estate.volumes)
    if missing:
        return fail(estate, f"volumes {', '.join(missing)} do not exist")
    if volumes <= node.status.luns:
        return already_done(estate)
    status = replace(node.status, luns=node.status.luns | volumes)
    return RuleResult(estate.with_record(replace(node, status=status)))


def join_problems(estate: Estate, cluster: Cluster, node: Node) -> list[str]:
    """Why a node cannot join: the classic "Unsupported Cluster Configuration" causes."""
    problems: list[str] = []
    members = [estate.nodes[n] for n in cluster.nodes if n in estate.nodes]
    if not node.status.roles_installed:
        problems.append(f"{node.name} lacks the Hyper-V and Failover Clustering roles")
    if node.status.state != "up":
        problems.append(f"{node.name} is down")
    if members and node.hardware.baseline() != members[0].hardware.baseline():
        problems.append(f"{node.name}'s hardware, drivers or patches differ from {members[0].name}")
    for switch in estate.switches_of(cluster.name):
        mine = node.status.switches.get(switch.name)
        if mine is None:
            problems.append(f"{node.name} has no virtual switch {switch.name}")
            continue
        for member in members:
            theirs = member.status.switches.get(switch.name)
            if theirs != mine:
                problems.append(f"switch {switch.name} on {node.name} differs from {member.name}")
                break
    missing = sorted(
        v.name for v in estate.volumes_of(cluster.name) if v.name not in node.status.luns
    )
    if missing:
        problems.append(f"LUNs of {', '.join(missing)} are not presented to {node.name}")
    if len(cluster.nodes) + 1 > platform(cluster.platform).max_nodes:
        problems.append(
            f"platform {cluster.platform} allows at most "
            f"{platform(cluster.platform).max_nodes} nodes"
        )
    return problems


def _add_node(estate: Estate, action: Action) -> RuleResult:
    cluster = cluster_of(estate, action)
    node = node_of(estate, action.params["node"])
    if cluster is None or node is None:
        return fail(estate, "cluster or node does not exist")
    if node.name in cluster.nodes:
        return already_done(estate)
    problems = join_problems(estate, cluster, node)
    if problems:
        return fail(estate, "unsupported cluster configuration: " + "; ".join(problems))
    status = replace(cluster.status, pending_nodes=cluster.status.pending_nodes | {node.name})
    joined = replace(cluster, nodes=(*cluster.nodes, node.name), status=status)
    return RuleResult(estate.with_record(joined))


def _update_quorum(estate: Estate, action: Action) -> RuleResult:
    cluster = cluster_of(estate, action)
    if cluster is None:
        return fail(estate, f"cluster {action.cluster} does not exist")
    witness = Witness(**(action.params.get("witness") or {}))
    quorum = Quorum(mode=action.params["mode"], witness=witness)
    if cluster.quorum == quorum:
        return already_done(estate)
    if quorum.mode in WITNESS_MODES and witness.kind is None:
        return fail(estate, f"quorum mode {quorum.mode} needs a witness")
    up = members_up(estate, cluster)
    if not has_quorum(quorum.mode, len(cluster.nodes), up):
        return fail(estate, f"mode {quorum.mode} would lose quorum with {up} node(s) up")
    return RuleResult(estate.with_record(replace(cluster, quorum=quorum)))


def _test_live_migration(estate: Estate, action: Action) -> RuleResult:
    cluster = cluster_of(estate, action)
    vm = vm_of(estate, action)
    node_name = action.params["node"]
    if cluster is None or vm is None:
        return fail(estate, "cluster or test VM does not exist")
    if node_name in cluster.status.tested_nodes or (
        node_name in cluster.nodes and node_name not in cluster.status.pending_nodes
    ):
        return already_done(estate)
    if node_name not in cluster.nodes:
        return fail(estate, f"{node_name} has not joined {cluster.name}")
    if vm.power_state != "running":
        return fail(estate, f"test VM {vm.name} is not running")
    problems = placement_problems(estate, vm, node_name)
    problems.extend(_live_migration_cuts(estate, cluster, vm.node, node_name))
    if vm.node == node_name:
        problems.append(f"test VM {vm.name} is already on {node_name}")
    elif free_memory_mib(estate, node_name) < vm_cost_mib(vm, cluster):
        problems.append(f"{node_name} has too little free memory for {vm.name}")
    if problems:
        return fail(estate, *problems)
    # Moved there and back: the VM ends where it began; the node is known to work.
    status = replace(cluster.status, tested_nodes=cluster.status.tested_nodes | {node_name})
    return RuleResult(estate.with_record(replace(cluster, status=status)))


def _validate_cluster(estate: Estate, action: Action) -> RuleResult:
    cluster = cluster_of(estate, action)
    if cluster is None:
        return fail(estate, f"cluster {action.cluster} does not exist")
    members = [estate.nodes[n] for n in cluster.nodes if n in estate.nodes]
    problems: list[str] = []
    for member in members:
        if member.status.state != "up":
            problems.append(f"{member.name} is down")
        if member.hardware.baseline() != members[0].hardware.baseline():
            problems.append(f"{member.name} differs from {members[0].name} in hardware or patches")
        for switch in estate.switches_of(cluster.name):
            if member.status.switches.get(switch.name) != members[0].status.switches.get(
                switch.name
            ):
                problems.append(
                    f"switch {switch.name} on {member.name} differs from {members[0].name}"
                )
        missing = [
            v.name for v in estate.volumes_of(cluster.name) if v.name not in member.status.luns
        ]
        if missing:
            problems.append(f"{member.name} does not see {', '.join(missing)}")
    if problems:
        return fail(estate, "cluster validation failed: " + "; ".join(problems))
    if not cluster.status.pending_nodes and action.params.get("only_if_pending", True):
        return already_done(estate)
    status = replace(cluster.status, pending_nodes=frozenset(), tested_nodes=frozenset())
    return RuleResult(estate.with_record(replace(cluster, status=status)))


def _drain_node(estate: Estate, action: Action) -> RuleResult:
    node = node_of(estate, action.params["node"])
    if node is None:
        return fail(estate, f"node {action.params['node']} does not exist")
    if node.maintenance:
        return already_done(estate)
    running = [vm.name for vm in estate.vms_on(node.name) if vm.power_state == "running"]
    if running:
        return fail(estate, f"{node.name} still runs {', '.join(running)}: move them first")
    return RuleResult(estate.with_record(replace(node, maintenance=True)))


def _resume_node(estate: Estate, action: Action) -> RuleResult:
    node = node_of(estate, action.params["node"])
    if node is None:
        return fail(estate, f"node {action.params['node']} does not exist")
    if not node.maintenance:
        return already_done(estate)
    if node.status.state != "up":
        return fail(estate, f"{node.name} is down")
    return RuleResult(estate.with_record(replace(node, maintenance=False)))


def _patch_node(estate: Estate, action: Action) -> RuleResult:
    """The hook patches a drained node and reboots it: quorum must survive it being down."""
    cluster = cluster_of(estate, action)
    node = node_of(estate, action.params["node"])
    if cluster is None or node is None:
        return fail(estate, "cluster or node does not exist")
    cycle = action.params["cycle"]
    status = cluster.status
    if status.rolling_update_in_progress == cycle and node.name in status.updated_nodes:
        return already_done(estate)
    if status.rolling_update_done == cycle:
        return already_done(estate)
    problems: list[str] = []
    if node.name not in cluster.nodes:
        problems.append(f"{node.name} is not a member of {cluster.name}")
    if not node.maintenance:
        problems.append(f"{node.name} must be drained (paused) before it is patched")
    running = [vm.name for vm in estate.vms_on(node.name) if vm.power_state == "running"]
    if running:
        problems.append(f"{node.name} still runs {', '.join(running)}")
    up = members_up(estate, cluster) - (1 if node.status.state == "up" else 0)
    if not has_quorum(cluster.quorum.mode, len(cluster.nodes), up):
        problems.append(
            f"rebooting {node.name} would lose quorum ({up} of {len(cluster.nodes)} nodes left up)"
        )
    if problems:
        return fail(estate, *problems)
    patched = replace(
        node, hardware=replace(node.hardware, patch_level=action.params["patch_level"])
    )
    started = status.rolling_update_in_progress == cycle
    new_status = replace(
        status,
        rolling_update_in_progress=cycle,
        updated_nodes=(status.updated_nodes if started else frozenset()) | {node.name},
    )
    estate = estate.with_record(patched)
    return RuleResult(estate.with_record(replace(cluster, status=new_status)))


def _verify_node(estate: Estate, action: Action) -> RuleResult:
    """A patched node is up, at the cycle's patch level, and could host the test VM."""
    cluster = cluster_of(estate, action)
    node = node_of(estate, action.params["node"])
    if cluster is None or node is None:
        return fail(estate, "cluster or node does not exist")
    problems: list[str] = []
    if node.status.state != "up":
        problems.append(f"{node.name} did not come back up")
    if node.hardware.patch_level != action.params["patch_level"]:
        problems.append(
            f"{node.name} is at patch level {node.hardware.patch_level}, not "
            f"{action.params['patch_level']}"
        )
    wanted = action.params.get("switches")
    if isinstance(wanted, Mapping):
        # The manifests' switches, as the plan recorded them: not merely what peers have.
        for name, params in sorted(wanted.items()):
            mine = node.status.switches.get(name)
            if mine is None:
                problems.append(f"switch {name} is missing on {node.name}")
            elif mine != switch_from_params(params):
                problems.append(f"switch {name} on {node.name} differs from the manifest")
    else:
        peers = [estate.nodes[n] for n in cluster.nodes if n in estate.nodes and n != node.name]
        for switch in estate.switches_of(cluster.name):
            mine = node.status.switches.get(switch.name)
            if peers and mine != peers[0].status.switches.get(switch.name):
                problems.append(f"switch {switch.name} on {node.name} differs from {peers[0].name}")
    test_vm_name = action.params.get("test_vm")
    test_vm = estate.vms.get(test_vm_name or "")
    if test_vm_name and test_vm is None:
        problems.append(f"test VM {test_vm_name} does not exist")
    elif test_vm is not None:
        if test_vm.power_state != "running":
            problems.append(f"test VM {test_vm.name} is not running: it cannot live-migrate")
        elif test_vm.node == node.name:
            problems.append(f"test VM {test_vm.name} is already on {node.name}")
        problems.extend(placement_problems(estate, test_vm, node.name))
        problems.extend(_live_migration_cuts(estate, cluster, test_vm.node, node.name))
    if problems:
        return fail(estate, "verification failed: " + "; ".join(problems))
    return RuleResult(estate)


def _complete_rolling_update(estate: Estate, action: Action) -> RuleResult:
    cluster = cluster_of(estate, action)
    if cluster is None:
        return fail(estate, f"cluster {action.cluster} does not exist")
    cycle = action.params["cycle"]
    if cluster.status.rolling_update_done == cycle:
        return already_done(estate)
    listed = set(action.params["nodes"])
    done = (
        cluster.status.updated_nodes
        if cluster.status.rolling_update_in_progress == cycle
        else frozenset()
    )
    missing = sorted(listed - done)
    if missing:
        return fail(estate, f"not yet patched in cycle {cycle}: {', '.join(missing)}")
    paused = sorted(n for n in listed if n in estate.nodes and estate.nodes[n].maintenance)
    if paused:
        return fail(estate, f"still paused: {', '.join(paused)}")
    status = replace(
        cluster.status,
        rolling_update_done=cycle,
        rolling_update_in_progress=None,
        updated_nodes=frozenset(),
    )
    return RuleResult(estate.with_record(replace(cluster, status=status)))


def migration_problems(
    estate: Estate, vm: VirtualMachine, destination: str, method: str
) -> list[str]:
    cluster = estate.clusters.get(vm.cluster)
    node = estate.nodes.get(destination)
    if cluster is None or node is None:
        return [f"{destination} does not exist"]
    problems: list[str] = []
    if not has_quorum(cluster.quorum.mode, len(cluster.nodes), members_up(estate, cluster)):
        problems.append(f"cluster {cluster.name} has lost quorum: nothing moves until it is back")
    if destination not in cluster.nodes:
        problems.append(f"{destination} is not a member of {cluster.name}")
    if node.status.state != "up":
        problems.append(f"{destination} is down")
    if node.maintenance:
        problems.append(f"{destination} is in maintenance")
    if destination in cluster.status.pending_nodes:
        problems.append(f"{destination} has joined but is not validated yet")
    if method == "live" and vm.power_state != "running":
        problems.append(f"{vm.name} is {vm.power_state}: only a running VM live-migrates")
    if method == "live":
        problems.extend(_live_migration_cuts(estate, cluster, vm.node, destination))
    if method == "live" and vm.migration_policy in ("never", "quick", "offline"):
        problems.append(
            f"{vm.name}'s migration policy ({vm.migration_policy}) forbids live migration"
        )
    if method == "offline" and vm.power_state == "running":
        problems.append(f"{vm.name} is running: offline migration needs it off")
    problems.extend(placement_problems(estate, vm, destination))
    if vm.power_state == "running":
        need = vm_cost_mib(vm, cluster, node)
        free = free_memory_mib(estate, destination)
        if need > free:
            problems.append(f"{destination} has {free} MiB free, {vm.name} needs {need} MiB")
    return problems


def _live_migration_cuts(estate: Estate, cluster: Cluster, *nodes: str | None) -> list[str]:
    """A live migration needs a live-migration network up at both ends."""
    return [
        f"no live migration: {cut}"
        for n in dict.fromkeys(nodes)
        if n is not None and (cut := live_migration_cut(estate, cluster, n))
    ]


def _migrate_vm(estate: Estate, action: Action) -> RuleResult:
    vm = vm_of(estate, action)
    if vm is None:
        return fail(estate, f"VM {action.params['vm']} does not exist")
    destination = action.params["destination"]
    if vm.node == destination:
        return already_done(estate)
    problems = migration_problems(estate, vm, destination, action.params["method"])
    if problems:
        return fail(estate, *problems)
    return RuleResult(estate.with_record(replace(vm, node=destination)))


def _extend_lun(estate: Estate, action: Action) -> RuleResult:
    volume = estate.volumes.get(action.params["volume"])
    if volume is None:
        return fail(estate, f"volume {action.params['volume']} does not exist")
    size = int(action.params["lun_size_gib"])
    if volume.lun_size_gib == size:
        return already_done(estate)
    if size < volume.lun_size_gib:
        return fail(estate, f"a LUN never shrinks ({volume.lun_size_gib} -> {size} GiB)")
    return RuleResult(estate.with_record(replace(volume, lun_size_gib=size)))


def _extend_volume(estate: Estate, action: Action) -> RuleResult:
    volume = estate.volumes.get(action.params["volume"])
    if volume is None:
        return fail(estate, f"volume {action.params['volume']} does not exist")
    size = int(action.params["size_gib"])
    if volume.size_gib == size:
        return already_done(estate)
    if size < volume.size_gib:
        return fail(estate, f"a volume never shrinks ({volume.size_gib} -> {size} GiB)")
    if size > volume.lun_size_gib:
        return fail(estate, f"the LUN is {volume.lun_size_gib} GiB: grow the LUN first")
    coordinator = volume.status.coordinator
    node = estate.nodes.get(coordinator) if coordinator else None
    if node is None or node.status.state != "up":
        return fail(estate, f"coordinator node {coordinator} of {volume.name} is not up")
    return RuleResult(estate.with_record(replace(volume, size_gib=size)))


def _needs_off_for_resize(cluster: Cluster, disk: Disk) -> bool:
    online = platform(cluster.platform).online_vhd_resize
    return not (online and disk.format == "vhdx" and disk.controller == "scsi")


def _replace_disk(vm: VirtualMachine, disk: Disk) -> VirtualMachine:
    return replace(vm, disks=tuple(disk if d.name == disk.name else d for d in vm.disks))


def _extend_vhd(estate: Estate, action: Action) -> RuleResult:
    vm = vm_of(estate, action)
    if vm is None:
        return fail(estate, f"VM {action.params['vm']} does not exist")
    cluster = estate.clusters[vm.cluster]
    disk = vm.disk(action.params["disk"])
    if disk is None:
        return fail(estate, f"{vm.name} has no disk {action.params['disk']}")
    size = int(action.params["size_gib"])
    if disk.size_gib == size:
        return already_done(estate)
    if size < disk.size_gib:
        return fail(estate, f"a virtual disk is never shrunk ({disk.size_gib} -> {size} GiB)")
    limit = VHD_MAX_GIB if disk.format == "vhd" else VHDX_MAX_GIB
    if size > limit:
        return fail(estate, f"{disk.format} disks are at most {limit} GiB")
    if vm.power_state == "running" and _needs_off_for_resize(cluster, disk):
        return fail(
            estate,
            f"{vm.name} must be off to resize {disk.name} "
            f"({disk.format} on {disk.controller}, platform {cluster.platform})",
        )
    grown = replace(disk, size_gib=size)
    growth = grown.used_gib() - disk.used_gib()
    if growth > volume_free_gib(estate, disk.volume):
        return fail(estate, f"{disk.volume} has too little free space to grow {disk.name}")
    return RuleResult(estate.with_record(_replace_disk(vm, grown)))


def _add_disk(estate: Estate, action: Action) -> RuleResult:
    vm = vm_of(estate, action)
    if vm is None:
        return fail(estate, f"VM {action.params['vm']} does not exist")
    disk = disk_from_params(action.params["disk"])
    existing = vm.disk(disk.name)
    if existing is not None:
        same = replace(existing, file_size_gib=None) == replace(disk, file_size_gib=None)
        return (
            already_done(estate)
            if same
            else fail(estate, f"{vm.name} already has a different disk {disk.name}")
        )
    problems = slot_problems(vm, disk)
    if vm.power_state == "running" and disk.controller == "ide":
        problems.append(f"{vm.name} is running: a disk can be hot-added only on SCSI")
    volume = estate.volumes.get(disk.volume)
    if volume is None:
        problems.append(f"volume {disk.volume} does not exist")
    elif disk.file is not None:
        if disk.file not in volume.status.files:
            problems.append(f"{disk.volume} holds no unused file {disk.file} to attach")
    elif disk.used_gib() > volume_free_gib(estate, disk.volume):
        problems.append(f"{disk.volume} has too little free space for {disk.name}")
    if problems:
        return fail(estate, *problems)
    if volume is not None and disk.file is not None:
        # An existing file is attached: it takes the space it took, now as this disk.
        files = dict(volume.status.files)
        disk = replace(disk, file_size_gib=files.pop(disk.file))
        status = replace(volume.status, files=frozen_map(files))
        estate = estate.with_record(replace(volume, status=status))
    return RuleResult(estate.with_record(replace(vm, disks=(*vm.disks, disk))))


def _detach_disk(estate: Estate, action: Action) -> RuleResult:
    vm = vm_of(estate, action)
    if vm is None:
        return fail(estate, f"VM {action.params['vm']} does not exist")
    disk = vm.disk(action.params["disk"])
    if disk is None:
        return already_done(estate)
    if vm.power_state == "running" and disk.controller == "ide":
        return fail(estate, f"{vm.name} is running: an IDE disk can be removed only when off")
    estate = estate.with_record(replace(vm, disks=tuple(d for d in vm.disks if d is not disk)))
    if not action.params.get("delete_file", False):
        # The file stays on the volume, unused: its space is still taken.
        estate = keep_disk_files(estate, vm, (disk,))
    return RuleResult(estate)


def _convert_disk(estate: Estate, action: Action) -> RuleResult:
    vm = vm_of(estate, action)
    if vm is None:
        return fail(estate, f"VM {action.params['vm']} does not exist")
    disk = vm.disk(action.params["disk"])
    if disk is None:
        return fail(estate, f"{vm.name} has no disk {action.params['disk']}")
    to_type = action.params["type"]
    if disk.type == to_type:
        return already_done(estate)
    if vm.power_state != "off":
        return fail(estate, f"{vm.name} must be off to convert {disk.name}")
    data = (
        disk.used_gib()
        if disk.type != "fixed"
        else float(disk.file_size_gib or disk.size_gib * 0.6)
    )
    new_size = float(disk.size_gib) if to_type == "fixed" else data
    if new_size * CONVERT_MARGIN > volume_free_gib(estate, disk.volume):
        return fail(
            estate,
            f"{disk.volume} needs {new_size * CONVERT_MARGIN:.1f} GiB free to convert {disk.name}",
        )
    converted = replace(disk, type=to_type, file_size_gib=new_size)
    return RuleResult(estate.with_record(_replace_disk(vm, converted)))


def _set_vm(estate: Estate, action: Action) -> RuleResult:
    vm = vm_of(estate, action)
    if vm is None:
        return fail(estate, f"VM {action.params['vm']} does not exist")
    memory = action.params.get("memory_mib", vm.memory_mib)
    vcpus = action.params.get("vcpus", vm.vcpus)
    if (vm.memory_mib, vm.vcpus) == (memory, vcpus):
        return already_done(estate)
    if vm.power_state != "off":
        return fail(estate, f"{vm.name} must be off to change memory or vCPUs")
    dynamic = vm.memory_model()
    if dynamic is not None and not dynamic.minimum_mib <= memory <= dynamic.maximum_mib:
        return fail(
            estate,
            f"startup memory {memory} MiB is outside {vm.name}'s dynamic memory range "
            f"{dynamic.minimum_mib}-{dynamic.maximum_mib} MiB: change both with set_vm_memory",
        )
    return RuleResult(estate.with_record(replace(vm, memory_mib=memory, vcpus=vcpus)))


def _stop_vm(estate: Estate, action: Action) -> RuleResult:
    vm = vm_of(estate, action)
    if vm is None:
        return fail(estate, f"VM {action.params['vm']} does not exist")
    if vm.power_state == "off":
        return already_done(estate)
    return RuleResult(estate.with_record(replace(vm, power_state="off")))


def _start_vm(estate: Estate, action: Action) -> RuleResult:
    vm = vm_of(estate, action)
    if vm is None:
        return fail(estate, f"VM {action.params['vm']} does not exist")
    if vm.power_state == "running":
        return already_done(estate)
    if vm.node is None:
        return fail(estate, f"{vm.name} is on no node")
    node = estate.nodes[vm.node]
    cluster = estate.clusters[vm.cluster]
    problems = placement_problems(estate, vm, vm.node)
    if node.status.state != "up":
        problems.append(f"{vm.node} is down")
    if not has_quorum(cluster.quorum.mode, len(cluster.nodes), members_up(estate, cluster)):
        problems.append(f"cluster {cluster.name} has lost quorum: nothing starts until it is back")
    need = vm_cost_mib(vm, cluster, node)
    if need > free_memory_mib(estate, vm.node):
        problems.append(f"{vm.node} has too little free memory ({need} MiB needed)")
    if problems:
        return fail(estate, *problems)
    # Starting a failed role (Start-ClusterGroup) brings it online: no longer failed.
    status = replace(vm.status, failed=False)
    return RuleResult(estate.with_record(replace(vm, power_state="running", status=status)))


RULES: dict[str, Callable[[Estate, Action], RuleResult]] = {
    "begin_monitoring_maintenance": _monitoring(True),
    "end_monitoring_maintenance": _monitoring(False),
    "match_vswitch": _match_vswitch,
    "set_vlan_trunk": _set_vlan_trunk,
    "present_storage": _present_storage,
    "add_node": _add_node,
    "update_quorum": _update_quorum,
    "test_live_migration": _test_live_migration,
    "validate_cluster": _validate_cluster,
    "drain_node": _drain_node,
    "patch_node": _patch_node,
    "verify_node": _verify_node,
    "resume_node": _resume_node,
    "complete_rolling_update": _complete_rolling_update,
    "migrate_vm": _migrate_vm,
    "extend_lun": _extend_lun,
    "extend_volume": _extend_volume,
    "extend_vhd": _extend_vhd,
    "add_disk": _add_disk,
    "detach_disk": _detach_disk,
    "convert_disk": _convert_disk,
    "set_vm": _set_vm,
    "stop_vm": _stop_vm,
    "start_vm": _start_vm,
    **LIFECYCLE_RULES,
    **ADAPTER_RULES,
    **DISK_RULES,
    **SETTINGS_RULES,
    **MEMORY_RULES,
    **STORAGE_RULES,
    **CLUSTER_RULES,
    **NETWORK_RULES,
}


def apply_rules(estate: Estate, action: Action) -> RuleResult:
    """Check an action's preconditions on ``estate`` and return the state after it."""
    rule = RULES.get(action.type)
    if rule is None:
        return fail(estate, f"unknown action type {action.type}")
    try:
        return rule(estate, action)
    except KeyError as exc:
        return fail(estate, f"action {action.id} is missing parameter or object {exc}")


# --- invariants ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Touched:
    """The objects one step changed, and those whose invariants depend on them."""

    nodes: frozenset[str]
    volumes: frozenset[str]
    vms: frozenset[str]
    changed_vms: frozenset[str] = frozenset()  # the VM records themselves set or removed


def touched_between(before: Estate, after: Estate) -> Touched:
    """What changed from one state to the next (records are immutable: identity is enough).

    ``vms``: the VMs that changed, and every VM on a node whose own record changed (its
    switches or LUNs: their connectivity depends on it). A VM on a node that only gained or
    lost another VM is not re-checked: nothing its own invariants read has changed.
    When ``after`` was derived from ``before`` a record at a time (a plan step), only those
    records are compared; otherwise every record is.
    """
    keys = after.changes_since(before)
    if keys is None:
        vm_names: set[str] = set(after.vms) | set(before.vms)
        node_names: set[str] = set(after.nodes)
        volume_names: set[str] = set(after.volumes)
    else:
        vm_names = {n for k, n in keys if k == "VirtualMachine"}
        node_names = {n for k, n in keys if k == "Node"}
        volume_names = {n for k, n in keys if k == "ClusterSharedVolume"}
    vms = {n for n in vm_names if before.vms.get(n) is not after.vms.get(n)}
    changed_vms = frozenset(vms)
    nodes = {
        n for n in node_names if n in after.nodes and before.nodes.get(n) is not after.nodes[n]
    }
    volumes = {
        n
        for n in volume_names
        if n in after.volumes and before.volumes.get(n) is not after.volumes[n]
    }
    for name in nodes:
        # A host's switches or LUNs changed: the VMs on it may have lost connectivity.
        vms.update(vm.name for vm in after.vms_on(name))
    for name in changed_vms:
        for state in (before, after):
            vm = state.vms.get(name)
            if vm is not None:
                if vm.node:
                    nodes.add(vm.node)
                volumes.update(d.volume for d in vm.disks)
    return Touched(frozenset(nodes), frozenset(volumes), frozenset(vms), changed_vms)


def _nodes_to_check(estate: Estate, cluster: str, touched: Touched | None) -> list[Node]:
    """The cluster's nodes by name; with ``touched``, only those (not every node of it)."""
    if touched is None:
        return estate.nodes_of(cluster)
    found = (estate.nodes.get(n) for n in sorted(touched.nodes))
    return [n for n in found if n is not None and n.cluster == cluster]


def _volumes_to_check(
    estate: Estate, cluster: str, touched: Touched | None
) -> list[ClusterSharedVolume]:
    if touched is None:
        return estate.volumes_of(cluster)
    found = (estate.volumes.get(n) for n in sorted(touched.volumes))
    return [v for v in found if v is not None and v.cluster == cluster]


def invariants(
    estate: Estate, cluster_name: str | None = None, touched: Touched | None = None
) -> list[Violation]:
    """Everything that must hold in every state of the world.

    With ``touched``, only the objects a step changed are checked (quorum always is): the
    rest held before the step and nothing they depend on changed.
    """
    out: list[Violation] = []
    clusters = [cluster_name] if cluster_name else sorted(estate.clusters)
    for name in clusters:
        cluster = estate.clusters.get(name)
        if cluster is None:
            continue
        up = members_up(estate, cluster)
        if not has_quorum(cluster.quorum.mode, len(cluster.nodes), up):
            out.append(
                Violation(
                    "quorum",
                    f"Cluster/{name}",
                    f"{up} of {len(cluster.nodes)} nodes up: quorum lost ({cluster.quorum.mode})",
                    "keep fewer nodes out of service at once",
                )
            )
        for node in _nodes_to_check(estate, name, touched):
            used = used_memory_mib(estate, node.name)
            usable = usable_memory_mib(node, cluster)
            if used > usable:
                out.append(
                    Violation(
                        "memory",
                        f"Node/{node.name}",
                        f"VMs need {used} MiB, {usable} MiB usable",
                        "place fewer VMs on this node",
                    )
                )
        for volume in _volumes_to_check(estate, name, touched):
            if volume.size_gib > volume.lun_size_gib:
                out.append(
                    Violation(
                        "volume_size",
                        f"ClusterSharedVolume/{volume.name}",
                        f"volume {volume.size_gib} GiB exceeds its LUN {volume.lun_size_gib} GiB",
                        "grow the LUN first",
                    )
                )
            free = volume_free_gib(estate, volume.name)
            if free < 0:
                out.append(
                    Violation(
                        "volume_space",
                        f"ClusterSharedVolume/{volume.name}",
                        f"files need {-free:.1f} GiB more than the volume has",
                        "grow the volume or move disks",
                    )
                )
    vms = (
        [estate.vms[n] for n in sorted(touched.vms) if n in estate.vms]
        if touched is not None
        else sorted(estate.vms.values(), key=lambda v: v.name)
    )
    for vm in vms:
        if cluster_name and vm.cluster != cluster_name:
            continue
        for disk in vm.disks:
            for problem in slot_problems(vm, disk):
                out.append(
                    Violation(
                        "controller_limits",
                        f"VirtualMachine/{vm.name}",
                        problem,
                        "use a free slot within the controller limits",
                    )
                )
        if vm.power_state == "running" and vm.node is not None:
            for problem in placement_problems(estate, vm, vm.node):
                out.append(
                    Violation(
                        "connectivity",
                        f"VirtualMachine/{vm.name}",
                        problem,
                        "run it where its switches, VLANs and storage exist",
                    )
                )
    return out
