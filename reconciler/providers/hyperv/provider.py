"""The ``hyperv`` provider: real Windows Server failover clusters over PowerShell Remoting.

One runspace pool per node (opened on first use, reused, closed at the end), every command a
typed cmdlet call with -ErrorAction Stop and a deadline. observe() reads per node and per
cluster in batches; observe(scope) reads only what an action touched; apply() runs the
action's fixed cmdlet sequence (``act``) and waits for long operations with deadlines.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from reconciler.model.actions import ACTION_TYPES, Action
from reconciler.model.platforms import PLATFORM_NAMES
from reconciler.model.records import (
    Cluster,
    Estate,
    Node,
    NodeStatus,
    VirtualMachine,
    frozen_map,
)
from reconciler.providers.base import Capabilities, Outcome, ProviderError, Scope
from reconciler.providers.hyperv import act, act_cluster, act_lifecycle, act_storage
from reconciler.providers.hyperv import model_map as m
from reconciler.providers.hyperv import observe_storage as storage
from reconciler.providers.hyperv.connections import Connections, load_connections
from reconciler.providers.hyperv.credentials import (
    CredentialsError,
    install_redaction,
    load_credentials,
)
from reconciler.providers.hyperv.errors import CommandError, ConnectionFailed
from reconciler.providers.hyperv.observe import (
    NodeFacts,
    NodeUnreachable,
    Observer,
    Sessions,
    merge,
    switches_of,
)
from reconciler.providers.hyperv.session import Endpoint, NodeSession, SessionPool
from reconciler.providers.hyperv.targeting import CALL_SECONDS, NoTarget
from reconciler.providers.hyperv.wmi1 import act as wmi1_act

log = structlog.get_logger("reconciler.hyperv")

CONNECTIONS_ENV = "RECONCILER_CONNECTIONS"
SUPPORTED_PLATFORMS = frozenset(PLATFORM_NAMES)  # 2008 R2 through WMI v1 (``wmi1``)
# 2012 R2 and later: the Hyper-V and FailoverClusters modules.
MODERN_ACTIONS: dict[str, Callable[[act.Runner, Action], None]] = {
    **act.ACTIONS,
    **act_lifecycle.ACTIONS,
    **act_storage.ACTIONS,
    **act_cluster.ACTIONS,
}
POLL_SECONDS = 2.0


def _fatal(exc: BaseException) -> bool:
    """Wrong credentials or an untrusted certificate: every node will say the same."""
    text = str(exc)
    return isinstance(exc, ConnectionFailed) and text.startswith(
        ("authentication failed", "TLS verification failed")
    )


def _unreachable(exc: BaseException) -> bool:
    if _fatal(exc):
        raise ProviderError(str(exc)) from None
    return isinstance(exc, ConnectionFailed)


def _command_not_found(exc: BaseException) -> bool:
    return isinstance(exc, CommandError) and "CommandNotFoundException" in exc.fq_error_id


class _Pool:
    """Node name -> session, from the connections file and the credentials."""

    def __init__(self, connections: Connections) -> None:
        try:
            credentials = load_credentials(os.environ, connections.secrets_file)
        except CredentialsError as exc:  # missing, incomplete, or readable by others
            raise ProviderError(str(exc)) from None
        install_redaction([credentials.password])  # no log line ever shows it

        def endpoint(node: str) -> Endpoint:
            c = connections.node(node)
            return Endpoint(
                url=c.url,
                auth=c.auth,
                cert_validation=c.cert_validation,
                encryption=c.encryption,
                certificate_pem=c.certificate,
                certificate_key_pem=c.certificate_key,
            )

        self.pool = SessionPool(endpoint, credentials)

    def get(self, node: str) -> NodeSession:
        return self.pool.get(node)

    def round_trips(self) -> int:
        return self.pool.round_trips

    def close(self) -> None:
        self.pool.close_all()


class HyperVProvider:
    name = "hyperv"

    def __init__(
        self,
        state_dir: Path | None = None,
        connections: str | Path | Connections | None = None,
        sessions: Sessions | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        **_options: Any,
    ) -> None:
        if connections is None:
            connections = os.environ.get(CONNECTIONS_ENV) or None
        if connections is None:
            raise ProviderError(
                "the hyperv provider needs a connections file: give --connections FILE or set "
                f"{CONNECTIONS_ENV} (try 'reconciler sim serve-winrm WORLD --write-connections "
                "FILE' for a local peer)"
            )
        self.connections = (
            connections
            if isinstance(connections, Connections)
            else load_connections(Path(connections))
        )
        self._sessions: Any = sessions if sessions is not None else None
        self._sleep = sleep
        self._monotonic = monotonic
        self._known = Estate()  # the last observation, updated by each targeted one
        self._platforms: dict[str, str] = {}
        self._wmi1_nodes: set[str] = set()  # nodes observed as 2008 R2
        self.warnings: list[str] = []

    # --- sessions ------------------------------------------------------------------------------

    @property
    def sessions(self) -> Any:
        if self._sessions is None:
            self._sessions = _Pool(self.connections)
        return self._sessions

    def round_trips(self) -> int:
        pool = self._sessions
        if pool is None:
            return 0
        if hasattr(pool, "round_trips") and callable(pool.round_trips):
            return int(pool.round_trips())
        return 0

    def _observer(self) -> Observer:
        return Observer(
            self.sessions, _unreachable, _command_not_found, wmi1_nodes=self._wmi1_nodes
        )

    def _finish(self, observer: Observer) -> None:
        for warning in observer.warnings.items:
            log.warning("observation", warning=warning)
        self.warnings.extend(observer.warnings.items)

    # --- protocol ------------------------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        return Capabilities(
            name="hyperv",
            simulated=False,
            actions=frozenset(MODERN_ACTIONS),
            platforms=SUPPORTED_PLATFORMS,
            reasons=dict(act.NOT_DONE),
            platform_actions={"2008r2": frozenset(wmi1_act.ACTIONS)},
            platform_reasons={
                "2008r2": {
                    **{
                        k: "on Windows Server 2008 R2 (WMI v1 path): not built on this path "
                        "(2012 R2 and later do it with the Hyper-V module)"
                        for k in (*act_lifecycle.ACTIONS, *act_cluster.ACTIONS)
                    },
                    **{
                        k: "on Windows Server 2008 R2 (WMI v1 path): not built on this path "
                        "(2012 R2 and later do it with the FailoverClusters and Storage modules)"
                        for k in act_storage.ACTIONS
                    },
                    **wmi1_act.reasons(),
                }
            },
            platform_paths={"2008r2": wmi1_act.PATH},
            default_path=act.PATH,
        )

    def close(self) -> None:
        if self._sessions is not None and hasattr(self._sessions, "close"):
            self._sessions.close()

    def observe(self, scope: Scope | None = None) -> Estate:
        observer = self._observer()
        try:
            if scope is None:
                parts = {
                    name: self._observe_cluster(observer, name)
                    for name in self.connections.clusters
                }
                estate = Estate().with_clusters(parts)
                self._known = estate
                return estate
            if scope.cluster not in self.connections.clusters:
                raise ProviderError(
                    f"{self.connections.source}: no connections for cluster {scope.cluster}"
                )
            if not scope.objects:
                part = self._observe_cluster(observer, scope.cluster)
                self._known = self._known.with_clusters({scope.cluster: part})
                return part
            part = self._observe_scope(observer, scope)
            self._known = merge(self._known, part)
            return part
        finally:
            self._finish(observer)

    # --- a whole cluster -----------------------------------------------------------------------

    def _observe_cluster(self, ob: Observer, name: str) -> Estate:
        conn = self.connections.clusters[name]
        facts = {n: NodeFacts(n) for n in conn.nodes}
        for node in conn.nodes:
            try:
                facts[node].platform = ob.platform(name, node)
            except NodeUnreachable as exc:
                facts[node].reachable = False
                log.warning("node unreachable", node=node, error=str(exc))
        via = self._member(ob, name, [n for n in conn.nodes if facts[n].reachable])
        if via is None:
            return self._observe_standalone(ob, name, facts)
        c = ob.cluster_reads(name, via)
        members = [str(n["Name"]) for n in c["nodes"]]
        for n in c["nodes"]:
            if str(n["Name"]) in facts:
                facts[str(n["Name"])].member = True
                facts[str(n["Name"])].cluster_state = str(n.get("State"))
        platforms: set[str] = {
            p for n in members if n in facts and (p := facts[n].platform) is not None
        }
        if len(platforms) > 1:
            ob.warnings.add(
                f"Cluster/{name}", f"members run different releases: {sorted(platforms)}"
            )
        platform = sorted(platforms)[0] if platforms else None
        if platform is None:
            raise ProviderError(f"cannot tell which Windows Server release cluster {name} runs")
        self._platforms[name] = platform
        volumes = [str(v["Name"]) for v in c["csv"]]
        reads: dict[str, dict[str, Any]] = {}
        vm_reads: dict[str, dict[str, Any]] = {}
        for node in conn.nodes:
            if not facts[node].reachable:
                continue
            try:
                reads[node] = ob.node_reads(node)
                vm_reads[node] = ob.vm_reads(node)
            except NodeUnreachable:
                facts[node].reachable = False
        speeds = {
            (n, str(a["Name"])): int(a.get("Speed", 0)) // 1_000_000
            for n, r in reads.items()
            for a in r["adapters"]
        }
        cluster = ob.cluster_record(name, platform, c, speeds)
        roles = {net.name: net.roles for net in cluster.networks}
        netifs = list(c["netifs"])
        for node, r in reads.items():  # a node still to join: networks by its addresses
            if not facts[node].member and r.get("addresses"):
                netifs += m.netifs_by_address(node, r["addresses"], cluster.networks)
        # Presented LUNs no CSV has yet: the cluster's view, the same for every member.
        free = (
            {}
            if via in ob.wmi1_nodes or via not in reads
            else storage.free_luns(ob.call, via, reads[via]["disks"], c["resources"], ob.warnings)
        )
        nodes: list[Node] = []
        for node in conn.nodes:
            if node not in reads:
                ob.warnings.add(
                    f"Node/{node}", "unreachable: its hardware, switches and VMs are unknown"
                )
                continue
            record = ob.node_record(node, name, reads[node], facts[node], netifs, roles, volumes)
            if facts[node].member and free:
                record = replace(record, status=replace(record.status, free_luns=frozen_map(free)))
            nodes.append(record)
        groups = {
            str(g["Name"]): g for g in c["groups"] if str(g.get("GroupType")) == "VirtualMachine"
        }
        vms: list[VirtualMachine] = []
        for node, r in vm_reads.items():
            vms.extend(ob.vm_records(node, name, r, groups, c.get("owners")))
        lun_sizes = self._lun_sizes(c, reads)
        csvs = ob.volume_records(name, c, lun_sizes, vms, storage.lun_ids(reads))
        tables: dict[str, dict[str, Any]] = {
            "Cluster": {name: cluster},
            "Node": {n.name: n for n in nodes},
            "VirtualSwitch": {s.name: s for s in switches_of(name, nodes, members)},
            "ClusterSharedVolume": {v.name: v for v in csvs},
            "VirtualMachine": {v.name: v for v in vms},
        }
        return Estate.from_tables(tables)

    @staticmethod
    def _lun_sizes(
        c: Mapping[str, Any], reads: Mapping[str, Mapping[str, Any]]
    ) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        for node, r in reads.items():
            for d in r["disks"]:
                out[(node, str(d.get("FriendlyName")))] = int(d.get("Size", 0))
        return out

    def _observe_standalone(
        self, ob: Observer, name: str, facts: Mapping[str, NodeFacts]
    ) -> Estate:
        """A cluster still to form: its hosts as they stand, in no cluster (no Cluster record,
        as the world has it before create_cluster)."""
        hosts = [n for n, f in facts.items() if f.reachable]
        platforms = sorted({p for n in hosts if (p := facts[n].platform) is not None})
        if len(platforms) > 1:
            ob.warnings.add(f"Cluster/{name}", f"its hosts run different releases: {platforms}")
        if not platforms:
            raise ProviderError(f"cannot tell which Windows Server release {name}'s hosts run")
        self._platforms[name] = platforms[0]
        nodes: list[Node] = []
        vms: list[VirtualMachine] = []
        for node in hosts:
            try:
                reads, vm_reads = ob.node_reads(node), ob.vm_reads(node)
            except NodeUnreachable:
                ob.warnings.add(
                    f"Node/{node}", "unreachable: its hardware and switches are unknown"
                )
                continue
            nodes.append(ob.node_record(node, name, reads, facts[node], [], {}, []))
            vms.extend(ob.vm_records(node, name, vm_reads, {}, {}))
        switches = switches_of(name, nodes, [n.name for n in nodes])
        return Estate.from_tables(
            {
                "Node": {n.name: n for n in nodes},
                "VirtualSwitch": {s.name: s for s in switches},
                "VirtualMachine": {v.name: v for v in vms},
            }
        )

    def _member(self, ob: Observer, cluster: str, candidates: Sequence[str]) -> str | None:
        """A reachable member node to read cluster state from (never the cluster name); None
        when every host that answers is in no cluster (one still to form)."""
        last = ""
        outside = 0
        for node in candidates:
            try:
                got = ob.call(node, "Get-Cluster")
            except NodeUnreachable as exc:
                last = f": {exc}"
                continue
            except CommandError:
                outside += 1  # not a member (the cluster service does not answer there)
                continue
            if got and str(got[0].get("Name")) != cluster:
                ob.warnings.add(
                    f"Node/{node}", f"is in cluster {got[0].get('Name')}, not {cluster}"
                )
                continue
            return node
        if outside and outside == len(candidates):
            return None
        raise ProviderError(f"no member node of cluster {cluster} answers over WinRM{last}")

    # --- targeted ------------------------------------------------------------------------------

    def _observe_scope(self, ob: Observer, scope: Scope) -> Estate:
        """Only what an action can change, read fresh; what none changes comes from the last
        full read (hardware, networks, NICs)."""
        name = scope.cluster
        known = self._known.of_cluster(name)
        if name not in known.clusters:
            known = self._observe_cluster(ob, name)
            self._known = self._known.with_clusters({name: known})
            if name not in known.clusters:
                return known  # hosts still to form a cluster: read whole, nothing more to read
        conn = self.connections.clusters[name]
        members = [n for n in known.clusters[name].nodes if n in conn.nodes]
        up = [n for n in members if n in known.nodes and known.nodes[n].status.state == "up"]
        via = (up or members or list(conn.nodes))[0]
        kinds: dict[str, set[str]] = {}
        for ref in scope.objects:
            kind, _, obj = ref.partition("/")
            kinds.setdefault(kind, set()).add(obj)
        out: dict[str, dict[str, Any]] = {}
        states: dict[str, str] = {}
        if "Cluster" in kinds or "Node" in kinds:
            cluster_nodes = ob.call(via, "Get-ClusterNode")
            states = {str(n["Name"]): str(n.get("State")) for n in cluster_nodes}
        if "Cluster" in kinds:
            out["Cluster"] = {name: self._cluster_now(ob, via, known, cluster_nodes)}
        for node in sorted(kinds.get("Node", ())):
            record = self._node_now(ob, node, known, states.get(node))
            if record is not None:
                out.setdefault("Node", {})[node] = record
        vms: dict[str, VirtualMachine] = {}
        for vm_name in sorted(kinds.get("VirtualMachine", ())):
            vm = self._observe_vm(ob, name, via, vm_name, known, members)
            if vm is not None:
                vms[vm_name] = vm
        if vms:
            out["VirtualMachine"] = dict(vms)
        if "ClusterSharedVolume" in kinds:
            wanted = sorted(kinds["ClusterSharedVolume"])
            csv = ob.call(via, "Get-ClusterSharedVolume", {"Name": wanted})
            owners = {str(v.get("OwnerNode")) for v in csv if v.get("OwnerNode")}
            disks = {o: {"disks": ob.disks(o)} for o in sorted(owners)}
            all_vms = {**known.vms, **vms}
            state = (
                []
                if via in ob.wmi1_nodes
                else ob.call(via, "Get-ClusterSharedVolumeState", {"Name": wanted})
            )
            found = ob.volume_records(
                name,
                {"csv": csv, "csv_state": state},
                self._lun_sizes({}, disks),
                all_vms.values(),
                storage.lun_ids(disks),
            )
            out["ClusterSharedVolume"] = {v.name: v for v in found}
        return Estate.from_tables(out)

    def _cluster_now(
        self, ob: Observer, via: str, known: Estate, cluster_nodes: list[dict[str, Any]]
    ) -> Cluster:
        name = next(iter(known.clusters))
        c: dict[str, Any] = {
            "params": ob.call(via, "Get-Cluster", then=[("Get-ClusterParameter", {})]),
            "nodes": cluster_nodes,
            "quorum": ob.call(via, "Get-ClusterQuorum"),
            **ob.network_reads(via),  # names and roles: set_cluster_network reads them back
        }
        quorum = c["quorum"][0] if c["quorum"] else {}
        witness = str(quorum.get("QuorumResource") or "")
        c["witness"] = None
        c["witness_params"] = {}
        if witness:
            got = ob.call(via, "Get-ClusterResource", {"Name": [witness]})
            c["witness"] = got[0] if got else None
            if c["witness"] is not None and c["witness"].get("ResourceType") != "Physical Disk":
                params = ob.call(
                    via,
                    "Get-ClusterResource",
                    {"Name": [witness]},
                    then=[("Get-ClusterParameter", {})],
                )
                c["witness_params"] = {str(p["Name"]): p.get("Value") for p in params}
        c["addresses"] = ob.addresses(via, ob.call(via, "Get-ClusterResource"))
        # Link speeds are the NICs' (read whole before): a network's bandwidth stands.
        speeds = {
            (n.name, nic.name): nic.speed_mbps for n in known.nodes.values() for nic in n.nics
        }
        return ob.cluster_record(name, self._platforms[name], c, speeds)

    def _node_now(self, ob: Observer, node: str, known: Estate, state: str | None) -> Node | None:
        was = known.nodes.get(node)
        if was is None:
            return None
        if node in ob.wmi1_nodes or self._platforms.get(was.cluster) == "2008r2":
            ob.wmi1_nodes.add(node)
            fresh = ob.node_record(
                node,
                was.cluster,
                ob.node_reads(node),
                NodeFacts(node, cluster_state=state),
                [],
                {},
                [v.name for v in known.volumes.values()],
            )
            return replace(fresh, hardware=was.hardware, nics=was.nics, status=_cut(fresh, was))
        switches = ob.call(node, "Get-VMSwitch")
        vlans = ob.call(node, "Get-VMNetworkAdapterVlan", {"ManagementOS": None})
        disks = ob.call(node, "Get-Disk")
        registry = ob.call(node, "Get-ItemProperty", {"Path": m.REGISTRY_KEY})
        reads = {
            "Win32_ComputerSystem": [
                {
                    "Model": was.hardware.model,
                    "TotalPhysicalMemory": was.hardware.memory_mib * m.MIB,
                }
            ],
            "Win32_BIOS": [{"SMBIOSBIOSVersion": was.hardware.firmware}],
            "Win32_Processor": [],
            "registry": registry,
            "features": [{"Installed": was.status.roles_installed}],
            "adapters": ob.call(node, "Get-NetAdapter"),
            "switches": switches,
            "host_vlans": vlans,
            "disks": disks,
        }
        facts = NodeFacts(node, cluster_state=state)
        volumes = [v.name for v in known.volumes.values()]
        fresh = ob.node_record(node, was.cluster, reads, facts, [], {}, volumes)
        return replace(
            fresh,
            hardware=replace(
                was.hardware,
                driver_set=fresh.hardware.driver_set,
                patch_level=fresh.hardware.patch_level,
            ),
            nics=was.nics,
            status=_cut(fresh, was),
        )

    def _observe_vm(
        self, ob: Observer, cluster: str, via: str, vm: str, known: Estate, members: Sequence[str]
    ) -> VirtualMachine | None:
        groups = {str(g["Name"]): g for g in ob.call(via, "Get-ClusterGroup", {"Name": [vm]})}
        owners = ob.owners(via, vm) if vm in groups else {}
        owner = str(groups[vm].get("OwnerNode")) if vm in groups else None
        if owner is None:
            was = known.vms.get(vm)
            owner = was.node if was is not None else None
        candidates = [owner] if owner else []
        candidates += [n for n in members if n != owner]
        for node in candidates:
            try:
                reads = ob.vm_reads(node, [vm])
            except CommandError:
                continue  # not on this node
            records = ob.vm_records(node, cluster, reads, groups, owners)
            if records:
                return records[0]
        return None

    # --- apply ---------------------------------------------------------------------------------

    def apply(self, action: Action) -> Outcome:
        started = self._monotonic()
        on_2008r2 = self._platforms.get(action.cluster) == "2008r2"
        table, not_done = (
            (wmi1_act.ACTIONS, wmi1_act.NOT_DONE) if on_2008r2 else (MODERN_ACTIONS, act.NOT_DONE)
        )
        step = table.get(action.type)
        if step is None:
            why = not_done.get(action.type, f"no cmdlet sequence for {action.type}")
            return Outcome("permanent_error", f"the hyperv provider cannot {action.type}: {why}")
        estate = self._known
        if action.cluster not in estate.clusters:
            estate = merge(estate, self.observe(Scope(action.cluster)))
        runner = (
            wmi1_act.Runner(self._call, estate, self._poll, self._script)
            if on_2008r2
            else act.Runner(self._call, estate, self._poll, self._script)
        )
        try:
            step(runner, action)
        except CommandError as exc:
            status = (
                exc.status
                if exc.status in ("precondition_failed", "transient_error")
                else "permanent_error"
            )
            return Outcome(
                status,
                f"{exc.cmdlet} failed: {exc.message}",
                self._monotonic() - started,
                {"category": exc.category, "fully_qualified_error_id": exc.fq_error_id},
            )
        except ConnectionFailed as exc:
            return Outcome("transient_error", str(exc), self._monotonic() - started)
        except TimeoutError as exc:
            return Outcome("transient_error", f"{action.type}: {exc}", self._monotonic() - started)
        except (NoTarget, LookupError) as exc:
            return Outcome("precondition_failed", str(exc), self._monotonic() - started)
        except ValueError as exc:
            return Outcome("permanent_error", str(exc), self._monotonic() - started)
        return Outcome("done", f"{action.type} {action.target}", self._monotonic() - started)

    def _call(
        self,
        node: str,
        cmdlet: str,
        params: Mapping[str, Any],
        then: Sequence[tuple[str, Mapping[str, Any]]] = (),
        deadline: float = CALL_SECONDS,
    ) -> list[Any]:
        out = self.sessions.get(node).call(
            cmdlet, dict(params), then=then, deadline_seconds=deadline
        )
        return [x for x in out if isinstance(x, dict)]

    def _script(
        self, node: str, text: str, params: Mapping[str, Any], deadline: float = CALL_SECONDS
    ) -> list[Any]:
        out = self.sessions.get(node).script(text, dict(params), deadline_seconds=deadline)
        return [x for x in out if isinstance(x, dict)]

    def _poll(self, done: Callable[[], bool], deadline_seconds: float, what: str) -> None:
        until = self._monotonic() + deadline_seconds
        while not done():
            if self._monotonic() >= until:
                raise TimeoutError(f"waited {deadline_seconds:.0f} s for {what}")
            self._sleep(POLL_SECONDS)


SUPPORTED_ACTIONS: frozenset[str] = frozenset(MODERN_ACTIONS) & frozenset(ACTION_TYPES)
__all__ = ["SUPPORTED_ACTIONS", "HyperVProvider", "m"]


def _cut(fresh: Node, was: Node) -> NodeStatus:
    """A node read alone: its network interfaces' states and its presented LUNs (both read
    per cluster) stand as the cluster read had them."""
    return replace(
        fresh.status, networks_down=was.status.networks_down, free_luns=was.status.free_luns
    )
