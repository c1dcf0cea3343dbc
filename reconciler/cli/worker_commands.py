"""``worker``, ``workers``, ``schedule``: reconciling many clusters on several workers.

All of them need the PostgreSQL state database (``--state-url`` / RECONCILER_STATE_URL):
the queue (procrastinate), the journal and the simulated world live there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from reconciler.cli.context import EXIT_BLOCKED, EXIT_ERROR, EXIT_OK
from reconciler.manifest.gitsource import GitSourceError
from reconciler.providers.postgres import StateDatabaseError
from reconciler.runtime.clock import SystemClock
from reconciler.runtime.reconcile import FolderSource, GitSource, ManifestSource
from reconciler.runtime.ticks import MODES

if TYPE_CHECKING:
    from reconciler.cli.context import Context


def require_state_url(obj: Context, what: str) -> str:
    if not obj.state_url:
        obj.out.error(
            f"{what} needs the shared state database: pass --state-url postgresql://... "
            "(or set RECONCILER_STATE_URL); see docs/scale-out.md"
        )
        raise SystemExit(EXIT_ERROR)
    return obj.state_url


def manifest_source(
    paths: tuple[str, ...], git_repo: str | None, ref: str, obj: Context
) -> ManifestSource:
    if git_repo is not None:
        return GitSource(str(Path(git_repo).resolve()), ref, paths)
    if not paths:
        raise click.UsageError("give manifest PATHS, or --git REPO [--ref REF] [PATHS]")
    # Absolute: the job runs on another worker, maybe in another directory.
    return FolderSource(tuple(str(Path(p).resolve()) for p in paths), obj.cache_dir)


def enqueue_reconcile(
    obj: Context, paths: tuple[str, ...], git_repo: str | None, ref: str, mode: str
) -> int:
    """``reconcile --enqueue``: one job per cluster of the manifests."""
    from reconciler.runtime.jobs import WorkerConfig, defer_reconcile, make_app, prepare_database

    url = require_state_url(obj, "reconcile --enqueue")
    source = manifest_source(paths, git_repo, ref, obj)
    try:
        manifests = source.load()
    except GitSourceError as exc:
        obj.out.error(f"cannot read repository {git_repo}: {exc}")
        return EXIT_ERROR
    clusters = sorted(manifests.desired.clusters)
    prepare_database(url)
    app = make_app(WorkerConfig(url, obj.state_dir, obj.provider, obj.cache_dir))
    job_paths = source.paths if isinstance(source, (FolderSource, GitSource)) else ()
    repo = str(Path(git_repo).resolve()) if git_repo else None
    with app.open():
        queued, waiting = defer_reconcile(app, clusters, mode, job_paths, repo, ref)
    obj.out.ok(f"queued {len(queued)} reconcile job(s) ({mode}), one per cluster")
    if waiting:
        obj.out.note(
            f"{len(waiting)} cluster(s) already had a job waiting, not queued again: "
            + ", ".join(waiting[:10])
            + (" ..." if len(waiting) > 10 else "")
        )
    return EXIT_OK


def enqueue_apply(obj: Context, plan_file: Path, confirm: Callable[[], None]) -> int:
    """``apply --plan FILE --enqueue``: save the plan in the database, queue one apply job."""
    from reconciler.cli.render import plan_lines
    from reconciler.engine.plan import PlanRefused
    from reconciler.runtime.apply import SigningKeyError, prepare, signing_key
    from reconciler.runtime.jobs import (
        WorkerConfig,
        defer_apply,
        make_app,
        prepare_database,
        save_plan,
    )

    url = require_state_url(obj, "apply --enqueue")
    try:
        key = signing_key()
    except SigningKeyError as exc:
        obj.out.error(str(exc))
        return EXIT_ERROR
    # The checks 'apply --plan' makes, now: a plan refused here is never queued.
    provider = obj.provider_instance()
    try:
        plan = prepare(provider, saved=plan_file, key=key, cache_dir=obj.cache_dir).plan
        data = json.loads(plan_file.read_text(encoding="utf-8"))
    except PlanRefused as refused:
        obj.out.error(f"refusing the plan in {plan_file}: {refused}; nothing was queued")
        return EXIT_ERROR
    finally:
        provider.close()
    for line in plan_lines(plan, colour=obj.out.interactive):
        obj.out.console.print(line, markup=obj.out.interactive, highlight=False)
    if plan.blocked:
        obj.out.error("the plan breaks a safety rule; nothing was queued")
        return EXIT_BLOCKED
    if plan.empty:
        return EXIT_OK
    confirm()
    prepare_database(url)
    plan_id = save_plan(url, data, str(plan_file))
    clusters = sorted({a.cluster for a in plan.actions})
    app = make_app(WorkerConfig(url, obj.state_dir, obj.provider, obj.cache_dir))
    with app.open():
        job_id = defer_apply(app, plan_id, clusters)
    obj.out.ok(
        f"queued the plan {plan_id} ({len(plan.actions)} action(s) on {', '.join(clusters)}) "
        f"for the workers as job {job_id}; follow it with 'reconciler history'"
    )
    return EXIT_OK


@click.command()
@click.option(
    "--concurrency",
    type=click.IntRange(min=1, max=64),
    default=1,
    show_default=True,
    help="Jobs this worker runs at once (each in a thread of its own).",
)
@click.option("--until-idle", is_flag=True, help="Stop when the queue is empty.")
@click.option(
    "--stalled-after",
    type=click.FloatRange(min=1.0),
    default=30.0,
    show_default=True,
    help="Seconds without a heartbeat after which a worker elsewhere counts as dead and "
    "its jobs are run again (a dead process on this host is noticed at once).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus metrics (labelled with this worker's name) on this port.",
)
@click.option("--metrics-address", default="127.0.0.1", show_default=True)
@click.option(
    "--db-wait",
    type=click.FloatRange(min=0.0),
    default=300.0,
    show_default=True,
    help="Seconds to keep trying while the state database is down at start.",
)
@click.pass_obj
def worker(
    obj: Context,
    concurrency: int,
    until_idle: bool,
    stalled_after: float,
    metrics_port: int | None,
    metrics_address: str,
    db_wait: float,
) -> None:
    """Run queued reconcile and apply jobs (procrastinate); also the periodic ticks.

    Start as many as you like, on as many machines: a cluster is only ever worked on by
    one of them at a time. SIGTERM or Ctrl-C lets the running jobs finish, then stops.
    """
    from reconciler.runtime.jobs import WorkerConfig
    from reconciler.runtime.worker import run_worker

    url = require_state_url(obj, "worker")
    config = WorkerConfig(url, obj.state_dir, obj.provider, obj.cache_dir)
    try:
        recovered = run_worker(
            config, concurrency, until_idle, stalled_after, metrics_port, metrics_address, db_wait
        )
    except StateDatabaseError as exc:
        obj.out.error(str(exc))
        raise SystemExit(EXIT_ERROR) from exc
    if recovered:
        obj.out.note(
            f"ran again {len(recovered)} job(s) of worker(s) that died: "
            + ", ".join(map(str, recovered))
        )
    raise SystemExit(EXIT_OK)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


@click.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def workers(obj: Context, as_json: bool) -> None:
    """Live workers, and the jobs and cluster leases each holds now."""
    from reconciler.runtime.jobs import prepare_database
    from reconciler.runtime.worker import list_workers

    url = require_state_url(obj, "workers")
    prepare_database(url)
    found = list_workers(url, SystemClock().now())
    if as_json:
        click.echo(json.dumps([asdict(w) for w in found], indent=2))
        return
    if not found:
        obj.out.note("No live worker.")
        return
    table = Table()
    for col in ("worker", "pid", "jobs at once", "since (UTC)", "last beat", "done", "holds"):
        table.add_column(col)
    for w in found:
        table.add_row(
            w.name,
            str(w.pid),
            str(w.concurrency),
            _when(w.started_at),
            _when(w.heartbeat_at),
            str(w.jobs_done),
            "; ".join(w.holding) or "-",
        )
    obj.out.console.print(table)


@click.command()
@click.argument("paths", nargs=-1)
@click.option("--git", "git_repo", type=click.Path(exists=True, file_okay=False))
@click.option("--ref", default="main", show_default=True)
@click.option(
    "--every",
    "every_text",
    default="15m",
    show_default=True,
    help="Interval: 30s, 5m, 15m, 1h (must divide a minute, an hour or a day).",
)
@click.option("--mode", type=click.Choice(MODES), default="monitor", show_default=True)
@click.option("--replace", "replace_all", is_flag=True, help="Drop every schedule not named here.")
@click.option("--list", "list_only", is_flag=True, help="Show the schedules and change nothing.")
@click.pass_obj
def schedule(
    obj: Context,
    paths: tuple[str, ...],
    git_repo: str | None,
    ref: str,
    every_text: str,
    mode: str,
    replace_all: bool,
    list_only: bool,
) -> None:
    """Tick every cluster of the manifests periodically, on the workers.

    Saved in the state database; each worker (started after this) defines a procrastinate
    periodic task per cluster, and the database makes sure a tick is queued once however
    many workers there are. A cluster whose last tick still runs gets no second one.
    """
    from reconciler.cli.reconcile_commands import parse_duration
    from reconciler.runtime.jobs import prepare_database
    from reconciler.runtime.worker import Schedule, cron_for, load_schedules, save_schedules

    url = require_state_url(obj, "schedule")
    prepare_database(url)
    if list_only:
        for s in load_schedules(url):
            click.echo(f"{s.cluster}\tevery {s.every_seconds:g}s\t{s.cron}\t{s.mode}")
        return
    try:
        every = parse_duration(every_text)
        cron = cron_for(every)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--every") from exc
    source = manifest_source(paths, git_repo, ref, obj)
    clusters = sorted(source.load().desired.clusters)
    job_paths = source.paths if isinstance(source, (FolderSource, GitSource)) else ()
    repo = str(Path(git_repo).resolve()) if git_repo else None
    save_schedules(
        url,
        [Schedule(c, every, cron, mode, tuple(job_paths), repo, ref) for c in clusters],
        replace_all,
    )
    obj.out.ok(
        f"scheduled {len(clusters)} cluster(s) every {every_text} ({mode}, cron '{cron}'); "
        "workers started from now on tick them"
    )
