"""Hypothesis strategies for valid desired-state estates.

``estates()`` builds one cluster with 1-5 identical nodes, its networks, switches, volumes and
VMs: disks on free, valid controller slots, NICs on VLANs their switch's trunk carries, memory
that fits, quorum that suits the node count. Every value is one the dumper writes explicitly,
so an estate dumped to YAML must load back equal.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import strategies as st

from reconciler.model.capacity import usable_memory_mib, vm_cost_mib
from reconciler.model.platforms import (
    IDE_CONTROLLERS,
    IDE_SLOTS,
    PLATFORM_NAMES,
    SCSI_CONTROLLERS,
    SCSI_SLOTS,
    VHD_MAX_GIB,
    VHDX_MAX_GIB,
    platform,
)
from reconciler.model.quorum import WITNESS_MODES
from reconciler.model.records import (
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
    MemoryPolicy,
    Node,
    NodeNic,
    Offloads,
    PlacementPolicy,
    Prune,
    Quorum,
    QuorumMode,
    SwitchConfig,
    SwitchType,
    VirtualMachine,
    VirtualSwitch,
    VmNic,
    Witness,
    frozen_map,
)
from reconciler.model.vlans import VLAN_MAX, VLAN_MIN

ROLES = ("management", "heartbeat", "live_migration", "vm", "iscsi")
SWITCH_TYPES: tuple[SwitchType, ...] = ("external", "internal", "private")
DISK_TYPES: tuple[DiskType, ...] = ("fixed", "dynamic", "differencing")
SlotKey = tuple[Controller, int, int]

# Object names as the schema allows them; YAML-looking ones ("1e3", "null", "0x1F") included.
names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,15}", fullmatch=True)
# Host names: NetBIOS and DNS at once (15 characters, no '.' or '_'); "1e3" and "null" included.
node_names_ = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,13}[A-Za-z0-9])?", fullmatch=True).filter(
    lambda n: not n.isdigit()
)

# Free text: any printable characters, including quotes, backslashes, '#', ': ' and non-ASCII.
texts = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Co", "Cn")),
    min_size=1,
    max_size=12,
)

labels = st.dictionaries(texts, texts, max_size=3).map(frozen_map)
vlan_ids = st.integers(VLAN_MIN, VLAN_MAX)


@st.composite
def _networks(draw: st.DrawFn) -> tuple[ClusterNetwork, ...]:
    network_names = draw(st.lists(names, max_size=4, unique=True))
    return tuple(
        ClusterNetwork(
            name=name,
            roles=tuple(draw(st.lists(st.sampled_from(ROLES), min_size=1, unique=True))),
            bandwidth_mbps=draw(st.sampled_from([100, 1000, 10_000, 25_000])),
            # One cluster network per IP subnet: each its own, in CIDR form.
            subnet=draw(st.none() | st.just(f"10.{i}.0.0/16")),
        )
        for i, name in enumerate(network_names)
    )


@st.composite
def _quorum(draw: st.DrawFn, node_count: int, cloud_ok: bool) -> Quorum:
    """A quorum that suits the node count: no validator error and no warning."""
    kinds = ["disk", "file_share", *(["cloud"] if cloud_ok else [])]
    odd = node_count % 2 == 1
    modes: list[QuorumMode] = ["recommended", "disk_only"]
    if odd:
        modes.append("node_majority")
    else:
        modes += ["node_and_disk_majority", "node_and_file_share_majority"]
        if cloud_ok:
            modes.append("cloud_witness")
    mode = draw(st.sampled_from(modes))
    if mode == "node_majority":
        kind = None
    elif mode in WITNESS_MODES:
        kind = WITNESS_MODES[mode]
    elif odd:
        kind = draw(st.none() | st.sampled_from(kinds))
    else:
        kind = draw(st.sampled_from(kinds))
    witness = Witness(
        disk=draw(texts) if kind == "disk" else None,
        file_share=draw(texts) if kind == "file_share" else None,
        cloud_account=draw(texts) if kind == "cloud" else None,
    )
    return Quorum(mode=mode, witness=witness)


@st.composite
def _nic_layout(draw: st.DrawFn, networks: tuple[ClusterNetwork, ...]) -> tuple[NodeNic, ...]:
    """One NIC layout, used by every node (NIC names and offloads must match across nodes)."""
    nic_names = draw(st.lists(texts, max_size=4, unique=True))
    network_names = [n.name for n in networks]
    return tuple(
        NodeNic(
            name=name,
            roles=tuple(draw(st.lists(st.sampled_from(ROLES), min_size=1, unique=True))),
            network=draw(st.none() | st.sampled_from(network_names)) if network_names else None,
            speed_mbps=draw(st.sampled_from([1000, 10_000])),
            offloads=Offloads(vmq=draw(st.booleans()), jumbo_frames=draw(st.booleans())),
        )
        for name in nic_names
    )


@st.composite
def _switch_config(draw: st.DrawFn, nic_names: list[str]) -> SwitchConfig:
    kind = draw(st.sampled_from(SWITCH_TYPES))
    uplink = None
    if kind == "external":
        uplink = draw(st.sampled_from(nic_names)) if nic_names else draw(texts)
    allowed = draw(
        st.frozensets(vlan_ids, max_size=6)
        | st.frozensets(st.integers(VLAN_MIN, 12), max_size=10)  # runs fold into ranges
        | st.just(frozenset({VLAN_MIN, VLAN_MAX}))
    )
    # A trunk needs an allowed list and its native VLAN; the dumper writes vlan_trunk only
    # when there is an allowed list.
    native = draw(vlan_ids) if allowed else None
    return SwitchConfig(
        type=kind,
        uplink_nic=uplink,
        management_os=draw(st.booleans()),
        allowed_vlans=allowed,
        native_vlan=native,
    )


@st.composite
def _vlan_for(draw: st.DrawFn, cfg: SwitchConfig) -> int | None:
    if not cfg.allowed_vlans:
        return draw(st.none() | vlan_ids)
    carried = sorted(cfg.allowed_vlans | ({cfg.native_vlan} if cfg.native_vlan else set()))
    return draw(st.none() | st.sampled_from(carried))


def _slot_keys(generation: int) -> list[SlotKey]:
    scsi: list[SlotKey] = [
        ("scsi", c, s) for c in range(SCSI_CONTROLLERS) for s in (0, 1, SCSI_SLOTS - 1)
    ]
    if generation == 2:
        return scsi
    ide: list[SlotKey] = [("ide", c, s) for c in range(IDE_CONTROLLERS) for s in range(IDE_SLOTS)]
    return ide + scsi


@st.composite
def _disks(draw: st.DrawFn, generation: int, volumes: list[str], vhdx_ok: bool) -> tuple[Disk, ...]:
    """Disks on distinct valid slots; a generation-1 VM boots from IDE."""
    count = draw(st.integers(0, 4))
    if count == 0:
        return ()
    keys = draw(
        st.lists(
            st.sampled_from(_slot_keys(generation)), min_size=count, max_size=count, unique=True
        )
    )
    if generation == 1 and keys[0][0] != "ide":
        ide = [k for k in _slot_keys(1) if k[0] == "ide" and k not in keys]
        keys[0] = draw(st.sampled_from(ide))
    disk_names = draw(st.lists(texts, min_size=count, max_size=count, unique=True))
    formats: list[DiskFormat] = (
        ["vhdx"] if generation == 2 else (["vhd", "vhdx"] if vhdx_ok else ["vhd"])
    )
    disks: list[Disk] = []
    for i, (controller, number, slot) in enumerate(keys):
        fmt = draw(st.sampled_from(formats))
        kind = draw(st.sampled_from(DISK_TYPES))
        limit = VHD_MAX_GIB if fmt == "vhd" else VHDX_MAX_GIB
        # Only an IDE disk may be marked boot on generation 1 (the first disk is IDE anyway).
        may_boot = generation == 2 or controller == "ide"
        disks.append(
            Disk(
                name=disk_names[i],
                controller=controller,
                controller_number=number,
                slot=slot,
                type=kind,
                format=fmt,
                size_gib=draw(st.integers(1, limit)),
                volume=draw(st.sampled_from(volumes)),
                allow_delete=draw(st.booleans()),
                boot=draw(st.booleans()) if may_boot else False,
                parent=draw(texts) if kind == "differencing" else None,
                file=draw(st.none() | texts.map(lambda t, ext=fmt: f"{t}/{t}.{ext}")),
            )
        )
    return tuple(disks)


@st.composite
def _vm(
    draw: st.DrawFn,
    name: str,
    cluster: Cluster,
    switches: list[VirtualSwitch],
    volumes: list[str],
    macs: set[str | None],  # static MACs the cluster's adapters use already
) -> VirtualMachine:
    profile = platform(cluster.platform)
    generation = draw(st.sampled_from([1, 2] if profile.generation2 else [1]))
    nic_names = draw(st.lists(texts, max_size=3 if switches else 0, unique=True))
    nics = []
    for nic_name in nic_names:
        switch = draw(st.sampled_from(switches))
        # A unicast MAC (first octet even), used by one adapter only.
        mac = draw(st.none() | st.from_regex(r"\A[0-9A-F][02468ACE][0-9A-F]{10}\Z"))
        if mac is not None and (int(mac, 16) == 0 or mac in macs):
            mac = None
        macs.add(mac)
        carried = sorted(switch.config.allowed_vlans)
        if carried and draw(st.booleans()):  # a trunk adapter, on VLANs the switch carries
            trunk = frozenset(draw(st.lists(st.sampled_from(carried), min_size=1, max_size=4)))
            native = draw(st.sampled_from(carried))  # a trunk adapter needs its native VLAN
            nics.append(VmNic(nic_name, switch.name, None, trunk, native, mac))
        else:
            nics.append(VmNic(nic_name, switch.name, draw(_vlan_for(switch.config)), mac=mac))
    group = draw(st.none() | st.sampled_from(["dc", "sql", "web"]))
    return VirtualMachine(
        name=name,
        cluster=cluster.name,
        memory_mib=2 * draw(st.integers(16, 1024)),  # Hyper-V sets memory in 2 MB steps
        vcpus=draw(st.integers(1, profile.max_vm_vcpus(generation))),
        generation=generation,
        node=draw(st.none() | st.sampled_from(cluster.nodes)),
        power_state=draw(st.sampled_from(["running", "off"])),
        highly_available=draw(st.booleans()),
        migration_policy=draw(st.sampled_from(["live", "quick", "offline", "never"])),
        anti_affinity_group=group,
        anti_affinity_mode=draw(st.sampled_from(["soft", "hard"])) if group else "soft",
        allow_downtime=draw(st.booleans()),
        nics=tuple(nics),
        disks=draw(_disks(generation, volumes, profile.vhdx)),
        labels=draw(labels),
    )


def _fit_disks(vms: list[VirtualMachine], sizes: dict[str, int]) -> list[VirtualMachine]:
    """A new fixed disk no larger than its volume; each file attached once."""
    used: set[tuple[str, str]] = set()
    out: list[VirtualMachine] = []
    for vm in vms:
        disks = []
        for disk in vm.disks:
            if (disk.volume, disk.file_path(vm.name).lower()) in used:
                disk = replace(disk, file=None)
            if disk.type == "fixed" and disk.file is None:
                disk = replace(disk, size_gib=min(disk.size_gib, sizes[disk.volume]))
            used.add((disk.volume, disk.file_path(vm.name).lower()))
            disks.append(disk)
        out.append(replace(vm, disks=tuple(disks)))
    return out


def _fit(
    vms: list[VirtualMachine], cluster: Cluster, nodes: dict[str, Node]
) -> list[VirtualMachine]:
    """Unpin VMs that overfill their node, and soften hard groups that cannot be honoured."""
    used = dict.fromkeys(nodes, 0)
    fitted: list[VirtualMachine] = []
    for vm in vms:
        node = vm.node
        if node is not None and vm.power_state == "running":
            cost = vm_cost_mib(vm, cluster, nodes[node])
            if used[node] + cost > usable_memory_mib(nodes[node], cluster):
                vm = replace(vm, node=None)
            else:
                used[node] += cost
        fitted.append(vm)
    out: list[VirtualMachine] = []
    hard: dict[str, list[VirtualMachine]] = {}
    for vm in fitted:
        if vm.anti_affinity_group and vm.anti_affinity_mode == "hard":
            members = hard.setdefault(vm.anti_affinity_group, [])
            pinned = {m.node for m in members if m.node is not None}
            if len(members) >= len(cluster.nodes) or (vm.node is not None and vm.node in pinned):
                vm = replace(vm, anti_affinity_mode="soft")
            else:
                members.append(vm)
        out.append(vm)
    return out


@st.composite
def estates(draw: st.DrawFn) -> Estate:
    """A valid one-cluster estate: every object passes the schema and every rule."""
    platform_name = draw(st.sampled_from(PLATFORM_NAMES))
    profile = platform(platform_name)
    cluster_name = draw(names)
    node_names = draw(st.lists(node_names_, min_size=1, max_size=5, unique=True))
    networks = draw(_networks())
    network_names = [n.name for n in networks]
    vm_names = draw(st.lists(names, max_size=6, unique=True))
    cluster = Cluster(
        name=cluster_name,
        platform=platform_name,  # type: ignore[arg-type]
        nodes=tuple(node_names),
        quorum=draw(_quorum(len(node_names), profile.cloud_witness)),
        networks=networks,
        live_migration=LiveMigrationSettings(
            network=draw(st.none() | st.sampled_from(network_names)) if network_names else None,
            max_parallel_migrations=draw(st.none() | st.integers(1, 64)),
        ),
        placement=PlacementPolicy(
            failover_reserve_nodes=draw(st.integers(0, 3)),
            reserve_policy=draw(st.sampled_from(["warn", "block"])),
        ),
        memory=MemoryPolicy(
            parent_reserve_mib=draw(st.none() | st.integers(0, 4096)),
            vm_overhead_mib=draw(st.none() | st.integers(0, 512)),
        ),
        test_vm=draw(st.none() | st.sampled_from(vm_names)) if vm_names else None,
        prune=Prune(draw(st.booleans()), draw(st.booleans())),
        labels=draw(labels),
    )
    baseline = (draw(texts), draw(texts), draw(texts), draw(texts), draw(texts))
    layout = draw(_nic_layout(networks))
    nodes = {
        name: Node(
            name=name,
            cluster=cluster_name,
            hardware=Hardware(
                *baseline[:2],
                memory_mib=draw(st.integers(8192, 262_144)),
                firmware=baseline[2],
                driver_set=baseline[3],
                patch_level=baseline[4],
                slat=draw(st.booleans()),
            ),
            nics=layout,
            maintenance=draw(st.booleans()),
            labels=draw(labels),
        )
        for name in node_names
    }
    nic_names = [n.name for n in layout]
    switches = [
        VirtualSwitch(name, cluster_name, draw(_switch_config(nic_names)), draw(labels))
        for name in draw(st.lists(names, max_size=3, unique=True))
    ]
    volumes = []
    for name in draw(st.lists(names, min_size=1, max_size=3, unique=True)):
        lun = draw(st.integers(1, 65_536))
        volumes.append(
            ClusterSharedVolume(name, cluster_name, lun, draw(st.integers(1, lun)), draw(labels))
        )
    volume_names = [v.name for v in volumes]
    macs: set[str | None] = set()
    vms = _fit(
        [draw(_vm(name, cluster, switches, volume_names, macs)) for name in vm_names],
        cluster,
        nodes,
    )
    vms = _fit_disks(vms, {v.name: v.size_gib for v in volumes})
    return Estate(
        clusters={cluster_name: cluster},
        nodes=nodes,
        switches={s.name: s for s in switches},
        volumes={v.name: v for v in volumes},
        vms={vm.name: vm for vm in vms},
    )
