"""What every world rule is built from: the result type, parameter codecs, and placement checks.

Shared by ``rules`` (the core actions) and ``rules_lifecycle`` (create, remove, evict).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from reconciler.model.actions import Action
from reconciler.model.platforms import IDE_CONTROLLERS, IDE_SLOTS, SCSI_CONTROLLERS, SCSI_SLOTS
from reconciler.model.records import (
    Cluster,
    Disk,
    Estate,
    Node,
    SwitchConfig,
    VirtualMachine,
    VmNic,
    frozen_map,
)
from reconciler.model.vlans import format_vlan_list, parse_vlan_list


@dataclass(frozen=True, slots=True)
class RuleResult:
    """``done``: the target was already as desired; ``failures``: why it cannot run."""

    estate: Estate
    done: bool = False
    failures: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    target: str
    message: str
    fix: str


# --- serialising parameters ---------------------------------------------------------------


def switch_to_params(cfg: SwitchConfig) -> dict[str, Any]:
    return {
        "type": cfg.type,
        "uplink_nic": cfg.uplink_nic,
        "management_os": cfg.management_os,
        "allowed_vlans": format_vlan_list(cfg.allowed_vlans),
        "native_vlan": cfg.native_vlan,
        # Only when teamed, so plans of single-uplink switches read as they always did.
        **({"embedded_team": list(cfg.team_nics)} if cfg.team_nics else {}),
    }


def switch_from_params(p: Mapping[str, Any]) -> SwitchConfig:
    allowed = p.get("allowed_vlans") or ""
    return SwitchConfig(
        type=p["type"],
        uplink_nic=p.get("uplink_nic"),
        management_os=bool(p.get("management_os", False)),
        allowed_vlans=parse_vlan_list(allowed) if allowed else frozenset(),
        native_vlan=p.get("native_vlan"),
        team_nics=tuple(p.get("embedded_team") or ()),
    )


def nic_to_params(n: VmNic) -> dict[str, Any]:
    out: dict[str, Any] = {"name": n.name, "switch": n.switch, "vlan": n.vlan}
    # Only when used, so plans of access-VLAN adapters read as they always did.
    if n.trunk:
        out["trunk"] = format_vlan_list(n.trunk)
        out["native_vlan"] = n.native_vlan
    if n.mac is not None:
        out["mac"] = n.mac
    return out


def nic_from_params(p: Mapping[str, Any]) -> VmNic:
    trunk = p.get("trunk")
    return VmNic(
        name=p["name"],
        switch=p["switch"],
        vlan=p.get("vlan"),
        trunk=parse_vlan_list(trunk) if trunk else frozenset(),
        native_vlan=p.get("native_vlan"),
        mac=p.get("mac"),
    )


def disk_to_params(d: Disk) -> dict[str, Any]:
    return {
        "name": d.name,
        "controller": d.controller,
        "controller_number": d.controller_number,
        "slot": d.slot,
        "type": d.type,
        "format": d.format,
        "size_gib": d.size_gib,
        "volume": d.volume,
        "allow_delete": d.allow_delete,
        "boot": d.boot,
        "parent": d.parent,
        **({"file": d.file} if d.file is not None else {}),
    }


def disk_from_params(p: Mapping[str, Any]) -> Disk:
    return Disk(
        name=p["name"],
        controller=p["controller"],
        controller_number=p["controller_number"],
        slot=p["slot"],
        type=p["type"],
        format=p["format"],
        size_gib=p["size_gib"],
        volume=p["volume"],
        allow_delete=bool(p.get("allow_delete", False)),
        boot=bool(p.get("boot", False)),
        parent=p.get("parent"),
        file=p.get("file"),
    )


# --- helpers --------------------------------------------------------------------------------


def volume_used_gib(estate: Estate, volume: str) -> float:
    memo = estate.memo("volume_used_gib")
    cached: float | None = memo.get(volume)
    if cached is not None:
        return cached
    status = estate.volumes[volume].status
    used = status.other_used_gib + sum(status.files.values())
    for vm in estate.vms.values():
        for disk in vm.disks:
            if disk.volume == volume:
                used += disk.used_gib()
    memo[volume] = used
    return used


def volume_free_gib(estate: Estate, volume: str) -> float:
    return estate.volumes[volume].size_gib - volume_used_gib(estate, volume)


def placement_problems(estate: Estate, vm: VirtualMachine, node_name: str) -> list[str]:
    """Why ``vm`` cannot run on ``node_name`` (switches, VLANs, storage), ignoring memory."""
    node = estate.nodes.get(node_name)
    if node is None:
        return [f"node {node_name} does not exist"]
    problems: list[str] = []
    for nic in vm.nics:
        host = node.status.switches.get(nic.switch)
        if host is None:
            problems.append(f"{node_name} has no switch {nic.switch}")
        elif (
            nic.vlan is not None
            and host.allowed_vlans
            and nic.vlan not in host.allowed_vlans
            and nic.vlan != host.native_vlan
        ):
            problems.append(f"{node_name}'s switch {nic.switch} does not carry VLAN {nic.vlan}")
        elif nic.trunk and host.allowed_vlans:
            carried = host.allowed_vlans | {host.native_vlan}
            missing = sorted(nic.vlans() - carried)
            if missing:
                problems.append(
                    f"{node_name}'s switch {nic.switch} does not carry VLAN(s) "
                    f"{', '.join(map(str, missing))} of {nic.name}'s trunk"
                )
    for volume in sorted(vm.volumes()):
        if volume not in node.status.luns:
            problems.append(f"{node_name} does not see the LUN of {volume}")
    return problems


def cluster_of(estate: Estate, action: Action) -> Cluster | None:
    return estate.clusters.get(action.cluster)


def vm_of(estate: Estate, action: Action) -> VirtualMachine | None:
    return estate.vms.get(action.params["vm"])


def node_of(estate: Estate, name: str) -> Node | None:
    return estate.nodes.get(name)


def fail(estate: Estate, *reasons: str) -> RuleResult:
    return RuleResult(estate, failures=tuple(reasons))


def already_done(estate: Estate) -> RuleResult:
    return RuleResult(estate, done=True)


def set_switch(node: Node, name: str, cfg: SwitchConfig) -> Node:
    switches = dict(node.status.switches)
    switches[name] = cfg
    return replace(node, status=replace(node.status, switches=frozen_map(switches)))


def slot_problems(vm: VirtualMachine, disk: Disk) -> list[str]:
    problems: list[str] = []
    if disk.controller == "ide":
        if not (0 <= disk.controller_number < IDE_CONTROLLERS and 0 <= disk.slot < IDE_SLOTS):
            problems.append(f"IDE {disk.controller_number}:{disk.slot} is beyond 2 x 2")
    elif not (0 <= disk.controller_number < SCSI_CONTROLLERS and 0 <= disk.slot < SCSI_SLOTS):
        problems.append(f"SCSI {disk.controller_number}:{disk.slot} is beyond 4 x 64")
    elif vm.scsi_controllers is not None and disk.controller_number >= vm.scsi_controllers:
        problems.append(
            f"SCSI controller {disk.controller_number} does not exist on {vm.name} "
            f"({vm.scsi_controllers} controller(s)): add it first"
        )
    for other in vm.disks:
        if other.name != disk.name and (other.controller, other.controller_number, other.slot) == (
            disk.controller,
            disk.controller_number,
            disk.slot,
        ):
            problems.append(
                f"{disk.controller.upper()} {disk.controller_number}:{disk.slot} holds {other.name}"
            )
    return problems
