"""Frozen typed records of a Hyper-V estate, shared by desired and observed state.

The same types describe what the manifests ask for and what a provider observes; the
observed-only facts (where a VM runs, what each host's switch really looks like, which
LUNs a node sees) live in the ``*Status`` records and are empty in desired state.
"""

from __future__ import annotations

import bisect
import weakref
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeVar

PlatformName = Literal["2008r2", "2012r2", "2016", "2019", "2022", "2025"]
QuorumMode = Literal[
    "recommended",
    "node_majority",
    "node_and_disk_majority",
    "node_and_file_share_majority",
    "disk_only",
    "cloud_witness",
]
NetworkRole = Literal["management", "heartbeat", "live_migration", "vm", "iscsi"]
SwitchType = Literal["external", "internal", "private"]
Controller = Literal["ide", "scsi"]
DiskType = Literal["fixed", "dynamic", "differencing"]
DiskFormat = Literal["vhd", "vhdx"]
PowerState = Literal["running", "off", "saved"]
MigrationPolicy = Literal["live", "quick", "offline", "never"]
AntiAffinityMode = Literal["soft", "hard"]
NodeState = Literal["up", "down"]
ReservePolicy = Literal["warn", "block"]
AutomaticStartAction = Literal["nothing", "start_if_running", "start"]
AutomaticStopAction = Literal["turn_off", "save", "shut_down"]

EMPTY: Mapping[str, object] = MappingProxyType({})


K = TypeVar("K")
V = TypeVar("V")


def frozen_map(items: Mapping[K, V] | None = None) -> Mapping[K, V]:
    """A read-only mapping, so records stay immutable all the way down (every empty one is
    the same object: most records have no labels, files or overrides)."""
    if not items:
        return EMPTY  # type: ignore[return-value]
    return MappingProxyType(dict(items))


# Spec fields a manifest leaves out, as dotted paths under spec ("maintenance",
# "quorum.mode"): operational state left out is not managed, and a default that does apply
# is marked "(default)" in the plan. Not part of equality: observed records carry none.
UNSET_NONE: Any = field(default=frozenset(), compare=False)


# Every record carries a slot for its content digest, filled on first use (see codec).
# Not a real field: not in __init__, equality or repr, and dropped by dataclasses.replace.
DIGEST_SLOT: Any = field(default=None, init=False, repr=False, compare=False)

# Fields added after records were first stored are left out of the canonical text while they
# hold their default (see codec), so digests, and the plans and journals keyed by them, stay
# as they were for every record that does not use the new field.
LATER: Mapping[str, bool] = MappingProxyType({"omit_default": True})


# --- cluster ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Witness:
    disk: str | None = None
    file_share: str | None = None
    cloud_account: str | None = None

    @property
    def kind(self) -> str | None:
        if self.disk:
            return "disk"
        if self.file_share:
            return "file_share"
        if self.cloud_account:
            return "cloud"
        return None


@dataclass(frozen=True, slots=True)
class Quorum:
    mode: QuorumMode = "recommended"
    witness: Witness = field(default_factory=Witness)


@dataclass(frozen=True, slots=True)
class ClusterNetwork:
    name: str
    roles: tuple[NetworkRole, ...]
    bandwidth_mbps: int = 1000
    subnet: str | None = None


@dataclass(frozen=True, slots=True)
class LiveMigrationSettings:
    network: str | None = None
    max_parallel_migrations: int | None = None  # None: the platform default


@dataclass(frozen=True, slots=True)
class PlacementPolicy:
    failover_reserve_nodes: int = 1  # N+1 by default; 0 turns the reserve off
    reserve_policy: ReservePolicy = "warn"


@dataclass(frozen=True, slots=True)
class MemoryPolicy:
    parent_reserve_mib: int | None = None  # None: the platform default
    vm_overhead_mib: int | None = None  # None: the platform formula


@dataclass(frozen=True, slots=True)
class Hook:
    command: tuple[str, ...] = ()
    timeout_seconds: int = 3600


@dataclass(frozen=True, slots=True)
class RollingUpdate:
    id: str
    nodes: tuple[str, ...] | None = None  # None: all members
    max_unavailable: int = 1
    patch_level: str | None = None  # None: each node manifest's hardware.patch_level
    hook: Hook = field(default_factory=Hook)
    test_migration: bool = True


@dataclass(frozen=True, slots=True)
class Balance:
    max_memory_spread_pct: int


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    days: tuple[Weekday, ...]
    start: str  # HH:MM
    duration_minutes: int
    time_zone: str = "UTC"


@dataclass(frozen=True, slots=True)
class Prune:
    """Consent to remove what has left the manifests; without it, such objects are left alone."""

    enabled: bool = False  # VMs in the world but in no manifest are removed
    delete_disks: bool = False  # and their disk files deleted (otherwise kept on the volume)


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """Observed only."""

    monitoring_maintenance: bool = False
    rolling_update_done: str | None = None  # id of the last completed cycle
    rolling_update_in_progress: str | None = None
    updated_nodes: frozenset[str] = frozenset()  # patched in the cycle under way
    pending_nodes: frozenset[str] = frozenset()  # joined, not yet tested and validated
    tested_nodes: frozenset[str] = frozenset()  # pending nodes whose test migration passed
    # When each unhealthy condition held by this record began, on the world's clock
    # (condition key, e.g. "NetworkDown/LM" -> seconds); see model/conditions.py.
    since: Mapping[str, float] = field(default_factory=frozen_map, metadata=LATER)


@dataclass(frozen=True, slots=True)
class Cluster:
    name: str
    platform: PlatformName
    nodes: tuple[str, ...]
    quorum: Quorum = field(default_factory=Quorum)
    networks: tuple[ClusterNetwork, ...] = ()
    live_migration: LiveMigrationSettings = field(default_factory=LiveMigrationSettings)
    placement: PlacementPolicy = field(default_factory=PlacementPolicy)
    memory: MemoryPolicy = field(default_factory=MemoryPolicy)
    test_vm: str | None = None
    rolling_update: RollingUpdate | None = None
    balance: Balance | None = None
    maintenance_windows: tuple[MaintenanceWindow, ...] = ()
    prune: Prune = field(default_factory=Prune, metadata=LATER)
    # Static IPv4 addresses of the cluster name (its "Cluster IP Address" resources); each
    # lies in a cluster network's subnet. Empty in a manifest: not managed.
    addresses: tuple[str, ...] = field(default=(), metadata=LATER)
    labels: Mapping[str, str] = field(default_factory=frozen_map)
    status: ClusterStatus = field(default_factory=ClusterStatus)
    unset: frozenset[str] = UNSET_NONE  # spec fields the manifest leaves out (desired)
    _digest: str | None = DIGEST_SLOT


# --- node ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hardware:
    model: str
    cpu: str
    memory_mib: int
    firmware: str
    driver_set: str
    patch_level: str
    slat: bool = True

    def baseline(self) -> tuple[str, str, str, str, str]:
        """What must be identical across a cluster's nodes (memory may differ)."""
        return (self.model, self.cpu, self.firmware, self.driver_set, self.patch_level)


OFFLOADS: frozenset[str] = frozenset({"vmq", "jumbo_frames", "tcp_chimney"})


@dataclass(frozen=True, slots=True)
class Offloads:
    vmq: bool = False
    jumbo_frames: bool = False
    tcp_chimney: bool = False
    # Observed: which of these the host reports (2008 R2 reports none per adapter); a fact it
    # does not report is not compared with the manifest.
    reported: frozenset[str] = field(default=OFFLOADS, metadata=LATER)


@dataclass(frozen=True, slots=True)
class NodeNic:
    name: str
    roles: tuple[NetworkRole, ...]
    network: str | None = None
    speed_mbps: int = 1000
    offloads: Offloads = field(default_factory=Offloads)


@dataclass(frozen=True, slots=True)
class SwitchConfig:
    """One host's copy of a virtual switch: what must be identical on every node."""

    type: SwitchType
    uplink_nic: str | None
    management_os: bool
    allowed_vlans: frozenset[int]
    native_vlan: int | None
    # Switch Embedded Teaming (2016 and later): the host NICs the switch teams as its uplink.
    # Empty: one uplink_nic. A change recreates the switch (Remove-VMSwitch, New-VMSwitch
    # -EnableEmbeddedTeaming), so the node is drained first.
    team_nics: tuple[str, ...] = field(default=(), metadata=LATER)


# Keywords only: its fields grow (LATER ones), and a positional call would shift them.
@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStatus:
    """Observed only: the host's own switches and LUNs, and whether it is up."""

    state: NodeState = "up"
    switches: Mapping[str, SwitchConfig] = field(default_factory=frozen_map)
    luns: frozenset[str] = frozenset()
    roles_installed: bool = True
    # LUNs presented to the host that are no cluster disk yet, by array id -> GiB: what
    # create_csv takes a new volume from, and what remove_csv gives a volume's LUN back to.
    free_luns: Mapping[str, int] = field(default_factory=frozen_map, metadata=LATER)
    # Cluster networks this node's interface is down (or unreachable) on; a network down on
    # every node that is up is Down, on some of them Partitioned.
    networks_down: frozenset[str] = field(default=frozenset(), metadata=LATER)
    since: Mapping[str, float] = field(default_factory=frozen_map, metadata=LATER)


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    cluster: str
    hardware: Hardware
    nics: tuple[NodeNic, ...] = ()
    maintenance: bool = False  # desired: drained and kept drained; observed: paused
    labels: Mapping[str, str] = field(default_factory=frozen_map)
    status: NodeStatus = field(default_factory=NodeStatus)
    unset: frozenset[str] = UNSET_NONE  # spec fields the manifest leaves out (desired)
    _digest: str | None = DIGEST_SLOT


# --- switches and volumes ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VirtualSwitch:
    name: str
    cluster: str
    config: SwitchConfig
    labels: Mapping[str, str] = field(default_factory=frozen_map)
    unset: frozenset[str] = UNSET_NONE  # spec fields the manifest leaves out (desired)
    _digest: str | None = DIGEST_SLOT


@dataclass(frozen=True, slots=True)
class VolumeStatus:
    coordinator: str | None = None
    other_used_gib: float = 0.0  # space used by files the reconciler does not manage
    # Disk files no VM uses (kept when a disk was detached or a VM removed): path -> GiB.
    files: Mapping[str, float] = field(default_factory=frozen_map, metadata=LATER)
    # Nodes whose I/O to the volume is redirected through the coordinator: node -> reason
    # (FileSystemRedirectedIOReason or BlockRedirectedIOReason, e.g. UserRequest).
    redirected: Mapping[str, str] = field(default_factory=frozen_map, metadata=LATER)
    since: Mapping[str, float] = field(default_factory=frozen_map, metadata=LATER)


@dataclass(frozen=True, slots=True)
class ClusterSharedVolume:
    name: str
    cluster: str
    lun_size_gib: int
    size_gib: int
    labels: Mapping[str, str] = field(default_factory=frozen_map)
    status: VolumeStatus = field(default_factory=VolumeStatus)
    # The LUN's id on the array: which presented LUN create_csv formats, and what makes a
    # volume under a new name the same volume (rename_csv). None: not recorded.
    lun: str | None = field(default=None, metadata=LATER)
    _digest: str | None = DIGEST_SLOT


# --- virtual machines ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VmNic:
    name: str
    switch: str
    vlan: int | None = None  # access VLAN; None: untagged (or trunk, below)
    # A trunk adapter carries these VLANs tagged, and native_vlan untagged.
    trunk: frozenset[int] = field(default=frozenset(), metadata=LATER)
    native_vlan: int | None = field(default=None, metadata=LATER)
    mac: str | None = field(
        default=None, metadata=LATER
    )  # static MAC (12 hex digits); None: dynamic

    def vlans(self) -> frozenset[int]:
        """Every VLAN the adapter needs its host's switch to carry."""
        if self.trunk:
            return self.trunk | ({self.native_vlan} if self.native_vlan else frozenset())
        return frozenset({self.vlan}) if self.vlan is not None else frozenset()


@dataclass(frozen=True, slots=True)
class Disk:
    name: str
    controller: Controller
    controller_number: int
    slot: int
    type: DiskType
    format: DiskFormat
    size_gib: int
    volume: str
    allow_delete: bool = False
    boot: bool = False
    parent: str | None = None
    file: str | None = field(
        default=None, metadata=LATER
    )  # an existing file on the volume to attach; None: a new file
    file_size_gib: float | None = None  # observed: space the file takes on its volume

    def file_path(self, vm_name: str) -> str:
        """The file on its volume: the one named in the manifest, or <vm>/<disk>.<format>."""
        return self.file or f"{vm_name}/{self.name}.{self.format}"

    def used_gib(self) -> float:
        """Space on the volume: a fixed disk takes its size, others what they have grown to."""
        if self.file_size_gib is not None:
            return self.file_size_gib
        return float(self.size_gib) if self.type == "fixed" else self.size_gib * 0.5


@dataclass(frozen=True, slots=True)
class DynamicMemory:
    """Hyper-V dynamic memory: the VM starts with its ``memory_mib`` (startup memory), then
    the host balloons it between ``minimum_mib`` and ``maximum_mib``, keeping ``buffer_pct``
    spare. Capacity is counted on the startup memory: what a start (or a failover restart)
    needs free, whatever the balloon does later."""

    enabled: bool = True  # False: static memory, said so in a manifest
    minimum_mib: int = 0
    maximum_mib: int = 0
    buffer_pct: int = 20


@dataclass(frozen=True, slots=True)
class VmStatus:
    dirty_rate_mib_s: float = 8.0  # pages dirtied per second while running (simulator physics)
    # The cluster role is Failed (the cluster gave up restarting it); such a VM is not
    # running (its power_state is off) until it is started again.
    failed: bool = field(default=False, metadata=LATER)
    since: Mapping[str, float] = field(default_factory=frozen_map, metadata=LATER)


@dataclass(frozen=True, slots=True)
class VirtualMachine:
    name: str
    cluster: str
    memory_mib: int
    vcpus: int
    generation: int = 2
    node: str | None = None  # desired: optional pin; observed: the host it runs on
    power_state: PowerState = "running"
    highly_available: bool = True
    migration_policy: MigrationPolicy = "live"
    anti_affinity_group: str | None = None
    anti_affinity_mode: AntiAffinityMode = "soft"
    allow_downtime: bool = False
    nics: tuple[VmNic, ...] = ()
    disks: tuple[Disk, ...] = ()
    # None in a manifest: not managed (whatever the host has is fine).
    preferred_owners: frozenset[str] | None = field(default=None, metadata=LATER)
    automatic_start_action: AutomaticStartAction | None = field(default=None, metadata=LATER)
    automatic_stop_action: AutomaticStopAction | None = field(default=None, metadata=LATER)
    # None in a manifest: not managed; in the world: static memory (as is enabled=False).
    dynamic_memory: DynamicMemory | None = field(default=None, metadata=LATER)
    # SCSI controllers (0-4). None: not recorded (a manifest: not managed), taken to be as
    # many as its disks use, and at least one on generation 2 (see ``scsi_count``).
    scsi_controllers: int | None = field(default=None, metadata=LATER)
    labels: Mapping[str, str] = field(default_factory=frozen_map)
    status: VmStatus = field(default_factory=VmStatus)
    unset: frozenset[str] = UNSET_NONE  # spec fields the manifest leaves out (desired)
    _digest: str | None = DIGEST_SLOT

    def boot_disk(self) -> Disk | None:
        marked = [d for d in self.disks if d.boot]
        if marked:
            return marked[0]
        return self.disks[0] if self.disks else None

    def disk(self, name: str) -> Disk | None:
        for d in self.disks:
            if d.name == name:
                return d
        return None

    def volumes(self) -> frozenset[str]:
        return frozenset(d.volume for d in self.disks)

    def scsi_count(self) -> int:
        """How many SCSI controllers the VM has: as recorded, or as many as its disks use."""
        if self.scsi_controllers is not None:
            return self.scsi_controllers
        used = [d.controller_number + 1 for d in self.disks if d.controller == "scsi"]
        return max([1 if self.generation == 2 else 0, *used])

    def memory_model(self) -> DynamicMemory | None:
        """The dynamic-memory bounds, or None for static memory (however it is written)."""
        dynamic = self.dynamic_memory
        return dynamic if dynamic is not None and dynamic.enabled else None


LINEAGE = 16  # states remembered by changes_since

# Memo purposes whose per-node values follow a VM's change: (state after, the VM before, the
# VM after, the memo carried over) -> adjusts the VM's nodes' entries in place (or drops
# them). Registered by the module that computes them (capacity: memory used and free).
MemoFollow = Callable[
    ["Estate", "VirtualMachine | None", "VirtualMachine | None", dict[str, Any]], None
]
MEMO_FOLLOWS: dict[str, MemoFollow] = {}


def _same_costs(kind: str, before: Record | None, after: Record | None) -> bool:
    """Whether a change of this record leaves every VM's memory cost as it was."""
    if kind != "Cluster":
        return True
    return (
        isinstance(before, Cluster)
        and isinstance(after, Cluster)
        and (before.platform, before.memory) == (after.platform, after.memory)
    )


def _without_keys(memo: dict[str, Any], stale: Collection[str | None]) -> dict[str, Any]:
    kept = dict(memo)  # copied whole (fast), then the few stale entries dropped
    for key in stale:
        kept.pop(key, None)  # type: ignore[arg-type]
    return kept


def _cluster_name(record: Record, kind: str) -> str:
    return record.name if kind == "Cluster" else record.cluster  # type: ignore[union-attr]


# --- the estate --------------------------------------------------------------------------------

Record = Cluster | Node | VirtualSwitch | ClusterSharedVolume | VirtualMachine

KINDS: tuple[str, ...] = (
    "Cluster",
    "Node",
    "VirtualSwitch",
    "ClusterSharedVolume",
    "VirtualMachine",
)


def kind_of(record: Record) -> str:
    return type(record).__name__


@dataclass(frozen=True, slots=True, weakref_slot=True)
class Estate:
    """Every object, keyed by name within its kind (names are unique per kind)."""

    clusters: Mapping[str, Cluster] = field(default_factory=frozen_map)
    nodes: Mapping[str, Node] = field(default_factory=frozen_map)
    switches: Mapping[str, VirtualSwitch] = field(default_factory=frozen_map)
    volumes: Mapping[str, ClusterSharedVolume] = field(default_factory=frozen_map)
    vms: Mapping[str, VirtualMachine] = field(default_factory=frozen_map)
    # Built on first use: which VMs each node holds (states are immutable, so it never goes stale).
    _vms_by_node: dict[str | None, list[VirtualMachine]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _slices: dict[str, Estate] | None = field(default=None, init=False, repr=False, compare=False)
    # Sums per node or volume (memory used, HA load, disk use), by purpose; carried to the
    # next state when only VMs change, minus the nodes and volumes they touch, so each move
    # of a plan costs the VMs of two nodes, not the whole estate.
    _memo: dict[str, dict[str, Any]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    # Facts of the hosts alone (nodes up, in service): kept while only VMs change.
    _host_memo: dict[tuple[str, str], Any] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    # The last states this one was made from, a record at a time, and which (kind, name)
    # each step set: so a plan replay finds what a step changed without comparing every
    # record. Weak, so a replay does not keep every state of a plan alive.
    _lineage: tuple[tuple[weakref.ref[Estate], tuple[str, str]], ...] = field(
        default=(), init=False, repr=False, compare=False
    )

    @classmethod
    def from_tables(cls, tables: Mapping[str, Mapping[str, Any]]) -> Estate:
        """An estate from one name -> record table per kind (missing kinds are empty)."""
        return cls(
            clusters=tables.get("Cluster", {}),
            nodes=tables.get("Node", {}),
            switches=tables.get("VirtualSwitch", {}),
            volumes=tables.get("ClusterSharedVolume", {}),
            vms=tables.get("VirtualMachine", {}),
        )

    def table(self, kind: str) -> Mapping[str, Record]:
        tables: dict[str, Mapping[str, Record]] = {
            "Cluster": self.clusters,
            "Node": self.nodes,
            "VirtualSwitch": self.switches,
            "ClusterSharedVolume": self.volumes,
            "VirtualMachine": self.vms,
        }
        return tables[kind]

    def records(self) -> list[Record]:
        out: list[Record] = []
        for kind in KINDS:
            table = self.table(kind)
            out.extend(table[name] for name in sorted(table))
        return out

    def of_cluster(self, cluster: str) -> Estate:
        """The slice of the estate that belongs to one cluster (plans are per cluster)."""
        slices = self._slices
        if slices is None:
            slices = self._split()
            object.__setattr__(self, "_slices", slices)
        return slices.get(cluster) or Estate()

    def _split(self) -> dict[str, Estate]:
        tables: dict[str, dict[str, dict[str, Any]]] = {}

        def put(kind: str, cluster: str, record: Record) -> None:
            tables.setdefault(cluster, {k: {} for k in KINDS})[kind][record.name] = record

        for name, c in self.clusters.items():
            put("Cluster", name, c)
        for n in self.nodes.values():
            put("Node", n.cluster, n)
        for s in self.switches.values():
            put("VirtualSwitch", s.cluster, s)
        for v in self.volumes.values():
            put("ClusterSharedVolume", v.cluster, v)
        for vm in self.vms.values():
            put("VirtualMachine", vm.cluster, vm)
        return {cluster: Estate.from_tables(t) for cluster, t in tables.items()}

    def nodes_of(self, cluster: str) -> list[Node]:
        return [self.nodes[n] for n in sorted(self.nodes) if self.nodes[n].cluster == cluster]

    def vms_on(self, node: str) -> list[VirtualMachine]:
        """The VMs registered on a node, by name."""
        index = self._vms_by_node
        if index is None:
            index = {}
            for name in sorted(self.vms):
                vm = self.vms[name]
                index.setdefault(vm.node, []).append(vm)
            object.__setattr__(self, "_vms_by_node", index)
        return list(index.get(node, ()))

    def changes_since(self, before: Estate, limit: int = 16) -> set[tuple[str, str]] | None:
        """(kind, name) of every record set since ``before``, if this state was derived from it
        one record at a time (at most ``limit`` steps); None when that is not known."""
        if self is before:
            return set()
        out: set[tuple[str, str]] = set()
        for ref, key in reversed(self._lineage[-limit:]):
            out.add(key)
            if ref() is before:
                return out
        return None

    def host_memo(self) -> dict[tuple[str, str], Any]:
        """A memo of values computed from the clusters and nodes only (not from the VMs)."""
        memo = self._host_memo
        if memo is None:
            memo = {}
            object.__setattr__(self, "_host_memo", memo)
        return memo

    def memo(self, purpose: str) -> dict[str, Any]:
        """A per-node or per-volume memo of this state, for values computed from its VMs."""
        memos = self._memo
        if memos is None:
            memos = {}
            object.__setattr__(self, "_memo", memos)
        return memos.setdefault(purpose, {})

    def with_clusters(self, parts: Mapping[str, Estate]) -> Estate:
        """This estate with the objects of each named cluster replaced by its part."""
        if not parts:
            return self
        tables: dict[str, dict[str, Any]] = {}
        for kind in KINDS:
            table = {
                name: r
                for name, r in self.table(kind).items()
                if _cluster_name(r, kind) not in parts
            }
            for part in parts.values():
                table.update(part.table(kind))
            tables[kind] = table
        return Estate.from_tables(tables)

    def switches_of(self, cluster: str) -> list[VirtualSwitch]:
        return [s for _, s in sorted(self.switches.items()) if s.cluster == cluster]

    def volumes_of(self, cluster: str) -> list[ClusterSharedVolume]:
        return [v for _, v in sorted(self.volumes.items()) if v.cluster == cluster]

    def with_record(self, record: Record) -> Estate:
        return self._with(kind_of(record), record.name, record)

    def without(self, kind: str, name: str) -> Estate:
        return self._with(kind, name, None)

    def _with(self, kind: str, name: str, record: Record | None) -> Estate:
        attr = {
            "Cluster": "clusters",
            "Node": "nodes",
            "VirtualSwitch": "switches",
            "ClusterSharedVolume": "volumes",
            "VirtualMachine": "vms",
        }[kind]
        source = getattr(self, attr)
        # A read-only view copies as fast as a dict through copy(); dict(view) goes key by key.
        table = source.copy() if isinstance(source, dict | MappingProxyType) else dict(source)
        before = table.get(name)
        if record is None:
            table.pop(name, None)
        else:
            table[name] = record
        tables: dict[str, Any] = {
            "clusters": self.clusters,
            "nodes": self.nodes,
            "switches": self.switches,
            "volumes": self.volumes,
            "vms": self.vms,
        }
        tables[attr] = table
        after = Estate(**tables)  # not dataclasses.replace: a plan makes a state per step
        lineage = (*self._lineage[-(LINEAGE - 1) :], (weakref.ref(self), (kind, name)))
        object.__setattr__(after, "_lineage", lineage)
        if kind != "VirtualMachine":
            # The VMs are the same: the index still holds; costs may not (node, cluster).
            object.__setattr__(after, "_vms_by_node", self._vms_by_node)
            if self._memo is not None and _same_costs(kind, before, record):
                # A node's or volume's sums depend on its own record (and the cluster's
                # memory costs), never on another node's or volume's, nor on a switch.
                memos = {
                    purpose: _without_keys(memo, (name,)) for purpose, memo in self._memo.items()
                }
                object.__setattr__(after, "_memo", memos)
            return after
        index = self._vms_by_node
        if index is not None:
            # Derive the next index from this one: a plan moves one VM at a time.
            index = dict(index)
            if isinstance(before, VirtualMachine):
                index[before.node] = [v for v in index.get(before.node, ()) if v.name != name]
            if isinstance(record, VirtualMachine):
                on = [v for v in index.get(record.node, ()) if v.name != name]
                bisect.insort(on, record, key=lambda v: v.name)
                index[record.node] = on
            object.__setattr__(after, "_vms_by_node", index)
        object.__setattr__(after, "_host_memo", self._host_memo)  # the hosts are the same
        if self._memo is not None:
            stale: set[str | None] = set()
            old_disks = before.disks if isinstance(before, VirtualMachine) else None
            new_disks = record.disks if isinstance(record, VirtualMachine) else None
            for vm in (before, record):
                if isinstance(vm, VirtualMachine):
                    stale.add(vm.node)
                    if old_disks != new_disks:  # a move leaves the volumes' use as it was
                        stale.update(d.volume for d in vm.disks)
            old_vm = before if isinstance(before, VirtualMachine) else None
            new_vm = record if isinstance(record, VirtualMachine) else None
            carried: dict[str, dict[str, Any]] = {}
            for purpose, memo in self._memo.items():
                follow = MEMO_FOLLOWS.get(purpose)
                if follow is None:
                    carried[purpose] = _without_keys(memo, stale)
                else:
                    # Per-node sums moved by the VM's own share, not summed again.
                    carried[purpose] = kept = dict(memo)
                    follow(after, old_vm, new_vm, kept)
            memos = carried
            object.__setattr__(after, "_memo", memos)
        return after
