"""Field-level differences between desired and observed objects, keyed by kind and name.

Only fields the manifests manage are compared, after normalisation (VLAN sets, resolved
quorum); observed-only facts never count as drift. Each object is diffed on its own.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from reconciler.engine.unset import adopt_unmanaged
from reconciler.model.compare import cluster_role, same_nics
from reconciler.model.quorum import effective_quorum
from reconciler.model.records import (
    Cluster,
    ClusterNetwork,
    ClusterSharedVolume,
    Disk,
    Estate,
    Node,
    VirtualMachine,
    VirtualSwitch,
)
from reconciler.model.rules_adapters import nic_text
from reconciler.model.rules_memory import dynamic_text
from reconciler.model.vlans import format_vlan_list

Op = Literal["add", "change", "remove"]


@dataclass(frozen=True, slots=True)
class FieldChange:
    path: str
    before: Any
    after: Any


@dataclass(frozen=True, slots=True)
class ObjectDiff:
    kind: str
    name: str
    op: Op
    changes: tuple[FieldChange, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"


def _quorum_text(mode: str, witness: Any) -> str:
    kind = witness.kind
    return mode if kind is None else f"{mode} ({kind})"


def match_network(want: ClusterNetwork, observed: Cluster) -> ClusterNetwork | None:
    """The world's cluster network a declared one is: by subnet when the manifest gives one
    (Windows makes a cluster network per IP subnet and names it itself), otherwise by name."""
    for net in observed.networks:
        if want.subnet is not None and net.subnet == want.subnet:
            return net
    if want.subnet is None:
        return next((n for n in observed.networks if n.name == want.name), None)
    return None


def network_fields(desired: Cluster, observed: Cluster) -> list[FieldChange]:
    """Name and role of each declared cluster network; a subnet no network has is a change
    too (the planner cannot make one: it comes from the nodes' IP addresses)."""
    out: list[FieldChange] = []
    for i, want in enumerate(desired.networks):
        path = f"spec.networks[{i}]"
        have = match_network(want, observed)
        if have is None:
            same_name = next((n for n in observed.networks if n.name == want.name), None)
            if same_name is not None:
                out.append(FieldChange(f"{path}.subnet", same_name.subnet, want.subnet))
            else:
                where = f"subnet {want.subnet}" if want.subnet else "no subnet given"
                out.append(FieldChange(path, None, f"{want.name} ({where})"))
            continue
        if have.name != want.name:
            out.append(FieldChange(f"{path}.name", have.name, want.name))
        if cluster_role(have.roles) != cluster_role(want.roles):
            out.append(
                FieldChange(f"{path}.roles", cluster_role(have.roles), cluster_role(want.roles))
            )
    return out


def cluster_fields(desired: Cluster, observed: Cluster) -> list[FieldChange]:
    out: list[FieldChange] = []
    if desired.platform != observed.platform:
        out.append(FieldChange("spec.platform", observed.platform, desired.platform))
    if sorted(desired.nodes) != sorted(observed.nodes):
        out.append(FieldChange("spec.nodes", sorted(observed.nodes), sorted(desired.nodes)))
    if desired.addresses and sorted(desired.addresses) != sorted(observed.addresses):
        out.append(
            FieldChange("spec.addresses", sorted(observed.addresses), sorted(desired.addresses))
        )
    want = effective_quorum(desired.quorum, len(desired.nodes))
    if want != observed.quorum:
        out.append(
            FieldChange(
                "spec.quorum",
                _quorum_text(observed.quorum.mode, observed.quorum.witness),
                _quorum_text(want.mode, want.witness),
            )
        )
    out.extend(network_fields(desired, observed))
    return out


def node_fields(desired: Node, observed: Node) -> list[FieldChange]:
    out: list[FieldChange] = []
    if desired.maintenance != observed.maintenance:
        out.append(FieldChange("spec.maintenance", observed.maintenance, desired.maintenance))
    for attr in ("model", "cpu", "firmware", "driver_set", "patch_level", "memory_mib", "slat"):
        a, b = getattr(observed.hardware, attr), getattr(desired.hardware, attr)
        if a != b:
            out.append(FieldChange(f"spec.hardware.{attr}", a, b))
    # Declared NICs by name; a NIC the host has and the manifest leaves out is not managed.
    # Roles, speed and TCP chimney are informational (engine/informational.py).
    have_nics = {n.name: n for n in observed.nics}
    for i, nic in enumerate(desired.nics):
        path = f"spec.nics[{i}]"
        have = have_nics.get(nic.name)
        if have is None:
            out.append(FieldChange(path, None, f"{nic.name} on {nic.network or 'no network'}"))
            continue
        if nic.network is not None and have.network != nic.network:
            out.append(FieldChange(f"{path}.network", have.network, nic.network))
        for attr in ("vmq", "jumbo_frames"):
            a, b = getattr(have.offloads, attr), getattr(nic.offloads, attr)
            if a != b and attr in have.offloads.reported:  # what a host cannot tell, stands
                out.append(FieldChange(f"{path}.offloads.{attr}", a, b))
    return out


def switch_fields(desired: VirtualSwitch, observed_estate: Estate) -> list[FieldChange]:
    """Per-host differences: the switch must be identical on every node of the cluster."""
    out: list[FieldChange] = []
    want = desired.config
    for node in observed_estate.nodes_of(desired.cluster):
        host = node.status.switches.get(desired.name)
        where = f"nodes.{node.name}"
        if host is None:
            out.append(FieldChange(where, "missing", "present"))
            continue
        for attr in ("type", "uplink_nic", "management_os", "native_vlan"):
            a, b = getattr(host, attr), getattr(want, attr)
            if a != b:
                out.append(FieldChange(f"{where}.{attr}", a, b))
        if host.team_nics != want.team_nics:
            out.append(
                FieldChange(f"{where}.embedded_team", list(host.team_nics), list(want.team_nics))
            )
        if host.allowed_vlans != want.allowed_vlans:
            out.append(
                FieldChange(
                    f"{where}.vlan_trunk.allowed",
                    format_vlan_list(host.allowed_vlans),
                    format_vlan_list(want.allowed_vlans),
                )
            )
    return out


def volume_fields(desired: ClusterSharedVolume, observed: ClusterSharedVolume) -> list[FieldChange]:
    out: list[FieldChange] = []
    if desired.lun_size_gib != observed.lun_size_gib:
        out.append(FieldChange("spec.lun_size_gib", observed.lun_size_gib, desired.lun_size_gib))
    if desired.size_gib != observed.size_gib:
        out.append(FieldChange("spec.size_gib", observed.size_gib, desired.size_gib))
    # Compared where the world says which LUN a volume is on; no plan moves a volume.
    if desired.lun is not None and observed.lun is not None and desired.lun != observed.lun:
        out.append(FieldChange("spec.lun", observed.lun, desired.lun))
    return out


def _disk_text(d: Disk) -> str:
    return (
        f"{d.controller} {d.controller_number}:{d.slot} {d.type} {d.format} "
        f"{d.size_gib} GiB on {d.volume}"
    )


def vm_fields(desired: VirtualMachine, observed: VirtualMachine) -> list[FieldChange]:
    out: list[FieldChange] = []
    if desired.node is not None and desired.node != observed.node:
        out.append(FieldChange("spec.node", observed.node, desired.node))
    for attr in ("memory_mib", "vcpus", "generation", "highly_available"):
        a, b = getattr(observed, attr), getattr(desired, attr)
        if a != b:
            out.append(FieldChange(f"spec.{attr}", a, b))
    if desired.power_state != observed.power_state:
        out.append(FieldChange("spec.power_state", observed.power_state, desired.power_state))
    if desired.dynamic_memory is not None and (desired.memory_model() != observed.memory_model()):
        out.append(
            FieldChange(
                "spec.dynamic_memory",
                dynamic_text(observed.memory_model()),
                dynamic_text(desired.memory_model()),
            )
        )
    if desired.scsi_controllers is not None and (desired.scsi_controllers != observed.scsi_count()):
        out.append(
            FieldChange("spec.scsi_controllers", observed.scsi_count(), desired.scsi_controllers)
        )
    have = {d.name: d for d in observed.disks}
    for i, disk in enumerate(desired.disks):
        current = have.pop(disk.name, None)
        path = f"spec.disks[{i}]"
        if current is None:
            out.append(FieldChange(path, None, _disk_text(disk)))
            continue
        for attr in (
            "controller",
            "controller_number",
            "slot",
            "type",
            "format",
            "size_gib",
            "volume",
        ):
            a, b = getattr(current, attr), getattr(disk, attr)
            if a != b:
                out.append(FieldChange(f"{path}.{attr}", a, b))
        # Left out, the parent and the file are not managed: the disk as it is stands.
        if disk.parent is not None and disk.parent != current.parent:
            out.append(FieldChange(f"{path}.parent", current.parent, disk.parent))
        if disk.file is not None and disk.file_path(desired.name) != current.file_path(
            observed.name
        ):
            out.append(
                FieldChange(
                    f"{path}.file", current.file_path(observed.name), disk.file_path(desired.name)
                )
            )
    for name, disk in sorted(have.items()):
        out.append(FieldChange(f"spec.disks[{name}]", _disk_text(disk), None))
    if desired.preferred_owners is not None and desired.preferred_owners != (
        observed.preferred_owners
    ):
        before = observed.preferred_owners
        out.append(
            FieldChange(
                "spec.preferred_owners",
                sorted(before) if before is not None else None,
                sorted(desired.preferred_owners),
            )
        )
    for attr in ("automatic_start_action", "automatic_stop_action"):
        want = getattr(desired, attr)
        if want is not None and want != getattr(observed, attr):
            out.append(FieldChange(f"spec.{attr}", getattr(observed, attr), want))
    if not same_nics(observed.nics, desired.nics):
        out.append(
            FieldChange(
                "spec.nics",
                [nic_text(n) for n in sorted(observed.nics, key=lambda n: n.name)],
                [nic_text(n) for n in sorted(desired.nics, key=lambda n: n.name)],
            )
        )
    return out


def diff_estates(
    desired: Estate, observed: Estate, vms: Collection[str] | None = None
) -> list[ObjectDiff]:
    """Every desired object that is missing or differs, in a stable order.

    A field the manifests leave out is not managed (engine/unset.py): it never differs.
    ``vms``: compare only these VMs (the caller knows the others cannot differ); every
    object of the other kinds is compared.
    """
    desired = adopt_unmanaged(desired, observed)
    out: list[ObjectDiff] = []
    for name, c in sorted(desired.clusters.items()):
        o = observed.clusters.get(name)
        if o is None:
            out.append(ObjectDiff("Cluster", name, "add"))
        elif changes := cluster_fields(c, o):
            out.append(ObjectDiff("Cluster", name, "change", tuple(changes)))
    for name, n in sorted(desired.nodes.items()):
        on = observed.nodes.get(name)
        if on is None:
            out.append(ObjectDiff("Node", name, "add"))
        elif changes := node_fields(n, on):
            out.append(ObjectDiff("Node", name, "change", tuple(changes)))
    for name, s in sorted(desired.switches.items()):
        if changes := switch_fields(s, observed):
            out.append(ObjectDiff("VirtualSwitch", name, "change", tuple(changes)))
    for name, v in sorted(desired.volumes.items()):
        ov = observed.volumes.get(name)
        if ov is None:
            out.append(ObjectDiff("ClusterSharedVolume", name, "add"))
        elif changes := volume_fields(v, ov):
            out.append(ObjectDiff("ClusterSharedVolume", name, "change", tuple(changes)))
    wanted = desired.vms if vms is None else {n: desired.vms[n] for n in vms if n in desired.vms}
    for name, vm in sorted(wanted.items()):
        ovm = observed.vms.get(name)
        if ovm is None:
            out.append(ObjectDiff("VirtualMachine", name, "add"))
        elif changes := vm_fields(vm, ovm):
            out.append(ObjectDiff("VirtualMachine", name, "change", tuple(changes)))
    return out
