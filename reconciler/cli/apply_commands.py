"""``apply``, ``history``, ``show-run``, ``force-unlock``: changing the estate, and its record."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from reconciler.cli.context import EXIT_BLOCKED, EXIT_ERROR, EXIT_OK
from reconciler.cli.progress import LiveProgress, PlainProgress
from reconciler.cli.render import duration, plan_lines
from reconciler.cli.safe_text import add_row
from reconciler.runtime.apply import (
    PlanRefused,
    SigningKeyError,
    UnknownTarget,
    apply_plan,
    close_interrupted,
    prepare,
    signing_key,
    take_locks,
)
from reconciler.runtime.clock import Clock, SystemClock
from reconciler.runtime.journal import LockHeld, LockLive, RunRecord
from reconciler.runtime.store.base import StateStore

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


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[dict[str, int]]:
    """SIGTERM / Ctrl-C set ``stop``: the current action finishes, the rest waits. A second
    signal ends the process at once (the next apply finds the run interrupted)."""
    received: dict[str, int] = {}
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum: int, _frame: object) -> None:
        if stop.is_set():
            raise SystemExit(128 + signum)
        received["signal"] = signum
        stop.set()

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_apply(
    obj: Context,
    paths: list[str],
    plan_file: Path | None,
    auto_approve: bool,
    on_failure: str,
    lock_timeout: float,
    sim_speed: float | None,
    clock: Clock | None = None,
    target: str | None = None,
) -> int:
    clock = clock or SystemClock()
    try:
        key = signing_key()
    except SigningKeyError as exc:
        obj.out.error(str(exc))
        return EXIT_ERROR
    journal = obj.store(clock.now)
    provider = obj.provider_instance()
    try:
        for line in close_interrupted(journal):
            obj.out.note(
                f"{line}. Re-observing and re-planning; actions already done will not run again."
            )
        try:
            prepared = prepare(
                provider,
                paths=paths,
                saved=plan_file,
                cache_dir=obj.cache_dir,
                target=target,
                key=key,
            )
        except PlanRefused as refused:
            obj.out.error(f"refusing the plan in {plan_file}: {refused}; nothing was changed")
            return EXIT_ERROR
        except UnknownTarget as unknown:
            obj.out.error(str(unknown))
            return EXIT_ERROR
        plan = prepared.plan
        for note in prepared.notes:
            obj.out.note(f"note: {note}")
        for line in plan_lines(plan, colour=obj.out.interactive):
            obj.out.console.print(line, markup=obj.out.interactive, highlight=False)
        if plan.blocked:
            obj.out.error("the plan breaks a safety rule; nothing was changed")
            return EXIT_BLOCKED
        if plan.empty:
            return EXIT_OK
        _confirm(obj, auto_approve)
        try:
            locks, notes = take_locks(
                journal, sorted({a.cluster for a in plan.actions}), lock_timeout, clock
            )
        except LockHeld as held:
            obj.out.error(str(held))
            return EXIT_ERROR
        for note in notes:
            obj.out.note(f"note: {note}")
        progress = (
            LiveProgress(obj.out.console, clock, sim_speed)
            if obj.out.interactive
            else PlainProgress(obj.out.console)
        )
        stop = threading.Event()
        try:
            with _stop_on_signals(stop) as received:
                applied = apply_plan(
                    plan,
                    provider,
                    journal,
                    clock,
                    progress,
                    locks,
                    source=prepared.source,
                    on_failure="continue" if on_failure == "continue" else "stop",
                    stop=stop,
                )
        finally:
            journal.unlock(locks)
            obj.out.console.show_cursor(True)
        report = applied.report
        obj.out.note("")
        obj.out.note(
            f"Run {applied.run_id} {applied.outcome}: {applied.summary}; simulated time "
            f"{duration(report.simulated_seconds)}."
        )
        for action_id, message in report.root_causes:
            obj.out.note(f"  failed: {action_id}: {message}")
        if "signal" in received:
            signum = received["signal"]
            obj.out.note(
                f"Stopped by {signal.Signals(signum).name}: the action under way finished; "
                "run the same apply again to carry on."
            )
            return 128 + signum
        if report.root_causes:
            obj.out.note(
                f"See 'reconciler show-run {applied.run_id}'. The next apply carries on "
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
@click.option(
    "--target",
    help="Only this object (Kind/name), with what it needs and what must follow it.",
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
    target: str | None,
    auto_approve: bool,
    on_failure: str,
    lock_timeout: float,
    sim_speed: float | None,
    enqueue: bool,
) -> None:
    """Plan, show the plan, ask, then apply it; or apply a saved plan with --plan.

    A saved plan runs only as it was reviewed: refused when its digests (or signature, with
    RECONCILER_PLAN_KEY or RECONCILER_PLAN_KEY_FILE set) do not match, or the estate changed.
    A second apply does nothing; an interrupted apply is noticed and carried on. SIGTERM or
    Ctrl-C lets the action under way finish, then stops (exit 143 / 130).
    """
    if bool(paths) == bool(plan_file):
        raise click.UsageError("give manifest PATHS or --plan FILE (one of them)")
    if target and plan_file:
        raise click.UsageError("--target plans anew: give it with PATHS, not with --plan")
    if enqueue:
        if plan_file is None:
            raise click.UsageError("--enqueue hands a saved plan to the workers: give --plan FILE")
        from reconciler.cli.worker_commands import enqueue_apply

        raise SystemExit(enqueue_apply(obj, plan_file, lambda: _confirm(obj, auto_approve)))
    raise SystemExit(
        run_apply(
            obj,
            list(paths),
            plan_file,
            auto_approve,
            on_failure,
            lock_timeout,
            sim_speed,
            target=target,
        )
    )


def _as_seen(journal: StateStore, run: RunRecord) -> RunRecord:
    """A run marked running whose process is gone shows as interrupted (the next apply
    records it so)."""
    if not journal.process_gone(run):
        return run
    return replace(run, outcome="interrupted", message=run.message or "its process is gone")


@click.command()
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def history(obj: Context, limit: int, as_json: bool) -> None:
    """Past runs, newest first."""
    journal = obj.store(SystemClock().now)
    try:
        runs = [_as_seen(journal, r) for r in journal.runs(limit)]
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
            add_row(
                table,
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
        run = _as_seen(journal, run)
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
            add_row(
                table,
                str(a.seq),
                a.action_id,
                a.status,
                duration(a.seconds) if a.seconds else "-",
                str(a.attempts),
                a.error,
            )
        obj.out.console.print(table)
        for a in actions:
            _print_hook(obj, a.action_id, a.details.get("hook"))
    finally:
        journal.close()


def _print_hook(obj: Context, action_id: str, hook: object) -> None:
    """What a rolling-update hook printed (its own text: never read as markup)."""
    if not isinstance(hook, dict):
        return
    if hook.get("error"):
        status = f"could not start: {hook['error']}"
    elif hook.get("timed_out"):
        status = "timed out and was killed"
    else:
        status = f"exit status {hook.get('exit_code')}"
    obj.out.console.print()  # a blank line of our own: note() escapes control characters
    obj.out.note(f"hook of {action_id}: {' '.join(map(str, hook.get('command') or ()))}: {status}")
    for stream in ("stdout", "stderr"):
        text = str(hook.get(stream) or "")
        if not text:
            continue
        cut = " (cut short)" if hook.get(f"{stream}_truncated") else ""
        obj.out.note(f"  {stream}{cut}:")
        for line in text.rstrip("\n").splitlines():
            obj.out.note(f"    {line}")


@click.command("force-unlock")
@click.argument("lock_id")
@click.option(
    "--force",
    is_flag=True,
    help="Remove the lock even if its holder may be alive (its process runs, or its lease "
    "has not expired).",
)
@click.pass_obj
def force_unlock(obj: Context, lock_id: str, force: bool) -> None:
    """Remove a cluster lock left by an apply that is gone (see the lock id in its error).

    The holder is checked first: a lock whose process still runs on this host, or whose
    lease has not expired, is refused without --force.
    """
    journal = obj.store(SystemClock().now)
    try:
        lock = journal.force_unlock(lock_id, force=force)
    except LockLive as live:
        obj.out.error(str(live))
        raise SystemExit(EXIT_ERROR) from live
    finally:
        journal.close()
    if lock is None:
        obj.out.error(f"no lock {lock_id}")
        raise SystemExit(EXIT_ERROR)
    obj.out.ok(f"removed the lock on cluster {lock.cluster} held by {lock.describe()}")
