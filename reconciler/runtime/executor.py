"""The executor: apply a plan's actions in order, idempotently, with a journal entry for each.

For each action: skip it if a dependency failed (the root cause is reported once); record
it as started; check it against a fresh observation (already as desired: recorded and
skipped); apply with retries for transient errors; verify the effect; record the outcome.

The outcome of an action is written in one journal transaction with the lease renewal and
whatever is recorded next (the next start, or skips), so each action costs one durable
commit; it is on disk before the next action starts, and at the latest when the run ends.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, Protocol

import structlog

from reconciler.engine.plan import Plan, action_to_json
from reconciler.model.actions import Action
from reconciler.model.physics import max_parallel_migrations
from reconciler.model.records import Estate
from reconciler.model.rules import apply_rules
from reconciler.providers.base import (
    Outcome,
    Provider,
    RunsMigrationsTogether,
    Scope,
    scope_of,
)
from reconciler.runtime.clock import Clock
from reconciler.runtime.store.base import StateStore

log = structlog.get_logger("reconciler.apply")

OnFailure = Literal["stop", "continue"]
# Actions whose effect cannot be read back from the world after the fact.
UNVERIFIABLE = frozenset({"test_live_migration", "verify_node"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5
    base_seconds: float = 1.0
    cap_seconds: float = 30.0

    def delay(self, attempt: int) -> float:
        """Exponential backoff: 1, 2, 4, ... seconds, capped."""
        return float(min(self.cap_seconds, self.base_seconds * 2 ** (attempt - 1)))


class Progress(Protocol):
    def run_started(self, plan: Plan, run_id: str) -> None: ...

    def action_started(self, seq: int, action: Action) -> None: ...

    def action_finished(self, seq: int, action: Action, result: ActionResult) -> None: ...

    def run_finished(self, report: RunReport) -> None: ...


class NoProgress:
    """Progress that says nothing: the journal and the run's report say it all."""

    def run_started(self, plan: Plan, run_id: str) -> None:
        pass

    def action_started(self, seq: int, action: Action) -> None:
        pass

    def action_finished(self, seq: int, action: Action, result: ActionResult) -> None:
        pass

    def run_finished(self, report: RunReport) -> None:
        pass


@dataclass(frozen=True, slots=True)
class ActionResult:
    status: str  # done | already_done | failed | precondition_failed | skipped
    message: str = ""
    seconds: float = 0.0
    attempts: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in ("done", "already_done")


@dataclass(slots=True)
class RunReport:
    run_id: str
    results: dict[str, ActionResult] = field(default_factory=dict)
    root_causes: list[tuple[str, str]] = field(default_factory=list)  # (action id, message)
    simulated_seconds: float = 0.0

    @property
    def outcome(self) -> str:
        if not self.results:
            return "succeeded"
        if all(r.ok for r in self.results.values()):
            return "succeeded"
        if any(r.ok and r.status == "done" for r in self.results.values()):
            return "partial"
        return "failed"

    def count(self, status: str) -> int:
        return sum(1 for r in self.results.values() if r.status == status)


def _live_move(action: Action) -> bool:
    return action.type == "migrate_vm" and action.params.get("method") == "live"


def _observe(provider: Provider, cluster: str) -> Estate:
    return provider.observe(Scope(cluster))


class _Views:
    """What the run knows of each cluster: read whole once, then only what each action touched.

    On a real cluster a full read is seconds of PowerShell per node; verifying an action needs
    only the objects it changed (issue 11, item 4).
    """

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.known: dict[str, Estate] = {}

    def cluster(self, name: str) -> Estate:
        if name not in self.known:
            self.known[name] = _observe(self.provider, name)
        return self.known[name]

    def after(self, action: Action) -> Estate:
        scope = scope_of(action)
        part = self.provider.observe(scope)
        if not scope.objects:
            self.known[action.cluster] = part
            return part
        merged = self.cluster(action.cluster)
        for record in part.records():
            merged = merged.with_record(record)
        self.known[action.cluster] = merged
        return merged


class Executor:
    def __init__(
        self,
        provider: Provider,
        journal: StateStore,
        clock: Clock,
        progress: Progress,
        on_failure: OnFailure = "stop",
        retry: RetryPolicy | None = None,
        after_action: Callable[[], None] | None = None,
        should_stop: Callable[[Action], str | None] | None = None,
        defer: Callable[[Action], str | None] | None = None,
    ) -> None:
        self.provider = provider
        self.journal = journal
        self.clock = clock
        self.progress = progress
        self.on_failure = on_failure
        self.retry = retry or RetryPolicy()
        self.after_action = after_action  # e.g. renew locks
        self.should_stop = should_stop  # e.g. a maintenance window closed, or SIGTERM
        # Left for a later run without stopping this one (e.g. waiting for a window); the
        # caller defers an action's dependents too and checks the rest is safe without it.
        self.defer = defer
        self._pending: list[Callable[[], None]] = []  # outcomes not yet in the journal

    def run(self, plan: Plan, run_id: str) -> RunReport:
        report = RunReport(run_id)
        self._views = _Views(self.provider)
        self._prefetched: dict[str, ActionResult] = {}  # run together with an earlier one
        self.progress.run_started(plan, run_id)
        broken: dict[str, str] = {}  # action id -> root cause action id
        waiting: set[str] = set()  # deferred, with everything that depends on them
        stopped_by: str | None = None  # the failed action that stopped the run
        halted: str | None = None  # why should_stop stopped the run
        self._pending = []
        try:
            self._run(plan, run_id, report, broken, waiting, stopped_by, halted)
        finally:
            self._write(lambda: None)  # the last outcomes, even if a callback raised
        self.progress.run_finished(report)
        return report

    def _write(self, record: Callable[[], None]) -> None:
        """``record`` in one journal transaction with the outcomes not yet written."""
        pending, self._pending = self._pending, []
        if not pending:
            record()
            return
        with self.journal.batch():
            for write in pending:
                write()
            record()

    def _run(
        self,
        plan: Plan,
        run_id: str,
        report: RunReport,
        broken: dict[str, str],
        waiting: set[str],
        stopped_by: str | None,
        halted: str | None,
    ) -> None:
        for seq, action in enumerate(plan.actions, start=1):
            payload = action_to_json(action)
            cause = next((broken[d] for d in action.depends_on if d in broken), None)
            after = next((d for d in action.depends_on if d in waiting), None)
            why: str | None = None
            deferred = False
            if self.defer is not None and (wait := self.defer(action)):
                why, deferred = f"deferred: {wait}", True
            elif after is not None:
                why, deferred = f"deferred: depends on {after}, which waits", True
            elif cause is not None:
                why = f"skipped: depends on {cause}, which failed"
            elif stopped_by is not None:
                why = f"skipped: the apply stopped after {stopped_by} failed"
            elif halted is not None:
                why = f"skipped: {halted}"
            elif self.should_stop is not None and (halt := self.should_stop(action)):
                why = f"skipped: {halt}"
                halted = halt
            if why is not None:
                self._write(partial(self.journal.action_skipped, run_id, seq, payload, why))
                result = ActionResult("skipped", why)
                report.results[action.id] = result
                if deferred:
                    waiting.add(action.id)
                elif cause is not None or stopped_by is not None:
                    # Dependents of a skipped action name the same root cause.
                    broken[action.id] = cause or stopped_by or action.id
                # After a stop request every later action is skipped with its reason.
                self.progress.action_finished(seq, action, result)
                continue
            if action.id in self._prefetched:
                result = self._prefetched.pop(action.id)
                elapsed = 0.0  # counted with its group: they ran at the same time
            else:
                group = self._migration_group(plan.actions, seq, broken, waiting)
                self._write(partial(self._start, run_id, seq, group))
                for offset, member in enumerate(group):
                    self.progress.action_started(seq + offset, member)
                if len(group) > 1:
                    together = self._execute_together(group)
                    elapsed = _group_makespan(together.values())
                    self._prefetched.update(together)
                    result = self._prefetched.pop(action.id)
                else:
                    result = self._execute(action)
                    elapsed = result.seconds
            # Written with the next record, before anything else runs (see _write).
            self._pending.append(
                partial(
                    self.journal.action_finished,
                    run_id,
                    seq,
                    result.status,
                    result.seconds,
                    result.attempts,
                    "" if result.ok else result.message,
                    result.details,
                )
            )
            report.results[action.id] = result
            report.simulated_seconds += elapsed
            log.info(
                "action",
                run=run_id,
                seq=seq,
                action=action.id,
                status=result.status,
                seconds=round(result.seconds, 3),
                attempts=result.attempts,
                error=result.message if not result.ok else "",
            )
            if self.after_action is not None:
                self._pending.append(self.after_action)  # renewed in the same transaction
            self.progress.action_finished(seq, action, result)
            if not result.ok:
                broken[action.id] = action.id
                report.root_causes.append((action.id, result.message))
                if self.on_failure == "stop":
                    stopped_by = action.id

    def _start(self, run_id: str, seq: int, group: Sequence[Action]) -> None:
        """Recorded (and on disk) before the actions start, so a crash leaves a trace."""
        for offset, member in enumerate(group):
            self.journal.action_started(run_id, seq + offset, action_to_json(member))

    def _migration_group(
        self,
        actions: Sequence[Action],
        seq: int,
        broken: Mapping[str, str],
        waiting: Collection[str],
    ) -> list[Action]:
        """The action at ``seq``, plus the live migrations right after it that may run with it.

        A provider that can run migrations together gets up to the cluster's
        max_parallel_migrations of them, none depending on another or on anything unsettled.
        """
        first = actions[seq - 1]
        if not isinstance(self.provider, RunsMigrationsTogether) or not _live_move(first):
            return [first]
        cluster = self._views.cluster(first.cluster).clusters.get(first.cluster)
        limit = max_parallel_migrations(cluster) if cluster is not None else 1
        group = [first]
        for candidate in actions[seq:]:
            if len(group) >= limit or not _live_move(candidate):
                break
            if candidate.cluster != first.cluster or any(
                d in broken or d in waiting or d in {g.id for g in group}
                for d in candidate.depends_on
            ):
                break
            if (self.defer and self.defer(candidate)) or (
                self.should_stop and self.should_stop(candidate)
            ):
                break
            group.append(candidate)
        return group

    def _execute_together(self, group: list[Action]) -> dict[str, ActionResult]:
        fresh = self._views.cluster(group[0].cluster)
        results: dict[str, ActionResult] = {}
        ready: list[Action] = []
        for action in group:
            check = apply_rules(fresh, action)
            if check.done:
                results[action.id] = ActionResult(
                    "already_done", f"{action.target} already as desired"
                )
            elif check.failures:
                results[action.id] = ActionResult("precondition_failed", "; ".join(check.failures))
            else:
                ready.append(action)
        assert isinstance(self.provider, RunsMigrationsTogether)
        outcomes = self.provider.apply_migrations(ready)
        for action, outcome in zip(ready, outcomes, strict=True):
            results[action.id] = self._execute(action, first=outcome)
        return results

    def _execute(self, action: Action, first: Outcome | None = None) -> ActionResult:
        """Check, apply (retrying transient errors), verify. ``first``: an attempt made already."""
        if first is None:
            fresh = self._views.cluster(action.cluster)
            check = apply_rules(fresh, action)
            if check.done:
                return ActionResult("already_done", f"{action.target} already as desired")
            if check.failures:
                return ActionResult("precondition_failed", "; ".join(check.failures), attempts=0)
        attempts = 0
        total_seconds = 0.0
        outcome: Outcome | None = None
        while True:
            attempts += 1
            # The first attempt may have been made already, together with other migrations.
            outcome = first if first is not None and attempts == 1 else self.provider.apply(action)
            total_seconds += outcome.seconds
            if outcome.status != "transient_error" or attempts >= self.retry.attempts:
                break
            delay = self.retry.delay(attempts)
            log.warning(
                "retry",
                action=action.id,
                attempt=attempts,
                delay_seconds=delay,
                error=outcome.message,
            )
            self.clock.sleep(delay)
        details = dict(outcome.details)
        if outcome.status not in ("done", "already_done"):
            # A failed step may have changed part of the world: read the cluster again.
            self._views.known.pop(action.cluster, None)
        elif outcome.status == "done" and action.type in UNVERIFIABLE:
            self._views.after(action)
        if outcome.status == "transient_error":
            return ActionResult(
                "failed",
                f"{outcome.message} (gave up after {attempts} attempts)",
                total_seconds,
                attempts,
                details,
            )
        if outcome.status == "permanent_error":
            return ActionResult("failed", outcome.message, total_seconds, attempts, details)
        if outcome.status == "precondition_failed":
            return ActionResult(
                "precondition_failed", outcome.message, total_seconds, attempts, details
            )
        if outcome.status == "done" and action.type not in UNVERIFIABLE:
            after = apply_rules(self._views.after(action), action)
            if not after.done:
                return ActionResult(
                    "failed",
                    "the provider reported success but the effect "
                    "is not visible: " + "; ".join(after.failures),
                    total_seconds,
                    attempts,
                    details,
                )
        return ActionResult(outcome.status, outcome.message, total_seconds, attempts, details)


def _group_makespan(results: Iterable[ActionResult]) -> float:
    """Start to end of migrations run together: each began after waiting for a slot."""
    return max(
        (float(r.details.get("waited_seconds", 0.0)) + r.seconds for r in results), default=0.0
    )
