"""``apply``, ``history``, ``show-run``, ``force-unlock``: changing the estate, and its record."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from reconciler.cli.context import EXIT_BLOCKED, EXIT_ERROR, EXIT_OK
from reconciler.cli.progress import LiveProgress, PlainProgress
from reconciler.cli.render import duration, plan_lines
from reconciler.engine.plan import object_digests, plan_from_json, stale_objects
from reconciler.engine.planner import make_plan
from reconciler.runtime.clock import Clock, SystemClock
from reconciler.runtime.executor import Executor
from reconciler.runtime.journal import LOCK_TTL_SECONDS, LockHeld, LockRecord
from reconciler.runtime.store.base import StateStore
from reconciler.runtime.workflow import load_desired

if TYPE_CHECKING:
    from reconciler.cli.context import Context


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


# --- apply -------------------------------------------------------------------------------


def _confirm(obj: Context, auto_approve: bool) -> None:
    if auto_approve:
        return
    if not sys.stdin.isatty():
        obj.out.error(
            "refusing to apply without confirmation: there is no terminal to ask. "
            "Review the plan, then run again with --auto-approve"
        )
        raise SystemExit(EXIT_ERROR)
    if not click.confirm("Apply this plan?", default=False):
        obj.out.note("Nothing was changed.")
        raise SystemExit(EXIT_OK)


def _acquire(
    journal: StateStore, clusters: list[str], lock_timeout: float, clock: Clock, obj: Context
) -> list[LockRecord]:
    deadline = clock.now() + lock_timeout
    while True:
        try:
            locks, notes = journal.try_lock(clusters, LOCK_TTL_SECONDS)
        except LockHeld as held:
            if clock.now() >= deadline:
                obj.out.error(str(held))
                raise SystemExit(EXIT_ERROR) from held
            clock.sleep(min(5.0, max(0.1, deadline - clock.now())))
            continue
        for note in notes:
            obj.out.note(f"note: {note}")
        return locks


def run_apply(
    obj: Context,
    paths: list[str],
    plan_file: Path | None,
    auto_approve: bool,
    on_failure: str,
    lock_timeout: float,
    sim_speed: float | None,
    clock: Clock | None = None,
) -> int:
    clock = clock or SystemClock()
    journal = obj.store(clock.now)
    provider = obj.provider_instance()
    try:
        for run in journal.interrupted_runs():
            message = journal.mark_interrupted(run)
            obj.out.note(
                f"Run {run.id} was {message}. Re-observing and re-planning; "
                "actions already done will not run again."
            )
        observed = provider.observe()
        if plan_file is not None:
            try:
                plan = plan_from_json(json.loads(plan_file.read_text()))
            except (OSError, ValueError, KeyError) as exc:
                obj.out.error(f"cannot read plan {plan_file}: {exc}")
                return EXIT_ERROR
            changed = stale_objects(plan, object_digests(observed))
            if changed:
                shown = ", ".join(changed[:10]) + (" ..." if len(changed) > 10 else "")
                obj.out.error(
                    f"the plan in {plan_file} is stale: {len(changed)} object(s) "
                    f"changed since it was made: {shown}. Make a new plan."
                )
                return EXIT_ERROR
            source = f"plan:{plan_file}"
        else:
            desired = load_desired(paths, obj.cache_dir)
            plan = make_plan(desired, observed, manifests=paths)
            source = ",".join(paths)
        for line in plan_lines(plan, colour=obj.out.interactive):
            obj.out.console.print(line, markup=obj.out.interactive, highlight=False)
        if plan.blocked:
            obj.out.error("the plan breaks a safety rule; nothing was changed")
            return EXIT_BLOCKED
        if plan.empty:
            return EXIT_OK
        _confirm(obj, auto_approve)
        clusters = sorted({a.cluster for a in plan.actions})
        locks = _acquire(journal, clusters, lock_timeout, clock, obj)
        run_id = journal.start_run(
            plan.digest(), source, len(plan.actions), cluster=",".join(clusters)
        )
        journal.attach_run(locks, run_id)
        progress = (
            LiveProgress(obj.out.console, clock, sim_speed)
            if obj.out.interactive
            else PlainProgress(obj.out.console)
        )
        executor = Executor(
            provider,
            journal,
            clock,
            progress,
            on_failure="continue" if on_failure == "continue" else "stop",
            after_action=lambda: journal.renew(locks, LOCK_TTL_SECONDS),
        )
        try:
            report = executor.run(plan, run_id)
        finally:
            journal.unlock(locks)
        summary = (
            f"{report.count('done')} done, {report.count('already_done')} already done, "
            f"{len(report.root_causes)} failed, {report.count('skipped')} skipped"
        )
        journal.end_run(run_id, report.outcome, summary)
        obj.out.note("")
        obj.out.note(
            f"Run {run_id} {report.outcome}: {summary}; simulated time "
            f"{duration(report.simulated_seconds)}."
        )
        for action_id, message in report.root_causes:
            obj.out.note(f"  failed: {action_id}: {message}")
        if report.root_causes:
            obj.out.note(
                f"See 'reconciler show-run {run_id}'. The next apply carries on "
                "from the estate as it is."
            )
            return EXIT_ERROR
        return EXIT_OK
    finally:
        provider.close()
        journal.close()


@click.command()
@click.argument("paths", nargs=-1)
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Apply exactly this saved plan (refused if the estate changed since).",
)
@click.option("--auto-approve", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--on-failure",
    type=click.Choice(["stop", "continue"]),
    default="stop",
    show_default=True,
    help="After a failure: stop, or go on with independent actions.",
)
@click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds to wait for another apply's cluster lock.",
)
@click.option(
    "--sim-speed",
    type=click.FloatRange(min=0.1),
    default=None,
    help="On a terminal, replay simulated time at this many times wall speed.",
)
@click.option(
    "--enqueue",
    is_flag=True,
    help="With --plan: hand the reviewed plan to the workers (needs --state-url), then exit.",
)
@click.pass_obj
def apply(
    obj: Context,
    paths: tuple[str, ...],
    plan_file: Path | None,
    auto_approve: bool,
    on_failure: str,
    lock_timeout: float,
    sim_speed: float | None,
    enqueue: bool,
) -> None:
    """Plan, show the plan, ask, then apply it; or apply a saved plan with --plan.

    A second apply does nothing; an interrupted apply is noticed and carried on.
    """
    if bool(paths) == bool(plan_file):
        raise click.UsageError("give manifest PATHS or --plan FILE (one of them)")
    if enqueue:
        if plan_file is None:
            raise click.UsageError("--enqueue hands a saved plan to the workers: give --plan FILE")
        from reconciler.cli.worker_commands import enqueue_apply

        raise SystemExit(enqueue_apply(obj, plan_file, lambda: _confirm(obj, auto_approve)))
    raise SystemExit(
        run_apply(obj, list(paths), plan_file, auto_approve, on_failure, lock_timeout, sim_speed)
    )


@click.command()
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def history(obj: Context, limit: int, as_json: bool) -> None:
    """Past runs, newest first."""
    journal = obj.store(SystemClock().now)
    try:
        runs = journal.runs(limit)
        if as_json:
            click.echo(json.dumps([asdict(r) for r in runs], indent=2))
            return
        if not runs:
            obj.out.note("No runs yet.")
            return
        table = Table()
        for col in ("run", "started (UTC)", "ended", "kind", "outcome", "actions", "source", "by"):
            table.add_column(col)
        for r in runs:
            table.add_row(
                r.id,
                _when(r.started_at),
                _when(r.ended_at),
                r.kind,
                r.outcome,
                str(r.actions_total),
                r.source + (f"@{r.commit_id[:10]}" if r.commit_id else ""),
                f"{r.owner}@{r.host}",
            )
        obj.out.console.print(table)
    finally:
        journal.close()


@click.command("show-run")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def show_run(obj: Context, run_id: str, as_json: bool) -> None:
    """Every action of a run with its outcome, duration and error."""
    journal = obj.store(SystemClock().now)
    try:
        run = journal.run(run_id)
        if run is None:
            obj.out.error(f"no run {run_id} (see 'reconciler history')")
            raise SystemExit(EXIT_ERROR)
        actions = journal.actions(run_id)
        if as_json:
            click.echo(
                json.dumps({"run": asdict(run), "actions": [asdict(a) for a in actions]}, indent=2)
            )
            return
        obj.out.note(
            f"Run {run.id}: {run.outcome} ({run.kind}, {run.source}); started "
            f"{_when(run.started_at)}, ended {_when(run.ended_at)}; plan {run.plan_hash}"
        )
        if run.message:
            obj.out.note(run.message)
        table = Table()
        for col in ("#", "action", "status", "duration", "attempts", "error"):
            table.add_column(col)
        for a in actions:
            table.add_row(
                str(a.seq),
                a.action_id,
                a.status,
                duration(a.seconds) if a.seconds else "-",
                str(a.attempts),
                a.error,
            )
        obj.out.console.print(table)
    finally:
        journal.close()


@click.command("force-unlock")
@click.argument("lock_id")
@click.pass_obj
def force_unlock(obj: Context, lock_id: str) -> None:
    """Remove a cluster lock left by an apply that is gone (see the lock id in its error)."""
    journal = obj.store(SystemClock().now)
    try:
        lock = journal.force_unlock(lock_id)
    finally:
        journal.close()
    if lock is None:
        obj.out.error(f"no lock {lock_id}")
        raise SystemExit(EXIT_ERROR)
    obj.out.ok(f"removed the lock on cluster {lock.cluster} held by {lock.describe()}")
