"""Cross-field rules Hyper-V and Failover Clustering impose, reported at the field.

checks.py holds references, controller slots, sizes and quorum; these are the rest of what the
platform refuses: memory in 2 MB steps, unicast static MACs used once, a trunk adapter's
native VLAN, cluster networks (one per IP subnet), NIC and disk-file names used once.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from reconciler.model.records import Cluster, Estate, Record, VirtualMachine

Report = Callable[[Record, tuple[str | int, ...], str, str], None]


def check_platform_rules(estate: Estate, report: Report, world: bool = False) -> None:
    """``world``: what a real cluster can be is accepted (Hyper-V only warns about a static
    MAC used twice)."""
    for cluster in estate.clusters.values():
        _networks(cluster, report)
    for node in estate.nodes.values():
        seen: set[str] = set()
        for i, host_nic in enumerate(node.nics):
            if host_nic.name in seen:
                report(
                    node,
                    ("spec", "nics", i, "name"),
                    f"two NICs are named '{host_nic.name}'",
                    "a unique name per NIC, as the host shows it",
                )
            seen.add(host_nic.name)
    macs: dict[tuple[str, str], str] = {}
    files: dict[tuple[str, str], str] = {}
    for name in sorted(estate.vms):
        vm = estate.vms[name]
        _vm_rules(vm, report)
        for i, nic in enumerate(vm.nics):
            if nic.mac is None or not _unicast(nic.mac):
                continue
            key = (vm.cluster, nic.mac)
            if key in macs and not world:
                report(
                    vm,
                    ("spec", "nics", i, "mac"),
                    f"MAC {_mac_text(nic.mac)} is already used by {macs[key]}",
                    "a static MAC used by one adapter only",
                )
            else:
                macs[key] = f"VM '{vm.name}' adapter '{nic.name}'"
        for i, disk in enumerate(vm.disks):
            path = (disk.volume, disk.file_path(vm.name).lower())  # NTFS: case-insensitive
            if path in files and disk.file is None and files[path].startswith(f"VM '{vm.name}'"):
                continue  # two disks of one name: reported as such (checks.py)
            if path in files:
                report(
                    vm,
                    ("spec", "disks", i, "file" if disk.file else "name"),
                    f"file {disk.file_path(vm.name)} on {disk.volume} is already used by "
                    f"{files[path]}",
                    "one disk per file: a VHD is attached to one VM once",
                )
            else:
                files[path] = f"VM '{vm.name}' disk '{disk.name}'"
    for vm in estate.vms.values():
        _fixed_disks_fit(estate, vm, report)


def _networks(cluster: Cluster, report: Report) -> None:
    """Windows makes one cluster network per IP subnet: subnets are networks, and unique."""
    names: set[str] = set()
    subnets: dict[ipaddress.IPv4Network | ipaddress.IPv6Network, str] = {}
    for i, net in enumerate(cluster.networks):
        base = ("spec", "networks", i)
        if net.name in names:
            report(
                cluster,
                (*base, "name"),
                f"two cluster networks are named '{net.name}'",
                "a unique name per cluster network",
            )
        names.add(net.name)
        if net.subnet is None:
            continue
        try:
            subnet = ipaddress.ip_network(net.subnet, strict=True)
        except ValueError:
            report(
                cluster,
                (*base, "subnet"),
                f"'{net.subnet}' is not a subnet in CIDR form",
                "a network address and prefix length with no host bits set, "
                "for example 10.10.1.0/24",
            )
            continue
        if subnet in subnets:
            report(
                cluster,
                (*base, "subnet"),
                f"subnet {net.subnet} is also network '{subnets[subnet]}'",
                "one cluster network per subnet: Windows makes one per IP subnet",
            )
        else:
            subnets[subnet] = net.name


def _unicast(mac: str) -> bool:
    """Hyper-V refuses a multicast (lowest bit of the first octet set) or all-zero MAC."""
    return int(mac[:2], 16) & 1 == 0 and int(mac, 16) != 0


def _mac_text(mac: str) -> str:
    return "-".join(mac[i : i + 2] for i in range(0, 12, 2))


def _vm_rules(vm: VirtualMachine, report: Report) -> None:
    amounts: list[tuple[tuple[str, ...], int]] = [(("memory_mib",), vm.memory_mib)]
    if vm.dynamic_memory is not None:
        amounts += [
            (("dynamic_memory", "minimum_mib"), vm.dynamic_memory.minimum_mib),
            (("dynamic_memory", "maximum_mib"), vm.dynamic_memory.maximum_mib),
        ]
    for path, mib in amounts:
        if mib % 2:
            report(
                vm,
                ("spec", *path),
                f"{mib} MiB is not a multiple of 2 MB",
                f"Hyper-V sets memory in 2 MB steps: {mib - 1} or {mib + 1}",
            )
    for i, nic in enumerate(vm.nics):
        base = ("spec", "nics", i)
        if nic.mac is not None and not _unicast(nic.mac):
            what = "all zeros" if int(nic.mac, 16) == 0 else "a multicast address"
            report(
                vm,
                (*base, "mac"),
                f"MAC {_mac_text(nic.mac)} is {what}",
                "a unicast MAC, its first octet even: for example 00-15-5D-0A-01-02",
            )
        if nic.trunk and nic.native_vlan is None and nic.vlan is None:
            report(
                vm,
                (*base, "trunk"),
                "a trunk adapter needs its native (untagged) VLAN",
                "native_vlan: a VLAN id, 1..4094; Set-VMNetworkAdapterVlan -Trunk requires one",
            )


def _fixed_disks_fit(estate: Estate, vm: VirtualMachine, report: Report) -> None:
    """A fixed disk takes its whole size when it is created: it must fit its volume."""
    for i, disk in enumerate(vm.disks):
        volume = estate.volumes.get(disk.volume)
        if volume is None or disk.type != "fixed" or disk.file is not None:
            continue
        if disk.size_gib > volume.size_gib:
            report(
                vm,
                ("spec", "disks", i, "size_gib"),
                f"a fixed disk of {disk.size_gib} GiB is larger than volume {volume.name} "
                f"({volume.size_gib} GiB)",
                f"size_gib at most {volume.size_gib}, a dynamic disk, or a larger volume",
            )
