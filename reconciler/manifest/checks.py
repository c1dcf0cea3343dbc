"""Rules across objects: references, duplicates, VLANs, controller slots, sizes, memory, quorum.

Each check reads the built records and reports against the document and field it came from.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Set
from dataclasses import replace
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from reconciler.manifest.checks_platform import check_platform_rules
from reconciler.manifest.documents import Document
from reconciler.manifest.errors import ManifestError, did_you_mean, one_of
from reconciler.model.addresses import network_of, subnets
from reconciler.model.capacity import usable_memory_mib, vm_cost_mib
from reconciler.model.platforms import (
    IDE_CONTROLLERS,
    IDE_SLOTS,
    SCSI_CONTROLLERS,
    SCSI_SLOTS,
    VHD_MAX_GIB,
    VHDX_MAX_GIB,
    platform,
)
from reconciler.model.quorum import WITNESS_MODES, quorum_problem, recommended_mode
from reconciler.model.records import (
    Cluster,
    ClusterSharedVolume,
    Estate,
    Node,
    Record,
    VirtualMachine,
    VirtualSwitch,
    Witness,
    kind_of,
)
from reconciler.model.vlans import format_vlan_list

Sources = Mapping[tuple[str, str], Document]
Report = Callable[[Record, tuple[str | int, ...], str, str], None]

ANY_NAME = "*"  # in ``unchecked``: a file could not be read, so any name may be declared there

WITNESS_FIELDS = {
    "disk": "witness.disk",
    "file_share": "witness.file_share",
    "cloud": "witness.cloud_account",
}


def check_estate(
    estate: Estate,
    sources: Sources,
    world: bool = False,
    unchecked: Set[str] = frozenset(),
) -> list[ManifestError]:
    """Every cross-object problem in the estate; ``world`` relaxes rules about intent.

    A reference to a name in ``unchecked`` (declared by a document that failed an earlier
    layer) is not reported: that document's own error is the root cause.
    """
    errors: list[ManifestError] = []

    def report(record: Record, path: tuple[str | int, ...], message: str, allowed: str) -> None:
        doc = sources[(kind_of(record), record.name)]
        errors.append(doc.error(path, message, allowed))

    references = _UnknownReferences(sources, unchecked)

    def warn(record: Record, path: tuple[str | int, ...], message: str, allowed: str) -> None:
        doc = sources[(kind_of(record), record.name)]
        errors.append(doc.warning(path, message, allowed))

    index = _ByCluster(estate)
    _check_references(estate, index, report, references, world)
    errors.extend(references.errors())
    for cluster in estate.clusters.values():
        _check_cluster(estate, index, cluster, report, world)
        if not world:
            _check_recommended_quorum(cluster, report, warn)
    for vm in estate.vms.values():
        _check_vm(estate, vm, report)
    for switch in estate.switches.values():
        _check_team(estate, switch, report)
    check_platform_rules(estate, report, world)
    for volume in estate.volumes.values():
        if volume.size_gib > volume.lun_size_gib:
            report(
                volume,
                ("spec", "size_gib"),
                f"volume of {volume.size_gib} GiB is larger than its LUN "
                f"({volume.lun_size_gib} GiB)",
                f"size_gib at most lun_size_gib ({volume.lun_size_gib})",
            )
    return errors


class _ByCluster:
    """Each cluster's objects, grouped once: the checks ask per VM and per cluster, and a scan
    of the whole estate each time would grow with the square of its size."""

    def __init__(self, estate: Estate) -> None:
        self.nodes: dict[str, list[Node]] = defaultdict(list)
        for name in sorted(estate.nodes):
            node = estate.nodes[name]
            self.nodes[node.cluster].append(node)
        self.switches: dict[str, list[str]] = defaultdict(list)
        for name in sorted(estate.switches):
            self.switches[estate.switches[name].cluster].append(name)
        self.volumes: dict[str, list[str]] = defaultdict(list)
        for name in sorted(estate.volumes):
            self.volumes[estate.volumes[name].cluster].append(name)
        self.vms: dict[str, list[VirtualMachine]] = defaultdict(list)
        for vm in estate.vms.values():
            self.vms[vm.cluster].append(vm)
        self.members = {name: sorted(c.nodes) for name, c in estate.clusters.items()}


class _UnknownReferences:
    """Unknown references, one error per name: a misspelt switch used by 19 VMs is one mistake,
    reported at its first use with the count of the others."""

    def __init__(self, sources: Sources, unchecked: Set[str]) -> None:
        self.sources = sources
        self.unchecked = unchecked
        self.found: dict[tuple[str, str, str], list[tuple[ManifestError, str]]] = {}

    def __call__(
        self,
        record: Record,
        path: tuple[str | int, ...],
        what: str,
        name: str,
        candidates: list[str],
        scope: str = "",
        elsewhere: str | None = None,
    ) -> None:
        """``elsewhere`` is the cluster that does have an object of that name."""
        if elsewhere is None and (name in self.unchecked or ANY_NAME in self.unchecked):
            return
        where = f" in cluster '{scope}'" if scope else ""
        allowed = one_of(sorted(candidates)) if candidates else f"no {what}{where} is declared"
        if elsewhere is not None:
            message, hint = f"{what} '{name}' belongs to cluster '{elsewhere}', not '{scope}'", ""
        else:
            message, hint = f"unknown {what} '{name}'{where}", did_you_mean(name, candidates)
        doc = self.sources[(kind_of(record), record.name)]
        key = (what, name, scope)
        self.found.setdefault(key, []).append((doc.error(path, message, allowed), hint))

    def errors(self) -> list[ManifestError]:
        out = []
        for uses in self.found.values():
            uses.sort(key=lambda use: (use[0].file, use[0].line, use[0].col))
            first, hint = uses[0]
            message = first.message
            if len(uses) > 1:
                message += f" (used {len(uses)} times; this is the first)"
            if hint:
                message += f"; {hint.rstrip()}"
            out.append(replace(first, message=message))
        return out


def _cluster_of(
    table: Mapping[str, Node | VirtualSwitch | ClusterSharedVolume | VirtualMachine], name: str
) -> str | None:
    found = table.get(name)
    return found.cluster if found is not None else None


def _check_references(
    estate: Estate,
    index: _ByCluster,
    report: Report,
    ref: _UnknownReferences,
    world: bool = False,
) -> None:
    clusters = sorted(estate.clusters)
    owned: list[Node | VirtualSwitch | ClusterSharedVolume | VirtualMachine] = [
        *estate.nodes.values(),
        *estate.switches.values(),
        *estate.volumes.values(),
        *estate.vms.values(),
    ]
    for record in owned:
        # A world's hosts (and their switches) may be meant for a cluster not formed yet:
        # standalone nodes that create_cluster makes one of.
        standalone = world and isinstance(record, Node | VirtualSwitch)
        if record.cluster not in estate.clusters and not standalone:
            ref(record, ("spec", "cluster"), "cluster", record.cluster, clusters)
    for cluster in estate.clusters.values():
        own = [n.name for n in index.nodes.get(cluster.name, ())]
        for i, node_name in enumerate(cluster.nodes):
            node = estate.nodes.get(node_name)
            if node is None:
                ref(cluster, ("spec", "nodes", i), "node", node_name, own)
            elif node.cluster != cluster.name:
                report(
                    cluster,
                    ("spec", "nodes", i),
                    f"node '{node_name}' says it belongs to cluster '{node.cluster}'",
                    f"a node whose spec.cluster is '{cluster.name}'",
                )
        network_names = [n.name for n in cluster.networks]
        lm = cluster.live_migration.network
        if lm is not None and lm not in network_names:
            ref(
                cluster,
                ("spec", "live_migration", "network"),
                "cluster network",
                lm,
                network_names,
            )
        if cluster.test_vm is not None:
            test_vm = estate.vms.get(cluster.test_vm)
            if test_vm is None or test_vm.cluster != cluster.name:
                cluster_vms = [v.name for v in index.vms.get(cluster.name, ())]
                ref(
                    cluster,
                    ("spec", "test_vm"),
                    "VM",
                    cluster.test_vm,
                    cluster_vms,
                    cluster.name,
                    _cluster_of(estate.vms, cluster.test_vm),
                )
    for node in estate.nodes.values():
        node_cluster = estate.clusters.get(node.cluster)
        if node_cluster is None:
            continue
        network_names = [n.name for n in node_cluster.networks]
        for i, nic in enumerate(node.nics):
            if nic.network is not None and nic.network not in network_names:
                ref(
                    node,
                    ("spec", "nics", i, "network"),
                    "cluster network",
                    nic.network,
                    network_names,
                )
    for switch in estate.switches.values():
        cfg = switch.config
        if cfg.type == "external" and not cfg.uplink_nic and not cfg.team_nics:
            report(
                switch,
                ("spec", "uplink_nic"),
                "an external switch needs an uplink NIC",
                "uplink_nic: the physical NIC it binds, or embedded_team: the NICs it teams",
            )
        if switch.config.type != "external" and switch.config.uplink_nic:
            report(
                switch,
                ("spec", "uplink_nic"),
                f"an {switch.config.type} switch binds no physical NIC",
                "remove uplink_nic, or make the switch external",
            )
        if switch.config.allowed_vlans and switch.config.native_vlan is None:
            report(
                switch,
                ("spec", "vlan_trunk"),
                "a trunk needs its native (untagged) VLAN",
                "native_vlan: a VLAN id, 1..4094",
            )
        uplink = switch.config.uplink_nic
        if uplink and switch.cluster in estate.clusters:
            for node in index.nodes.get(switch.cluster, ()):
                nic_names = [n.name for n in node.nics]
                if node.nics and uplink not in nic_names:
                    report(
                        switch,
                        ("spec", "uplink_nic"),
                        f"node '{node.name}' has no NIC '{uplink}'",
                        one_of(nic_names),
                    )
    for vm in estate.vms.values():
        if vm.cluster not in estate.clusters:
            continue
        members = index.members[vm.cluster]
        if vm.node is not None:
            node = estate.nodes.get(vm.node)
            if node is None or vm.node not in members:
                ref(
                    vm,
                    ("spec", "node"),
                    "node",
                    vm.node,
                    members,
                    vm.cluster,
                    _cluster_of(estate.nodes, vm.node),
                )
        for owner in sorted(vm.preferred_owners or ()):
            if owner not in members:
                ref(
                    vm,
                    ("spec", "preferred_owners"),
                    "node",
                    owner,
                    members,
                    vm.cluster,
                    _cluster_of(estate.nodes, owner),
                )
        switches = index.switches.get(vm.cluster, [])
        for i, vm_nic in enumerate(vm.nics):
            if vm_nic.switch not in switches:
                ref(
                    vm,
                    ("spec", "nics", i, "switch"),
                    "switch",
                    vm_nic.switch,
                    switches,
                    vm.cluster,
                    _cluster_of(estate.switches, vm_nic.switch),
                )
        volumes = index.volumes.get(vm.cluster, [])
        for i, disk in enumerate(vm.disks):
            if disk.volume not in volumes:
                ref(
                    vm,
                    ("spec", "disks", i, "volume"),
                    "volume",
                    disk.volume,
                    volumes,
                    vm.cluster,
                    _cluster_of(estate.volumes, disk.volume),
                )


def _check_cluster(
    estate: Estate, index: _ByCluster, cluster: Cluster, report: Report, world: bool
) -> None:
    profile = platform(cluster.platform)
    count = len(cluster.nodes)
    for i, address in enumerate(cluster.addresses):
        if network_of(cluster.networks, address) is None:
            held = subnets(cluster.networks)
            report(
                cluster,
                ("spec", "addresses", i),
                f"address {address} is in no cluster network's subnet",
                "an address in " + ", ".join(held)
                if held
                else "declare the network's subnet in spec.networks first",
            )
    if count > profile.max_nodes:
        report(
            cluster,
            ("spec", "nodes"),
            f"{count} nodes is more than platform {cluster.platform} allows",
            f"at most {profile.max_nodes} nodes",
        )
    vms = index.vms.get(cluster.name, [])
    if len(vms) > profile.max_vms_per_cluster:
        report(
            cluster,
            ("spec", "nodes"),
            f"{len(vms)} VMs is more than platform {cluster.platform} allows in one cluster",
            f"at most {profile.max_vms_per_cluster} VMs",
        )
    problem = quorum_problem(cluster.quorum, count, profile.cloud_witness)
    if problem and world and _windows_allows(cluster, count):
        problem = None  # a real cluster can be so: observed as it is; the planner advises
    if problem:
        if problem.startswith("cloud_witness is not available"):
            problem = f"cloud_witness is not available on platform {cluster.platform}"
        advice = _quorum_advice(cluster, count)
        needed = WITNESS_MODES.get(cluster.quorum.mode)
        if needed is not None and cluster.quorum.witness.kind != needed:
            advice = f"set {WITNESS_FIELDS[needed]}, or {advice}"
        report(cluster, ("spec", "quorum", "mode"), problem, advice)
    members = [estate.nodes[n] for n in cluster.nodes if n in estate.nodes]
    if members and not world:
        reference = members[0]
        for node in members[1:]:
            if node.hardware.baseline() != reference.hardware.baseline():
                fields = ("model", "cpu", "firmware", "driver_set", "patch_level")
                diff = [
                    f
                    for f, a, b in zip(
                        fields, node.hardware.baseline(), reference.hardware.baseline(), strict=True
                    )
                    if a != b
                ]
                report(
                    node,
                    ("spec", "hardware", diff[0]),
                    f"hardware differs from node '{reference.name}' in {', '.join(diff)}: "
                    "an unsupported cluster configuration",
                    "identical model, CPU, firmware, drivers and patches on every node",
                )
    if not world and members:
        largest = max(usable_memory_mib(n, cluster) for n in members)
        for vm in vms:
            if vm.memory_mib > profile.max_vm_memory_mib(vm.generation):
                continue  # reported against the platform's maximum (_check_vm_size)
            cost = vm_cost_mib(vm, cluster)
            if cost > largest:
                report(
                    vm,
                    ("spec", "memory_mib"),
                    f"needs {cost} MiB with overhead, more than any node of '{cluster.name}' "
                    f"can give ({largest} MiB usable after the parent reserve)",
                    f"memory_mib at most about {largest - (cost - vm.memory_mib)}",
                )
    pinned: dict[str, int] = defaultdict(int)
    for vm in vms:
        if vm.node is not None and vm.node in estate.nodes and vm.power_state == "running":
            pinned[vm.node] += vm_cost_mib(vm, cluster, estate.nodes[vm.node])
    for node_name, used in sorted(pinned.items()):
        usable = usable_memory_mib(estate.nodes[node_name], cluster)
        if used > usable and not world:
            report(
                estate.nodes[node_name],
                ("spec", "hardware", "memory_mib"),
                f"VMs pinned here need {used} MiB, more than its {usable} MiB usable",
                "pin fewer VMs to this node",
            )
    groups: dict[str, list[VirtualMachine]] = defaultdict(list)
    for vm in vms:
        if vm.anti_affinity_group and vm.anti_affinity_mode == "hard":
            groups[vm.anti_affinity_group].append(vm)
    for group, group_vms in sorted(groups.items()):
        pinned_by: dict[str, str] = {}
        for vm in group_vms:
            if vm.node is None or world:  # in a world, node is where it runs, not a pin
                continue
            if vm.node in pinned_by:
                report(
                    vm,
                    ("spec", "node"),
                    f"VM '{pinned_by[vm.node]}' of hard anti-affinity group '{group}' is "
                    f"pinned to node '{vm.node}' too",
                    "a different node for each VM of the group, or anti_affinity_mode: soft",
                )
            else:
                pinned_by[vm.node] = vm.name
        if len(group_vms) > count and count:
            report(
                group_vms[-1],
                ("spec", "anti_affinity_group"),
                f"hard anti-affinity group '{group}' has {len(group_vms)} VMs but the "
                f"cluster has {count} nodes",
                "at most one VM of the group per node",
            )
    for i, window in enumerate(cluster.maintenance_windows):
        if not _known_time_zone(window.time_zone):
            report(
                cluster,
                ("spec", "maintenance_windows", i, "time_zone"),
                f"unknown time zone '{window.time_zone}'",
                "an IANA time zone name such as UTC or Europe/London",
            )


def _known_time_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _witness_choices(cluster: Cluster) -> str:
    fields = ["witness.disk", "witness.file_share"]
    if platform(cluster.platform).cloud_witness:
        fields.append("witness.cloud_account")
    return ", ".join(fields[:-1]) + " or " + fields[-1]


def _windows_allows(cluster: Cluster, count: int) -> bool:
    """A quorum Windows accepts but we would not recommend: node majority on an even count,
    or a witness mode (with its witness) on an odd count."""
    mode, needed = cluster.quorum.mode, WITNESS_MODES.get(cluster.quorum.mode)
    if mode == "node_majority":
        return count % 2 == 0 and cluster.quorum.witness.kind is None
    return needed is not None and cluster.quorum.witness.kind == needed and count % 2 == 1


def _quorum_advice(cluster: Cluster, count: int) -> str:
    """What the recommended mode is for this node count, and the witness it needs."""
    witness = cluster.quorum.witness
    if witness.kind == "cloud" and not platform(cluster.platform).cloud_witness:
        witness = Witness()
    mode = recommended_mode(count, witness)
    needed = WITNESS_MODES.get(mode)
    advice = f"recommended, which is {mode} for {count} node(s)"
    if needed is None:
        return advice
    if witness.kind == needed:
        return f"{advice} with the {WITNESS_FIELDS[needed]} given"
    return f"{advice} with {_witness_choices(cluster)} set"


def _check_recommended_quorum(cluster: Cluster, report: Report, warn: Report) -> None:
    """``recommended`` resolves to a mode by node count: it needs the witness that mode uses."""
    if cluster.quorum.mode != "recommended":
        return
    witness = cluster.quorum.witness
    if witness.kind == "cloud" and not platform(cluster.platform).cloud_witness:
        report(
            cluster,
            ("spec", "quorum", "witness", "cloud_account"),
            f"platform {cluster.platform} has no cloud witness",
            _witness_choices(cluster),
        )
        return
    count = len(cluster.nodes)
    if count % 2 == 0 and witness.kind is None:
        warn(
            cluster,
            ("spec", "quorum"),
            f"recommended quorum for {count} nodes is {recommended_mode(count, witness)}, "
            "which needs a witness, and none is given",
            _witness_choices(cluster),
        )


def _check_vm_size(vm: VirtualMachine, cluster: Cluster, report: Report) -> None:
    """The largest VM the platform runs, for the VM's generation."""
    profile = platform(cluster.platform)
    gen = f"generation-{vm.generation} " if profile.generation2 else ""
    max_vcpus = profile.max_vm_vcpus(vm.generation)
    if vm.vcpus > max_vcpus:
        report(
            vm,
            ("spec", "vcpus"),
            f"{vm.vcpus} vCPUs is more than a {gen}VM has on platform {cluster.platform}",
            f"at most {max_vcpus}",
        )
    max_memory = profile.max_vm_memory_mib(vm.generation)
    if vm.memory_mib > max_memory:
        report(
            vm,
            ("spec", "memory_mib"),
            f"{vm.memory_mib} MiB is more memory than a {gen}VM has on platform {cluster.platform}",
            f"at most {max_memory} MiB ({max_memory // 1024} GiB)",
        )


def _check_team(estate: Estate, switch: VirtualSwitch, report: Report) -> None:
    """Switch Embedded Teaming: 2016 and later, an external switch, instead of one uplink."""
    team = switch.config.team_nics
    if not team:
        return
    path = ("spec", "embedded_team")
    cluster = estate.clusters.get(switch.cluster)
    if cluster is not None and not platform(cluster.platform).embedded_teaming:
        report(
            switch,
            path,
            f"switch embedded teaming needs Windows Server 2016 or later; cluster "
            f"'{cluster.name}' runs {cluster.platform}",
            "a single uplink_nic, or an LBFO team made outside the reconciler",
        )
    if switch.config.uplink_nic is not None:
        report(switch, path, "a switch has uplink_nic or embedded_team, not both", "remove one")
    if switch.config.type != "external":
        report(
            switch, path, f"a {switch.config.type} switch has no uplink to team", "type: external"
        )


def _check_dynamic_memory(vm: VirtualMachine, cluster: Cluster | None, report: Report) -> None:
    """minimum_mib <= memory_mib (the startup memory) <= maximum_mib, within the platform."""
    dynamic = vm.memory_model()
    if dynamic is None:
        return
    path = ("spec", "dynamic_memory")
    if not dynamic.minimum_mib <= vm.memory_mib <= dynamic.maximum_mib:
        report(
            vm,
            path,
            f"the startup memory (memory_mib {vm.memory_mib}) is not between minimum_mib "
            f"{dynamic.minimum_mib} and maximum_mib {dynamic.maximum_mib}",
            "minimum_mib <= memory_mib <= maximum_mib",
        )
    if cluster is None:
        return
    profile = platform(cluster.platform)
    if not profile.dynamic_memory_minimum and dynamic.minimum_mib != vm.memory_mib:
        report(
            vm,
            (*path, "minimum_mib"),
            f"platform {cluster.platform} has no minimum below the startup memory",
            f"minimum_mib: {vm.memory_mib} (the memory_mib)",
        )
    largest = profile.max_vm_memory_mib(vm.generation)
    if dynamic.maximum_mib > largest:
        report(
            vm,
            (*path, "maximum_mib"),
            f"{dynamic.maximum_mib} MiB is more memory than a VM has on platform "
            f"{cluster.platform}",
            f"at most {largest} MiB",
        )


def _check_vm(estate: Estate, vm: VirtualMachine, report: Report) -> None:
    cluster = estate.clusters.get(vm.cluster)
    seen_slots: dict[tuple[str, int, int], str] = {}
    seen_names: set[str] = set()
    for i, disk in enumerate(vm.disks):
        base = ("spec", "disks", i)
        if disk.name in seen_names:
            report(
                vm, (*base, "name"), f"two disks are named '{disk.name}'", "a unique name per disk"
            )
        seen_names.add(disk.name)
        if disk.controller == "ide":
            if disk.controller_number >= IDE_CONTROLLERS:
                report(
                    vm,
                    (*base, "controller_number"),
                    f"IDE controller {disk.controller_number} does not exist",
                    f"IDE controllers 0..{IDE_CONTROLLERS - 1}",
                )
            if disk.slot >= IDE_SLOTS:
                report(
                    vm,
                    (*base, "slot"),
                    f"IDE slot {disk.slot} does not exist",
                    f"IDE slots 0..{IDE_SLOTS - 1}",
                )
            if vm.generation == 2:
                report(vm, (*base, "controller"), "a generation-2 VM has no IDE controller", "scsi")
        else:
            if disk.controller_number >= SCSI_CONTROLLERS:
                report(
                    vm,
                    (*base, "controller_number"),
                    f"SCSI controller {disk.controller_number} does not exist",
                    f"SCSI controllers 0..{SCSI_CONTROLLERS - 1}",
                )
            elif vm.scsi_controllers is not None and disk.controller_number >= vm.scsi_controllers:
                report(
                    vm,
                    (*base, "controller_number"),
                    f"SCSI controller {disk.controller_number} does not exist: the VM "
                    f"declares scsi_controllers: {vm.scsi_controllers}",
                    f"controller_number below {vm.scsi_controllers}, or scsi_controllers: "
                    f"{disk.controller_number + 1}",
                )
            if disk.slot >= SCSI_SLOTS:
                report(
                    vm,
                    (*base, "slot"),
                    f"SCSI slot {disk.slot} does not exist",
                    f"SCSI slots 0..{SCSI_SLOTS - 1}",
                )
        key = (disk.controller, disk.controller_number, disk.slot)
        if key in seen_slots:
            report(
                vm,
                (*base, "slot"),
                f"{disk.controller.upper()} {disk.controller_number}:{disk.slot} is already "
                f"used by disk '{seen_slots[key]}'",
                "one disk per controller slot",
            )
        else:
            seen_slots[key] = disk.name
        if disk.format == "vhd" and disk.size_gib > VHD_MAX_GIB:
            report(
                vm,
                (*base, "size_gib"),
                f"a VHD of {disk.size_gib} GiB is too large",
                f"VHD at most {VHD_MAX_GIB} GiB; use vhdx for larger disks",
            )
        if disk.format == "vhdx" and disk.size_gib > VHDX_MAX_GIB:
            report(
                vm,
                (*base, "size_gib"),
                f"a VHDX of {disk.size_gib} GiB is too large",
                f"VHDX at most {VHDX_MAX_GIB} GiB (64 TiB)",
            )
        if disk.format == "vhd" and vm.generation == 2:
            report(vm, (*base, "format"), "a generation-2 VM cannot use a .vhd disk", "vhdx")
        if disk.format == "vhdx" and cluster and not platform(cluster.platform).vhdx:
            report(vm, (*base, "format"), f"platform {cluster.platform} has no VHDX", "vhd")
        if disk.parent and disk.type != "differencing":
            report(
                vm,
                (*base, "parent"),
                f"only a differencing disk has a parent (this one is {disk.type})",
                "remove parent, or type: differencing",
            )
        if disk.type == "differencing" and not disk.parent:
            report(
                vm,
                (*base, "parent"),
                "a differencing disk needs a parent disk",
                "parent: the parent disk's name",
            )
    if cluster is not None:
        _check_vm_size(vm, cluster, report)
    _check_dynamic_memory(vm, cluster, report)
    if vm.generation == 2 and cluster is not None and not platform(cluster.platform).generation2:
        report(
            vm,
            ("spec", "generation"),
            f"platform {cluster.platform} has no generation-2 VMs",
            "generation: 1",
        )
    boot = vm.boot_disk()
    if vm.generation == 1 and boot is not None and boot.controller != "ide":
        index = vm.disks.index(boot)
        report(
            vm,
            ("spec", "disks", index, "controller"),
            f"generation-1 VM boots from disk '{boot.name}' on SCSI",
            "a generation-1 VM boots from IDE: put the boot disk on ide",
        )
    if cluster is None:
        return
    names = [n.name for n in vm.nics]
    for i, nic in enumerate(vm.nics):
        if names.index(nic.name) != i:
            report(
                vm,
                ("spec", "nics", i, "name"),
                f"two adapters are named '{nic.name}'",
                "a unique name per adapter",
            )
        if nic.vlan is not None and nic.trunk:
            report(
                vm,
                ("spec", "nics", i, "trunk"),
                "an adapter is in access mode (vlan) or trunk mode, not both",
                "remove vlan, or remove trunk",
            )
        switch = estate.switches.get(nic.switch)
        if switch is not None and nic.trunk and switch.config.allowed_vlans:
            carried = switch.config.allowed_vlans | {switch.config.native_vlan}
            missing = sorted(nic.vlans() - carried)
            if missing:
                report(
                    vm,
                    ("spec", "nics", i, "trunk", "allowed"),
                    f"VLAN(s) {format_vlan_list(frozenset(missing))} are not on the trunk of "
                    f"switch '{switch.name}'",
                    f"allowed: {format_vlan_list(switch.config.allowed_vlans)}",
                )
        if switch is None or nic.vlan is None:
            continue
        cfg = switch.config
        if cfg.allowed_vlans and nic.vlan not in cfg.allowed_vlans and nic.vlan != cfg.native_vlan:
            report(
                vm,
                ("spec", "nics", i, "vlan"),
                f"VLAN {nic.vlan} is not allowed on the trunk of switch '{switch.name}'",
                f"allowed: {format_vlan_list(cfg.allowed_vlans)}",
            )
