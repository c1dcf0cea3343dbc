"""observe(): batched reads per node and per cluster, mapped to the model.

Round trips grow with nodes, never with VMs: every per-VM fact comes from one call per node
(``Get-VM``, ``Get-VMHardDiskDrive -VMName *``, ``Get-VHD -Path <all of that node's disks>``).
Cluster facts are read once, on a member node (never through the cluster name).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from reconciler.model.records import (
    Cluster,
    ClusterSharedVolume,
    ClusterStatus,
    Estate,
    Hardware,
    LiveMigrationSettings,
    Node,
    NodeNic,
    NodeState,
    NodeStatus,
    Offloads,
    Quorum,
    SwitchConfig,
    VirtualMachine,
    VirtualSwitch,
    VmStatus,
    VolumeStatus,
    frozen_map,
)
from reconciler.providers.hyperv import model_map as m
from reconciler.providers.hyperv.wmi1 import observe as wmi1


class CallSession(Protocol):
    round_trips: int

    def call(
        self,
        cmdlet: str,
        params: Mapping[str, Any] | None = None,
        *,
        then: Sequence[tuple[str, Mapping[str, Any]]] = (),
        deadline_seconds: float = 120.0,
    ) -> list[Any]: ...

    def close(self) -> None: ...


class Sessions(Protocol):
    def get(self, node: str) -> CallSession: ...


class NodeUnreachable(Exception):
    pass


@dataclass
class NodeFacts:
    name: str
    platform: str | None = None
    reachable: bool = True
    member: bool = False
    cluster_state: str | None = None  # Up / Down / Paused (members only)
    node: Node | None = None
    vms: list[VirtualMachine] = field(default_factory=list)


@dataclass
class Observer:
    sessions: Sessions
    is_unreachable: Any  # callable(exc) -> bool: a connection failure (not a command error)
    is_command_not_found: Any
    warnings: m.Warnings = field(default_factory=m.Warnings)
    wmi1_nodes: set[str] = field(default_factory=set)  # 2008 R2: read through WMI v1

    def call(
        self,
        node: str,
        cmdlet: str,
        params: Mapping[str, Any] | None = None,
        then: Sequence[tuple[str, Mapping[str, Any]]] = (),
    ) -> list[dict[str, Any]]:
        try:
            out = self.sessions.get(node).call(cmdlet, params or {}, then=then)
        except Exception as exc:
            if self.is_unreachable(exc):
                raise NodeUnreachable(str(exc)) from exc
            raise
        return [x for x in out if isinstance(x, dict)]

    # --- platform ------------------------------------------------------------------------------

    def platform(self, cluster: str, node: str) -> str | None:
        try:
            os_info = self.call(node, "Get-CimInstance", {"ClassName": "Win32_OperatingSystem"})
        except Exception as exc:
            if not self.is_command_not_found(exc):
                raise
            # Windows PowerShell 2.0 (2008 R2) has no CIM cmdlets; WMI v1 answers everywhere.
            os_info = self.call(node, "Get-WmiObject", {"Class": "Win32_OperatingSystem"})
        if not os_info:
            self.warnings.add(f"Node/{node}", "Win32_OperatingSystem gave nothing")
            return None
        version = str(os_info[0].get("Version"))
        name = m.platform_of(version)
        if name == "2008r2":
            self.wmi1_nodes.add(node)
        if name is None:
            self.warnings.add(
                f"Node/{node}", f"Windows version {version} is not known to the model"
            )
        return name

    # --- per cluster ---------------------------------------------------------------------------

    def cluster_reads(self, cluster: str, via: str) -> dict[str, Any]:
        c: dict[str, Any] = {}
        c["cluster"] = self.call(via, "Get-Cluster")
        c["params"] = self.call(via, "Get-Cluster", then=[("Get-ClusterParameter", {})])
        c["nodes"] = self.call(via, "Get-ClusterNode")
        c["quorum"] = self.call(via, "Get-ClusterQuorum")
        c["resources"] = self.call(via, "Get-ClusterResource")
        c["csv"] = self.call(via, "Get-ClusterSharedVolume")
        c.update(self.network_reads(via))
        c["groups"] = self.call(via, "Get-ClusterGroup")
        c["owners"] = self.owners(via)
        # From 2012 R2 on: which nodes reach each CSV only through its coordinator, and why.
        c["csv_state"] = (
            [] if via in self.wmi1_nodes else self.call(via, "Get-ClusterSharedVolumeState")
        )
        c["addresses"] = self.addresses(via, c["resources"])
        quorum = c["quorum"][0] if c["quorum"] else {}
        witness = str(quorum.get("QuorumResource") or "")
        c["witness"] = next((r for r in c["resources"] if r.get("Name") == witness), None)
        c["witness_params"] = {}
        if c["witness"] is not None and c["witness"].get("ResourceType") != "Physical Disk":
            got = self.call(
                via, "Get-ClusterResource", {"Name": witness}, then=[("Get-ClusterParameter", {})]
            )
            c["witness_params"] = {str(p["Name"]): p.get("Value") for p in got}
        return c

    def network_reads(self, via: str) -> dict[str, Any]:
        c: dict[str, Any] = {
            "networks": self.call(via, "Get-ClusterNetwork"),
            "netifs": self.call(via, "Get-ClusterNetworkInterface"),
        }
        # 2008 R2 has no Hyper-V module: its migration networks are the VM resource type's.
        c["migration"] = (
            wmi1.migration_networks(self.call, via, c["networks"])
            if via in self.wmi1_nodes
            else self.call(via, "Get-VMMigrationNetwork")
        )
        return c

    def addresses(self, via: str, resources: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
        """The cluster name's static addresses: its core group's IP Address resources."""
        ips = [
            str(r["Name"])
            for r in resources
            if str(r.get("ResourceType")) == "IP Address"
            and str(r.get("OwnerGroup")) == "Cluster Group"
        ]
        if not ips:
            return ()
        rows = self.call(
            via,
            "Get-ClusterResource",
            {"Name": ips},
            then=[("Get-ClusterParameter", {"Name": ["Address"]})],
        )
        return tuple(sorted(m.address_owners(rows)))

    def owners(self, via: str, group: str | None = None) -> dict[str, frozenset[str]]:
        """Preferred owners of every VM role (one pipeline), or of one group."""
        if via in self.wmi1_nodes:
            return {}  # the 2008 R2 path does not manage preferred owners (yet)
        which = {"Name": [group]} if group else {}
        return m.owner_lists(
            self.call(via, "Get-ClusterGroup", which, then=[("Get-ClusterOwnerNode", {})])
        )

    def cluster_record(
        self, name: str, platform: str, c: Mapping[str, Any], speeds: Mapping[tuple[str, str], int]
    ) -> Cluster:
        params = {str(p["Name"]): p.get("Value") for p in c["params"]}
        status = ClusterStatus(
            monitoring_maintenance=bool(int(params.get("ReconcilerMonitoringMaintenance") or 0)),
            rolling_update_done=str(params.get("ReconcilerRollingUpdateDone") or "") or None,
            rolling_update_in_progress=(
                str(params.get("ReconcilerRollingUpdateInProgress") or "") or None
            ),
            updated_nodes=m.node_list(params.get("ReconcilerUpdatedNodes")),
            pending_nodes=m.node_list(params.get("ReconcilerPendingNodes")),
            tested_nodes=m.node_list(params.get("ReconcilerTestedNodes")),
        )
        quorum = c["quorum"][0] if c["quorum"] else {}
        mode = m.QUORUM.get(str(quorum.get("QuorumType")))
        if mode is None:
            self.warnings.add(
                f"Cluster/{name}", f"quorum type {quorum.get('QuorumType')} is unknown"
            )
            mode = "recommended"
        migration_subnets = {str(x.get("Subnet")) for x in c["migration"]}
        networks = []
        for net in c["networks"]:
            links = [
                speeds.get((str(i.get("Node")), str(i.get("Adapter"))), 0)
                for i in c["netifs"]
                if i.get("Network") == net.get("Name")
            ]
            networks.append(m.cluster_network(net, [s for s in links if s], migration_subnets))
        lm = next((n.name for n in networks if "live_migration" in n.roles), None)
        return Cluster(
            name=name,
            platform=platform,  # type: ignore[arg-type]
            nodes=tuple(str(n["Name"]) for n in c["nodes"]),
            quorum=Quorum(mode, m.witness_of(c["witness"], c["witness_params"])),
            networks=tuple(networks),
            live_migration=LiveMigrationSettings(network=lm),
            addresses=tuple(c.get("addresses") or ()),
            status=status,
        )

    # --- per node ------------------------------------------------------------------------------

    def script(self, node: str, text: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        try:
            out = self.sessions.get(node).script(text, params)  # type: ignore[attr-defined]
        except Exception as exc:
            if self.is_unreachable(exc):
                raise NodeUnreachable(str(exc)) from exc
            raise
        return [x for x in out if isinstance(x, dict)]

    def disks(self, node: str) -> list[dict[str, Any]]:
        if node in self.wmi1_nodes:
            return list(wmi1.node_reads(self.call, node)["disks"])
        return self.call(node, "Get-Disk")

    def node_reads(self, node: str) -> dict[str, Any]:
        if node in self.wmi1_nodes:
            return wmi1.node_reads(self.call, node, self.script)
        r: dict[str, Any] = {}
        for cls in ("Win32_ComputerSystem", "Win32_Processor", "Win32_BIOS"):
            r[cls] = self.call(node, "Get-CimInstance", {"ClassName": cls})
        try:
            r["registry"] = self.call(node, "Get-ItemProperty", {"Path": m.REGISTRY_KEY})
        except NodeUnreachable:
            raise
        except Exception:
            r["registry"] = []
        r["features"] = self.call(
            node, "Get-WindowsFeature", {"Name": ["Hyper-V", "Failover-Clustering"]}
        )
        r["adapters"] = self.call(node, "Get-NetAdapter")
        r["vmq"] = self.call(node, "Get-NetAdapterVmq")
        r["jumbo"] = self.call(
            node, "Get-NetAdapterAdvancedProperty", {"RegistryKeyword": ["*JumboPacket"]}
        )
        r["switches"] = self.call(node, "Get-VMSwitch")
        r["host_vlans"] = self.call(node, "Get-VMNetworkAdapterVlan", {"ManagementOS": None})
        r["disks"] = self.call(node, "Get-Disk")
        return r

    def vm_reads(self, node: str, names: Sequence[str] | None = None) -> dict[str, Any]:
        if node in self.wmi1_nodes:
            return wmi1.vm_reads(self.call, self.script, node, names)
        r: dict[str, Any] = {}
        which = list(names) if names else ["*"]
        r["vms"] = self.call(node, "Get-VM", {"Name": which} if names else {})
        if not r["vms"]:
            return {"vms": [], "hdds": [], "vhds": [], "nics": [], "vlans": [], "scsi": []}
        r["hdds"] = self.call(node, "Get-VMHardDiskDrive", {"VMName": which})
        r["scsi"] = self.call(node, "Get-VMScsiController", {"VMName": which})
        # The buffer is on Get-VMMemory only: asked for the VMs with dynamic memory, if any.
        dynamic = [str(v["Name"]) for v in r["vms"] if v.get("DynamicMemoryEnabled") is True]
        r["memory"] = self.call(node, "Get-VMMemory", {"VMName": dynamic}) if dynamic else []
        r["nics"] = self.call(node, "Get-VMNetworkAdapter", {"VMName": which})
        r["vlans"] = self.call(node, "Get-VMNetworkAdapterVlan", {"VMName": which})
        paths = [str(h["Path"]) for h in r["hdds"] if h.get("Path")]
        r["vhds"] = self.call(node, "Get-VHD", {"Path": paths}) if paths else []
        return r

    def node_record(
        self,
        name: str,
        cluster: str,
        r: Mapping[str, Any],
        facts: NodeFacts,
        netifs: Sequence[Mapping[str, Any]],
        roles: Mapping[str, tuple[str, ...]],
        volumes: Iterable[str],
    ) -> Node:
        where = f"Node/{name}"
        cs = r["Win32_ComputerSystem"][0] if r["Win32_ComputerSystem"] else {}
        bios = r["Win32_BIOS"][0] if r["Win32_BIOS"] else {}
        reg = r["registry"][0] if r["registry"] else {}
        for key in ("DriverSet", "PatchLevel"):
            if not reg.get(key):
                self.warnings.add(where, f"{m.REGISTRY_KEY}\\{key} is not set")
        procs = r["Win32_Processor"]
        hardware = Hardware(
            model=str(cs.get("Model", "")),
            cpu=m.cpu_text(procs),
            memory_mib=int(cs.get("TotalPhysicalMemory", 0)) // m.MIB,
            firmware=str(bios.get("SMBIOSBIOSVersion", "")),
            driver_set=str(reg.get("DriverSet") or "unknown"),
            patch_level=str(reg.get("PatchLevel") or "unknown"),
            slat=all(bool(p.get("SecondLevelAddressTranslationExtensions")) for p in procs),
        )
        network_of = {
            str(i.get("Adapter")): str(i.get("Network")) for i in netifs if i.get("Node") == name
        }
        reported = frozenset() if r.get("offloads_unread") else frozenset({"vmq", "jumbo_frames"})
        vmq = {str(v.get("Name")): bool(v.get("Enabled")) for v in r.get("vmq", [])}
        jumbo = {
            str(j.get("Name")): any(int(x) > 1514 for x in j.get("RegistryValue") or [])
            for j in r.get("jumbo", [])
        }
        nics = tuple(
            NodeNic(
                name=str(a["Name"]),
                roles=roles.get(network_of.get(str(a["Name"]), ""), ()),  # type: ignore[arg-type]
                network=network_of.get(str(a["Name"])),
                speed_mbps=int(a.get("Speed", 0)) // 1_000_000,
                # TCP Chimney has no per-adapter cmdlet: not observed (always False).
                offloads=Offloads(
                    vmq=vmq.get(str(a["Name"]), False),
                    jumbo_frames=jumbo.get(str(a["Name"]), False),
                    reported=reported,
                ),
            )
            for a in r["adapters"]
        )
        by_description = {str(a.get("InterfaceDescription")): str(a["Name"]) for a in r["adapters"]}
        host_vlans = {str((v.get("ParentAdapter") or {}).get("Name")): v for v in r["host_vlans"]}
        switches: dict[str, SwitchConfig] = {}
        for sw in r["switches"]:
            cfg = m.switch_config(
                sw,
                host_vlans.get(str(sw["Name"])),
                by_description,
                f"{where} switch {sw['Name']}",
                self.warnings,
            )
            if cfg is not None:
                switches[str(sw["Name"])] = cfg
        known = set(volumes)
        luns = frozenset(str(d.get("FriendlyName")) for d in r["disks"]) & known
        installed = all(bool(f.get("Installed")) for f in r["features"]) and bool(r["features"])
        state: NodeState = "down" if facts.cluster_state == "Down" else "up"
        cut = frozenset(
            str(i.get("Network"))
            for i in netifs
            if i.get("Node") == name and str(i.get("State")) in m.NETIF_DOWN
        )
        return Node(
            name=name,
            cluster=cluster,
            hardware=hardware,
            nics=nics,
            maintenance=facts.cluster_state == "Paused",
            status=NodeStatus(
                state=state,
                switches=frozen_map(switches),
                luns=luns,
                roles_installed=installed,
                networks_down=cut,
            ),
        )

    def vm_records(
        self,
        node: str,
        cluster: str,
        r: Mapping[str, Any],
        groups: Mapping[str, Mapping[str, Any]],
        owners: Mapping[str, frozenset[str]] | None = None,
    ) -> list[VirtualMachine]:
        vhds = {str(v.get("Path", "")).lower(): v for v in r["vhds"]}
        memory = {str(x.get("VMName")): x for x in r.get("memory", [])}
        scsi = m.scsi_counts(r["scsi"]) if "scsi" in r else None  # None: not read (WMI v1)
        out: list[VirtualMachine] = []
        for vm in r["vms"]:
            name = str(vm["Name"])
            where = f"VirtualMachine/{name}"
            power = m.POWER.get(str(vm.get("State")))
            if power is None:
                self.warnings.add(
                    where, f"state {vm.get('State')} is not known to the model; left out"
                )
                continue
            vlans = {
                str((v.get("ParentAdapter") or {}).get("Name")): v
                for v in r["vlans"]
                if (v.get("ParentAdapter") or {}).get("VMName") == name
            }
            nics = []
            for a in r["nics"]:
                if a.get("VMName") != name:
                    continue
                nic = m.vm_nic(a, vlans.get(str(a["Name"])), where, self.warnings)
                if nic is not None:
                    nics.append(nic)
            disks = []
            for h in r["hdds"]:
                if h.get("VMName") != name:
                    continue
                disk = m.disk_record(
                    h, vhds.get(str(h.get("Path", "")).lower()), where, self.warnings
                )
                if disk is not None:
                    disks.append(disk)
            dynamic = m.dynamic_memory(vm, memory.get(name), where, self.warnings)
            if dynamic is False:
                continue  # its memory model could not be read: left out, not guessed
            group = groups.get(name)
            classes = list((group or {}).get("AntiAffinityClassNames") or [])
            start = self._automatic(vm, "AutomaticStartAction", m.START_ACTION, where)
            stop = self._automatic(vm, "AutomaticStopAction", m.STOP_ACTION, where)
            out.append(
                VirtualMachine(
                    name=name,
                    cluster=cluster,
                    memory_mib=int(vm.get("MemoryStartup", 0)) // m.MIB,
                    vcpus=int(vm.get("ProcessorCount", 1)),
                    generation=int(vm.get("Generation", 2)),
                    node=node,
                    power_state=power,  # type: ignore[arg-type]
                    highly_available=group is not None,
                    anti_affinity_group=str(classes[0]) if classes else None,
                    nics=tuple(nics),
                    disks=tuple(disks),
                    # No preferred owners on the host reads as not managed (None).
                    preferred_owners=(owners or {}).get(name) or None,
                    automatic_start_action=start,  # type: ignore[arg-type]
                    automatic_stop_action=stop,  # type: ignore[arg-type]
                    dynamic_memory=dynamic,
                    scsi_controllers=None if scsi is None else scsi.get(name, 0),
                    status=VmStatus(failed=str((group or {}).get("State")) == m.GROUP_FAILED),
                )
            )
        return out

    def _automatic(
        self, vm: Mapping[str, Any], key: str, words: Mapping[str, str], where: str
    ) -> str | None:
        value = vm.get(key)
        if value is None:
            return None  # not read on this path (WMI v1)
        word = words.get(str(value))
        if word is None:
            self.warnings.add(where, f"{key} {value} is not known to the model; left out")
        return word

    def volume_records(
        self,
        cluster: str,
        c: Mapping[str, Any],
        lun_sizes: Mapping[tuple[str, str], int],
        vms: Iterable[VirtualMachine],
        lun_ids: Mapping[tuple[str, str], str] | None = None,
    ) -> list[ClusterSharedVolume]:
        files: dict[str, float] = {}
        for vm in vms:
            for d in vm.disks:
                files[d.volume] = files.get(d.volume, 0.0) + d.used_gib()
        out: list[ClusterSharedVolume] = []
        for csv in c["csv"]:
            name = str(csv["Name"])
            where = f"ClusterSharedVolume/{name}"
            owner = str(csv.get("OwnerNode") or "") or None
            infos = list(csv.get("SharedVolumeInfo") or [])
            partition = (infos[0].get("Partition") or {}) if infos else {}
            if not partition:
                self.warnings.add(where, "no partition information; left out")
                continue
            size = m.gib(partition.get("Size", 0), where, self.warnings)
            lun_bytes = lun_sizes.get((owner or "", name))
            if size is None or lun_bytes is None:
                self.warnings.add(where, "LUN or partition size unknown; left out")
                continue
            lun = m.gib(lun_bytes, where, self.warnings)
            if lun is None:
                continue
            used = int(partition.get("UsedSpace", 0)) / m.GIB
            other = round(max(0.0, used - files.get(name, 0.0)), 6)
            redirected = frozen_map(m.csv_redirected(c.get("csv_state") or (), name))
            status = VolumeStatus(owner, other, redirected=redirected)
            array_id = (lun_ids or {}).get((owner or "", name))  # the disk's UniqueId
            out.append(ClusterSharedVolume(name, cluster, lun, size, status=status, lun=array_id))
        return out


def switches_of(cluster: str, nodes: Sequence[Node], members: Sequence[str]) -> list[VirtualSwitch]:
    """The cluster's switches as its first member has them (each host keeps its own copy)."""
    first = next((n for n in nodes if n.name in members), None)
    if first is None:
        return []
    return [
        VirtualSwitch(name, cluster, cfg) for name, cfg in sorted(first.status.switches.items())
    ]


def merge(base: Estate, part: Estate) -> Estate:
    """``base`` with every record of ``part`` put in (the result of a targeted observe)."""
    out = base
    for record in part.records():
        out = out.with_record(record)
    return out


def with_status(cluster: Cluster, status: ClusterStatus) -> Cluster:
    return replace(cluster, status=status)
