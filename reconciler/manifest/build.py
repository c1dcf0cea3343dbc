"""Schema-valid documents turned into model records (desired state, or a world with status).

Defaults are applied here, once; VLAN lists are normalised to sets of ids.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, cast

from reconciler.model.records import (
    Balance,
    Cluster,
    ClusterNetwork,
    ClusterSharedVolume,
    ClusterStatus,
    Disk,
    DynamicMemory,
    Hardware,
    Hook,
    LiveMigrationSettings,
    MaintenanceWindow,
    MemoryPolicy,
    Node,
    NodeNic,
    NodeStatus,
    Offloads,
    PlacementPolicy,
    Prune,
    Quorum,
    Record,
    RollingUpdate,
    SwitchConfig,
    VirtualMachine,
    VirtualSwitch,
    VmNic,
    VmStatus,
    VolumeStatus,
    Witness,
    frozen_map,
)
from reconciler.model.rules import disk_from_params
from reconciler.model.vlans import parse_vlan_list

Data = dict[str, Any]


# Labels and left-out fields repeat over an estate's records: each distinct value is built
# once and shared (they are immutable). Bounded, for a process that loads many estates.
_SHARED: dict[Any, Any] = {}
_SHARED_MAX = 10_000


def _shared(key: Any, make: Callable[[], Any]) -> Any:
    found = _SHARED.get(key)
    if found is None:
        if len(_SHARED) >= _SHARED_MAX:
            _SHARED.clear()
        found = _SHARED[key] = make()
    return found


def _labels(data: Data) -> Any:
    labels = data["metadata"].get("labels")
    if not labels:
        return frozen_map()
    items = tuple((str(k), str(v)) for k, v in labels.items())
    return _shared(("labels", items), lambda: frozen_map(dict(items)))


def _unset(spec: Data, *paths: str) -> frozenset[str]:
    """The dotted spec paths among ``paths`` that the document leaves out."""
    out: list[str] = []
    for path in paths:
        node: Any = spec
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                out.append(path)
                break
            node = node[part]
    key = ("unset", *out)
    return cast(frozenset[str], _shared(key, lambda: frozenset(out)))


CLUSTER_DEFAULTED = (
    "quorum.mode",
    "live_migration.max_parallel_migrations",
    "placement.failover_reserve_nodes",
    "placement.reserve_policy",
)
NODE_DEFAULTED = ("maintenance",)
SWITCH_DEFAULTED = ("type", "management_os", "vlan_trunk.native_vlan")
VM_DEFAULTED = (
    "power_state",
    "node",
    "generation",
    "highly_available",
    "migration_policy",
    "anti_affinity_mode",
    "allow_downtime",
)


def switch_config(spec: Data) -> SwitchConfig:
    trunk = spec.get("vlan_trunk") or {}
    allowed = parse_vlan_list(trunk["allowed"]) if "allowed" in trunk else frozenset()
    return SwitchConfig(
        type=spec.get("type", "external"),
        uplink_nic=spec.get("uplink_nic"),
        management_os=bool(spec.get("management_os", False)),
        allowed_vlans=allowed,
        native_vlan=trunk.get("native_vlan"),
        team_nics=tuple(spec.get("embedded_team") or ()),
    )


def _rolling_update(raw: Data | None) -> RollingUpdate | None:
    if not raw:
        return None
    nodes = raw.get("nodes", "all")
    hook = raw.get("hook") or {}
    return RollingUpdate(
        id=str(raw["id"]),
        nodes=None if nodes == "all" else tuple(nodes),
        max_unavailable=raw.get("max_unavailable", 1),
        patch_level=raw.get("patch_level"),
        hook=Hook(
            command=tuple(hook.get("command") or ()),
            timeout_seconds=hook.get("timeout_seconds", 3600),
        ),
        test_migration=raw.get("test_migration", True),
    )


def build_cluster(data: Data) -> Cluster:
    spec = data["spec"]
    status = data.get("status") or {}
    quorum = spec.get("quorum") or {}
    witness = quorum.get("witness") or {}
    lm = spec.get("live_migration") or {}
    placement = spec.get("placement") or {}
    memory = spec.get("memory") or {}
    return Cluster(
        name=data["metadata"]["name"],
        platform=str(spec["platform"]),  # type: ignore[arg-type]
        nodes=tuple(spec["nodes"]),
        quorum=Quorum(
            mode=quorum.get("mode", "recommended"),
            witness=Witness(
                disk=witness.get("disk"),
                file_share=witness.get("file_share"),
                cloud_account=witness.get("cloud_account"),
            ),
        ),
        networks=tuple(
            ClusterNetwork(
                name=n["name"],
                roles=tuple(n["roles"]),
                bandwidth_mbps=n.get("bandwidth_mbps", 1000),
                subnet=n.get("subnet"),
            )
            for n in spec.get("networks") or ()
        ),
        live_migration=LiveMigrationSettings(
            network=lm.get("network"), max_parallel_migrations=lm.get("max_parallel_migrations")
        ),
        placement=PlacementPolicy(
            failover_reserve_nodes=placement.get("failover_reserve_nodes", 1),
            reserve_policy=placement.get("reserve_policy", "warn"),
        ),
        memory=MemoryPolicy(
            parent_reserve_mib=memory.get("parent_reserve_mib"),
            vm_overhead_mib=memory.get("vm_overhead_mib"),
        ),
        test_vm=spec.get("test_vm"),
        rolling_update=_rolling_update(spec.get("rolling_update")),
        balance=Balance(**spec["balance"]) if spec.get("balance") else None,
        maintenance_windows=tuple(
            MaintenanceWindow(
                days=tuple(w["days"]),
                start=w["start"],
                duration_minutes=w["duration_minutes"],
                time_zone=w.get("time_zone", "UTC"),
            )
            for w in spec.get("maintenance_windows") or ()
        ),
        prune=Prune(
            enabled=bool((spec.get("prune") or {}).get("enabled", False)),
            delete_disks=bool((spec.get("prune") or {}).get("delete_disks", False)),
        ),
        addresses=tuple(spec.get("addresses") or ()),
        labels=_labels(data),
        status=ClusterStatus(
            monitoring_maintenance=bool(status.get("monitoring_maintenance", False)),
            pending_nodes=frozenset(status.get("pending_nodes") or ()),
            rolling_update_done=status.get("rolling_update_done"),
            rolling_update_in_progress=status.get("rolling_update_in_progress"),
            updated_nodes=frozenset(status.get("updated_nodes") or ()),
        ),
        unset=_unset(spec, *CLUSTER_DEFAULTED),
    )


def build_node(data: Data) -> Node:
    spec = data["spec"]
    hw = spec["hardware"]
    status = data.get("status") or {}
    return Node(
        name=data["metadata"]["name"],
        cluster=spec["cluster"],
        hardware=Hardware(
            model=hw["model"],
            cpu=hw["cpu"],
            memory_mib=hw["memory_mib"],
            firmware=str(hw["firmware"]),
            driver_set=str(hw["driver_set"]),
            patch_level=str(hw["patch_level"]),
            slat=hw.get("slat", True),
        ),
        nics=tuple(
            NodeNic(
                name=n["name"],
                roles=tuple(n["roles"]),
                network=n.get("network"),
                speed_mbps=n.get("speed_mbps", 1000),
                offloads=Offloads(**(n.get("offloads") or {})),
            )
            for n in spec.get("nics") or ()
        ),
        maintenance=bool(spec.get("maintenance", False)),
        labels=_labels(data),
        unset=_unset(spec, *NODE_DEFAULTED),
        status=NodeStatus(
            state=status.get("state", "up"),
            luns=frozenset(status["luns"]) if "luns" in status else frozenset(),
            roles_installed=bool(status.get("roles_installed", True)),
            free_luns=frozen_map(
                {str(k): int(v) for k, v in (status.get("free_luns") or {}).items()}
            ),
            networks_down=frozenset(status.get("networks_down") or ()),
        ),
    )


def build_switch(data: Data) -> VirtualSwitch:
    spec = data["spec"]
    return VirtualSwitch(
        name=data["metadata"]["name"],
        cluster=spec["cluster"],
        config=switch_config(spec),
        labels=_labels(data),
        unset=_unset(spec, *SWITCH_DEFAULTED),
    )


def build_volume(data: Data) -> ClusterSharedVolume:
    spec = data["spec"]
    status = data.get("status") or {}
    return ClusterSharedVolume(
        name=data["metadata"]["name"],
        cluster=spec["cluster"],
        lun_size_gib=spec["lun_size_gib"],
        size_gib=spec["size_gib"],
        lun=spec.get("lun"),
        labels=_labels(data),
        status=VolumeStatus(
            coordinator=status.get("coordinator"),
            other_used_gib=float(status.get("other_used_gib", 0.0)),
            files=frozen_map({str(k): float(v) for k, v in (status.get("files") or {}).items()}),
            redirected=frozen_map(status.get("redirected") or {}),
        ),
    )


def _vm_nic(n: Data) -> VmNic:
    trunk = n.get("trunk") or {}
    mac = n.get("mac")
    return VmNic(
        name=n["name"],
        switch=n["switch"],
        vlan=n.get("vlan"),
        trunk=parse_vlan_list(trunk["allowed"]) if "allowed" in trunk else frozenset(),
        native_vlan=trunk.get("native_vlan"),
        # One spelling of a MAC address: 12 upper-case hex digits, no separators.
        mac="".join(c for c in str(mac) if c not in "-:").upper() if mac else None,
    )


def _disk(params: Data, file_size_gib: float | None) -> Disk:
    disk = disk_from_params(params)
    return disk if file_size_gib is None else replace(disk, file_size_gib=file_size_gib)


def _dynamic_memory(spec: Data) -> DynamicMemory | None:
    """None when left out (not managed); a bound left out is the startup memory (the schema
    asks for both, so that only happens in a document already reported)."""
    raw = spec.get("dynamic_memory")
    if raw is None:
        return None
    if not raw.get("enabled", True):
        return DynamicMemory(enabled=False)
    return DynamicMemory(
        minimum_mib=raw.get("minimum_mib", spec["memory_mib"]),
        maximum_mib=raw.get("maximum_mib", spec["memory_mib"]),
        buffer_pct=raw.get("buffer_pct", 20),
    )


def build_vm(data: Data) -> VirtualMachine:
    spec = data["spec"]
    status = data.get("status") or {}
    file_sizes: dict[str, float] = status.get("disk_file_size_gib") or {}
    generation = spec.get("generation", 2)
    return VirtualMachine(
        name=data["metadata"]["name"],
        cluster=spec["cluster"],
        memory_mib=spec["memory_mib"],
        vcpus=spec["vcpus"],
        generation=generation,
        node=status.get("node", spec.get("node")),
        power_state=status.get("power_state", spec.get("power_state", "running")),
        highly_available=spec.get("highly_available", True),
        migration_policy=spec.get("migration_policy", "live"),
        anti_affinity_group=spec.get("anti_affinity_group"),
        anti_affinity_mode=spec.get("anti_affinity_mode", "soft"),
        allow_downtime=spec.get("allow_downtime", False),
        nics=tuple(_vm_nic(n) for n in spec.get("nics") or ()),
        preferred_owners=(
            frozenset(spec["preferred_owners"]) if "preferred_owners" in spec else None
        ),
        automatic_start_action=spec.get("automatic_start_action"),
        automatic_stop_action=spec.get("automatic_stop_action"),
        dynamic_memory=_dynamic_memory(spec),
        scsi_controllers=spec.get("scsi_controllers"),
        disks=tuple(
            _disk(d, file_sizes.get(d["name"]) if file_sizes else None)
            for d in spec.get("disks") or ()
        ),
        labels=_labels(data),
        status=VmStatus(
            dirty_rate_mib_s=float(status.get("dirty_rate_mib_s", 8.0)),
            failed=bool(status.get("failed", False)),
        ),
        unset=_unset(spec, *VM_DEFAULTED),
    )


BUILDERS = {
    "Cluster": build_cluster,
    "Node": build_node,
    "VirtualSwitch": build_switch,
    "ClusterSharedVolume": build_volume,
    "VirtualMachine": build_vm,
}


def build_record(data: Data) -> Record:
    return cast(Record, BUILDERS[data["kind"]](data))
