"""``reconcile`` and ``drift``: the scheduled loop, and the audit trail of what it found and fixed.

Argument parsing, signal handlers and rendering only; the loop is ``runtime.reconcile``.
"""

from __future__ import annotations

import json
import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from types import FrameType
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from reconciler.cli.progress import PlainProgress
from reconciler.cli.safe_text import add_row
from reconciler.providers.base import Provider
from reconciler.providers.registry import open_provider
from reconciler.runtime.clock import Clock, SystemClock
from reconciler.runtime.condition_log import ConditionRecord
from reconciler.runtime.journal import DriftRecord
from reconciler.runtime.metrics import LoopMetrics, MetricsServer
from reconciler.runtime.reconcile import (
    FolderSource,
    GitSource,
    ManifestSource,
    Reconciler,
    drift_fields,
)
from reconciler.runtime.ticks import EXIT_ERROR, EXIT_OK, MODES, Mode, TickReport

if TYPE_CHECKING:
    from reconciler.cli.context import Context

_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_duration(text: str) -> float:
    """Seconds in ``30s``, ``15m``, ``1h``, ``1h30m`` or a plain number of seconds."""
    text = text.strip().lower()
    if text.isdigit():
        seconds = float(text)
    else:
        match = _DURATION.fullmatch(text)
        if not text or match is None:
            raise ValueError(f"'{text}' is not a duration (like 30s, 15m, 1h or 1h30m)")
        hours, minutes, secs = (int(g) if g else 0 for g in match.groups())
        seconds = float(hours * 3600 + minutes * 60 + secs)
    if seconds <= 0:
        raise ValueError("the interval must be longer than zero")
    return seconds


def _duration_option(_ctx: click.Context, _param: click.Parameter, value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _utc(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _value(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, list):
        return ",".join(str(x) for x in v) or "[]"
    return str(v)


def _fields_text(fields: list[dict[str, Any]], limit: int = 3) -> str:
    shown = [f"{f['path']}: {_value(f['observed'])} -> {_value(f['desired'])}" for f in fields]
    more = f" (+{len(shown) - limit} more)" if len(shown) > limit else ""
    return "; ".join(shown[:limit]) + more


# --- rendering a tick ----------------------------------------------------------------------


class TickPrinter:
    """One block of plain lines per tick: for logs, journald and CI."""

    def __init__(self, obj: Context) -> None:
        self.out = obj.out

    def __call__(self, report: TickReport) -> None:
        say = self.out.note
        head = f"tick {_utc(report.started_at)} UTC: {report.mode}"
        if report.run_id:
            head += f", run {report.run_id}"
        if report.commit_id:
            head += f", commit {report.commit_id[:12]}"
        if report.skipped_before:
            head += f" ({report.skipped_before} tick(s) skipped: the one before overran)"
        say(head)
        for note in report.notes:
            say(f"  note: {note}")
        new = set(report.new_drift)
        for diff in report.drifted:
            flag = " (new)" if diff.ref in new else ""
            say(f"  drift: {diff.ref}{flag}: {_fields_text(drift_fields(diff))}")
        for obj in report.corrected:
            say(f"  corrected: {obj}")
        for obj in report.resolved:
            say(f"  no longer drifting (changed outside this loop): {obj}")
        for action_id, why in report.deferred:
            say(f"  deferred: {action_id}: {why}")
        for action_id, why in report.stopped:
            say(f"  stopped: {action_id}: {why}")
        for v in report.violations:
            if v.severity == "block":
                say(f"  blocked: {v.rule}: {v.target}: {v.message} (fix: {v.fix})")
        say(f"  outcome: {report.outcome}: {report.message}")


@contextmanager
def _stop_on_signals(stop: threading.Event, obj: Context) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop``: the current action finishes, then the loop ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        if not stop.is_set():
            obj.out.note(
                f"{signal.Signals(signum).name}: finishing the current action, then stopping"
            )
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def run_reconcile(
    obj: Context,
    source: ManifestSource,
    mode: Mode,
    every_seconds: float,
    once: bool,
    metrics_port: int | None,
    metrics_address: str,
    clock: Clock | None = None,
    stop: threading.Event | None = None,
    max_ticks: int | None = None,
) -> int:
    clock = clock or SystemClock()
    stop = stop or threading.Event()
    journal = obj.store(clock.now)
    metrics = LoopMetrics()
    server: MetricsServer | None = None

    def provider_factory() -> Provider:
        return open_provider(obj.provider, obj.state_dir, **obj.provider_options)

    try:
        if metrics_port is not None:
            try:
                server = MetricsServer(metrics, metrics_port, metrics_address)
            except OSError as exc:
                obj.out.error(f"cannot serve metrics on {metrics_address}:{metrics_port}: {exc}")
                return EXIT_ERROR
            obj.out.note(f"metrics: {server.url}")
        loop = Reconciler(
            source,
            provider_factory,
            journal,
            clock,
            mode,
            every_seconds,
            progress=PlainProgress(obj.out.console),
            on_tick=[TickPrinter(obj)],
            metrics=metrics,
            stop=stop,
        )
        with _stop_on_signals(stop, obj):
            last = loop.run(once=once, max_ticks=max_ticks)
        if once:
            return last.exit_code if last is not None else EXIT_ERROR
        obj.out.note(f"stopped after {loop.ticks} tick(s), {loop.skipped_ticks} skipped")
        return EXIT_OK
    finally:
        if server is not None:
            server.close()
        journal.close()


@click.command()
@click.argument("paths", nargs=-1)
@click.option(
    "--git",
    "git_repo",
    type=click.Path(exists=True, file_okay=False),
    help="Read the manifests from this git repository at --ref (PATHS are inside it).",
)
@click.option("--ref", default="main", show_default=True, help="Branch, tag or commit (--git).")
@click.option(
    "--every",
    "every_seconds",
    default="15m",
    show_default=True,
    callback=_duration_option,
    help="Interval between ticks: 30s, 15m, 1h, 1h30m.",
)
@click.option("--mode", type=click.Choice(MODES), default="monitor", show_default=True)
@click.option("--once", is_flag=True, help="One tick, then exit with its code.")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus metrics on this port (0: any free port).",
)
@click.option(
    "--metrics-address",
    default="127.0.0.1",
    show_default=True,
    help="Address the metrics endpoint binds (the default: this host only).",
)
@click.option(
    "--enqueue",
    is_flag=True,
    help="Queue one reconcile job per cluster for the workers (needs --state-url), then exit.",
)
@click.pass_obj
def reconcile(
    obj: Context,
    paths: tuple[str, ...],
    git_repo: str | None,
    ref: str,
    every_seconds: float,
    mode: Mode,
    once: bool,
    metrics_port: int | None,
    metrics_address: str,
    enqueue: bool,
) -> None:
    """Keep the estate as declared: observe, plan and report drift every interval.

    --mode monitor records and reports drift. --mode autocorrect applies what is safe:
    changes without disruption at once, disruptive ones (migrations, downtime, reboots) only
    inside the cluster's maintenance windows; a cluster without windows never gets them
    automatically. A blocked plan is never applied. SIGTERM or Ctrl-C finishes the current
    action and stops.

    \b
    Exit codes with --once:
      monitor      0 no drift, 2 drift, 1 error
      autocorrect  0 converged, 2 drift remains (e.g. waiting for a window),
                   1 error (or a lock held, or an action failed), 3 blocked by a safety rule
    """
    if enqueue:
        from reconciler.cli.worker_commands import enqueue_reconcile

        raise SystemExit(enqueue_reconcile(obj, paths, git_repo, ref, mode))
    source: ManifestSource
    if git_repo is not None:
        source = GitSource(git_repo, ref, paths)
    elif paths:
        source = FolderSource(paths, obj.cache_dir)
    else:
        raise click.UsageError("give manifest PATHS, or --git REPO [--ref REF] [PATHS]")
    raise SystemExit(
        run_reconcile(obj, source, mode, every_seconds, once, metrics_port, metrics_address)
    )


def _status(row: DriftRecord) -> str:
    if not row.corrected:
        return "open"
    return "corrected" if row.correction_run else "resolved"


def _condition_status(row: ConditionRecord) -> str:
    return "cleared" if row.cleared else "open"


def _world_time(since: float | None) -> str:
    return "-" if since is None else f"t={since:.1f} s"


@click.command()
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--open", "open_only", is_flag=True, help="Only what still drifts (or still holds).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def drift(obj: Context, limit: int, open_only: bool, as_json: bool) -> None:
    """What drifted, when, and whether and when it was corrected, by which run; and the
    conditions (observed health) the loop saw, since when, and whether they cleared.

    Status: open (still drifting), corrected (by the named reconcile run), resolved (seen
    as desired again without the loop changing it: by hand, or by an apply). A condition is
    open while it holds, cleared once a tick no longer sees it; "began" is the world's clock.
    JSON: one list; each row's "kind" is "drift" or "condition".
    """
    journal = obj.store(SystemClock().now)
    try:
        rows = journal.drift_history(limit, open_only)
        conditions = journal.condition_history(limit, open_only)
    finally:
        journal.close()
    if as_json:
        out = [{"kind": "drift", **asdict(r), "status": _status(r)} for r in rows]
        out += [
            {"kind": "condition", **asdict(c), "status": _condition_status(c)} for c in conditions
        ]
        click.echo(json.dumps(out, indent=2))
        return
    if not rows:
        obj.out.note("No drift recorded." if not open_only else "Nothing is drifting.")
    else:
        table = Table()
        for col in ("id", "detected (UTC)", "object", "what drifted", "status", "when", "by run"):
            table.add_column(col)
        for r in rows:
            add_row(
                table,
                str(r.id),
                _utc(r.detected_at),
                r.object,
                _fields_text(r.fields),
                _status(r),
                _utc(r.corrected_at),
                r.correction_run or "-",
            )
        obj.out.console.print(table)
    if conditions:
        table = Table(title="Conditions (observed health)")
        for col in ("id", "type", "object", "reason", "began", "seen (UTC)", "status", "cleared"):
            table.add_column(col)
        for c in conditions:
            add_row(
                table,
                str(c.id),
                c.type,
                c.object,
                c.reason,
                _world_time(c.since),
                _utc(c.detected_at),
                _condition_status(c),
                _utc(c.cleared_at),
            )
        obj.out.console.print(table)
