"""Worlds and actions for the simulator tests: a small hand-built lab cluster, the demo world,
action builders, and Hypothesis strategies for random (valid-looking) action sequences.

``lab_world()`` is a 2-node cluster ``lab`` (plus a spare node ``n3`` that is not a member) small
enough to reason about by hand: every number in it is chosen so a test can say why an action
fits or not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from reconciler.manifest.load import load_paths, require
from reconciler.model.actions import DISRUPTION, Action
from reconciler.model.records import (
    Cluster,
    ClusterNetwork,
    ClusterSharedVolume,
    Disk,
    Estate,
    Hardware,
    LiveMigrationSettings,
    Node,
    NodeNic,
    NodeStatus,
    PlatformName,
    Quorum,
    SwitchConfig,
    VirtualMachine,
    VirtualSwitch,
    VmNic,
    VolumeStatus,
    Witness,
    frozen_map,
)
from reconciler.model.rules import disk_to_params, switch_to_params
from reconciler.model.rules_lifecycle import vm_to_params
from reconciler.model.vlans import format_vlan_list

REPO = Path(__file__).resolve().parents[1]
DEMO_WORLD = REPO / "manifests" / "worlds" / "demo.yaml"
DEMO_DESIRED = REPO / "manifests" / "demo"

NODE_MEMORY_MIB = 16384
TRUNK = SwitchConfig(
    type="external",
    uplink_nic="NIC2",
    management_os=False,
    allowed_vlans=frozenset({10, 20}),
    native_vlan=1,
)
HARDWARE = Hardware(
    model="BL460c G7",
    cpu="2x X5670",
    memory_mib=NODE_MEMORY_MIB,
    firmware="I27",
    driver_set="PSP 8.70",
    patch_level="2012-01",
)


def demo_world() -> Estate:
    return require(load_paths([str(DEMO_WORLD)], world=True))


def _node(name: str, ready: bool = True) -> Node:
    status = (
        NodeStatus(switches=frozen_map({"vs": TRUNK}), luns=frozenset({"V1"}))
        if ready
        else NodeStatus()
    )
    return Node(
        name=name,
        cluster="lab",
        hardware=HARDWARE,
        nics=(NodeNic("NIC1", ("management",)), NodeNic("NIC2", ("vm",))),
        status=status,
    )


def _vm(name: str, node: str, memory_mib: int, vlan: int, *disks: Disk) -> VirtualMachine:
    return VirtualMachine(
        name=name,
        cluster="lab",
        memory_mib=memory_mib,
        vcpus=2,
        generation=1,
        node=node,
        nics=(VmNic("nic1", "vs", vlan),),
        disks=disks,
    )


def os_disk(size_gib: int = 20) -> Disk:
    return Disk("os", "ide", 0, 0, "fixed", "vhd", size_gib, "V1", boot=True)


def data_disk(fmt: str = "vhdx", controller: str = "scsi", size_gib: int = 10) -> Disk:
    number, slot = (0, 0) if controller == "scsi" else (0, 1)
    return Disk("data", controller, number, slot, "dynamic", fmt, size_gib, "V1")  # type: ignore[arg-type]


def lab_world(platform: PlatformName = "2012r2", spare_ready: bool = False) -> Estate:
    """Cluster ``lab``: n1, n2 (16 GiB each), disk witness, one trunk (VLANs 10, 20), one 100 GiB
    CSV ``V1`` coordinated by n1; VMs A (2 GiB, n1, VLAN 10, os + data), B (4 GiB, n2, VLAN 20)
    and TEST (512 MiB, n1). ``n3`` is racked but not a member (ready to join if asked)."""
    cluster = Cluster(
        name="lab",
        platform=platform,
        nodes=("n1", "n2"),
        quorum=Quorum("node_and_disk_majority", Witness(disk="Witness")),
        networks=(ClusterNetwork("LM", ("live_migration",), 1000),),
        live_migration=LiveMigrationSettings(network="LM"),
        test_vm="TEST",
    )
    data_fmt = "vhd" if platform == "2008r2" else "vhdx"
    vms = [
        _vm("A", "n1", 2048, 10, os_disk(), data_disk(data_fmt)),
        _vm("B", "n2", 4096, 20, os_disk()),
        _vm("TEST", "n1", 512, 10, replace(os_disk(), type="dynamic")),
    ]
    return Estate(
        clusters={"lab": cluster},
        nodes={"n1": _node("n1"), "n2": _node("n2"), "n3": _node("n3", ready=spare_ready)},
        switches={"vs": VirtualSwitch("vs", "lab", TRUNK)},
        volumes={"V1": ClusterSharedVolume("V1", "lab", 100, 100, status=VolumeStatus("n1"))},
        vms={vm.name: vm for vm in vms},
    )


# --- action builders ---------------------------------------------------------------------------

TARGET_KIND = {
    "node": "Node",
    "vm": "VirtualMachine",
    "volume": "ClusterSharedVolume",
}


def act(kind: str, cluster: str = "lab", **params: Any) -> Action:
    """An action of type ``kind``, targeting the object its parameters name."""
    target = f"Cluster/{cluster}"
    for key, object_kind in TARGET_KIND.items():
        if key in params and not (kind == "test_live_migration" and key == "node"):
            target = f"{object_kind}/{params[key]}"
            break
    return Action(
        id=f"{kind}-{target}",
        type=kind,  # type: ignore[arg-type]
        target=target,
        cluster=cluster,
        params=params,
        disruption=DISRUPTION[kind],
    )


def migrate(vm: str, destination: str, method: str = "live", cluster: str = "lab") -> Action:
    return act("migrate_vm", cluster, vm=vm, destination=destination, method=method)


def add_disk(vm: str, disk: Disk, cluster: str = "lab") -> Action:
    return act("add_disk", cluster, vm=vm, disk=disk_to_params(disk))


def trunk(
    node: str, switch: str, vlans: frozenset[int], native: int | None = 1, **kw: Any
) -> Action:
    return act(
        "set_vlan_trunk",
        kw.get("cluster", "lab"),
        node=node,
        switch=switch,
        allowed_vlans=format_vlan_list(vlans),
        native_vlan=native,
    )


def match_switch(node: str, switch: str, cfg: SwitchConfig, cluster: str = "lab") -> Action:
    return act("match_vswitch", cluster, node=node, switch=switch, config=switch_to_params(cfg))


def new_vm(name: str = "C", memory_mib: int = 1024, vlan: int = 10, *disks: Disk) -> VirtualMachine:
    """A VM for create_vm in the lab: VLAN 10 on ``vs``, a new 20 GiB fixed os disk on V1."""
    return _vm(name, "", memory_mib, vlan, *(disks or (os_disk(),)))


def create(vm: VirtualMachine, node: str, cluster: str = "lab") -> Action:
    return act("create_vm", cluster, **vm_to_params(vm, node))


# --- Hypothesis: random action sequences -------------------------------------------------------

QUORUM_MODES = (
    "recommended",
    "node_majority",
    "node_and_disk_majority",
    "node_and_file_share_majority",
    "disk_only",
    "cloud_witness",
)
WITNESSES: tuple[Mapping[str, str] | None, ...] = (
    None,
    {"disk": "Witness"},
    {"file_share": r"\\fs\witness"},
    {"cloud_account": "acct"},
)


@st.composite
def actions(draw: st.DrawFn, estate: Estate, cluster: str) -> Action:
    """One valid-looking action on the objects of ``estate``: names exist, values may not fit."""
    vms = sorted(estate.vms)
    nodes = sorted(estate.nodes)
    volumes = sorted(estate.volumes)
    switches = sorted(estate.switches)
    size = st.integers(min_value=1, max_value=4000)
    kind = draw(
        st.sampled_from(
            (
                "migrate_vm",
                "stop_vm",
                "start_vm",
                "extend_lun",
                "extend_volume",
                "extend_vhd",
                "add_disk",
                "detach_disk",
                "convert_disk",
                "set_vm",
                "drain_node",
                "resume_node",
                "set_vlan_trunk",
                "match_vswitch",
                "update_quorum",
                "create_vm",
                "remove_vm",
                "evict_node",
                "add_vm_nic",
                "remove_vm_nic",
                "set_vm_nic",
                "move_disk",
                "set_vm_memory",
                "create_csv",
                "rename_csv",
                "remove_csv",
                "set_scsi_controllers",
                "set_cluster_addresses",
                "create_cluster",
                "move_vm_storage",
            )
        )
    )
    lifecycle = _lifecycle_action(draw, kind, estate, cluster)
    if lifecycle is not None:
        return lifecycle
    if kind == "migrate_vm":
        method = draw(st.sampled_from(("live", "quick", "offline")))
        return migrate(draw(st.sampled_from(vms)), draw(st.sampled_from(nodes)), method, cluster)
    if kind in ("stop_vm", "start_vm"):
        return act(kind, cluster, vm=draw(st.sampled_from(vms)))
    if kind == "extend_lun":
        return act(kind, cluster, volume=draw(st.sampled_from(volumes)), lun_size_gib=draw(size))
    if kind == "extend_volume":
        return act(kind, cluster, volume=draw(st.sampled_from(volumes)), size_gib=draw(size))
    if kind in ("extend_vhd", "detach_disk", "convert_disk"):
        vm = estate.vms[draw(st.sampled_from(vms))]
        disk_name = draw(st.sampled_from([d.name for d in vm.disks] or ["none"]))
        if kind == "extend_vhd":
            return act(kind, cluster, vm=vm.name, disk=disk_name, size_gib=draw(size))
        if kind == "detach_disk":
            return act(kind, cluster, vm=vm.name, disk=disk_name, delete_file=draw(st.booleans()))
        to_type = draw(st.sampled_from(("fixed", "dynamic")))
        return act(kind, cluster, vm=vm.name, disk=disk_name, type=to_type)
    if kind == "add_disk":
        disk = Disk(
            name=draw(st.sampled_from(("new1", "new2", "os", "data"))),
            controller=draw(st.sampled_from(("ide", "scsi"))),
            controller_number=draw(st.integers(min_value=-1, max_value=5)),
            slot=draw(st.integers(min_value=-1, max_value=66)),
            type=draw(st.sampled_from(("fixed", "dynamic"))),
            format=draw(st.sampled_from(("vhd", "vhdx"))),
            size_gib=draw(st.integers(min_value=1, max_value=600)),
            volume=draw(st.sampled_from(volumes)),
        )
        return add_disk(draw(st.sampled_from(vms)), disk, cluster)
    if kind == "set_vm":
        return act(
            kind,
            cluster,
            vm=draw(st.sampled_from(vms)),
            memory_mib=draw(st.integers(min_value=256, max_value=65536)),
            vcpus=draw(st.integers(min_value=1, max_value=8)),
        )
    if kind in ("drain_node", "resume_node"):
        return act(kind, cluster, node=draw(st.sampled_from(nodes)))
    if kind in ("set_vlan_trunk", "match_vswitch"):
        node = draw(st.sampled_from(nodes))
        switch = draw(st.sampled_from(switches))
        vlans = frozenset(draw(st.sets(st.sampled_from((10, 20, 30, 31, 40, 41)), min_size=1)))
        native = draw(st.sampled_from((None, 1, 10)))
        if kind == "set_vlan_trunk":
            return trunk(node, switch, vlans, native, cluster=cluster)
        base = estate.switches[switch].config
        cfg = replace(base, allowed_vlans=vlans, native_vlan=native)
        return match_switch(node, switch, cfg, cluster)
    witness = draw(st.sampled_from(WITNESSES))
    return act(kind, cluster, mode=draw(st.sampled_from(QUORUM_MODES)), witness=witness)


def _lifecycle_action(draw: st.DrawFn, kind: str, estate: Estate, cluster: str) -> Action | None:
    """create, remove, evict, adapters and disk moves, on names that exist (or one new VM)."""
    vms = sorted(estate.vms)
    nodes = sorted(estate.nodes)
    if kind == "create_vm":
        vlan = draw(st.sampled_from((10, 20, 30)))
        size = draw(st.integers(min_value=1, max_value=80))
        vm = new_vm(draw(st.sampled_from(("C", "D", "A"))), 1024, vlan, os_disk(size))
        return create(vm, draw(st.sampled_from(nodes)), cluster)
    if kind == "remove_vm":
        return act(kind, cluster, vm=draw(st.sampled_from(vms)), delete_disks=draw(st.booleans()))
    if kind == "evict_node":
        return act(kind, cluster, node=draw(st.sampled_from(nodes)))
    if kind in ("add_vm_nic", "set_vm_nic"):
        nic = {
            "name": draw(st.sampled_from(("nic1", "nic2"))),
            "switch": draw(st.sampled_from(("vs", "other"))),
            "vlan": draw(st.sampled_from((None, 10, 20, 30))),
        }
        return act(kind, cluster, vm=draw(st.sampled_from(vms)), nic=nic)
    if kind == "remove_vm_nic":
        return act(kind, cluster, vm=draw(st.sampled_from(vms)), nic="nic1")
    if kind == "move_disk":
        return act(
            kind,
            cluster,
            vm=draw(st.sampled_from(vms)),
            disk=draw(st.sampled_from(("os", "data"))),
            controller=draw(st.sampled_from(("ide", "scsi"))),
            controller_number=draw(st.integers(min_value=0, max_value=4)),
            slot=draw(st.integers(min_value=0, max_value=2)),
        )
    if kind == "create_csv":
        return act(
            kind,
            cluster,
            volume=draw(st.sampled_from(("V2", "V1"))),
            lun=draw(st.sampled_from(("LUN7", "LUN8"))),
            size_gib=draw(st.integers(min_value=1, max_value=300)),
        )
    if kind in ("rename_csv", "remove_csv"):
        volume = draw(st.sampled_from(sorted(estate.volumes) or ["none"]))
        lun = estate.volumes[volume].lun if volume in estate.volumes else None
        if kind == "remove_csv":
            return act(kind, cluster, volume=volume, lun=lun)
        return act(
            kind, cluster, volume=volume, name=draw(st.sampled_from(("Gold", "V1"))), lun=lun
        )
    if kind == "move_vm_storage":
        return act(
            kind,
            cluster,
            vm=draw(st.sampled_from(vms)),
            disk=draw(st.sampled_from(("os", "data"))),
            volume=draw(st.sampled_from([*sorted(estate.volumes), "V2"])),
        )
    if kind == "set_scsi_controllers":
        count = draw(st.integers(min_value=0, max_value=5))
        return act(kind, cluster, vm=draw(st.sampled_from(vms)), count=count)
    if kind == "set_cluster_addresses":
        addresses = draw(st.lists(st.sampled_from(("10.0.0.5", "10.20.0.9", "bad")), max_size=2))
        return act(kind, cluster, addresses=sorted(set(addresses)))
    if kind == "create_cluster":
        members = draw(st.lists(st.sampled_from(nodes), min_size=1, max_size=3, unique=True))
        return act(
            kind,
            draw(st.sampled_from((cluster, "edge"))),
            platform="2016",
            nodes=members,
            addresses=[draw(st.sampled_from(("10.20.0.10", "192.168.1.1")))],
            networks=[{"name": "M", "roles": ["management"], "subnet": "10.20.0.0/24"}],
        )
    if kind == "set_vm_memory":
        bound = st.sampled_from((512, 1024, 2048, 4096, 8192))
        dynamic = draw(
            st.one_of(
                st.none(),
                st.fixed_dictionaries(
                    {"minimum_mib": bound, "maximum_mib": bound, "buffer_pct": st.just(20)}
                ),
            )
        )
        return act(
            kind,
            cluster,
            vm=draw(st.sampled_from(vms)),
            memory_mib=draw(st.sampled_from((512, 2048, 4096))),
            dynamic=dynamic,
        )
    return None


def with_volume(world: Estate, name: str = "V2", gib: int = 100, *nodes: str) -> Estate:
    """``world`` with a CSV ``name`` of ``gib`` in cluster lab, its LUN seen by ``nodes``
    (default: every member)."""
    world = world.with_record(ClusterSharedVolume(name, "lab", gib, gib, status=VolumeStatus("n2")))
    for node_name in nodes or world.clusters["lab"].nodes:
        node = world.nodes[node_name]
        luns = node.status.luns | {name}
        world = world.with_record(replace(node, status=replace(node.status, luns=luns)))
    return world


def with_free_lun(world: Estate, lun: str = "LUN7", gib: int = 200, *nodes: str) -> Estate:
    """``world`` with ``lun`` presented to ``nodes`` (default: every member) as a free LUN."""
    for cluster in world.clusters.values():
        for name in nodes or cluster.nodes:
            node = world.nodes[name]
            free = frozen_map({**node.status.free_luns, lun: gib})
            world = world.with_record(replace(node, status=replace(node.status, free_luns=free)))
    return world
