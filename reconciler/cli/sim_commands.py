"""``reconciler sim ...``: create, show, disturb and generate simulated estates."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

from reconciler.cli.context import EXIT_ERROR
from reconciler.cli.safe_text import add_row, markup_safe
from reconciler.manifest.load import load_paths
from reconciler.model.capacity import usable_memory_mib, used_memory_mib
from reconciler.model.conditions import observed_conditions
from reconciler.model.migration import LiveMigrationInputs, closed_form, simulate_live
from reconciler.model.platforms import PLATFORM_NAMES, platform
from reconciler.model.quorum import failures_tolerated, has_quorum, members_up
from reconciler.model.records import Estate
from reconciler.model.rules import volume_used_gib
from reconciler.model.vlans import format_vlan_list
from reconciler.providers.base import ProviderError
from reconciler.providers.sim.drift import DRIFT_KINDS, DriftError, make_drift
from reconciler.providers.sim.health import (
    REDIRECT_REASONS,
    HealthFaultError,
    direct_volume,
    fail_vm,
    redirect_volume,
    set_network,
)
from reconciler.providers.sim.provider import CRASH_AFTER, CRASH_DURING, SimProvider

if TYPE_CHECKING:
    from reconciler.cli.context import Context


def _sim(obj: Context) -> SimProvider:
    return SimProvider(state_dir=obj.state_dir, state_url=obj.state_url)


@click.group()
def sim() -> None:
    """The embedded simulator: a Hyper-V estate with real rules, in the state directory."""


@sim.command("init")
@click.argument("world", type=click.Path(exists=True, dir_okay=True, path_type=Path))
@click.pass_obj
def sim_init(obj: Context, world: Path) -> None:
    """Create the simulated world from WORLD.yaml (manifests plus observed-only status).

    Replaces any world already in the state directory.
    """
    result = load_paths([str(world)], world=True)
    for err in result.errors:
        click.echo(str(err))
    if result.estate is None:
        obj.out.error(f"{len(result.problems())} error(s) in the world file; no world created")
        raise SystemExit(EXIT_ERROR)
    provider = _sim(obj)
    replaced = provider.store.exists
    provider.init_world(result.estate, str(world))
    provider.close()
    counts = ", ".join(
        f"{len(result.estate.table(k))} {label}"
        for k, label in (
            ("Cluster", "cluster(s)"),
            ("Node", "node(s)"),
            ("VirtualMachine", "VM(s)"),
        )
    )
    verb = "replaced the world" if replaced else "created a world"
    obj.out.ok(f"{verb} in {provider.store.location} from {world}: {counts}")


@sim.command("show")
@click.pass_obj
def sim_show(obj: Context) -> None:
    """A readable summary: nodes, memory use, VMs per node, switches, volumes, quorum."""
    provider = _sim(obj)
    try:
        estate = provider.observe()
        clock = provider.clock()
    except ProviderError as exc:
        obj.out.error(str(exc))
        raise SystemExit(EXIT_ERROR) from exc
    finally:
        provider.close()
    console = obj.out.console
    console.print(f"Simulated time: {clock:.1f} s")
    for cluster in estate.clusters.values():
        render_cluster(console, estate, cluster.name)
    conditions = observed_conditions(estate)
    if conditions:
        console.print(markup_safe(f"Conditions ({len(conditions)}):"))
        for c in conditions:
            console.print(markup_safe(f"  {c.note().removeprefix('condition ')}"))


def render_cluster(console: Console, estate: Estate, cluster_name: str) -> None:
    cluster = estate.clusters[cluster_name]
    up = members_up(estate, cluster)
    quorum_ok = has_quorum(cluster.quorum.mode, len(cluster.nodes), up)
    witness = cluster.quorum.witness.kind or "none"
    console.print(
        f"\n[bold]Cluster {markup_safe(cluster.name)}[/bold] (platform {cluster.platform}): "
        f"{len(cluster.nodes)} member(s), {up} up; quorum {cluster.quorum.mode} "
        f"(witness: {witness}), {'OK' if quorum_ok else 'LOST'}, survives "
        f"{failures_tolerated(cluster.quorum.mode, len(cluster.nodes))} failure(s)"
    )
    nodes = Table(title=None, show_lines=False)
    for col in ("node", "member", "state", "memory used / usable (MiB)", "VMs", "patch"):
        nodes.add_column(col)
    for node in estate.nodes_of(cluster.name):
        vms = estate.vms_on(node.name)
        running = [vm.name for vm in vms if vm.power_state == "running"]
        off = [vm.name + " (off)" for vm in vms if vm.power_state != "running"]
        member = "yes" if node.name in cluster.nodes else "no"
        if node.name in cluster.status.pending_nodes:
            member = "pending"
        state = node.status.state + (", paused" if node.maintenance else "")
        used = used_memory_mib(estate, node.name)
        usable = usable_memory_mib(node, cluster)
        pct = f" {100 * used / usable:.0f}%" if usable else ""
        add_row(
            nodes,
            node.name,
            member,
            state,
            f"{used} / {usable}{pct}",
            ", ".join(running + off) or "-",
            node.hardware.patch_level,
        )
    console.print(nodes)
    switches = Table()
    for col in ("switch", "type", "trunk (cluster)", "differences by node"):
        switches.add_column(col)
    for switch in estate.switches_of(cluster.name):
        diffs = []
        for node in estate.nodes_of(cluster.name):
            host = node.status.switches.get(switch.name)
            if host is None:
                diffs.append(f"{node.name}: missing")
            elif host != switch.config:
                diffs.append(f"{node.name}: {format_vlan_list(host.allowed_vlans)}")
        add_row(
            switches,
            switch.name,
            switch.config.type,
            format_vlan_list(switch.config.allowed_vlans) or "-",
            "; ".join(diffs) or "identical",
        )
    console.print(switches)
    volumes = Table()
    for col in ("volume", "LUN GiB", "volume GiB", "used GiB", "coordinator"):
        volumes.add_column(col)
    for volume in estate.volumes_of(cluster.name):
        add_row(
            volumes,
            volume.name,
            str(volume.lun_size_gib),
            str(volume.size_gib),
            f"{volume_used_gib(estate, volume.name):.0f}",
            volume.status.coordinator or "-",
        )
    console.print(volumes)


@sim.command("estimate-migration")
@click.option("--memory-mib", type=float, required=True, help="VM memory (MiB).")
@click.option("--dirty-mib-s", type=float, required=True, help="Rate the VM dirties memory.")
@click.option("--bandwidth-mib-s", type=float, required=True, help="Live-migration bandwidth.")
@click.option(
    "--max-passes",
    type=int,
    default=None,
    help="Pass cap (default: the platform's, 10 on 2008r2, 5 later).",
)
@click.option(
    "--threshold-kib",
    type=float,
    default=256.0,
    show_default=True,
    help="Stop pre-copy when the dirty remainder is at most this.",
)
@click.option("--setup-seconds", type=float, default=0.0, show_default=True)
@click.option("--resume-seconds", type=float, default=0.0, show_default=True)
@click.option(
    "--platform",
    "platform_name",
    type=click.Choice(PLATFORM_NAMES),
    default="2008r2",
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def estimate_migration(
    memory_mib: float,
    dirty_mib_s: float,
    bandwidth_mib_s: float,
    max_passes: int | None,
    threshold_kib: float,
    setup_seconds: float,
    resume_seconds: float,
    platform_name: str,
    as_json: bool,
) -> None:
    """Estimate one live migration with the simulator's pass-by-pass model."""
    passes = (
        max_passes if max_passes is not None else platform(platform_name).live_migration_max_passes
    )
    try:
        inputs = LiveMigrationInputs(
            memory_mib,
            dirty_mib_s,
            bandwidth_mib_s,
            passes,
            threshold_kib,
            setup_seconds,
            resume_seconds,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    est = simulate_live(inputs)
    lam = inputs.dirty_ratio
    formula = closed_form(inputs) if lam < 1 else None
    if as_json:
        payload: dict[str, object] = {
            "total_seconds": est.total_seconds,
            "downtime_seconds": est.downtime_seconds,
            "passes": est.passes,
            "bytes_sent": est.bytes_sent,
            "dirty_ratio": lam,
            "converges": lam < 1,
        }
        if formula is not None:
            payload["closed_form_total_seconds"] = formula.total_seconds
        click.echo(json.dumps(payload, indent=2))
        return
    click.echo(f"total      {est.total_seconds:.3f} s")
    click.echo(f"downtime   {est.downtime_seconds * 1000:.3f} ms")
    click.echo(f"passes     {est.passes}")
    click.echo(f"sent       {est.bytes_sent / 2**20:.1f} MiB")
    click.echo(f"dirty/link {lam:.3f}" + ("" if lam < 1 else " (does not converge: pass cap)"))


@sim.group("fault")
def fault() -> None:
    """Inject faults: node crash, failing migrations, a slow link, a process crash, drift,
    a failed VM role, a redirected CSV, a cluster network down."""


def _report(lines: list[str]) -> None:
    for line in lines:
        click.echo(line)


@fault.command("node-crash")
@click.argument("node")
@click.pass_obj
def fault_node_crash(obj: Context, node: str) -> None:
    """NODE fails: highly available VMs restart elsewhere where capacity allows."""
    _run_fault(obj, lambda p: p.crash_node(node))


@fault.command("node-recover")
@click.argument("node")
@click.pass_obj
def fault_node_recover(obj: Context, node: str) -> None:
    """NODE comes back up (its VMs that stayed down stay off)."""
    _run_fault(obj, lambda p: p.recover_node(node))


@fault.command("fail-migrations")
@click.argument("count", type=click.IntRange(min=1))
@click.option("--cluster", default=None, help="Only this cluster's migrations.")
@click.pass_obj
def fault_fail_migrations(obj: Context, count: int, cluster: str | None) -> None:
    """The next COUNT migrations fail (a transient error; the VM stays on its source)."""
    _run_fault(obj, lambda p: p.fail_migrations(count, cluster))


@fault.command("slow-link")
@click.argument("factor", type=click.FloatRange(min=0.01, max=1.0))
@click.option("--cluster", default=None)
@click.pass_obj
def fault_slow_link(obj: Context, factor: float, cluster: str | None) -> None:
    """The live-migration link runs at FACTOR of its bandwidth (e.g. 0.25)."""
    _run_fault(obj, lambda p: p.slow_link(factor, cluster))


@fault.command("crash-after")
@click.argument("count", type=click.IntRange(min=1))
@click.pass_obj
def fault_crash_after(obj: Context, count: int) -> None:
    """The process applying the COUNT-th action from now ends abruptly (exit 137), as a power
    loss would: right after that action took effect in the world, before it is journaled."""
    _run_fault(obj, lambda p: p.arm_crash(CRASH_AFTER, count))


@fault.command("crash-during")
@click.argument("count", type=click.IntRange(min=1))
@click.pass_obj
def fault_crash_during(obj: Context, count: int) -> None:
    """The process ends abruptly (exit 137) inside the COUNT-th action from now, before the
    world commits it: the world keeps none of that action."""
    _run_fault(obj, lambda p: p.arm_crash(CRASH_DURING, count))


@fault.command("drift")
@click.option(
    "--kind", type=click.Choice(DRIFT_KINDS), default=None, help="What changes (default: random)."
)
@click.option("--target", default=None, help="The VM (or node, for vlan) to change.")
@click.option("--seed", type=int, default=None, help="Random seed (default: time-based).")
@click.pass_obj
def fault_drift(obj: Context, kind: str | None, target: str | None, seed: int | None) -> None:
    """Change the world behind the tool's back (random, or a named kind and target)."""

    def drift(p: SimProvider) -> list[str]:
        before = p.observe()
        try:
            after, message = make_drift(
                before, seed if seed is not None else time.time_ns(), kind, target
            )
        except DriftError as exc:
            raise ProviderError(str(exc)) from exc
        p.change_behind_back(before, after, message)
        return [f"drift: {message}"]

    _run_fault(obj, drift)


@fault.command("vm-fail")
@click.argument("vm")
@click.pass_obj
def fault_vm_fail(obj: Context, vm: str) -> None:
    """VM's cluster role fails: the VM is off, and stays off until it is started again."""
    _run_fault(obj, lambda p: p.health_fault(lambda w: fail_vm(w, vm)))


_NODES = click.option(
    "--node", "nodes", multiple=True, help="Only on this node (repeat; default: every member)."
)


@fault.command("csv-redirect")
@click.argument("volume")
@_NODES
@click.option(
    "--reason",
    type=click.Choice(REDIRECT_REASONS),
    default="UserRequest",
    show_default=True,
    help="The cause Get-ClusterSharedVolumeState would report.",
)
@click.pass_obj
def fault_csv_redirect(obj: Context, volume: str, nodes: tuple[str, ...], reason: str) -> None:
    """VOLUME's I/O goes through its coordinator (redirected access)."""
    _run_fault(obj, lambda p: p.health_fault(lambda w: redirect_volume(w, volume, nodes, reason)))


@fault.command("csv-direct")
@click.argument("volume")
@_NODES
@click.pass_obj
def fault_csv_direct(obj: Context, volume: str, nodes: tuple[str, ...]) -> None:
    """VOLUME has direct I/O again."""
    _run_fault(obj, lambda p: p.health_fault(lambda w: direct_volume(w, volume, nodes)))


def _network_fault(
    obj: Context, network: str, cluster: str | None, nodes: tuple[str, ...], up: bool
) -> None:
    def fault(world: Estate) -> tuple[Estate, list[str]]:
        having = sorted(
            name
            for name, c in world.clusters.items()
            if (cluster is None or name == cluster) and network in {n.name for n in c.networks}
        )
        if len(having) != 1:
            where = "no cluster" if not having else f"clusters {', '.join(having)}"
            raise HealthFaultError(f"{where} has a network {network}: name one with --cluster")
        return set_network(world, having[0], network, nodes, up)

    _run_fault(obj, lambda p: p.health_fault(fault))


@fault.command("network-down")
@click.argument("network")
@click.option("--cluster", default=None, help="The cluster (needed if several have NETWORK).")
@_NODES
@click.pass_obj
def fault_network_down(
    obj: Context, network: str, cluster: str | None, nodes: tuple[str, ...]
) -> None:
    """Cluster NETWORK goes down (on --node only: the network is partitioned)."""
    _network_fault(obj, network, cluster, nodes, up=False)


@fault.command("network-up")
@click.argument("network")
@click.option("--cluster", default=None, help="The cluster (needed if several have NETWORK).")
@_NODES
@click.pass_obj
def fault_network_up(
    obj: Context, network: str, cluster: str | None, nodes: tuple[str, ...]
) -> None:
    """Cluster NETWORK comes back up (on --node only, or everywhere)."""
    _network_fault(obj, network, cluster, nodes, up=True)


def _run_fault(obj: Context, fn: Callable[[SimProvider], list[str]]) -> None:
    provider = _sim(obj)
    try:
        _report(fn(provider))
    except ProviderError as exc:
        obj.out.error(str(exc))
        raise SystemExit(EXIT_ERROR) from exc
    finally:
        provider.close()


@sim.command("generate")
@click.option("--clusters", type=click.IntRange(min=1), required=True)
@click.option("--nodes-per-cluster", type=click.IntRange(min=1, max=64), required=True)
@click.option("--vms-per-node", type=click.IntRange(min=0), required=True)
@click.option(
    "--drift",
    type=click.FloatRange(min=0.0, max=1.0),
    default=0.0,
    show_default=True,
    help="Fraction of objects that differ in the world.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--platform",
    "platform_name",
    type=click.Choice(PLATFORM_NAMES),
    default="2019",
    show_default=True,
)
@click.option(
    "--standalone",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="The last N clusters are not formed in the world (standalone hosts, presented "
    "LUNs, no VMs): the plan builds them from zero.",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def sim_generate(
    clusters: int,
    nodes_per_cluster: int,
    vms_per_node: int,
    drift: float,
    seed: int,
    platform_name: str,
    standalone: int,
    out: Path,
) -> None:
    """Write a desired manifest set (OUT/desired/) and a matching world (OUT/world.yaml)."""
    from reconciler.providers.sim.generate import generate_estate, write_generated

    started = time.perf_counter()
    try:
        gen = generate_estate(
            clusters, nodes_per_cluster, vms_per_node, drift, seed, platform_name, standalone
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    paths = write_generated(gen, out)
    click.echo(
        f"wrote {len(paths)} file(s) to {out}: {len(gen.desired.vms)} VMs on "
        f"{len(gen.desired.nodes)} nodes in {len(gen.desired.clusters)} cluster(s), "
        f"{len(gen.drifted)} drifted object(s), in {time.perf_counter() - started:.1f} s"
    )


@sim.command("serve-winrm")
@click.argument("world", type=click.Path(exists=True, dir_okay=True, path_type=Path))
@click.option("--port", type=click.IntRange(0, 65535), default=5985, show_default=True,
              help="TCP port on 127.0.0.1 (0: any free port).")  # fmt: skip
@click.option(
    "--write-connections",
    "connections_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a connections file (YAML, or JSON for a .json name) for the served nodes.",
)
@click.option(
    "--reset/--keep",
    default=False,
    show_default=True,
    help="--keep (default) serves the world already in the state directory if it came from "
    "WORLD; --reset starts again from WORLD.",
)
@click.pass_obj
def sim_serve_winrm(
    obj: Context, world: Path, port: int, connections_file: Path | None, reset: bool
) -> None:
    """Serve the world over WS-Management + PSRP on 127.0.0.1, as Hyper-V hosts would.

    Every node of WORLD answers at http://127.0.0.1:PORT/<node>/wsman (Basic auth with
    RECONCILER_HYPERV_USER / RECONCILER_HYPERV_PASSWORD, loopback only), with the
    Hyper-V and FailoverClusters cmdlets the hyperv provider uses; writes go through the
    simulator's rules into the state directory. Runs until stopped (Ctrl-C or SIGTERM).
    """
    from reconciler.cli.serve import serve_winrm

    raise SystemExit(serve_winrm(obj, world, port, connections_file, reset))
