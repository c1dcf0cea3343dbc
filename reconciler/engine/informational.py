"""Informational fields: what the schemas mark ``"x-reconciler": "informational"``.

They describe the world (a link speed, what a NIC carries, the boot disk) but no plan
changes them and they block nothing: the plan says, as a note, where the world differs.
docs/semantics.md lists them; tests/test_schema_walk.py proves each one is noted.
"""

from __future__ import annotations

from reconciler.engine.diff import match_network
from reconciler.model.records import Estate

PREFIX = "informational"


def _note(ref: str, path: str, world: object, manifest: object) -> str:
    return (
        f"{PREFIX}: {ref} {path}: the world has {_text(world)}, the manifest says "
        f"{_text(manifest)} (not reconciled)"
    )


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return "(none)" if value is None else str(value)


def informational_notes(desired: Estate, observed: Estate) -> list[str]:
    """One note per informational field that differs, in a stable order."""
    out: list[str] = []
    for name, cluster in sorted(desired.clusters.items()):
        seen = observed.clusters.get(name)
        if seen is None:
            continue
        for i, net in enumerate(cluster.networks):
            have = match_network(net, seen)
            if have is not None and have.bandwidth_mbps != net.bandwidth_mbps:
                out.append(
                    _note(
                        f"Cluster/{name}",
                        f"spec.networks[{i}].bandwidth_mbps",
                        have.bandwidth_mbps,
                        net.bandwidth_mbps,
                    )
                )
    for name, node in sorted(desired.nodes.items()):
        seen_node = observed.nodes.get(name)
        if seen_node is None:
            continue
        host = {n.name: n for n in seen_node.nics}
        for i, nic in enumerate(node.nics):
            have_nic = host.get(nic.name)
            if have_nic is None:
                continue  # a missing NIC is a difference (engine/diff.py), not a note
            pairs: tuple[tuple[str, object, object], ...] = (
                ("roles", tuple(sorted(have_nic.roles)), tuple(sorted(nic.roles))),
                ("speed_mbps", have_nic.speed_mbps, nic.speed_mbps),
                ("offloads.tcp_chimney", have_nic.offloads.tcp_chimney, nic.offloads.tcp_chimney),
            )
            for attr, world, manifest in pairs:
                unread = attr == "offloads.tcp_chimney" and "tcp_chimney" not in (
                    have_nic.offloads.reported
                )
                if world != manifest and not unread:  # roles are a set: sorted on both sides
                    out.append(_note(f"Node/{name}", f"spec.nics[{i}].{attr}", world, manifest))
    for name, vm in sorted(desired.vms.items()):
        seen_vm = observed.vms.get(name)
        if seen_vm is None or not vm.disks:
            continue
        want, have_boot = vm.boot_disk(), seen_vm.boot_disk()
        if want is not None and have_boot is not None and want.name != have_boot.name:
            index = vm.disks.index(want)
            out.append(
                _note(
                    f"VirtualMachine/{name}",
                    f"spec.disks[{index}].boot",
                    f"boot disk {have_boot.name}",
                    f"boot disk {want.name}",
                )
            )
    return out
