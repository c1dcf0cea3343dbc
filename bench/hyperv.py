"""Benchmark: the hyperv provider over the PSRP peer, beside the sim provider, same worlds.

Run: .venv/bin/python bench/hyperv.py            (1 cluster of 4 x 25 and of 16 x 25 VMs)
     .venv/bin/python bench/hyperv.py --sizes 4x25

Per size: one full observe (seconds, PSRP pipelines), then the plan's first actions applied
one by one, each verified the way the executor does it (a targeted observe of what it
touched): seconds and pipelines per action. The peer runs in this process on 127.0.0.1 (real
WS-Management over HTTP, pypsrp client), so the figures are protocol and (de)serialisation
cost without network latency; a real host adds its cmdlets' own time.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from reconciler.engine.planner import make_plan
from reconciler.model.rules import apply_rules
from reconciler.providers.base import scope_of
from reconciler.providers.hyperv.connections import ClusterConnection, Connections, NodeConnection
from reconciler.providers.hyperv.observe import merge
from reconciler.providers.hyperv.provider import HyperVProvider
from reconciler.providers.sim.generate import generate_estate
from reconciler.providers.sim.provider import SimProvider
from reconciler.providers.sim.winrm.cmdlets import HyperVPeer
from reconciler.providers.sim.winrm.transport import WinRMServer

ACTIONS = 6


def run(nodes: int, vms: int) -> None:
    gen = generate_estate(1, nodes, vms, 0.05, 11, "2019")
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "world"
        SimProvider(state).init_world(gen.world, "bench")
        sim_state = Path(tmp) / "sim"
        SimProvider(sim_state).init_world(gen.world, "bench")
        peer = HyperVPeer(state)
        os.environ["RECONCILER_HYPERV_USER"] = "bench"
        os.environ["RECONCILER_HYPERV_PASSWORD"] = "bench-password"
        with WinRMServer(peer, sorted(gen.world.nodes), username="bench",
                         password="bench-password", port=0) as server:  # fmt: skip
            conns = Connections(
                "bench",
                {
                    c: ClusterConnection(c, c, {n.name: NodeConnection(
                        n.name, server.url(n.name), "basic", True, "never")
                        for n in gen.world.nodes_of(c)})
                    for c in gen.world.clusters
                },
            )  # fmt: skip
            hv = HyperVProvider(Path(tmp) / "cli", conns)
            sim = SimProvider(sim_state)
            t = time.perf_counter()
            observed = hv.observe()
            hv_observe = time.perf_counter() - t
            hv_trips = hv.round_trips()
            t = time.perf_counter()
            sim.observe()
            sim_observe = time.perf_counter() - t
            plan = make_plan(gen.desired, observed, refuse=hv.capabilities().refusal)
            actions = [a for a in plan.actions][:ACTIONS]
            hv_times, hv_act_trips, sim_times = [], [], []
            for action in actions:
                before = hv.round_trips()
                t = time.perf_counter()
                outcome = hv.apply(action)
                part = hv.observe(scope_of(action))
                observed = merge(observed, part)
                ok = outcome.status == "done" and apply_rules(observed, action).done
                hv_times.append(time.perf_counter() - t)
                hv_act_trips.append(hv.round_trips() - before)
                t = time.perf_counter()
                sim.apply(action)
                sim.observe(scope_of(action))
                sim_times.append(time.perf_counter() - t)
                if not ok:
                    print(f"  ! {action.id}: {outcome.status} {outcome.message}")
            hv.close()
            sim.close()
        peer.close()
    n = max(1, len(actions))
    print(
        f"{nodes:>3} nodes x {vms} VMs ({len(gen.world.vms)} VMs): "
        f"observe hyperv {hv_observe:6.2f} s, {hv_trips} pipelines "
        f"({hv_trips / nodes:.1f} per node) | sim {sim_observe:6.3f} s"
    )
    print(
        f"{'':>16}per action ({len(actions)} of {len(plan.actions)}: "
        f"{', '.join(sorted({a.type for a in actions}))}): "
        f"hyperv {sum(hv_times) / n:5.2f} s, {sum(hv_act_trips) / n:.1f} pipelines "
        f"(apply + verify) | sim {sum(sim_times) / n:6.3f} s"
    )


def main() -> None:
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="4x25,16x25", help="NODESxVMS_PER_NODE, comma-separated")
    args = parser.parse_args()
    for size in args.sizes.split(","):
        nodes, vms = (int(x) for x in size.split("x"))
        run(nodes, vms)


if __name__ == "__main__":
    main()
