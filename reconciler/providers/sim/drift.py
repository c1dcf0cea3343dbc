"""Drift: changes made behind the tool's back, the way people and failures change a real estate.

Pure functions of (world, random generator, choice); the simulator writes the result.
"""

from __future__ import annotations

import random
from dataclasses import replace

from reconciler.model.capacity import free_memory_mib, vm_cost_mib
from reconciler.model.records import Estate, VirtualMachine, frozen_map
from reconciler.model.rules import placement_problems

DRIFT_KINDS = ("placement", "vlan", "power", "memory", "disk")


class DriftError(ValueError):
    """The requested drift cannot be made in this world (no such object, nothing suitable)."""


def _running(estate: Estate) -> list[VirtualMachine]:
    return [vm for _, vm in sorted(estate.vms.items()) if vm.power_state == "running" and vm.node]


def _move_vm(estate: Estate, rng: random.Random, name: str | None) -> tuple[Estate, str]:
    candidates = [estate.vms[name]] if name else _running(estate)
    rng.shuffle(candidates)
    for vm in candidates:
        cluster = estate.clusters[vm.cluster]
        targets = [
            n
            for n in cluster.nodes
            if n != vm.node
            and n in estate.nodes
            and estate.nodes[n].status.state == "up"
            and not estate.nodes[n].maintenance
            and not placement_problems(estate, vm, n)
            and free_memory_mib(estate, n) >= vm_cost_mib(vm, cluster)
        ]
        if targets:
            target = rng.choice(sorted(targets))
            moved = estate.with_record(replace(vm, node=target))
            return moved, f"VirtualMachine/{vm.name} moved {vm.node} -> {target} by hand"
    raise DriftError("no VM can be moved anywhere")


def _drop_vlan(estate: Estate, rng: random.Random, name: str | None) -> tuple[Estate, str]:
    nodes = [estate.nodes[name]] if name else [estate.nodes[n] for n in sorted(estate.nodes)]
    rng.shuffle(nodes)
    for node in nodes:
        in_use = {
            nic.vlan for vm in estate.vms_on(node.name) for nic in vm.nics if nic.vlan is not None
        }
        for switch_name, cfg in sorted(node.status.switches.items()):
            spare = sorted(cfg.allowed_vlans - in_use)
            if spare:
                vlan = rng.choice(spare)
                switches = dict(node.status.switches)
                switches[switch_name] = replace(cfg, allowed_vlans=cfg.allowed_vlans - {vlan})
                status = replace(node.status, switches=frozen_map(switches))
                return (
                    estate.with_record(replace(node, status=status)),
                    f"Node/{node.name}: VLAN {vlan} removed from {switch_name}'s trunk",
                )
    raise DriftError("no unused VLAN to remove from any trunk")


def _stop_vm(estate: Estate, rng: random.Random, name: str | None) -> tuple[Estate, str]:
    candidates = [estate.vms[name]] if name else _running(estate)
    if not candidates:
        raise DriftError("no running VM to stop")
    vm = rng.choice(candidates)
    return estate.with_record(replace(vm, power_state="off")), f"VirtualMachine/{vm.name} stopped"


def _resize_vm(estate: Estate, rng: random.Random, name: str | None) -> tuple[Estate, str]:
    candidates = [estate.vms[name]] if name else [vm for _, vm in sorted(estate.vms.items())]
    if not candidates:
        raise DriftError("no VM to resize")
    vm = rng.choice(candidates)
    smaller = max(512, vm.memory_mib // 2)
    return (
        estate.with_record(replace(vm, memory_mib=smaller)),
        f"VirtualMachine/{vm.name} memory {vm.memory_mib} -> {smaller} MiB",
    )


def _detach_disk(estate: Estate, rng: random.Random, name: str | None) -> tuple[Estate, str]:
    candidates = [estate.vms[name]] if name else [vm for _, vm in sorted(estate.vms.items())]
    with_data = [vm for vm in candidates if any(d.controller == "scsi" for d in vm.disks)]
    if not with_data:
        raise DriftError("no VM with a SCSI data disk")
    vm = rng.choice(with_data)
    disk = next(d for d in reversed(vm.disks) if d.controller == "scsi")
    kept = tuple(d for d in vm.disks if d is not disk)
    volume = estate.volumes[disk.volume]
    status = replace(volume.status, other_used_gib=volume.status.other_used_gib + disk.used_gib())
    estate = estate.with_record(replace(vm, disks=kept))
    estate = estate.with_record(replace(volume, status=status))
    return estate, f"VirtualMachine/{vm.name}: disk {disk.name} detached (file kept)"


def make_drift(
    estate: Estate, seed: int, kind: str | None = None, target: str | None = None
) -> tuple[Estate, str]:
    """One change behind the tool's back: of ``kind`` (random if None), on ``target`` if named."""
    rng = random.Random(seed)
    chosen = kind or rng.choice(DRIFT_KINDS)
    table = {
        "placement": estate.vms,
        "vlan": estate.nodes,
        "power": estate.vms,
        "memory": estate.vms,
        "disk": estate.vms,
    }
    if chosen not in table:
        raise DriftError(f"unknown drift kind '{chosen}' (one of {', '.join(DRIFT_KINDS)})")
    if target is not None and target not in table[chosen]:
        raise DriftError(f"no object '{target}' for drift kind '{chosen}'")
    makers = {
        "placement": _move_vm,
        "vlan": _drop_vlan,
        "power": _stop_vm,
        "memory": _resize_vm,
        "disk": _detach_disk,
    }
    return makers[chosen](estate, rng, target)
