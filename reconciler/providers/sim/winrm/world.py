"""How the simulator's world looks from one Windows host: paths, disk numbers, versions.

The host-side names the peer and the hyperv provider agree on are those of a real
deployment: VHDs under ``C:\\ClusterStorage\\<volume>\\<vm>\\<disk>.<format>``, each CSV's LUN
a disk whose FriendlyName is the volume's name, reconciler's own observed-only facts in
cluster private properties and in ``HKLM:\\SOFTWARE\\Reconciler``.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.model.records import Disk, Estate, VirtualMachine

CSV_ROOT = "C:\\ClusterStorage"

# Windows Server release -> (Win32_OperatingSystem.Version, Caption)
OS_VERSIONS: dict[str, tuple[str, str]] = {
    "2008r2": ("6.1.7601", "Microsoft Windows Server 2008 R2 Enterprise"),
    "2012r2": ("6.3.9600", "Microsoft Windows Server 2012 R2 Datacenter"),
    "2016": ("10.0.14393", "Microsoft Windows Server 2016 Datacenter"),
    "2019": ("10.0.17763", "Microsoft Windows Server 2019 Datacenter"),
    "2022": ("10.0.20348", "Microsoft Windows Server 2022 Datacenter"),
    "2025": ("10.0.26100", "Microsoft Windows Server 2025 Datacenter"),
}


def vhd_path(vm: str, disk: Disk) -> str:
    return f"{CSV_ROOT}\\{disk.volume}\\{vm}\\{disk.name}.{disk.format}"


@dataclass(frozen=True)
class VhdLocation:
    volume: str
    vm: str
    disk: str
    format: str


def parse_vhd_path(path: str) -> VhdLocation | None:
    """``C:\\ClusterStorage\\vol\\vm\\disk.vhdx`` -> its parts; None for any other layout."""
    prefix = CSV_ROOT.lower() + "\\"
    if not path.lower().startswith(prefix):
        return None
    parts = path[len(prefix) :].split("\\")
    if len(parts) != 3 or "." not in parts[2]:
        return None
    stem, _, ext = parts[2].rpartition(".")
    if ext.lower() not in ("vhd", "vhdx") or not stem:
        return None
    return VhdLocation(parts[0], parts[1], stem, ext.lower())


def find_disk(estate: Estate, path: str) -> tuple[VirtualMachine, Disk] | None:
    where = parse_vhd_path(path)
    if where is None:
        return None
    vm = estate.vms.get(where.vm)
    if vm is None:
        return None
    disk = vm.disk(where.disk)
    if disk is None or disk.volume != where.volume or disk.format != where.format:
        return None
    return vm, disk


def disk_numbers(estate: Estate, cluster: str) -> dict[str, int]:
    """Volume -> disk number on every node of the cluster (disk 0 is the boot disk)."""
    return {v.name: i for i, v in enumerate(estate.volumes_of(cluster), start=1)}


CSV_PARTITION = 2  # partition 1 is the GPT reserved partition
