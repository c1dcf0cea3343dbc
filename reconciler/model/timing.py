"""Calibrated live-migration timing: a per-stream cap, a shared link, fixed per-migration costs.

The constants are per platform in ``platforms.yaml``, fitted by ``bench/timing.py`` against the
published drain timings that ``docs/timing.md`` cites. The simulator's clock and the plan's
duration estimate both come from here, so they agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reconciler.model.actions import Action
from reconciler.model.migration import (
    ConcurrentMigration,
    MigrationEstimate,
    mbps_to_mib_s,
    simulate_concurrent,
)
from reconciler.model.platforms import Platform

RESUME_SECONDS = 0.05  # storage ownership fails over, the VM resumes: not measurable in drains


@dataclass(frozen=True, slots=True)
class MigrationTiming:
    """How a platform's live migrations use the link (see docs/timing.md for the fit)."""

    link_efficiency: float  # share of the line rate one TCP transfer carries as payload
    stream_cap_mbps: float  # payload one migration's stream carries at most, Mbit/s
    setup_seconds: float  # per migration, off the link: configuration, destination VM built
    stagger_seconds: float  # per migration, serialised at the source: starts are this far apart
    resume_seconds: float = RESUME_SECONDS

    @classmethod
    def of(cls, profile: Platform) -> MigrationTiming:
        return cls(
            link_efficiency=profile.live_migration_link_efficiency,
            stream_cap_mbps=profile.live_migration_stream_mbps,
            setup_seconds=profile.live_migration_setup_seconds,
            stagger_seconds=profile.live_migration_stagger_seconds,
        )

    def link_mib_s(self, bandwidth_mbps: float) -> float:
        return mbps_to_mib_s(bandwidth_mbps, self.link_efficiency)

    @property
    def stream_cap_mib_s(self) -> float:
        return mbps_to_mib_s(self.stream_cap_mbps, 1.0)


@dataclass(frozen=True, slots=True)
class QueuedMigration:
    """One live migration of a group handed over together (a drain, or parallel moves)."""

    memory_mib: float
    dirty_mib_s: float


def schedule_group(
    migrations: Sequence[QueuedMigration],
    slots: int,
    link_mib_s: float,
    timing: MigrationTiming,
    max_passes: int,
    threshold_kib: float,
) -> tuple[list[float], list[MigrationEstimate]]:
    """Start times and shared-link physics of migrations queued in this order.

    At most ``slots`` run at once (a further one waits for the first to end), and the source
    starts them ``stagger_seconds`` apart. When a slot frees depends on how fast the running
    ones go, which depends on who shares the link: a few rounds of simulate-then-reschedule
    settle it (each round can only move starts later, so it ends).
    """
    if not migrations:
        return [], []
    slots = max(1, slots)
    starts = [j * timing.stagger_seconds for j in range(len(migrations))]
    estimates: list[MigrationEstimate] = []
    for _ in range(len(migrations) + 1):
        runs = [
            ConcurrentMigration(
                m.memory_mib,
                m.dirty_mib_s,
                start,
                max_passes,
                threshold_kib,
                timing.setup_seconds,
                timing.resume_seconds,
            )
            for m, start in zip(migrations, starts, strict=True)
        ]
        estimates = simulate_concurrent(runs, link_mib_s, timing.stream_cap_mib_s)
        ends = [s + e.total_seconds for s, e in zip(starts, estimates, strict=True)]
        new_starts: list[float] = []
        for j in range(len(migrations)):
            # The j-th waits until all but (slots - 1) of those before it have ended.
            free = 0.0 if j < slots else sorted(ends[:j])[j - slots]
            after_previous = new_starts[j - 1] + timing.stagger_seconds if j else 0.0
            new_starts.append(max(free, after_previous))
        if all(math.isclose(a, b, abs_tol=1e-9) for a, b in zip(new_starts, starts, strict=True)):
            break
        starts = new_starts
    return starts, estimates


def makespan(starts: Sequence[float], estimates: Sequence[MigrationEstimate]) -> float:
    return max((s + e.total_seconds for s, e in zip(starts, estimates, strict=True)), default=0.0)


def is_live_move(action: Action) -> bool:
    return action.type == "migrate_vm" and action.params.get("method") == "live"


def migration_groups(actions: Sequence[Action], slots_of: Mapping[str, int]) -> list[list[Action]]:
    """The actions as the executor runs them: alone, or live moves handed over together.

    A group is up to the cluster's max_parallel_migrations consecutive live moves of one
    cluster, none depending on another of the group (the executor's rule).
    """
    groups: list[list[Action]] = []
    i = 0
    while i < len(actions):
        first = actions[i]
        group = [first]
        if is_live_move(first):
            limit = slots_of.get(first.cluster, 1)
            for candidate in actions[i + 1 :]:
                if len(group) >= limit or not is_live_move(candidate):
                    break
                members = {g.id for g in group}
                if candidate.cluster != first.cluster or members & set(candidate.depends_on):
                    break
                group.append(candidate)
        groups.append(group)
        i += len(group)
    return groups
