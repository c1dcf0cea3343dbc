"""Small generated worlds for the hyperv tests, and a connections object for them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from reconciler.model.records import Cluster, Estate, Node, VirtualMachine, VmStatus, frozen_map
from reconciler.providers.hyperv.connections import (
    ClusterConnection,
    Connections,
    NodeConnection,
)
from reconciler.providers.sim.generate import GeneratedEstate, generate_estate, write_generated
from reconciler.providers.sim.provider import SimProvider


def make_world(
    state: Path,
    *,
    clusters: int = 1,
    nodes: int = 3,
    vms: int = 4,
    drift: float = 0.0,
    seed: int = 7,
    platform: str = "2019",
    out: Path | None = None,
) -> GeneratedEstate:
    gen = generate_estate(clusters, nodes, vms, drift, seed, platform)
    if out is not None:
        write_generated(gen, out)
    sim = SimProvider(state)
    sim.init_world(gen.world, "generated")
    sim.close()
    return gen


def connections_for(estate: Estate, url: str = "http://127.0.0.1:1/{node}/wsman") -> Connections:
    return Connections(
        "test-connections",
        {
            c: ClusterConnection(
                c,
                c,
                {
                    n.name: NodeConnection(n.name, url.format(node=n.name), "basic", True, "never")
                    for n in estate.nodes_of(c)
                },
            )
            for c in estate.clusters
        },
    )


def observable(estate: Estate) -> Estate:
    """What a host can show: the estate without manifest-only policy and simulator physics.

    Labels, placement and memory policy, maintenance windows, the rolling-update declaration
    and the test VM are the manifests' business; a VM's dirty rate is simulator physics.
    File sizes are compared to the micro-GiB. A VM always has automatic start and stop
    actions on a host: where the world has none, the host shows Hyper-V's defaults
    (StartIfRunning, Save); no preferred owners on a host is "not managed" (None). A host
    always has a number of SCSI controllers: where the world records none, the number its
    disks imply (``scsi_count``). When a condition began (``status.since``) is the
    simulator's clock, which no host shows.
    """

    def cluster(c: Cluster) -> Cluster:
        return Cluster(
            c.name,
            c.platform,
            c.nodes,
            c.quorum,
            c.networks,
            replace(c.live_migration, max_parallel_migrations=None),
            status=replace(c.status, since=frozen_map()),
        )

    def vm(v: VirtualMachine) -> VirtualMachine:
        disks = tuple(
            replace(
                d,
                boot=False,
                allow_delete=False,
                file_size_gib=round(d.used_gib(), 6),
            )
            for d in v.disks
        )
        return replace(
            v,
            labels=frozen_map(),
            status=VmStatus(failed=v.status.failed),
            migration_policy="live",
            allow_downtime=False,
            anti_affinity_mode="soft",
            disks=disks,
            automatic_start_action=v.automatic_start_action or "start_if_running",
            automatic_stop_action=v.automatic_stop_action or "save",
            preferred_owners=v.preferred_owners or None,
            scsi_controllers=v.scsi_count(),
        )

    def node(n: Node) -> Node:
        # A host reports VMQ and jumbo frames per NIC; TCP chimney it does not (not compared).
        nics = tuple(
            replace(
                nic,
                offloads=replace(
                    nic.offloads, tcp_chimney=False, reported=frozenset({"vmq", "jumbo_frames"})
                ),
            )
            for nic in n.nics
        )
        return replace(n, labels=frozen_map(), nics=nics)

    return Estate(
        {n: cluster(c) for n, c in estate.clusters.items()},
        {
            n: replace(node(x), status=replace(x.status, since=frozen_map()))
            for n, x in estate.nodes.items()
        },
        {n: replace(x, labels=frozen_map()) for n, x in estate.switches.items()},
        {
            n: replace(
                x,
                labels=frozen_map(),
                status=replace(
                    x.status,
                    other_used_gib=round(x.status.other_used_gib, 3),
                    since=frozen_map(),
                ),
            )
            for n, x in estate.volumes.items()
        },
        {n: vm(x) for n, x in estate.vms.items()},
    )
