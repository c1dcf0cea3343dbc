"""Platform profiles: per-release limits and capabilities, loaded from ``platforms.yaml``.

Code asks the profile ("may this disk be resized online?") instead of testing release names.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.resources import files

import yaml

# Storage limits that do not vary by release (docs/domain.md section 6).
VHD_MAX_GIB = 2040
VHDX_MAX_GIB = 64 * 1024
IDE_CONTROLLERS = 2
IDE_SLOTS = 2
SCSI_CONTROLLERS = 4
SCSI_SLOTS = 64


@dataclass(frozen=True, slots=True)
class Platform:
    name: str
    max_nodes: int
    max_vms_per_cluster: int
    max_running_vms_per_node: int
    live_migration_max_passes: int
    default_max_parallel_migrations: int
    online_vhd_resize: bool
    live_storage_migration: bool  # a running VM's disk moves to another volume (2012+)
    vhdx: bool
    generation2: bool
    nic_hot_add: bool  # network adapters added and removed on a running generation-2 VM
    cloud_witness: bool
    # Dynamic memory (2008 R2 SP1 and later). Runtime: from 2012, a running VM's minimum may
    # fall and its maximum rise (and its buffer change); turning it on or off needs the VM off.
    # Minimum: a minimum below the startup memory (2008 R2 SP1 has startup and maximum only).
    dynamic_memory_runtime: bool
    dynamic_memory_minimum: bool
    embedded_teaming: bool  # Switch Embedded Teaming (2016 and later)
    parent_reserve_mib: int
    vm_overhead_base_mib: int
    vm_overhead_per_gib_mib: int
    slat_saving_mib: int
    # Live-migration timing, fitted to published drains (docs/timing.md, bench/timing.py).
    live_migration_link_efficiency: float
    live_migration_stream_mbps: float
    live_migration_setup_seconds: float
    live_migration_stagger_seconds: float
    # Largest VM the release runs, by VM generation (generation 2 on 2016+ goes further).
    max_vm_vcpus_gen1: int
    max_vm_vcpus_gen2: int
    max_vm_memory_mib_gen1: int
    max_vm_memory_mib_gen2: int

    def max_vm_vcpus(self, generation: int) -> int:
        return self.max_vm_vcpus_gen2 if generation == 2 else self.max_vm_vcpus_gen1

    def max_vm_memory_mib(self, generation: int) -> int:
        return self.max_vm_memory_mib_gen2 if generation == 2 else self.max_vm_memory_mib_gen1


@cache
def profiles() -> dict[str, Platform]:
    # libyaml when there is one: the pure-Python safe loader takes ~0.1 s, once per process.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    raw = yaml.load((files("reconciler.model") / "platforms.yaml").read_text(), Loader=loader)
    return {name: Platform(name=name, **fields) for name, fields in raw.items()}


PLATFORM_NAMES: tuple[str, ...] = ("2008r2", "2012r2", "2016", "2019", "2022", "2025")


def platform(name: str) -> Platform:
    return profiles()[name]
