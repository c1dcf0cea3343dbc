"""Synthetic estates at any scale: desired manifests plus a world that holds every invariant.

Deterministic for a seed; a chosen fraction of objects drift in ways the planner can fix online.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

import yaml

from reconciler.manifest.dump import to_documents
from reconciler.model.capacity import parent_reserve_mib, vm_overhead_mib
from reconciler.model.platforms import PLATFORM_NAMES
from reconciler.model.platforms import platform as platform_profile
from reconciler.model.records import (
    AntiAffinityMode,
    Cluster,
    ClusterNetwork,
    ClusterSharedVolume,
    Controller,
    Disk,
    DiskFormat,
    DiskType,
    Estate,
    Hardware,
    LiveMigrationSettings,
    MigrationPolicy,
    Node,
    NodeNic,
    NodeStatus,
    Offloads,
    PlacementPolicy,
    PlatformName,
    Quorum,
    SwitchConfig,
    VirtualMachine,
    VirtualSwitch,
    VmNic,
    VmStatus,
    VolumeStatus,
    Witness,
    frozen_map,
)

# VM memory mix (MiB) and its weights: mostly small and mid-sized servers, a few large ones.
MEMORY_LEVELS: tuple[int, ...] = (2048, 4096, 8192, 12288, 16384)
MEMORY_WEIGHTS: tuple[int, ...] = (25, 30, 25, 10, 10)
# Host memory sizes (GiB) a cluster can be bought with; the best fit for the load is chosen.
NODE_MEMORY_GIB: tuple[int, ...] = (64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
UTILISATION_BAND = (0.60, 0.80)
N_PLUS_ONE_MARGIN = 0.05  # stay this far below (n-1)/n so a failed node's VMs fit elsewhere
NATIVE_VLAN = 1
TRUNK_VLANS: frozenset[int] = frozenset({10, 20, *range(30, 50)})
WITNESS_DISK = "Cluster Disk 1"
VOLUME_STEP_GIB = 256
DRIFT_VOLUME_STEP_GIB = 64

# Model, CPU, firmware, driver set, patch level: one baseline per platform generation.
HARDWARE: dict[str, tuple[str, str, str, str, str]] = {
    "2008r2": ("HP ProLiant BL460c G7", "2x Intel Xeon X5670", "I27 2011.05.05", "HP PSP 8.70",
               "2011-06"),
    "2012r2": ("HP ProLiant BL460c Gen8", "2x Intel Xeon E5-2670 v2", "I31 2014.09.15",
               "HP SPP 2014.09", "2014-10"),
    "2016": ("Dell PowerEdge R730", "2x Intel Xeon E5-2680 v4", "2.8.0", "Dell 18.06", "2018-07"),
    "2019": ("Dell PowerEdge R740", "2x Intel Xeon Gold 6248", "2.12.2", "Dell 21.06", "2021-06"),
    "2022": ("Dell PowerEdge R750", "2x Intel Xeon Gold 6338", "1.9.2", "Dell 23.03", "2023-03"),
    "2025": ("Dell PowerEdge R760", "2x Intel Xeon Gold 6548Y+", "2.2.7", "Dell 25.03",
             "2025-03"),
}  # fmt: skip

# The recommended 4-NIC layout: management, heartbeat, live migration, VM trunk.
NODE_NICS: tuple[NodeNic, ...] = (
    NodeNic("NIC1", ("management",), "Management", 1000),
    NodeNic("NIC2", ("heartbeat",), "Heartbeat", 1000),
    NodeNic("NIC3", ("live_migration",), "LiveMigration", 10000, Offloads(jumbo_frames=True)),
    NodeNic("NIC4", ("vm",), "VM", 10000, Offloads(vmq=True)),
)


@dataclass(frozen=True, slots=True)
class Role:
    """A kind of workload: vCPUs, OS disk, data disks (name, sizes, type), dirty rate, VLANs."""

    vcpus: tuple[int, ...]
    os_gib: int
    os_type: DiskType
    data: tuple[tuple[str, tuple[int, ...], DiskType], ...]
    dirty_mib_s: tuple[float, float]
    vlans: tuple[int, ...]


ROLES: dict[str, Role] = {
    "web": Role((2,), 60, "dynamic", (), (1.0, 5.0), (20,)),
    "util": Role((1, 2), 60, "dynamic", (), (1.0, 3.0), (10,)),
    "dc": Role((2,), 60, "fixed", (), (1.0, 3.0), (10,)),
    "app": Role((2, 4), 80, "dynamic", (("data", (100, 200), "dynamic"),), (5.0, 20.0),
                tuple(range(30, 38))),
    "file": Role((2,), 60, "dynamic", (("data", (500, 1000), "dynamic"),), (2.0, 10.0), (10,)),
    "sql": Role((4, 8), 80, "fixed", (("data", (250, 500), "fixed"), ("log", (100,), "fixed")),
                (20.0, 50.0), (40,)),
    "exchange": Role((4, 8), 100, "fixed", (("db", (500,), "fixed"),), (10.0, 40.0), (10,)),
    "test": Role((1,), 40, "dynamic", (), (1.0, 2.0), (10,)),
}  # fmt: skip
ROLES_BY_MEMORY: dict[int, tuple[str, ...]] = {
    2048: ("web", "web", "util"),
    4096: ("dc", "web", "app", "file", "util"),
    8192: ("app", "app", "file"),
    12288: ("sql", "app"),
    16384: ("sql", "app", "file"),
}
HARD_ROLES = ("dc", "sql", "exchange")
SOFT_ROLES = ("web", "app")


@dataclass(frozen=True)
class GeneratedEstate:
    desired: Estate
    world: Estate
    drifted: tuple[str, ...]  # "Kind/name" of every object made to differ in the world


@dataclass(slots=True)
class _VmPlan:
    """A VM while it is planned; it becomes a desired and a world record at the end."""

    name: str
    level: int  # index into MEMORY_LEVELS
    role: str = ""  # chosen from its memory size once the sizes are final
    vcpus: int = 2
    disks: tuple[Disk, ...] = ()
    file_sizes: dict[str, float] = field(default_factory=dict)  # dynamic disks, in the world
    vlan: int = 10
    dirty: float = 8.0
    node: int = -1  # index of the node it runs on in the world; -1 until placed
    pin: int | None = None
    policy: MigrationPolicy = "live"
    group: str | None = None
    group_mode: AntiAffinityMode = "soft"
    allow_downtime: bool = False
    missing_disk: str | None = None

    @property
    def memory_mib(self) -> int:
        return MEMORY_LEVELS[self.level]

    def data_disks(self) -> list[Disk]:
        return [d for d in self.disks if d.name != "os"]


@dataclass(slots=True)
class _ClusterPlan:
    cluster: Cluster
    hardware: Hardware
    switch: VirtualSwitch
    usable_mib: int
    costs: tuple[int, ...]  # memory plus overhead of each memory level on these hosts
    vms: list[_VmPlan] = field(default_factory=list)
    used_mib: list[int] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    need_gib: list[float] = field(default_factory=list)  # every desired file at full reservation
    volume_gib: list[int] = field(default_factory=list)
    world_volume_gib: dict[int, int] = field(default_factory=dict)
    trunk_drift: dict[int, int] = field(default_factory=dict)  # node index -> VLAN dropped
    groups: dict[str, list[_VmPlan]] = field(default_factory=dict)

    @property
    def nodes(self) -> tuple[str, ...]:
        return self.cluster.nodes

    def peer_on(self, vm: _VmPlan, node: int) -> bool:
        """Whether another VM of ``vm``'s anti-affinity group runs on ``node``."""
        if vm.group is None:
            return False
        return any(o is not vm and o.node == node for o in self.groups[vm.group])

    def fits(self, vm: _VmPlan, node: int) -> bool:
        cost = self.costs[vm.level]
        return self.used_mib[node] + cost <= self.usable_mib and not self.peer_on(vm, node)


def generate_estate(
    clusters: int,
    nodes_per_cluster: int,
    vms_per_node: int,
    drift: float = 0.0,
    seed: int = 0,
    platform: str = "2019",
    standalone: int = 0,
) -> GeneratedEstate:
    """A desired estate and a world that matches it, but for ``drift`` of its objects.

    ``drift`` is the fraction of VMs, of switches and of volumes (each rounded on its own, at
    least one VM when above 0) that the world gets wrong in ways the planner fixes online: a
    pinned VM running on another node, a data disk missing, a VLAN missing from one host's
    trunk (one no VM on that host uses), a CSV whose LUN and volume are smaller.

    ``standalone``: the last that many clusters are not formed in the world: their hosts are
    up with the roles and the switch, in no cluster, their CSVs' LUNs presented but no cluster
    disk yet, no VM; the manifests give each a static address and each CSV its LUN, so the
    plan builds them from zero (create_cluster, create_csv, create_vm).
    """
    if not 0 <= standalone <= clusters:
        raise ValueError(f"standalone is 0..{clusters} clusters, got {standalone}")
    if platform not in PLATFORM_NAMES:
        raise ValueError(f"unknown platform {platform!r}: one of {', '.join(PLATFORM_NAMES)}")
    if clusters < 1 or nodes_per_cluster < 2 or vms_per_node < 1:
        raise ValueError("need at least 1 cluster, 2 nodes per cluster and 1 VM per node")
    if not 0.0 <= drift <= 1.0:
        raise ValueError(f"drift is a fraction 0..1, got {drift}")
    profile = platform_profile(platform)
    if nodes_per_cluster > profile.max_nodes:
        raise ValueError(f"platform {platform} allows at most {profile.max_nodes} nodes")
    if nodes_per_cluster * vms_per_node > profile.max_vms_per_cluster:
        raise ValueError(f"platform {platform} allows {profile.max_vms_per_cluster} VMs a cluster")
    if vms_per_node > profile.max_running_vms_per_node:
        raise ValueError(f"platform {platform} runs {profile.max_running_vms_per_node} VMs a node")
    rng = random.Random(seed)
    width = max(3, len(str(clusters)))
    plans = [
        _plan_cluster(
            rng, f"c{i:0{width}d}", i, nodes_per_cluster, vms_per_node, cast(PlatformName, platform)
        )
        for i in range(1, clusters + 1)
    ]
    drifted = _drift(rng, plans, drift)
    unformed = {p.cluster.name for p in plans[len(plans) - standalone :]}
    return _build(
        plans, tuple(sorted(d for d in drifted if _cluster_of_ref(d) not in unformed)), unformed
    )


def _cluster_of_ref(ref: str) -> str:
    """The cluster a generated object's name starts with ("VirtualMachine/c001-vm0001")."""
    return ref.partition("/")[2].partition("-")[0]


def _lun_of(volume: str) -> str:
    return f"LUN-{volume}"


# --- one cluster -----------------------------------------------------------------------------


def _plan_cluster(
    rng: random.Random, name: str, index: int, n: int, per_node: int, platform: PlatformName
) -> _ClusterPlan:
    base = index * 4  # a /22 of 10.0.0.0/8 per cluster: management, heartbeat, migration
    subnet = [f"10.{(base + k) // 256 % 256}.{(base + k) % 256}.0/24" for k in range(3)]
    cluster = Cluster(
        name=name,
        platform=platform,
        nodes=tuple(f"{name}-n{j:02d}" for j in range(1, n + 1)),
        quorum=Quorum("recommended", Witness(disk=WITNESS_DISK)),
        networks=(
            ClusterNetwork("Management", ("management",), 1000, subnet[0]),
            ClusterNetwork("Heartbeat", ("heartbeat",), 1000, subnet[1]),
            ClusterNetwork("LiveMigration", ("live_migration",), 10000, subnet[2]),
            ClusterNetwork("VM", ("vm",), 10000),
        ),
        live_migration=LiveMigrationSettings(network="LiveMigration"),
        placement=PlacementPolicy(failover_reserve_nodes=1, reserve_policy="warn"),
        labels=frozen_map({"site": f"site{(index - 1) % 4 + 1}"}),
    )
    costs = tuple(m + vm_overhead_mib(m, cluster, True) for m in MEMORY_LEVELS)
    # The band is capped so that N+1 holds: the other nodes absorb one failed node's VMs.
    hi = min(UTILISATION_BAND[1], (n - 1) / n - N_PLUS_ONE_MARGIN)
    lo = min(UTILISATION_BAND[0], hi - 0.10)
    target = rng.uniform(lo, hi)
    levels = rng.choices(range(len(MEMORY_LEVELS)), weights=MEMORY_WEIGHTS, k=n * per_node)
    mean_cost = sum(c * w for c, w in zip(costs, MEMORY_WEIGHTS, strict=True)) / sum(MEMORY_WEIGHTS)
    reserve = parent_reserve_mib(cluster)
    memory_mib = min(
        (gib * 1024 for gib in NODE_MEMORY_GIB),
        key=lambda m: abs(per_node * mean_cost / (m - reserve) - target),
    )
    usable = memory_mib - reserve
    _fit_memory(rng, levels, costs, (lo * n * usable, hi * n * usable), target * n * usable)
    model, cpu, firmware, drivers, patches = HARDWARE[platform]
    volume_count = 2 + min(2, len(levels) // 150)
    vm_width = max(4, len(str(len(levels))))
    plan = _ClusterPlan(
        cluster=cluster,
        hardware=Hardware(model, cpu, memory_mib, firmware, drivers, patches, slat=True),
        switch=VirtualSwitch(
            name=f"{name}-vswitch",
            cluster=name,
            config=SwitchConfig("external", "NIC4", False, TRUNK_VLANS, NATIVE_VLAN),
        ),
        usable_mib=usable,
        costs=costs,
        vms=[_VmPlan(f"{name}-vm{k:0{vm_width}d}", lvl) for k, lvl in enumerate(levels, 1)],
        used_mib=[0] * n,
        volumes=[f"{name}-csv{v}" for v in range(1, volume_count + 1)],
        need_gib=[0.0] * volume_count,
    )
    _assign_roles(rng, plan)
    _assign_groups(rng, plan)
    _place(plan)
    # Room for every file at its full reservation plus 30-50% headroom, in 256 GiB steps.
    plan.volume_gib = [
        max(VOLUME_STEP_GIB, _round_up(need * rng.uniform(1.3, 1.5), VOLUME_STEP_GIB))
        for need in plan.need_gib
    ]
    return plan


def _fit_memory(
    rng: random.Random,
    levels: list[int],
    costs: Sequence[int],
    band: tuple[float, float],
    target: float,
) -> None:
    """Nudge VM sizes a step at a time until the cluster's total lands inside ``band``."""
    total = sum(costs[lvl] for lvl in levels)
    top = len(costs) - 1
    # Bounded: with very few VMs per node the band may be out of reach of the 2-16 GiB mix.
    for _ in range(20 * len(levels)):
        if band[0] <= total <= band[1]:
            return
        i = rng.randrange(len(levels))
        new = levels[i] + (1 if total < target else -1)
        if 0 <= new <= top:
            total += costs[new] - costs[levels[i]]
            levels[i] = new


def _assign_roles(rng: random.Random, plan: _ClusterPlan) -> None:
    """Role, vCPUs, VLAN, dirty rate and disks of each VM, from its memory size."""
    vms = plan.vms
    # The smallest VM is the test VM: cheap to move to and from a newly joined node.
    test = min(vms, key=lambda v: (v.level, v.name))
    test.role, test.allow_downtime = "test", True
    # Exchange DAG members must never live-migrate: about one in a hundred of the larger VMs.
    large = [v for v in vms if v is not test and v.level >= 2] or [v for v in vms if v is not test]
    for vm in rng.sample(large, min(len(large), max(1, len(vms) // 100))):
        vm.role, vm.policy = "exchange", "never"
    profile = platform_profile(plan.cluster.platform)
    generation2 = profile.generation2
    fmt: DiskFormat = "vhdx" if profile.vhdx else "vhd"
    # Generation 2 boots from SCSI 0:0; generation 1 from IDE 0:0, data disks from SCSI 0:0.
    boot: Controller = "scsi" if generation2 else "ide"
    first_data_slot = 1 if generation2 else 0
    for vm in vms:
        if not vm.role:  # neither the test VM nor a never-migrate VM
            vm.role = rng.choice(ROLES_BY_MEMORY[vm.memory_mib])
            vm.allow_downtime = vm.role in ("web", "util") and rng.random() < 0.3
        role = ROLES[vm.role]
        # The role's choice, within the largest VM the platform runs (4 vCPUs on 2008 R2).
        vm.vcpus = min(rng.choice(role.vcpus), profile.max_vm_vcpus(2 if generation2 else 1))
        vm.vlan = rng.choice(role.vlans)
        vm.dirty = round(rng.uniform(*role.dirty_mib_s), 1)
        wanted: list[tuple[str, Controller, int, DiskType, int]] = [
            ("os", boot, 0, role.os_type, role.os_gib)
        ]
        for slot, (disk_name, sizes, kind) in enumerate(role.data, first_data_slot):
            wanted.append((disk_name, "scsi", slot, kind, rng.choice(sizes)))
        disks: list[Disk] = []
        for disk_name, controller, slot, kind, size in wanted:
            # Each file goes to the emptiest volume, so the CSVs fill evenly.
            volume = min(range(len(plan.volumes)), key=plan.need_gib.__getitem__)
            reserved = float(size)
            if kind == "dynamic":
                grown = round(size * rng.uniform(0.2, 0.7), 1)
                vm.file_sizes[disk_name] = grown
                reserved = max(grown, size * 0.5)  # what adding the disk afresh would take
            plan.need_gib[volume] += reserved
            disks.append(
                Disk(disk_name, controller, 0, slot, kind, fmt, size, plan.volumes[volume])
            )
        vm.disks = tuple(disks)
    plan.cluster = replace(plan.cluster, test_vm=test.name)


def _assign_groups(rng: random.Random, plan: _ClusterPlan) -> None:
    """A few anti-affinity pairs: hard for DCs, SQL and Exchange, soft for web and app."""
    pairs = max(1, len(plan.vms) // 40)
    for mode, roles in (("hard", HARD_ROLES), ("soft", SOFT_ROLES)):
        pool = [v for v in plan.vms if v.group is None and v.role in roles]
        if len(pool) < 2:  # a tiny cluster: any two VMs but the test VM
            pool = [v for v in plan.vms if v.group is None and v.role != "test"]
        members = rng.sample(pool, min(len(pool) // 2, pairs) * 2)
        for i in range(0, len(members), 2):
            group = f"{members[i].role}-{mode}-{i // 2 + 1:02d}"
            plan.groups[group] = members[i : i + 2]
            for vm in members[i : i + 2]:
                vm.group, vm.group_mode = group, "hard" if mode == "hard" else "soft"


def _place(plan: _ClusterPlan) -> None:
    """Largest VM first onto the emptiest node with no VM of its anti-affinity group."""
    n = len(plan.nodes)
    every_node = range(n)
    for vm in sorted(plan.vms, key=lambda v: (-v.level, v.name)):
        allowed: Sequence[int] = every_node
        if vm.group is not None:
            allowed = [j for j in every_node if not plan.peer_on(vm, j)]
        best = min(allowed, key=plan.used_mib.__getitem__)
        if not plan.fits(vm, best):
            raise RuntimeError(f"{vm.name} fits on no node of {plan.cluster.name}")
        vm.node = best
        plan.used_mib[best] += plan.costs[vm.level]
    # Never-migrate VMs are pinned where they run, and so are a few others (about 1%).
    extra = max(1, len(plan.vms) // 100)
    for vm in plan.vms:
        if vm.policy == "never":
            vm.pin = vm.node
        elif extra and vm.role != "test" and vm.group is None:
            vm.pin = vm.node
            extra -= 1


def _round_up(value: float, step: int) -> int:
    return math.ceil(value / step) * step


# --- drift -----------------------------------------------------------------------------------


def _drift(rng: random.Random, plans: list[_ClusterPlan], drift: float) -> list[str]:
    if drift <= 0.0:
        return []
    out: list[str] = []
    every_vm = [(plan, vm) for plan in plans for vm in plan.vms]
    want = max(1, round(drift * len(every_vm)))
    # Walk all VMs in random order: one that cannot drift (pinned, no data disk) is passed over.
    for plan, vm in rng.sample(every_vm, len(every_vm)):
        if len(out) == want:
            break
        options = []
        if vm.pin is None and vm.policy == "live" and vm.role != "test":
            options.append("placement")
        if vm.data_disks():
            options.append("disk")
        rng.shuffle(options)
        for option in options:
            if option == "placement" and _drift_placement(rng, plan, vm):
                out.append(f"VirtualMachine/{vm.name}")
                break
            if option == "disk":
                # Hot-added back on SCSI; its volume keeps room for it (need_gib counts it).
                vm.missing_disk = rng.choice(vm.data_disks()).name
                out.append(f"VirtualMachine/{vm.name}")
                break
    # Trunks after placement, so the dropped VLAN is one no VM on (or pinned to) that host uses.
    for plan in rng.sample(plans, round(drift * len(plans))):
        node = rng.randrange(len(plan.nodes))
        in_use = {vm.vlan for vm in plan.vms if node in (vm.node, vm.pin)}
        spare = sorted(TRUNK_VLANS - in_use - {NATIVE_VLAN})
        if spare:
            plan.trunk_drift[node] = rng.choice(spare)
            out.append(f"VirtualSwitch/{plan.switch.name}")
    every_volume = [(plan, v) for plan in plans for v in range(len(plan.volumes))]
    for plan, v in rng.sample(every_volume, round(drift * len(every_volume))):
        # Still holds every desired file (a missing disk's return too) with 10% to spare.
        smaller = _round_up(plan.need_gib[v] * 1.1, DRIFT_VOLUME_STEP_GIB)
        if smaller < plan.volume_gib[v]:
            plan.world_volume_gib[v] = smaller
            out.append(f"ClusterSharedVolume/{plan.volumes[v]}")
    return out


def _drift_placement(rng: random.Random, plan: _ClusterPlan, vm: _VmPlan) -> bool:
    """Pin the VM where it ran and run it elsewhere: moving it back frees the room it needs."""
    targets = [j for j in range(len(plan.nodes)) if j != vm.node and plan.fits(vm, j)]
    if not targets:
        return False
    target = rng.choice(targets)
    cost = plan.costs[vm.level]
    plan.used_mib[vm.node] -= cost
    plan.used_mib[target] += cost
    vm.pin, vm.node = vm.node, target
    return True


# --- records -------------------------------------------------------------------------------


def _build(
    plans: list[_ClusterPlan], drifted: tuple[str, ...], unformed: set[str] | None = None
) -> GeneratedEstate:
    """Records built directly: ``dataclasses.replace`` on 25,600 VMs alone takes about a second."""
    unformed = unformed or set()
    clusters: dict[str, Cluster] = {}
    switches: dict[str, VirtualSwitch] = {}
    nodes_d: dict[str, Node] = {}
    nodes_w: dict[str, Node] = {}
    volumes_d: dict[str, ClusterSharedVolume] = {}
    volumes_w: dict[str, ClusterSharedVolume] = {}
    vms_d: dict[str, VirtualMachine] = {}
    vms_w: dict[str, VirtualMachine] = {}
    role_labels = {role: frozen_map({"role": role}) for role in ROLES}
    for plan in plans:
        if plan.cluster.name in unformed:
            _build_unformed(plan, clusters, switches, nodes_d, nodes_w, volumes_d, vms_d)
            continue
        cluster = plan.cluster
        clusters[cluster.name] = cluster
        switch = plan.switch
        switches[switch.name] = switch
        luns = frozenset(plan.volumes)
        host_switches = frozen_map({switch.name: switch.config})
        for j, node_name in enumerate(plan.nodes):
            labels = frozen_map({"chassis": f"{cluster.name}-ch{j // 8 + 1}"})
            node = Node(node_name, cluster.name, plan.hardware, NODE_NICS, labels=labels)
            nodes_d[node_name] = node
            own = host_switches
            if j in plan.trunk_drift:
                trimmed = switch.config.allowed_vlans - {plan.trunk_drift[j]}
                own = frozen_map({switch.name: replace(switch.config, allowed_vlans=trimmed)})
            nodes_w[node_name] = replace(node, status=NodeStatus(switches=own, luns=luns))
        for v, volume_name in enumerate(plan.volumes):
            size = plan.volume_gib[v]
            volumes_d[volume_name] = ClusterSharedVolume(volume_name, cluster.name, size, size)
            small = plan.world_volume_gib.get(v, size)
            coordinator = VolumeStatus(coordinator=plan.nodes[v % len(plan.nodes)])
            volumes_w[volume_name] = ClusterSharedVolume(
                volume_name, cluster.name, small, small, status=coordinator
            )
        nics = {vlan: (VmNic("nic1", switch.name, vlan),) for vlan in TRUNK_VLANS}
        for vm in plan.vms:
            desired, world = _vm_records(vm, cluster, nics[vm.vlan], role_labels[vm.role])
            vms_d[vm.name] = desired
            vms_w[vm.name] = world
    # Clusters and switches carry no observed facts: both estates share the same tables
    # (but for clusters not formed yet, which the world lacks).
    shared_clusters, shared_switches = frozen_map(clusters), frozen_map(switches)
    world_clusters = (
        frozen_map({n: c for n, c in clusters.items() if n not in unformed})
        if unformed
        else shared_clusters
    )
    return GeneratedEstate(
        desired=Estate(shared_clusters, frozen_map(nodes_d), shared_switches,
                       frozen_map(volumes_d), frozen_map(vms_d)),
        world=Estate(world_clusters, frozen_map(nodes_w), shared_switches,
                     frozen_map(volumes_w), frozen_map(vms_w)),
        drifted=drifted,
    )  # fmt: skip


def _build_unformed(
    plan: _ClusterPlan,
    clusters: dict[str, Cluster],
    switches: dict[str, VirtualSwitch],
    nodes_d: dict[str, Node],
    nodes_w: dict[str, Node],
    volumes_d: dict[str, ClusterSharedVolume],
    vms_d: dict[str, VirtualMachine],
) -> None:
    """A cluster the world does not have yet: standalone hosts, presented LUNs, no VM."""
    management = plan.cluster.networks[0].subnet or "10.0.0.0/24"
    address = management.rsplit(".", 1)[0] + ".10"  # the /24's .10: the cluster name
    cluster = replace(plan.cluster, addresses=(address,))
    clusters[cluster.name] = cluster
    switches[plan.switch.name] = plan.switch
    free = frozen_map({_lun_of(v): plan.volume_gib[i] for i, v in enumerate(plan.volumes)})
    host_switches = frozen_map({plan.switch.name: plan.switch.config})
    for j, node_name in enumerate(plan.nodes):
        labels = frozen_map({"chassis": f"{cluster.name}-ch{j // 8 + 1}"})
        node = Node(node_name, cluster.name, plan.hardware, NODE_NICS, labels=labels)
        nodes_d[node_name] = node
        nodes_w[node_name] = replace(
            node, status=NodeStatus(switches=host_switches, free_luns=free)
        )
    for v, volume_name in enumerate(plan.volumes):
        size = plan.volume_gib[v]
        volumes_d[volume_name] = ClusterSharedVolume(
            volume_name, cluster.name, size, size, lun=_lun_of(volume_name)
        )
    nics = {vlan: (VmNic("nic1", plan.switch.name, vlan),) for vlan in TRUNK_VLANS}
    role_labels = {role: frozen_map({"role": role}) for role in ROLES}
    for vm in plan.vms:
        desired, _world = _vm_records(vm, cluster, nics[vm.vlan], role_labels[vm.role])
        vms_d[vm.name] = desired


def _vm_records(
    vm: _VmPlan, cluster: Cluster, nics: tuple[VmNic, ...], labels: Mapping[str, str]
) -> tuple[VirtualMachine, VirtualMachine]:
    generation = 2 if vm.disks[0].controller == "scsi" else 1
    pin = cluster.nodes[vm.pin] if vm.pin is not None else None
    # Only dynamic disks get an observed file size; fixed ones are shared with desired state.
    world_disks = tuple(
        Disk(d.name, d.controller, d.controller_number, d.slot, d.type, d.format, d.size_gib,
             d.volume, file_size_gib=vm.file_sizes[d.name]) if d.name in vm.file_sizes else d
        for d in vm.disks
        if d.name != vm.missing_disk
    )  # fmt: skip

    def record(node: str | None, disks: tuple[Disk, ...], status: VmStatus) -> VirtualMachine:
        return VirtualMachine(
            name=vm.name,
            cluster=cluster.name,
            memory_mib=vm.memory_mib,
            vcpus=vm.vcpus,
            generation=generation,
            node=node,
            migration_policy=vm.policy,
            anti_affinity_group=vm.group,
            anti_affinity_mode=vm.group_mode,
            allow_downtime=vm.allow_downtime,
            nics=nics,
            disks=disks,
            labels=labels,
            status=status,
        )

    return (
        record(pin, vm.disks, VmStatus()),
        record(cluster.nodes[vm.node], world_disks, VmStatus(dirty_rate_mib_s=vm.dirty)),
    )


# --- files ---------------------------------------------------------------------------------


def write_generated(gen: GeneratedEstate, out: Path) -> list[Path]:
    """Writes out/desired/<cluster>.yaml (one multi-document file per cluster: its Cluster, Nodes,
    switches, volumes, VMs, no status) and out/world.yaml (everything, with status). Returns paths.
    """
    desired_dir = out / "desired"
    desired_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for name, part in sorted(_by_cluster(gen.desired).items()):
        path = desired_dir / f"{name}.yaml"
        path.write_text(documents_yaml(to_documents(part)), encoding="utf-8")
        paths.append(path)
    world = out / "world.yaml"
    world.write_text(documents_yaml(to_documents(gen.world, status=True)), encoding="utf-8")
    paths.append(world)
    return paths


def _by_cluster(estate: Estate) -> dict[str, Estate]:
    """Every cluster's slice in one pass (``Estate.of_cluster`` scans everything per cluster)."""
    nodes: dict[str, dict[str, Node]] = {c: {} for c in estate.clusters}
    switches: dict[str, dict[str, VirtualSwitch]] = {c: {} for c in estate.clusters}
    volumes: dict[str, dict[str, ClusterSharedVolume]] = {c: {} for c in estate.clusters}
    vms: dict[str, dict[str, VirtualMachine]] = {c: {} for c in estate.clusters}
    for node in estate.nodes.values():
        nodes[node.cluster][node.name] = node
    for switch in estate.switches.values():
        switches[switch.cluster][switch.name] = switch
    for volume in estate.volumes.values():
        volumes[volume.cluster][volume.name] = volume
    for vm in estate.vms.values():
        vms[vm.cluster][vm.name] = vm
    return {
        c: Estate({c: cluster}, nodes[c], switches[c], volumes[c], vms[c])
        for c, cluster in estate.clusters.items()
    }


# --- YAML text -----------------------------------------------------------------------------
# PyYAML's representer runs in Python even with libyaml (about 0.5 ms a document: 15 s for the
# world of 25,600 VMs). This writer renders the dump module's documents in the same block
# style, byte for byte (tests compare it with ``to_yaml``); any value it cannot prove it renders
# exactly is handed to PyYAML.

_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_RESOLVE = cast(Callable[[type, str, tuple[bool, bool]], str], yaml.resolver.Resolver().resolve)
_STR_TAG = "tag:yaml.org,2002:str"
_PLAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9 ._/+,-]*[A-Za-z0-9._/+,-])?\Z")
_MAX_UNWRAPPED = 40  # longer strings with spaces may be folded at PyYAML's 80 columns


class _Unsupported(Exception):
    """A value this writer does not render exactly as PyYAML would."""


def documents_yaml(docs: Iterable[dict[str, Any]]) -> str:
    """The text ``yaml.dump_all(docs, sort_keys=False, explicit_start=True)`` gives, faster."""
    parts: list[str] = []
    for doc in docs:
        lines = ["---\n"]
        try:
            _mapping(doc, "", lines)
        except _Unsupported:
            lines = [_pyyaml([doc])]
        parts.extend(lines)
    return "".join(parts)


def _pyyaml(docs: list[Any]) -> str:
    text: str = yaml.dump_all(
        docs, Dumper=_DUMPER, sort_keys=False, default_flow_style=False, explicit_start=True
    )
    return text


def _mapping(data: dict[str, Any], indent: str, lines: list[str]) -> None:
    # Exact type tests, not isinstance: this loop runs 1.6 million times for 25,600 VMs.
    append = lines.append
    for key, value in data.items():
        if type(key) is not str:
            raise _Unsupported(key)
        head = indent + _string(key, True) + ":"
        kind = type(value)
        if kind is str:
            append(head + " " + _string(value, False) + "\n")
        elif kind is dict and value:
            append(head + "\n")
            _mapping(value, indent + "  ", lines)
        elif kind is list and value:
            append(head + "\n")
            _sequence(value, indent, lines)  # PyYAML does not indent a sequence under a key
        else:
            append(head + " " + _scalar(value) + "\n")


def _sequence(items: list[Any], indent: str, lines: list[str]) -> None:
    for item in items:
        kind = type(item)
        if kind is dict and item:
            first = len(lines)
            _mapping(item, indent + "  ", lines)
            lines[first] = indent + "- " + lines[first][len(indent) + 2 :]
        elif kind is list and item:
            raise _Unsupported(item)
        else:
            lines.append(indent + "- " + _scalar(item) + "\n")


def _scalar(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return _string(value, False)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float and math.isfinite(value):
        text = repr(value).lower()  # as SafeRepresenter.represent_float writes it
        return text.replace("e", ".0e", 1) if "." not in text and "e" in text else text
    if value is None:
        return "null"
    if kind is dict and not value:
        return "{}"
    if kind is list and not value:
        return "[]"
    raise _Unsupported(value)


@lru_cache(maxsize=1 << 16)
def _string(value: str, key: bool) -> str:
    if len(value) > _MAX_UNWRAPPED and (key or " " in value):  # folded, or a "? " long key
        raise _Unsupported(value)
    if _PLAIN.match(value) and _RESOLVE(yaml.ScalarNode, value, (True, False)) == _STR_TAG:
        return value
    # Anything else (quoted, or plain with other characters): ask PyYAML once, in context.
    text = _pyyaml([{value: 0}] if key else [{"k": value}])
    body = text[len("---\n") :].rstrip("\n")
    if "\n" in body:
        raise _Unsupported(value)
    return body[: -len(": 0")] if key else body[len("k: ") :]
