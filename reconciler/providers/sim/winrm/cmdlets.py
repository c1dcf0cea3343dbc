"""The peer's Handler: Hyper-V and FailoverClusters cmdlets answered from the simulator's world.

One pipeline at a time (a lock): each command is bound strictly (``binding``), read from the
world in the state directory or applied through the simulator's apply, and answered with the
object shapes and error records of a Windows host. Every pipeline the peer receives is kept
(cmdlets and the wire types of their arguments) for the golden-pipeline tests.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from psrpcore.types import PSInt, PSInt16, PSInt64, PSObject, PSUInt64

from reconciler.model.actions import DISRUPTION, Action
from reconciler.model.records import Cluster, Disk, Estate, Node, VirtualMachine
from reconciler.providers.sim.provider import SimProvider
from reconciler.providers.sim.store import WorldStore
from reconciler.providers.sim.winrm import cmdlets_cluster
from reconciler.providers.sim.winrm.binding import PeerError, Spec, bind, error_action_stop
from reconciler.providers.sim.winrm.cmdlets_cluster import CLUSTER_SPECS
from reconciler.providers.sim.winrm.cmdlets_hardware import HARDWARE_SPECS
from reconciler.providers.sim.winrm.cmdlets_lifecycle import LIFECYCLE_SPECS
from reconciler.providers.sim.winrm.cmdlets_read import READ_SPECS
from reconciler.providers.sim.winrm.cmdlets_storage import STORAGE_SPECS, StorageState
from reconciler.providers.sim.winrm.cmdlets_write import WRITE_SPECS

CMDLETS: dict[str, tuple[Spec, Any]] = {
    **READ_SPECS,
    **WRITE_SPECS,
    **LIFECYCLE_SPECS,
    **HARDWARE_SPECS,
    **STORAGE_SPECS,  # the free LUNs' disks and resources too
    # IP Address resources beside the read, write and storage cmdlets they extend (its
    # Get-ClusterResource, Get-ClusterParameter and Remove-ClusterResource defer to storage's).
    **CLUSTER_SPECS,
}
# What a Windows Server 2008 R2 host (PowerShell 2.0: no Hyper-V, Storage or CIM cmdlets) has.
ON_2008R2 = frozenset(
    # Get-ClusterSharedVolumeState came with 2012 R2.
    {name for name in CMDLETS if "Cluster" in name and name != "Get-ClusterSharedVolumeState"}
    | {"Get-WmiObject", "Get-ItemProperty", "Remove-Item", "Get-WindowsFeature"}
)


def on_2008r2(name: str, is_script: bool) -> tuple[Spec, Any] | None:
    """A 2008 R2 host: FailoverClusters of that release, WMI v1, the provider's scripts."""
    from reconciler.providers.sim.winrm import wmi1, wmi1_scripts

    if is_script:
        return wmi1_scripts.script_entry(name)
    if name in wmi1_scripts.CMDLETS:
        return wmi1_scripts.CMDLETS[name]
    if name in wmi1.SPECS:
        return wmi1.SPECS[name]
    return CMDLETS.get(name) if name in ON_2008R2 else None


class CommandLike(Protocol):
    name: str
    parameters: list[tuple[str | None, Any]]
    is_script: bool


class WriterLike(Protocol):
    def write_output(self, value: Any) -> None: ...

    def write_error(
        self,
        message: str,
        *,
        category: str,
        fq_error_id: str,
        target: str | None = None,
        exception_type: str = "System.Exception",
    ) -> None: ...


def wire_value(value: Any) -> Any:
    """A received argument as reviewed data: its wire type and value."""
    if value is None:
        return {"Switch": True}
    if isinstance(value, bool):
        return {"B": value}
    if isinstance(value, PSUInt64):
        return {"U64": int(value)}
    if isinstance(value, PSInt64):
        return {"I64": int(value)}
    if isinstance(value, PSInt16):
        return {"I16": int(value)}
    if isinstance(value, PSInt | int):
        return {"I32": int(value)}
    if isinstance(value, str):
        return {"S": str(value)}
    if isinstance(value, list | tuple):
        return {"LST": [wire_value(v) for v in value]}
    if isinstance(value, float):
        return {"Db": value}
    return {type(value).__name__: str(value)}


@dataclass(frozen=True)
class Received:
    node: str
    commands: tuple[tuple[str, tuple[tuple[str | None, Any], ...]], ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "pipeline": [
                {"cmdlet": name, "parameters": [[p, wire_value(v)] for p, v in params]}
                for name, params in self.commands
            ],
        }


@dataclass
class Result:
    outputs: list[Any] = field(default_factory=list)
    errors: list[PeerError] = field(default_factory=list)
    terminating: PeerError | None = None


class Host:
    """One node's view while one pipeline runs."""

    def __init__(self, peer: HyperVPeer, node: str, sim: SimProvider, stop: bool) -> None:
        self.peer = peer
        self.node = node
        self.sim = sim
        self.stop_on_error = stop
        self.estate: Estate = peer.world()
        self.result = Result()

    @property
    def cluster(self) -> str:
        return self.this_node().cluster

    def this_node(self) -> Node:
        node = self.estate.nodes.get(self.node)
        if node is None:
            raise PeerError(
                f"The WinRM client cannot process the request: no host {self.node}.",
                "ResourceUnavailable",
                "WinRMHostNotFound",
                self.node,
            )
        return node

    def this_cluster(self) -> Cluster:
        node = self.this_node()
        cluster = self.estate.clusters.get(node.cluster)
        if cluster is None or node.name not in cluster.nodes:
            raise PeerError(
                f"The cluster service is not running on {node.name}: it is not a member of a "
                "failover cluster.",
                "ConnectionError",
                "ClusterNotFound,Microsoft.FailoverClusters.PowerShell.Commands",
                node.name,
            )
        return cluster

    def local_vms(self) -> list[VirtualMachine]:
        return self.estate.vms_on(self.node)

    def vm_id(self, name: str) -> str:
        return self.peer.guid("vm", name)

    def error(self, err: PeerError) -> None:
        """A non-terminating error; with -ErrorAction Stop it ends the pipeline."""
        if self.stop_on_error:
            raise err
        self.result.errors.append(err)

    def apply(
        self, spec: Spec, kind: str, target: str, params: Mapping[str, Any], subject: str | None
    ) -> None:
        cluster = self.this_node().cluster
        action = Action(
            id=f"{kind}:{subject or cluster}@{self.node}",
            type=kind,  # type: ignore[arg-type]
            target=target,
            cluster=cluster,
            params=dict(params),
            disruption=DISRUPTION[kind],
        )
        self.peer.forget()
        outcome = self.sim.apply(action)
        if outcome.status in ("done", "already_done"):
            self.estate = self.peer.world()
            self.peer.writes += 1
            if self.peer.after_write is not None:
                self.peer.after_write(self.peer.writes)
            return
        category, error_id = {
            "precondition_failed": ("InvalidOperation", "InvalidOperation"),
            "transient_error": ("ResourceBusy", "OperationFailed"),
        }.get(outcome.status, ("NotSpecified", "Unspecified"))
        raise PeerError(
            f"{spec.name} : {outcome.message}",
            category,
            spec.fqid(error_id),
            subject,
        )

    def delete_file(self, disk: Disk) -> None:
        """A detached VHD file deleted: its space no longer counts as other files."""
        before = self.sim.store.load(cluster=self.cluster)
        volume = before.volumes[disk.volume]
        kept = max(0.0, volume.status.other_used_gib - disk.used_gib())
        after = before.with_record(
            replace(volume, status=replace(volume.status, other_used_gib=kept))
        )
        self.peer.forget()
        self.sim.change_behind_back(before, after, f"deleted a VHD file of {disk.volume}")
        self.estate = self.peer.world()


class HyperVPeer:
    """The Handler the WinRM server calls for every pipeline."""

    def __init__(self, state_dir: Path, standalone_platform: str | None = None) -> None:
        self.state_dir = Path(state_dir)
        # The world keeps a release per cluster only: what a host in no cluster runs.
        self.standalone_platform = standalone_platform
        self.lock = threading.Lock()
        self.loose_vhds: dict[str, Disk] = {}  # created or detached, not attached to a VM
        self.seen_lun_gib: dict[tuple[str, str], int] = {}
        self.storage = StorageState()  # LUNs part-way to a CSV, mount folders
        self.received: list[Received] = []
        self.wmi_jobs: dict[str, dict[str, Any]] = {}  # node -> job id -> Msvm_ConcreteJob
        # IP Address resources: the world's addresses' names, and those on their way in or
        # out (cluster -> address -> name; cluster -> name -> parameters and state).
        self.ip_names: dict[str, dict[str, str]] = {}
        self.ip_pending: dict[str, dict[str, dict[str, Any]]] = {}
        self.writes = 0  # changes applied to the world
        # Test hook, called after each change took effect (e.g. to kill the client there).
        self.after_write: Callable[[int], None] | None = None
        self._sim: SimProvider | None = None
        self._world: Estate | None = None
        self._version: int | None = None

    def _provider(self) -> SimProvider:
        """One simulator connection for the peer's life, used under the lock by any thread."""
        if self._sim is None:
            sim = SimProvider(self.state_dir)
            if isinstance(sim.store, WorldStore):
                conn = sqlite3.connect(
                    sim.store.path, isolation_level=None, timeout=30.0, check_same_thread=False
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                sim.store.conn = conn
            self._sim = sim
        return self._sim

    def world(self) -> Estate:
        """The world, re-read only when someone (the peer, a sim command, a test) changed it."""
        sim = self._provider()
        version = -1  # another backend: read the world every time
        if isinstance(sim.store, WorldStore):
            version = int(sim.store.open().execute("PRAGMA data_version").fetchone()[0])
        if self._world is None or version != self._version or version == -1:
            self._world = sim.store.load()
            self._version = version
        return self._world

    def _platform(self, node: str) -> str | None:
        world = self.world()
        record = world.nodes.get(node)
        cluster = world.clusters.get(record.cluster) if record is not None else None
        return cluster.platform if cluster is not None else self.standalone_platform

    def release_of(self, node: Node) -> str:
        """The release a host answers with: its cluster's, or the one given for hosts in no
        cluster (none given: the host does not answer, rather than guess)."""
        cluster = self.world().clusters.get(node.cluster)
        if cluster is not None:
            return cluster.platform
        if self.standalone_platform is None:
            raise PeerError(
                f"{node.name} is in no cluster and this peer was given no release for such "
                "hosts (HyperVPeer standalone_platform).",
                "ResourceUnavailable",
                "ReleaseUnknown",
                node.name,
            )
        return self.standalone_platform

    def forget(self) -> None:
        self._world = None

    def close(self) -> None:
        with self.lock:
            if self._sim is not None:
                self._sim.close()
                self._sim = None

    def guid(self, kind: str, name: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"reconciler-peer:{kind}:{name}"))

    def run(self, node: str, commands: Sequence[CommandLike]) -> Result:
        with self.lock:
            self.received.append(
                Received(
                    node,
                    tuple((c.name, tuple(c.parameters)) for c in commands),
                )
            )
            if not (self.state_dir / "world.db").exists():
                return Result(
                    terminating=PeerError(
                        "The world of this peer is gone from its state directory.",
                        "ResourceUnavailable",
                        "WorldMissing",
                    )
                )
            return self._run(node, commands, self._provider())

    def _run(self, node: str, commands: Sequence[CommandLike], sim: SimProvider) -> Result:
        host: Host | None = None
        result = Result()
        inputs: list[Any] | None = None
        try:
            for i, command in enumerate(commands):
                entry: tuple[Spec, Any] | None
                if self._platform(node) == "2008r2":
                    entry = on_2008r2(command.name, command.is_script)  # the WMI v1 host
                elif command.is_script:
                    entry = cmdlets_cluster.script_entry(command.name)  # shipped scripts only
                    if entry is None:
                        raise PeerError(
                            "This host runs cmdlets only: script text is refused.",
                            "PermissionDenied",
                            "ScriptsNotAllowed",
                        )
                else:
                    entry = CMDLETS.get(command.name)
                if entry is None:
                    raise PeerError(
                        f"The term '{command.name}' is not recognized as the name of a cmdlet, "
                        "function, script file, or operable program.",
                        "ObjectNotFound",
                        "CommandNotFoundException",
                        command.name,
                        "System.Management.Automation.CommandNotFoundException",
                    )
                spec, fn = entry
                bound = bind(spec, command.parameters)
                if i > 0 and not spec.takes_input and inputs:
                    raise PeerError(
                        "The input object cannot be bound to any parameters for the command.",
                        "InvalidArgument",
                        spec.fqid("InputObjectNotBound"),
                    )
                if host is None:
                    host = Host(self, node, sim, error_action_stop(bound))
                    result = host.result
                    host.this_node()  # a host that is not in the world does not answer
                    if host.this_node().status.state != "up":
                        raise PeerError(
                            f"Connecting to remote server {node} failed: the host is down.",
                            "ResourceUnavailable",
                            "WinRMTransportError",
                            node,
                        )
                else:
                    host.stop_on_error = host.stop_on_error or error_action_stop(bound)
                inputs = list(fn(host, spec, bound, inputs if i > 0 else None))
            result.outputs.extend(inputs or [])
        except PeerError as err:
            result.terminating = err
        return result

    def __call__(self, invocation: Any, writer: Any) -> None:
        """The transport's Handler: run, write outputs and errors, fail on a terminating one."""
        from reconciler.providers.sim.winrm.transport import TerminatingError

        result = self.run(invocation.node, invocation.commands)
        for value in result.outputs:
            writer.write_output(value)
        for err in result.errors:
            writer.write_error(
                err.message,
                category=err.category,
                fq_error_id=err.fq_error_id,
                target=err.target,
                exception_type=err.exception_type,
            )
        if result.terminating is not None:
            err = result.terminating
            raise TerminatingError(
                err.message, err.category, err.fq_error_id, err.target, err.exception_type
            )


def received_json(received: Iterable[Received]) -> list[dict[str, Any]]:
    return [r.as_json() for r in received]


def is_ps_object(value: Any) -> bool:
    return isinstance(value, PSObject)
