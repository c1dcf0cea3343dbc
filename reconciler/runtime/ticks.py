"""What one tick of the scheduled loop did, and who listens: shared by the loop and its metrics.

Its own module so that ``reconcile`` and ``metrics`` need not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from reconciler.engine.diff import ObjectDiff
from reconciler.engine.plan import PlanViolation

Mode = Literal["monitor", "autocorrect"]
MODES: tuple[Mode, ...] = ("monitor", "autocorrect")
EXIT_OK, EXIT_ERROR, EXIT_DRIFT, EXIT_BLOCKED = 0, 1, 2, 3


@dataclass(slots=True)
class TickReport:
    """One tick: what drifted, what was done, what waits, and the outcome.

    Outcomes: converged (no drift), drift (found, nothing changed), corrected (all drift
    fixed), partial (some fixed, some remains), blocked (the plan breaks a safety rule:
    nothing applied), failed (an action failed), locked (another apply holds a cluster's
    lock: skipped), error (manifests, repository or provider could not be read).
    """

    mode: Mode
    started_at: float
    ended_at: float = 0.0
    outcome: str = "error"
    message: str = ""
    run_id: str | None = None
    source: str = ""
    commit_id: str | None = None
    drifted: tuple[ObjectDiff, ...] = ()
    remaining: tuple[ObjectDiff, ...] = ()
    new_drift: tuple[str, ...] = ()  # objects not drifting at the tick before
    corrected: tuple[str, ...] = ()  # objects this tick's actions corrected
    resolved: tuple[str, ...] = ()  # objects no longer drifting without this loop's doing
    planned: int = 0
    applied: int = 0
    already_done: int = 0
    failed: int = 0
    deferred: tuple[tuple[str, str], ...] = ()  # (action id, why it waits)
    stopped: tuple[tuple[str, str], ...] = ()  # (action id, why): window closed, stop request
    violations: tuple[PlanViolation, ...] = ()
    notes: tuple[str, ...] = ()
    skipped_before: int = 0  # ticks skipped because the one before this overran

    @property
    def duration_seconds(self) -> float:
        return max(0.0, self.ended_at - self.started_at)

    @property
    def exit_code(self) -> int:
        """For ``--once``: monitor 0/2/1; autocorrect 0 converged, 2 drift remains, 1, 3."""
        if self.outcome in ("error", "locked", "failed"):
            return EXIT_ERROR
        if self.outcome == "blocked":
            return EXIT_BLOCKED
        return EXIT_DRIFT if self.outcome in ("drift", "partial") else EXIT_OK


class TickMetrics(Protocol):
    """What the loop tells its metrics (runtime/metrics.py's LoopMetrics is one)."""

    def tick_done(self, report: TickReport) -> None: ...

    def ticks_skipped(self, count: int) -> None: ...
