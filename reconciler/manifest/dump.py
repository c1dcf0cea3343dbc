"""Records written back as manifest documents: for ``observe`` (adopting an estate) and tests.

With ``status=True`` the observed-only facts are written too, so the output is a world file.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import yaml

from reconciler.manifest.schema import API_VERSION
from reconciler.model.quorum import effective_quorum
from reconciler.model.records import (
    Cluster,
    ClusterSharedVolume,
    Estate,
    Node,
    Quorum,
    Record,
    SwitchConfig,
    VirtualMachine,
    VirtualSwitch,
    VmNic,
    kind_of,
)
from reconciler.model.vlans import format_vlan_list

try:
    _Dumper: type[Any] = yaml.CSafeDumper
except AttributeError:  # PyYAML without libyaml
    _Dumper = yaml.SafeDumper


def _switch_spec(cfg: SwitchConfig) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": cfg.type}
    if cfg.uplink_nic:
        spec["uplink_nic"] = cfg.uplink_nic
    if cfg.team_nics:
        spec["embedded_team"] = list(cfg.team_nics)
    spec["management_os"] = cfg.management_os
    if cfg.allowed_vlans or cfg.native_vlan is not None:
        # An empty allowed list is written as [] (the schema's text form needs an id).
        allowed = format_vlan_list(cfg.allowed_vlans) if cfg.allowed_vlans else []
        trunk: dict[str, Any] = {"allowed": allowed}
        if cfg.native_vlan is not None:
            trunk["native_vlan"] = cfg.native_vlan
        spec["vlan_trunk"] = trunk
    return spec


def _cluster(c: Cluster, status: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    quorum: dict[str, Any] = {"mode": c.quorum.mode}
    witness = {
        k: v
        for k, v in (
            ("disk", c.quorum.witness.disk),
            ("file_share", c.quorum.witness.file_share),
            ("cloud_account", c.quorum.witness.cloud_account),
        )
        if v
    }
    if witness:
        quorum["witness"] = witness
    spec: dict[str, Any] = {"platform": c.platform, "nodes": list(c.nodes), "quorum": quorum}
    if c.addresses:
        spec["addresses"] = list(c.addresses)
    if c.networks:
        spec["networks"] = [
            {
                "name": n.name,
                "roles": list(n.roles),
                **({"subnet": n.subnet} if n.subnet else {}),
                "bandwidth_mbps": n.bandwidth_mbps,
            }
            for n in c.networks
        ]
    lm = {
        k: v
        for k, v in (
            ("network", c.live_migration.network),
            ("max_parallel_migrations", c.live_migration.max_parallel_migrations),
        )
        if v is not None
    }
    if lm:
        spec["live_migration"] = lm
    spec["placement"] = {
        "failover_reserve_nodes": c.placement.failover_reserve_nodes,
        "reserve_policy": c.placement.reserve_policy,
    }
    memory = {
        k: v
        for k, v in (
            ("parent_reserve_mib", c.memory.parent_reserve_mib),
            ("vm_overhead_mib", c.memory.vm_overhead_mib),
        )
        if v is not None
    }
    if memory:
        spec["memory"] = memory
    if c.test_vm:
        spec["test_vm"] = c.test_vm
    if c.rolling_update is not None:
        ru = c.rolling_update
        rolling: dict[str, Any] = {
            "id": ru.id,
            "nodes": "all" if ru.nodes is None else list(ru.nodes),
            "max_unavailable": ru.max_unavailable,
        }
        if ru.patch_level is not None:
            rolling["patch_level"] = ru.patch_level
        if ru.hook.command:
            rolling["hook"] = {
                "command": list(ru.hook.command),
                "timeout_seconds": ru.hook.timeout_seconds,
            }
        rolling["test_migration"] = ru.test_migration
        spec["rolling_update"] = rolling
    if c.balance is not None:
        spec["balance"] = {"max_memory_spread_pct": c.balance.max_memory_spread_pct}
    if c.maintenance_windows:
        spec["maintenance_windows"] = [
            {
                "days": list(w.days),
                "start": w.start,
                "duration_minutes": w.duration_minutes,
                "time_zone": w.time_zone,
            }
            for w in c.maintenance_windows
        ]
    if c.prune.enabled or c.prune.delete_disks:
        spec["prune"] = {"enabled": c.prune.enabled, "delete_disks": c.prune.delete_disks}
    st: dict[str, Any] = {}
    if status and c.status.monitoring_maintenance:
        st["monitoring_maintenance"] = True
    if status and c.status.pending_nodes:
        st["pending_nodes"] = sorted(c.status.pending_nodes)
    if status and c.status.rolling_update_done:
        st["rolling_update_done"] = c.status.rolling_update_done
    if status and c.status.rolling_update_in_progress:
        st["rolling_update_in_progress"] = c.status.rolling_update_in_progress
    if status and c.status.updated_nodes:
        st["updated_nodes"] = sorted(c.status.updated_nodes)
    return spec, st


def _node(n: Node, estate: Estate, status: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    hw = n.hardware
    spec: dict[str, Any] = {
        "cluster": n.cluster,
        "hardware": {
            "model": hw.model,
            "cpu": hw.cpu,
            "memory_mib": hw.memory_mib,
            "firmware": hw.firmware,
            "driver_set": hw.driver_set,
            "patch_level": hw.patch_level,
            "slat": hw.slat,
        },
    }
    if n.nics:
        spec["nics"] = [
            {
                "name": nic.name,
                "roles": list(nic.roles),
                **({"network": nic.network} if nic.network else {}),
                "speed_mbps": nic.speed_mbps,
                "offloads": {
                    "vmq": nic.offloads.vmq,
                    "jumbo_frames": nic.offloads.jumbo_frames,
                    "tcp_chimney": nic.offloads.tcp_chimney,
                },
            }
            for nic in n.nics
        ]
    spec["maintenance"] = n.maintenance
    st: dict[str, Any] = {}
    if status:
        st["state"] = n.status.state
        st["luns"] = sorted(n.status.luns)
        if not n.status.roles_installed:
            st["roles_installed"] = False
        if n.status.free_luns:
            st["free_luns"] = dict(sorted(n.status.free_luns.items()))
        if n.status.networks_down:
            st["networks_down"] = sorted(n.status.networks_down)
    return spec, st


def _switch(
    s: VirtualSwitch, estate: Estate, status: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    spec = {"cluster": s.cluster, **_switch_spec(s.config)}
    st: dict[str, Any] = {}
    if status:
        missing: list[str] = []
        differs: dict[str, Any] = {}
        for node in estate.nodes_of(s.cluster):
            host = node.status.switches.get(s.name)
            if host is None:
                missing.append(node.name)
            elif host != s.config:
                differs[node.name] = _switch_spec(host)
        if missing:
            st["missing_on"] = missing
        if differs:
            st["differs_on"] = differs
    return spec, st


def _volume(v: ClusterSharedVolume, status: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    spec: dict[str, Any] = {
        "cluster": v.cluster,
        "lun_size_gib": v.lun_size_gib,
        "size_gib": v.size_gib,
    }
    if v.lun is not None:
        spec["lun"] = v.lun
    st: dict[str, Any] = {}
    if status:
        if v.status.coordinator:
            st["coordinator"] = v.status.coordinator
        if v.status.other_used_gib:
            st["other_used_gib"] = v.status.other_used_gib
        if v.status.files:
            st["files"] = dict(sorted(v.status.files.items()))
        if v.status.redirected:
            st["redirected"] = dict(sorted(v.status.redirected.items()))
    return spec, st


def _vm_nic(n: VmNic) -> dict[str, Any]:
    out: dict[str, Any] = {"name": n.name, "switch": n.switch}
    if n.vlan:
        out["vlan"] = n.vlan
    if n.trunk:
        trunk: dict[str, Any] = {"allowed": format_vlan_list(n.trunk)}
        if n.native_vlan is not None:
            trunk["native_vlan"] = n.native_vlan
        out["trunk"] = trunk
    if n.mac:
        out["mac"] = "-".join(n.mac[i : i + 2] for i in range(0, 12, 2))
    return out


def _vm(vm: VirtualMachine, status: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    spec: dict[str, Any] = {"cluster": vm.cluster}
    if vm.node and not status:
        spec["node"] = vm.node
    spec.update(
        {
            "generation": vm.generation,
            "memory_mib": vm.memory_mib,
            "vcpus": vm.vcpus,
            "power_state": "off" if vm.power_state == "off" else "running",
            "highly_available": vm.highly_available,
            "migration_policy": vm.migration_policy,
        }
    )
    if vm.anti_affinity_group:
        spec["anti_affinity_group"] = vm.anti_affinity_group
        spec["anti_affinity_mode"] = vm.anti_affinity_mode
    spec["allow_downtime"] = vm.allow_downtime
    if vm.nics:
        spec["nics"] = [_vm_nic(n) for n in vm.nics]
    if vm.preferred_owners is not None:
        spec["preferred_owners"] = sorted(vm.preferred_owners)
    if vm.automatic_start_action is not None:
        spec["automatic_start_action"] = vm.automatic_start_action
    if vm.automatic_stop_action is not None:
        spec["automatic_stop_action"] = vm.automatic_stop_action
    if vm.scsi_controllers is not None:
        spec["scsi_controllers"] = vm.scsi_controllers
    dynamic = vm.memory_model()
    if dynamic is not None:  # static memory is left out (not managed on adoption)
        spec["dynamic_memory"] = {
            "minimum_mib": dynamic.minimum_mib,
            "maximum_mib": dynamic.maximum_mib,
            "buffer_pct": dynamic.buffer_pct,
        }
    if vm.disks:
        spec["disks"] = [
            {
                "name": d.name,
                "controller": d.controller,
                "controller_number": d.controller_number,
                "slot": d.slot,
                "type": d.type,
                "format": d.format,
                "size_gib": d.size_gib,
                "volume": d.volume,
                **({"boot": True} if d.boot else {}),
                **({"parent": d.parent} if d.parent else {}),
                **({"file": d.file} if d.file else {}),
                **({"allow_delete": True} if d.allow_delete else {}),
            }
            for d in vm.disks
        ]
    st: dict[str, Any] = {}
    if status:
        if vm.node:
            st["node"] = vm.node
        st["power_state"] = vm.power_state
        st["dirty_rate_mib_s"] = vm.status.dirty_rate_mib_s
        if vm.status.failed:
            st["failed"] = True
        sizes = {d.name: d.file_size_gib for d in vm.disks if d.file_size_gib is not None}
        if sizes:
            st["disk_file_size_gib"] = sizes
    return spec, st


def adoptable(observed: Estate) -> Estate:
    """An observed estate as manifests to adopt it: what is chosen, not what happens to be.

    VMs are not pinned to the node they run on (placement stays free: a pin would make the
    next drain or failover look like drift), and a quorum that is what ``recommended``
    gives for the member count is written as ``recommended`` (it follows membership).
    """
    estate = observed
    for vm in observed.vms.values():
        if vm.node is not None:
            estate = estate.with_record(replace(vm, node=None))
    for cluster in observed.clusters.values():
        recommended = Quorum("recommended", cluster.quorum.witness)
        if effective_quorum(recommended, len(cluster.nodes)) == cluster.quorum:
            estate = estate.with_record(replace(cluster, quorum=recommended))
    return estate


def to_document(record: Record, estate: Estate, status: bool = False) -> dict[str, Any]:
    if isinstance(record, Cluster):
        spec, st = _cluster(record, status)
    elif isinstance(record, Node):
        spec, st = _node(record, estate, status)
    elif isinstance(record, VirtualSwitch):
        spec, st = _switch(record, estate, status)
    elif isinstance(record, ClusterSharedVolume):
        spec, st = _volume(record, status)
    else:
        spec, st = _vm(record, status)
    metadata: dict[str, Any] = {"name": record.name}
    if record.labels:
        metadata["labels"] = dict(sorted(record.labels.items()))
    doc: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": kind_of(record),
        "metadata": metadata,
        "spec": spec,
    }
    if st:
        doc["status"] = st
    return doc


def to_documents(estate: Estate, status: bool = False) -> list[dict[str, Any]]:
    return [to_document(r, estate, status) for r in estate.records()]


def to_yaml(estate: Estate, status: bool = False) -> str:
    return yaml.dump_all(
        to_documents(estate, status),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        explicit_start=True,
    )
