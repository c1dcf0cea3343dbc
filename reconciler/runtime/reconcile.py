"""The scheduled loop: each tick loads the manifests, observes, plans, records drift, corrects.

``monitor`` only reports; ``autocorrect`` applies what is safe now, disruption only in windows.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog

from reconciler.engine.diff import ObjectDiff, diff_estates
from reconciler.engine.plan import Plan
from reconciler.engine.planner import make_plan
from reconciler.engine.safety import replay
from reconciler.manifest.errors import ManifestLoadError
from reconciler.manifest.gitsource import GitSourceError, load_at
from reconciler.model.actions import Action, Disruption
from reconciler.model.records import Estate, kind_of
from reconciler.providers.base import Provider, ProviderError
from reconciler.runtime.apply import apply_plan, close_interrupted
from reconciler.runtime.clock import Clock
from reconciler.runtime.collector import collector_paused
from reconciler.runtime.executor import (
    NoProgress,
    Progress,
    RetryPolicy,
)
from reconciler.runtime.journal import LOCK_TTL_SECONDS, LockHeld, LockRecord
from reconciler.runtime.store.base import StateStore
from reconciler.runtime.ticks import (
    MODES,
    Mode,
    TickMetrics,
    TickReport,
)
from reconciler.runtime.windows import describe_instant, is_open, next_opens_at
from reconciler.runtime.workflow import load_desired

log = structlog.get_logger("reconciler.reconcile")

DISRUPTIVE: frozenset[Disruption] = frozenset(
    {"live-migration", "downtime", "reboot", "destructive"}
)
# Errors that end a tick with outcome "error"; the loop goes on to the next tick.
TICK_ERRORS = (ManifestLoadError, GitSourceError, ProviderError, OSError)


# --- where the manifests come from ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Manifests:
    desired: Estate
    source: str  # for the journal: folders, or repo@ref
    commit_id: str | None
    paths: tuple[str, ...]


class ManifestSource(Protocol):
    def load(self) -> Manifests: ...


@dataclass(frozen=True, slots=True)
class FolderSource:
    """Manifest files and folders on disk, read afresh each tick."""

    paths: tuple[str, ...]
    cache_dir: Path | None = None

    def load(self) -> Manifests:
        with collector_paused():
            desired = load_desired(list(self.paths), self.cache_dir)
        return Manifests(desired, ",".join(self.paths), None, self.paths)


@dataclass(frozen=True, slots=True)
class GitSource:
    """Manifests as committed at ``ref`` of ``repo`` (the working copy is never read)."""

    repo: str
    ref: str = "main"
    paths: tuple[str, ...] = ()

    def load(self) -> Manifests:
        got = load_at(self.repo, self.ref, list(self.paths))
        if got.result.estate is None:
            raise ManifestLoadError(got.result.problems())
        where = f":{','.join(self.paths)}" if self.paths else ""
        return Manifests(
            got.result.estate, f"git:{self.repo}@{self.ref}{where}", got.commit, self.paths
        )


def drift_fields(diff: ObjectDiff) -> list[dict[str, Any]]:
    """What differs on one object, for the drift table: observed and desired values."""
    if diff.op != "change":
        observed = None if diff.op == "add" else "present"
        desired = "present" if diff.op == "add" else None
        return [{"path": "(object)", "observed": observed, "desired": desired}]
    return [{"path": c.path, "observed": c.before, "desired": c.after} for c in diff.changes]


def _window_wait(desired: Estate, cluster: str, now: float) -> str:
    spec = desired.clusters.get(cluster)
    windows = spec.maintenance_windows if spec else ()
    if not windows:
        return (
            f"cluster {cluster} declares no maintenance window: disruptive changes are never "
            "made automatically (declare spec.maintenance_windows, or apply by hand)"
        )
    opens = next_opens_at(windows, now)
    when = describe_instant(opens) if opens is not None else "never"
    return f"waits for the maintenance window of cluster {cluster} (opens {when})"


# --- the loop ------------------------------------------------------------------------------


class Reconciler:
    """Ticks on the injected clock; ``stop`` (set by a signal handler) ends it cleanly.

    In autocorrect mode a tick applies actions without disruption at once, and disruptive
    ones (live migration, downtime, reboot) only while their cluster's maintenance window is
    open; the rest, with everything that depends on it, waits for the next window. A window
    that closes mid-plan, or a stop request, stops the tick before its next action. A blocked
    plan is never applied. A tick takes the cluster locks as apply does (monitor mode only
    looks: a held lock means an apply is under way, and the tick is skipped).
    """

    def __init__(
        self,
        source: ManifestSource,
        provider_factory: Callable[[], Provider],
        journal: StateStore,
        clock: Clock,
        mode: Mode = "monitor",
        interval_seconds: float = 900.0,
        *,
        progress: Progress | None = None,
        on_tick: Sequence[Callable[[TickReport], None]] = (),
        metrics: TickMetrics | None = None,
        stop: threading.Event | None = None,
        retry: RetryPolicy | None = None,
        poll_seconds: float = 1.0,
        scope: str | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if interval_seconds <= 0:
            raise ValueError("the interval must be positive")
        self.source = source
        self.provider_factory = provider_factory
        self.journal = journal
        self.clock = clock
        self.mode: Mode = mode
        self.interval_seconds = float(interval_seconds)
        self.progress: Progress = progress or NoProgress()
        self.on_tick = list(on_tick)
        self.metrics = metrics
        self.stop = stop or threading.Event()
        self.retry = retry
        self.poll_seconds = poll_seconds  # the longest sleep between looks at ``stop``
        # One cluster's tick (a worker's job): drift of other clusters is not this tick's to close.
        self.scope = scope
        self.ticks = 0
        self.skipped_ticks = 0

    # --- scheduling -------------------------------------------------------------------------

    def run(
        self,
        stop: threading.Event | None = None,
        *,
        once: bool = False,
        max_ticks: int | None = None,
    ) -> TickReport | None:
        """Tick at the start and at every multiple of the interval after it, until stopped.

        The next tick is at the first multiple at or after the end of the one before; the
        multiples passed while a tick overran are counted as skipped. Returns the last report.
        """
        if stop is not None:
            self.stop = stop
        origin = self.clock.now()
        slot = ticks = skipped = 0
        last: TickReport | None = None
        while not self.stop.is_set():
            last = self.tick(skipped_before=skipped)
            ticks += 1
            if once or (max_ticks is not None and ticks >= max_ticks):
                break
            elapsed = self.clock.now() - origin
            following = max(slot + 1, math.ceil(elapsed / self.interval_seconds))
            skipped = following - slot - 1
            if skipped:
                self.skipped_ticks += skipped
                log.warning(
                    "ticks_skipped",
                    count=skipped,
                    interval_seconds=self.interval_seconds,
                    overran_by_seconds=round(elapsed - (slot + 1) * self.interval_seconds, 3),
                )
                if self.metrics is not None:
                    self.metrics.ticks_skipped(skipped)
            slot = following
            self._wait_until(origin + slot * self.interval_seconds)
        return last

    def _wait_until(self, instant: float) -> None:
        while not self.stop.is_set():
            left = instant - self.clock.now()
            if left <= 0:
                return
            self.clock.sleep(min(left, self.poll_seconds))

    # --- one tick ---------------------------------------------------------------------------

    def tick(self, skipped_before: int = 0) -> TickReport:
        report = TickReport(self.mode, self.clock.now(), skipped_before=skipped_before)
        self.ticks += 1
        try:
            self._tick(report)
        except TICK_ERRORS as exc:
            report.outcome = "error"
            report.message = _error_text(exc)
            if report.run_id is None:
                report.run_id = self.journal.start_run(
                    "-", report.source or "-", 0, self._kind, report.commit_id, self.scope or ""
                )
            self.journal.end_run(report.run_id, "error", report.message)
        report.ended_at = self.clock.now()
        log.info(
            "tick",
            mode=self.mode,
            run=report.run_id,
            outcome=report.outcome,
            commit=report.commit_id,
            drifted=len(report.drifted),
            applied=report.applied,
            failed=report.failed,
            deferred=len(report.deferred),
            seconds=round(report.duration_seconds, 3),
        )
        if self.metrics is not None:
            self.metrics.tick_done(report)
        for listener in self.on_tick:
            listener(report)
        return report

    @property
    def _kind(self) -> str:
        return f"reconcile-{self.mode}"

    def _tick(self, report: TickReport) -> None:
        notes = [line[0].lower() + line[1:] for line in close_interrupted(self.journal)]
        manifests = self.source.load()
        report.source, report.commit_id = manifests.source, manifests.commit_id
        desired = manifests.desired
        clusters = sorted(desired.clusters)
        locks: list[LockRecord] = []
        try:
            if self.mode == "autocorrect":
                locks, stale = self.journal.try_lock(clusters, LOCK_TTL_SECONDS)
                notes.extend(stale)
            elif (holder := self.journal.lock_holder(clusters)) is not None:
                raise LockHeld(holder)
        except LockHeld as held:
            # An apply is under way: what we would observe is half done; look next tick.
            report.outcome, report.message = "locked", f"skipped: {held}"
            report.notes = tuple(notes)
            report.run_id = self.journal.start_run(
                "-", report.source, 0, self._kind, report.commit_id, ",".join(clusters)
            )
            self.journal.end_run(report.run_id, "locked", report.message)
            return
        try:
            provider = self.provider_factory()
            try:
                self._observe_and_act(report, manifests, provider, locks, notes)
            finally:
                provider.close()
        finally:
            if locks:
                self.journal.unlock(locks)

    def _observe_and_act(
        self,
        report: TickReport,
        manifests: Manifests,
        provider: Provider,
        locks: list[LockRecord],
        notes: list[str],
    ) -> None:
        desired = manifests.desired
        with collector_paused():  # not over the apply below: that may run for hours
            observed = provider.observe()
            diffs = diff_estates(desired, observed)
            plan = make_plan(desired, observed, manifests=manifests.paths, diffs=diffs)
        report.drifted, report.planned = tuple(diffs), len(plan.actions)
        report.violations = tuple(plan.violations)
        report.notes = tuple(notes + list(plan.notes))
        run_id = self.journal.start_run(
            plan.digest(),
            manifests.source,
            len(plan.actions),
            self._kind,
            manifests.commit_id,
            ",".join(sorted(desired.clusters)),
        )
        report.run_id = run_id
        if locks:
            self.journal.attach_run(locks, run_id)
        drifted = {d.ref: drift_fields(d) for d in diffs}
        open_before = self.journal.open_drift()
        report.new_drift = tuple(self.journal.note_drift(run_id, drifted))
        known = _refs(desired) | _refs(observed) if self.scope is not None else None
        resolved = sorted(
            obj for obj in open_before if obj not in drifted and (known is None or obj in known)
        )
        self.journal.close_drift(
            resolved, None, f"no longer drifting at {run_id}: changed outside this loop"
        )
        report.resolved = tuple(resolved)
        # Health is kept next to drift (shown by 'drift'); it is not drift itself.
        self.journal.note_conditions(run_id, plan.conditions, known)
        has_drift = bool(diffs) or not plan.empty
        if not has_drift:
            report.outcome = "converged"
        elif self.mode == "monitor":
            report.outcome, report.remaining = "drift", report.drifted
        elif plan.blocked:
            report.outcome, report.remaining = "blocked", report.drifted
        elif plan.empty:
            report.outcome, report.remaining = "drift", report.drifted
        else:
            self._correct(report, plan, desired, observed, provider, locks)
        report.message = report.message or _summary(report, plan)
        self.journal.end_run(run_id, report.outcome, report.message)

    def _correct(
        self,
        report: TickReport,
        plan: Plan,
        desired: Estate,
        observed: Estate,
        provider: Provider,
        locks: list[LockRecord],
    ) -> None:
        assert report.run_id is not None
        waits = self._deferrals(plan, desired, observed)
        result = apply_plan(
            plan,
            provider,
            self.journal,
            self.clock,
            self.progress,
            locks,
            source=report.source,
            run_id=report.run_id,
            retry=self.retry,
            should_stop=lambda action: self._should_stop(action, desired),
            defer=lambda action: waits.get(action.id),
        ).report
        report.applied = result.count("done")
        report.already_done = result.count("already_done")
        report.failed = len(result.root_causes)
        report.deferred = tuple(
            (aid, r.message.removeprefix("deferred: "))
            for aid, r in result.results.items()
            if r.status == "skipped" and r.message.startswith("deferred:")
        )
        report.stopped = tuple(
            (aid, r.message.removeprefix("skipped: "))
            for aid, r in result.results.items()
            if r.status == "skipped" and not r.message.startswith("deferred:")
        )
        after = provider.observe()
        remaining = diff_estates(desired, after)
        replanned = make_plan(desired, after, diffs=remaining)
        report.remaining = tuple(remaining)
        still = {d.ref for d in remaining}
        fixed = sorted(d.ref for d in report.drifted if d.ref not in still)
        if report.applied:
            self.journal.close_drift(fixed, report.run_id, f"corrected by {report.run_id}")
            report.corrected = tuple(fixed)
        else:
            self.journal.close_drift(
                fixed, None, f"no longer drifting at {report.run_id}: changed outside this loop"
            )
            report.resolved = report.resolved + tuple(fixed)
        if report.failed:
            report.outcome = "failed"
            report.message = "; ".join(f"{aid} failed: {msg}" for aid, msg in result.root_causes)
        elif remaining or not replanned.empty:
            report.outcome = "partial" if report.applied else "drift"
        else:
            report.outcome = "corrected"

    def _deferrals(self, plan: Plan, desired: Estate, observed: Estate) -> dict[str, str]:
        """Actions that must wait (disruptive outside a window, and their dependents).

        Leaving actions out of a plan can change what the others find (memory a migration
        would have freed): the rest is replayed on its own, and if it breaks a rule,
        everything from the first waiting action on waits too (a prefix of a plan that was
        proven safe is safe).
        """
        now = self.clock.now()
        waits: dict[str, str] = {}
        for action in plan.actions:
            windows = desired.clusters[action.cluster].maintenance_windows
            if action.disruption in DISRUPTIVE and not is_open(windows, now):
                waits[action.id] = _window_wait(desired, action.cluster, now)
            elif first := next((d for d in action.depends_on if d in waits), None):
                waits[action.id] = f"depends on {first}, which waits"
        if not waits:
            return waits
        runnable = [a for a in plan.actions if a.id not in waits]
        _, violations = replay(observed, desired, runnable)
        if any(v.severity == "block" for v in violations):
            start = next(i for i, a in enumerate(plan.actions) if a.id in waits)
            for action in plan.actions[start:]:
                waits.setdefault(
                    action.id,
                    "waits with the actions before it: without them the rest of the plan "
                    "is not proven safe",
                )
        return waits

    def _should_stop(self, action: Action, desired: Estate) -> str | None:
        if self.stop.is_set():
            return "stop requested: the rest waits for the next run"
        if action.disruption in DISRUPTIVE:
            windows = desired.clusters[action.cluster].maintenance_windows
            now = self.clock.now()
            if not is_open(windows, now):
                opens = next_opens_at(windows, now)
                when = describe_instant(opens) if opens is not None else "never"
                return (
                    f"the maintenance window of cluster {action.cluster} closed; the rest "
                    f"waits for the next one (opens {when})"
                )
        return None


def _refs(estate: Estate) -> set[str]:
    return {f"{kind_of(r)}/{r.name}" for r in estate.records()}


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, ManifestLoadError):
        shown = "; ".join(str(e) for e in exc.errors[:5])
        more = f" (and {len(exc.errors) - 5} more)" if len(exc.errors) > 5 else ""
        return f"{len(exc.errors)} manifest error(s): {shown}{more}"
    return str(exc) or type(exc).__name__


def _summary(report: TickReport, plan: Plan) -> str:
    parts = [f"{len(report.drifted)} object(s) drifted"]
    if report.mode == "autocorrect":
        parts.append(
            f"{report.applied} action(s) applied, {report.failed} failed, "
            f"{len(report.deferred)} deferred, {len(report.stopped)} stopped"
        )
        parts.append(f"{len(report.remaining)} object(s) still drifting")
    else:
        parts.append(f"{len(plan.actions)} action(s) would correct it")
    blocks = [v for v in plan.violations if v.severity == "block"]
    if blocks:
        refused = (
            "nothing applied" if report.mode == "autocorrect" else "autocorrect would refuse it"
        )
        parts.append(
            f"the plan breaks {len(blocks)} safety rule(s), {refused}: "
            + "; ".join(f"{v.rule} on {v.target}" for v in blocks)
        )
    return "; ".join(parts)
