"""Benchmark: a rolling update's migrations, bytes and cycle time, against two baselines.

Run: .venv/bin/python bench/rolling.py          (clusters of 4, 8, 16 and 64 nodes)
     .venv/bin/python bench/rolling.py --quick  (4 and 8 nodes)

It also times planning one 64-node cluster with 25 VMs per node (the spare node empty) with
and without the rolling update, in the same run, and prints the ratio (goal: at most 1.5x).
Planning is CPU only (no I/O), so it is timed in CPU seconds of this process (process_time),
best of 3: on a shared machine wall time mostly measures the other processes.

For each size, two clusters at 60-80% memory use with mixed VM sizes and dirty rates: one
with an empty spare node (one node's worth of spare capacity), one with the load spread over
every node. Compared, in the same run and on the same migration model:
- ours: the planner's rolling update (drain to nodes already patched, least-loaded first);
- baseline (a), like Windows' patcher: drain each node to the least-loaded other node,
  patch it, then fail its VMs back;
- baseline (b): drain to the least-loaded other node, no fail-back.
Lower bounds: every VM's memory moved once; cycle time = the fixed per-node steps plus one
move of every VM. Ratios are what to read; absolute times are simulated seconds.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reconciler.engine.planner import make_plan  # noqa: E402
from reconciler.engine.safety import replay  # noqa: E402
from reconciler.model.capacity import usable_memory_mib, vm_cost_mib  # noqa: E402
from reconciler.model.physics import ACTION_SECONDS, estimate_move  # noqa: E402
from reconciler.model.records import (  # noqa: E402
    Cluster,
    ClusterNetwork,
    ClusterSharedVolume,
    Disk,
    Estate,
    Hardware,
    Hook,
    LiveMigrationSettings,
    Node,
    NodeStatus,
    Quorum,
    RollingUpdate,
    SwitchConfig,
    VirtualMachine,
    VirtualSwitch,
    VmNic,
    VmStatus,
    Witness,
)
from reconciler.runtime.collector import collector_paused  # noqa: E402

NODE_MIB = 256 * 1024
VM_SIZES_GIB = (2, 4, 4, 8, 8, 16)
FIXED_PER_NODE = sum(
    ACTION_SECONDS[t] for t in ("drain_node", "patch_node", "verify_node", "resume_node")
)


@dataclass(frozen=True)
class Result:
    migrations: int
    bytes_sent: int
    seconds: float


def build(
    nodes: int, spare: bool, seed: int, vms_per_node: int | None = None
) -> tuple[Estate, Estate]:
    """(observed, desired): a 2019 cluster at 60-80% use; desired adds the rolling update.

    With ``vms_per_node``, each loaded node holds at most that many VMs.
    """
    rng = random.Random(seed)
    names = [f"n{i:02d}" for i in range(1, nodes + 1)]
    switch_cfg = SwitchConfig("external", "NIC4", False, frozenset({10, 20}), 1)
    node_records = {
        n: Node(
            n,
            "c1",
            Hardware("blade", "cpu", NODE_MIB, "fw1", "drv1", "2026-10"),
            status=NodeStatus(switches={"vs": switch_cfg}, luns=frozenset({"csv1"})),
        )
        for n in names
    }
    quorum = (
        Quorum("node_majority")
        if nodes % 2
        else Quorum("node_and_disk_majority", Witness(disk="Witness"))
    )
    cluster = Cluster(
        "c1",
        "2019",
        tuple(names),
        quorum,
        networks=(ClusterNetwork("LM", ("live_migration",), 10_000),),
        live_migration=LiveMigrationSettings("LM", 1),
    )
    usable = usable_memory_mib(node_records[names[0]], cluster)
    vms: dict[str, VirtualMachine] = {}
    loaded = names[:-1] if spare else names
    count = 0
    for n in loaded:
        # No spare node: the others must hold one node's load, so stay at 60-75%.
        target = usable * rng.uniform(0.6, 0.8 if spare else 0.75)
        used = on_node = 0
        while True:
            memory = rng.choice(VM_SIZES_GIB) * 1024
            vm = VirtualMachine(
                f"vm{count:05d}",
                "c1",
                memory,
                2,
                node=n,
                nics=(VmNic("nic", "vs", 10),),
                disks=(Disk("os", "scsi", 0, 0, "dynamic", "vhdx", 60, "csv1"),),
                status=VmStatus(dirty_rate_mib_s=rng.choice((1.0, 4.0, 10.0, 25.0, 50.0))),
            )
            cost = vm_cost_mib(vm, cluster)
            if used + cost > target or (vms_per_node is not None and on_node == vms_per_node):
                break
            on_node += 1
            vms[vm.name] = vm
            used += cost
            count += 1
    observed = Estate(
        clusters={"c1": cluster},
        nodes=node_records,
        switches={"vs": VirtualSwitch("vs", "c1", switch_cfg)},
        volumes={"csv1": ClusterSharedVolume("csv1", "c1", 65536, 65536)},
        vms=vms,
    )
    patched = {
        n: replace(r, hardware=replace(r.hardware, patch_level="2026-11"))
        for n, r in node_records.items()
    }
    desired_vms = {k: replace(v, node=None) for k, v in vms.items()}
    ru = RollingUpdate("2026-11", hook=Hook(("patch.ps1",)), test_migration=False)
    desired = replace(
        observed,
        clusters={"c1": replace(cluster, rolling_update=ru)},
        nodes=patched,
        vms=desired_vms,
    )
    return observed, desired


def lower_bound(estate: Estate) -> Result:
    cluster = estate.clusters["c1"]
    moves = [estimate_move(cluster, vm, "live") for vm in estate.vms.values()]
    seconds = FIXED_PER_NODE * len(cluster.nodes) + sum(m.total_seconds for m in moves)
    return Result(len(moves), sum(m.bytes_sent for m in moves), seconds)


def ours(observed: Estate, desired: Estate) -> Result:
    plan = make_plan(desired, observed)
    if plan.blocked:
        raise SystemExit(f"our plan is blocked: {[v.message for v in plan.violations]}")
    _, violations = replay(observed, desired, plan.actions)
    assert not [v for v in violations if v.severity == "block"], violations
    moves = [a for a in plan.actions if a.type == "migrate_vm"]
    return Result(len(moves), sum(a.estimate_bytes for a in moves), plan.estimate_seconds())


def baseline(estate: Estate, fail_back: bool) -> Result:
    """Drain each node (by name) to the least-loaded other node; optionally fail back."""
    cluster = estate.clusters["c1"]
    where = {vm.name: vm.node for vm in estate.vms.values()}
    cost = {vm.name: vm_cost_mib(vm, cluster) for vm in estate.vms.values()}
    usable = {n: usable_memory_mib(estate.nodes[n], cluster) for n in cluster.nodes}
    used = dict.fromkeys(cluster.nodes, 0)
    for name, node in where.items():
        used[node or ""] += cost[name]
    moved: list[str] = []
    seconds = 0.0
    for node in sorted(cluster.nodes):
        leaving = sorted((v for v, n in where.items() if n == node), key=lambda v: -cost[v])
        for vm in leaving:
            others = [n for n in cluster.nodes if n != node and used[n] + cost[vm] <= usable[n]]
            if not others:
                raise SystemExit(f"baseline cannot place {vm}")
            dest = min(others, key=lambda n: (used[n] / usable[n], n))
            used[node] -= cost[vm]
            used[dest] += cost[vm]
            where[vm] = dest
            moved.append(vm)
        seconds += FIXED_PER_NODE
        if fail_back:
            for vm in leaving:
                used[where[vm] or ""] -= cost[vm]
                used[node] += cost[vm]
                where[vm] = node
                moved.append(vm)
    for vm in moved:
        seconds += estimate_move(cluster, estate.vms[vm], "live").total_seconds
    sent = sum(estimate_move(cluster, estate.vms[vm], "live").bytes_sent for vm in moved)
    return Result(len(moved), sent, seconds)


def plan_time(nodes: int, vms_per_node: int, seed: int, repeat: int) -> tuple[float, float, int]:
    """Best-of-``repeat`` CPU seconds to plan with and without the rolling update; VMs."""
    times: dict[str, float] = {}
    count = 0
    for label in ("without", "with"):
        best = float("inf")
        for _ in range(repeat):
            # Fresh estates each time: states keep memos (slices, per-node sums) once used.
            observed, desired = build(nodes, True, seed, vms_per_node)
            count = len(observed.vms)
            if label == "without":
                cluster = desired.clusters["c1"]
                desired = replace(desired, clusters={"c1": replace(cluster, rolling_update=None)})
            started = time.process_time()
            with collector_paused():  # as reconciler plan runs it (runtime/workflow.py)
                make_plan(desired, observed)
            best = min(best, time.process_time() - started)
        times[label] = best
    return times["with"], times["without"], count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--plan-only", action="store_true", help="only the plan-time ratio")
    args = parser.parse_args()
    with_ru, without_ru, count = plan_time(64, 25, args.seed, 1 if args.quick else 3)
    ratio = with_ru / without_ru
    print(
        f"plan time (CPU), 64 nodes, {count} VMs: with the rolling update {with_ru:.2f} s, without "
        f"{without_ru:.2f} s = {ratio:.2f}x (goal <= 1.5x): {'met' if ratio <= 1.5 else 'NOT MET'}"
    )
    if args.plan_only:
        return
    print()
    sizes = (4, 8) if args.quick else (4, 8, 16, 64)
    rows = []
    for nodes in sizes:
        for spare in (True, False):
            observed, desired = build(nodes, spare, args.seed + nodes)
            lb = lower_bound(observed)
            started = time.perf_counter()
            mine = ours(observed, desired)
            plan_seconds = time.perf_counter() - started
            a = baseline(observed, fail_back=True)
            b = baseline(observed, fail_back=False)
            rows.append((nodes, spare, len(observed.vms), lb, mine, a, b, plan_seconds))
    print(
        "| nodes | spare node | VMs | moves: ours / (a) / (b) | bytes vs lower bound: ours / "
        "(a) / (b) | ours / (a) bytes | cycle time vs lower bound: ours / (a) / (b) | "
        "plan time |"
    )
    print("|---:|:---:|---:|---|---|---:|---|---:|")
    for nodes, spare, vms, lb, mine, a, b, plan_seconds in rows:
        print(
            f"| {nodes} | {'yes' if spare else 'no'} | {vms} | {mine.migrations} / "
            f"{a.migrations} / {b.migrations} | {mine.bytes_sent / lb.bytes_sent:.2f} / "
            f"{a.bytes_sent / lb.bytes_sent:.2f} / {b.bytes_sent / lb.bytes_sent:.2f} | "
            f"{mine.bytes_sent / a.bytes_sent:.2f} | {mine.seconds / lb.seconds:.2f} / "
            f"{a.seconds / lb.seconds:.2f} / {b.seconds / lb.seconds:.2f} | "
            f"{plan_seconds:.1f} s |"
        )
    spare_rows = [r for r in rows if r[1]]
    worst_lb = max(r[4].bytes_sent / r[3].bytes_sent for r in spare_rows)
    worst_a = max(r[4].bytes_sent / r[5].bytes_sent for r in spare_rows)
    worst_a_all = max(r[4].bytes_sent / r[5].bytes_sent for r in rows)
    print()
    print(
        f"with a spare node, ours moves at most {worst_lb:.3f}x the lower bound "
        f"(target 1.05): {'met' if worst_lb <= 1.05 else 'NOT MET'}"
    )
    print(
        f"with a spare node, ours moves at most {worst_a:.3f}x the bytes of baseline (a) "
        f"(target 0.55): {'met' if worst_a <= 0.55 else 'NOT MET'}"
    )
    print(
        f"without a spare node the first node's VMs must move twice: at most "
        f"{worst_a_all:.3f}x baseline (a) over every row"
    )


if __name__ == "__main__":
    main()
