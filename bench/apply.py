"""Benchmark: what applying costs per action beyond the simulated action itself.

Run: .venv/bin/python bench/apply.py             (4 clusters x 16 nodes x 25 VMs, 5% drift)
     .venv/bin/python bench/apply.py --repeat 1  (one round instead of best of 3)

A generated estate whose world drifted is written to a fresh simulator; its plan is applied
twice, each time on a fresh copy of the same world, in the same run:
- ours: ``apply_plan`` as ``reconciler apply`` runs it (a journal on disk, the cluster locks
  renewed, each action checked against the view, applied, verified by a targeted observe);
- baseline: a bare loop calling ``provider.apply`` for each action, nothing else.
Overhead per action = (our wall time - the time spent inside the provider's own apply) /
actions. The baseline's time per action is printed alongside, so the provider's own apply
can be checked against it (they should be close: the same work). Wall time, not CPU time:
the journal's fsyncs are part of the cost. Best of ``--repeat`` rounds, because the machine
is shared. Goal: at most 5 ms per action.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import structlog  # noqa: E402

from reconciler.engine.plan import Plan  # noqa: E402
from reconciler.engine.planner import make_plan  # noqa: E402
from reconciler.model.actions import Action  # noqa: E402
from reconciler.providers.base import Outcome  # noqa: E402
from reconciler.providers.sim.generate import generate_estate  # noqa: E402
from reconciler.providers.sim.provider import SimProvider  # noqa: E402
from reconciler.runtime.apply import apply_plan, take_locks  # noqa: E402
from reconciler.runtime.clock import SystemClock  # noqa: E402
from reconciler.runtime.executor import NoProgress  # noqa: E402
from reconciler.runtime.journal import Journal  # noqa: E402

GOAL_MS = 5.0
T = TypeVar("T")


class TimedSim(SimProvider):
    """The simulator, timing its own apply (single and grouped) so it can be subtracted."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir)
        self.inside = 0.0  # wall seconds
        self.inside_cpu = 0.0  # CPU seconds of this process
        self.depth = 0

    def _timed(self, call: Callable[[], T]) -> T:
        # apply_migrations may call self.apply (mixed groups): count the outer call only.
        self.depth += 1
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return call()
        finally:
            self.depth -= 1
            if self.depth == 0:
                self.inside += time.perf_counter() - wall
                self.inside_cpu += time.process_time() - cpu

    def apply(self, action: Action) -> Outcome:
        return self._timed(lambda: super(TimedSim, self).apply(action))

    def apply_migrations(self, actions: Sequence[Action]) -> list[Outcome]:
        return self._timed(lambda: super(TimedSim, self).apply_migrations(actions))


def fresh_world(template: Path, work: Path) -> Path:
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(template, work)
    return work


@dataclass(frozen=True)
class Round:
    wall: float  # the whole apply, locks taken to locks released
    cpu: float  # the same, CPU seconds of this process (fsync waits are not CPU)
    inside: float  # wall seconds inside the provider's apply
    inside_cpu: float
    done: int


def ours(plan: Plan, world: Path) -> Round:
    provider = TimedSim(world)
    clock = SystemClock()
    journal = Journal(world, clock.now)
    clusters = sorted({a.cluster for a in plan.actions})
    wall, cpu = time.perf_counter(), time.process_time()
    locks, _ = take_locks(journal, clusters, 0.0, clock)
    applied = apply_plan(plan, provider, journal, clock, NoProgress(), locks, source="bench")
    journal.unlock(locks)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    journal.close()
    provider.close()
    if applied.outcome != "succeeded":
        raise SystemExit(f"the apply did not succeed: {applied.summary}")
    return Round(wall, cpu, provider.inside, provider.inside_cpu, applied.report.count("done"))


def bare(plan: Plan, world: Path) -> float:
    """Wall seconds of calling provider.apply for each action, nothing else."""
    provider = SimProvider(world)
    started = time.perf_counter()
    for action in plan.actions:
        outcome = provider.apply(action)
        if not outcome.succeeded:
            raise SystemExit(f"bare apply of {action.id} failed: {outcome.message}")
    wall = time.perf_counter() - started
    provider.close()
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=4)
    parser.add_argument("--nodes", type=int, default=16)
    parser.add_argument("--vms-per-node", type=int, default=25)
    parser.add_argument("--drift", type=float, default=0.05)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    gen = generate_estate(args.clusters, args.nodes, args.vms_per_node, args.drift, seed=1)
    with tempfile.TemporaryDirectory(prefix="bench-apply-") as tmp:
        template = Path(tmp) / "template"
        SimProvider(template).init_world(gen.world, "bench")
        observed = SimProvider(template).observe()
        plan = make_plan(gen.desired, observed)
        if plan.blocked:
            raise SystemExit(f"the plan is blocked: {[v.message for v in plan.violations][:5]}")
        count = len(plan.actions)
        kinds: dict[str, int] = {}
        for a in plan.actions:
            kinds[a.type] = kinds.get(a.type, 0) + 1
        best_over = best_cpu = best_bare = best_inside = float("inf")
        done = 0
        for _ in range(args.repeat):
            r = ours(plan, fresh_world(template, Path(tmp) / "ours"))
            done = r.done
            best_over = min(best_over, (r.wall - r.inside) / count)
            best_cpu = min(best_cpu, (r.cpu - r.inside_cpu) / count)
            best_inside = min(best_inside, r.inside / count)
            loop = bare(plan, fresh_world(template, Path(tmp) / "bare"))
            best_bare = min(best_bare, loop / count)
    over_ms = best_over * 1000
    mix = ", ".join(f"{n} {t}" for t, n in sorted(kinds.items()))
    print(
        f"apply at {args.clusters} clusters x {args.nodes} nodes x {args.vms_per_node} VMs, "
        f"{args.drift:.0%} drift: {count} actions ({mix}), "
        f"{done} done; best of {args.repeat}"
    )
    print(
        f"  provider's own apply: {best_inside * 1000:.2f} ms/action inside ours, "
        f"{best_bare * 1000:.2f} ms/action in a bare loop calling provider.apply"
    )
    print(
        f"  overhead (journal, locks, checks, verify): {over_ms:.2f} ms/action = "
        f"{over_ms / GOAL_MS:.2f}x the goal of {GOAL_MS:g} ms: "
        f"{'met' if over_ms <= GOAL_MS else 'NOT MET'}"
    )
    print(f"  of which CPU (process_time, best of {args.repeat}): {best_cpu * 1000:.2f} ms/action")


if __name__ == "__main__":
    main()
