"""Reconcile and apply as procrastinate jobs: one job per cluster, never two at once.

Every job is deferred with ``lock=<cluster>`` (procrastinate runs jobs sharing a lock one
after the other) and ``queueing_lock=<cluster>`` (a second job for a cluster is not queued
while one waits: ticks never pile up). Inside a job the cluster's journal lease is taken as
any apply takes it, so a CLI apply and a worker never act on one cluster together either.
The tasks are plain functions run by the worker in threads; each opens its own store and
provider connections.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import procrastinate
import psycopg
import structlog
from procrastinate import exceptions as pq_exceptions
from procrastinate.schema import SchemaManager

from reconciler.engine.plan import object_digests, plan_from_json, stale_objects
from reconciler.model.records import Estate
from reconciler.providers.base import Provider
from reconciler.providers.postgres import (
    StateDatabaseError,
    acquire,
    connect,
    migrate,
    release,
)
from reconciler.providers.registry import open_provider
from reconciler.runtime.clock import SystemClock
from reconciler.runtime.executor import Executor
from reconciler.runtime.journal import LOCK_TTL_SECONDS, LockHeld, LockRecord, whoami
from reconciler.runtime.metrics import LoopMetrics
from reconciler.runtime.reconcile import (
    FolderSource,
    GitSource,
    Manifests,
    ManifestSource,
    Mode,
    Reconciler,
    TickReport,
)
from reconciler.runtime.store.postgres import PostgresJournal

log = structlog.get_logger("reconciler.jobs")

QUEUE = "reconciler"
RECONCILE_TASK = "reconcile_cluster"
APPLY_TASK = "apply_plan"


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """What every job of one worker process shares: where the state and the estate are."""

    state_url: str
    state_dir: Path
    provider: str
    cache_dir: Path | None
    worker_name: str = ""
    metrics: LoopMetrics | None = None


# --- one cluster's slice of the manifests and of the estate ---------------------------------


class ClusterGone(Exception):
    """A job's cluster is no longer in the manifests (removed since the job was queued)."""


_LOADED: dict[tuple[Any, ...], Manifests] = {}
_LOADED_GUARD = threading.Lock()


@dataclass(frozen=True, slots=True)
class UnchangedFolders:
    """A folder source that parses again only when a file changed (size or mtime).

    Every job of a worker reads the same manifests for its own cluster: parsing the whole
    estate per job would make a tick cost grow with the number of clusters.
    """

    inner: FolderSource

    def load(self) -> Manifests:
        key = (self.inner.paths, _fingerprint(self.inner.paths))
        with _LOADED_GUARD:
            got = _LOADED.get(key)
            if got is None:
                got = self.inner.load()
                _LOADED.clear()
                _LOADED[key] = got
        return got


def _fingerprint(paths: Sequence[str]) -> tuple[tuple[str, int, int], ...]:
    out: list[tuple[str, int, int]] = []
    for top in paths:
        for root, _dirs, files in os.walk(top) if os.path.isdir(top) else [("", [], [top])]:
            for name in files:
                path = os.path.join(root, name)
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                out.append((path, st.st_mtime_ns, st.st_size))
    return tuple(sorted(out))


@dataclass(frozen=True, slots=True)
class ClusterSource:
    """The manifests of one cluster: the rest of the estate is other jobs' business."""

    inner: ManifestSource
    cluster: str

    def load(self) -> Manifests:
        got = self.inner.load()
        if self.cluster not in got.desired.clusters:
            raise ClusterGone(f"cluster {self.cluster} is not in the manifests ({got.source})")
        return Manifests(got.desired.of_cluster(self.cluster), got.source, got.commit_id, got.paths)


class ClusterProvider:
    """A provider that observes only one cluster (the simulator reads just its rows)."""

    def __init__(self, inner: Provider, cluster: str) -> None:
        self.inner, self.cluster = inner, cluster

    def observe(self) -> Estate:
        by_cluster = getattr(self.inner, "observe_cluster", None)
        if callable(by_cluster):
            estate: Estate = by_cluster(self.cluster)
            return estate
        return self.inner.observe().of_cluster(self.cluster)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


# --- the procrastinate app ------------------------------------------------------------------


def schema_steps() -> tuple[str, ...]:
    return (SchemaManager.get_schema(),)


def prepare_database(url: str, wait_seconds: float = 0.0) -> None:
    """Create or upgrade every schema: the journal's, the world's and procrastinate's.

    One process at a time (an advisory lock), so workers may all start together;
    ``wait_seconds``: how long to keep trying while the server is down.
    """
    conn = connect(url, wait_seconds)
    try:
        have = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
        if have and have[0]:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS reconciler_schema (component TEXT NOT NULL, "
                "version INTEGER NOT NULL, applied_at DOUBLE PRECISION NOT NULL, "
                "PRIMARY KEY (component, version))"
            )
            conn.execute(
                "INSERT INTO reconciler_schema VALUES ('procrastinate', 1, extract(epoch FROM "
                "now())) ON CONFLICT DO NOTHING"
            )
        migrate(conn, "procrastinate", schema_steps())
    finally:
        conn.close()
    PostgresJournal(url, SystemClock().now).close()


def make_app(config: WorkerConfig) -> procrastinate.App:
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=config.state_url, min_size=1, max_size=4)
    )

    def reconcile_cluster(
        context: procrastinate.JobContext,
        cluster: str,
        mode: str,
        paths: list[str],
        git_repo: str | None = None,
        ref: str = "main",
        timestamp: int | None = None,
    ) -> dict[str, Any]:
        del timestamp  # set by periodic deferring; the tick reads the clock itself
        with _holding(config, context, cluster, RECONCILE_TASK):
            report = run_cluster_tick(config, cluster, mode, paths, git_repo, ref)
        return {"run": report.run_id, "outcome": report.outcome}

    def apply_saved_plan(
        context: procrastinate.JobContext, cluster: str, plan_id: str
    ) -> dict[str, Any]:
        with _holding(config, context, cluster, APPLY_TASK):
            return run_saved_plan(config, plan_id)

    # A job cut off by the database going away runs again later (the journal makes that
    # safe); any other failure is for a person to read, not to repeat.
    retry = procrastinate.RetryStrategy(
        max_attempts=5,
        exponential_wait=4,
        retry_exceptions={psycopg.OperationalError, StateDatabaseError},
    )
    app.task(name=RECONCILE_TASK, queue=QUEUE, pass_context=True, retry=retry)(reconcile_cluster)
    app.task(name=APPLY_TASK, queue=QUEUE, pass_context=True, retry=retry)(apply_saved_plan)
    return app


class _holding:
    """Records which job this process holds, so a worker on this host can tell it died."""

    def __init__(
        self, config: WorkerConfig, context: procrastinate.JobContext, cluster: str, task: str
    ) -> None:
        self.config, self.cluster, self.task = config, cluster, task
        self.job_id = context.job.id

    def __enter__(self) -> None:
        _, host, pid = whoami()
        conn = acquire(self.config.state_url)
        try:
            conn.execute(
                "INSERT INTO reconciler_jobs_held (job_id, worker, host, pid, cluster, task, "
                "started_at) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (job_id) DO UPDATE "
                "SET worker = excluded.worker, host = excluded.host, pid = excluded.pid, "
                "started_at = excluded.started_at",
                (
                    self.job_id,
                    self.config.worker_name,
                    host,
                    pid,
                    self.cluster,
                    self.task,
                    SystemClock().now(),
                ),
            )
        finally:
            release(self.config.state_url, conn)

    def __exit__(self, *_exc: object) -> None:
        conn = acquire(self.config.state_url)
        try:
            with conn.transaction():
                conn.execute("DELETE FROM reconciler_jobs_held WHERE job_id = %s", (self.job_id,))
                conn.execute(
                    "UPDATE reconciler_workers SET jobs_done = jobs_done + 1 WHERE name = %s",
                    (self.config.worker_name,),
                )
        finally:
            release(self.config.state_url, conn)


# --- what the jobs do -----------------------------------------------------------------------


def run_cluster_tick(
    config: WorkerConfig,
    cluster: str,
    mode: str,
    paths: Sequence[str],
    git_repo: str | None,
    ref: str,
) -> TickReport:
    clock = SystemClock()
    inner: ManifestSource = (
        GitSource(git_repo, ref, tuple(paths))
        if git_repo
        else UnchangedFolders(FolderSource(tuple(paths), config.cache_dir))
    )
    journal = PostgresJournal(config.state_url, clock.now)

    def provider_factory() -> Provider:
        provider = open_provider(config.provider, config.state_dir, state_url=config.state_url)
        return ClusterProvider(provider, cluster)

    chosen: Mode = "autocorrect" if mode == "autocorrect" else "monitor"
    try:
        loop = Reconciler(
            ClusterSource(inner, cluster),
            provider_factory,
            journal,
            clock,
            chosen,
            metrics=config.metrics,
            scope=cluster,
        )
        try:
            report = loop.tick()
        except ClusterGone as exc:  # the cluster left the manifests since it was queued
            run_id = journal.start_run("-", ",".join(paths), 0, loop._kind, None, cluster)
            journal.end_run(run_id, "error", str(exc))
            report = TickReport(chosen, clock.now(), outcome="error", message=str(exc))
            report.run_id = run_id
        except Exception as exc:
            _abandon_runs(config.state_url, cluster, exc)
            raise
    finally:
        journal.close()
    log.info("job.reconcile", cluster=cluster, run=report.run_id, outcome=report.outcome)
    return report


def _abandon_runs(url: str, cluster: str, exc: BaseException) -> None:
    """A job that failed mid-tick (the database went away) leaves no run marked running.

    Its process lives on, so nothing else would notice; only this thread ticks the cluster
    in this process (the job's lock), so its running run of the cluster is this one.
    """
    _, host, pid = whoami()
    try:
        conn = acquire(url)
    except StateDatabaseError:
        return  # still away: the run stays running until a worker sees this process gone
    try:
        conn.execute(
            "UPDATE runs SET outcome = 'interrupted', ended_at = %s, message = %s "
            "WHERE outcome = 'running' AND cluster = %s AND host = %s AND pid = %s",
            (SystemClock().now(), f"the job failed: {exc}"[:500], cluster, host, pid),
        )
    except psycopg.Error:
        conn.close()
        return
    release(url, conn)


def save_plan(url: str, plan_json: dict[str, Any], source: str) -> str:
    """Keep a reviewed plan in the state database; workers apply it from there."""
    owner, host, _ = whoami()
    plan_id = f"p{uuid.uuid4().hex[:12]}"
    conn = connect(url)
    try:
        conn.execute(
            "INSERT INTO reconciler_plans (id, digest, plan, source, saved_at, saved_by) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (
                plan_id,
                str(plan_json.get("digest", "")),
                json.dumps(plan_json, sort_keys=True),
                source,
                SystemClock().now(),
                f"{owner}@{host}",
            ),
        )
    finally:
        conn.close()
    return plan_id


def run_saved_plan(config: WorkerConfig, plan_id: str) -> dict[str, Any]:
    """Apply a saved plan: refused if the estate changed since, unless this job resumes it.

    A job retried after its worker died finds its earlier, interrupted run in the journal:
    the objects that run's actions had touched are expected to have changed, and actions
    already done come back from the provider as already done instead of running again.
    """
    clock = SystemClock()
    journal = PostgresJournal(config.state_url, clock.now)
    provider = open_provider(config.provider, config.state_dir, state_url=config.state_url)
    try:
        row = journal.conn.execute(
            "SELECT plan, source FROM reconciler_plans WHERE id = %s", (plan_id,)
        ).fetchone()
        if row is None:
            return {"outcome": "error", "message": f"no saved plan {plan_id}"}
        plan = plan_from_json(json.loads(row[0]))
        source = f"plan:{plan_id}"
        clusters = sorted({a.cluster for a in plan.actions})
        for run in journal.interrupted_runs():
            journal.mark_interrupted(run)
        # Objects an earlier, interrupted run of this plan acted on have changed, as expected.
        touched = {
            a.target
            for run in journal.runs(1000)
            if run.source == source and run.outcome == "interrupted"
            for a in journal.actions(run.id)
            if a.status != "skipped"
        }
        observed = provider.observe()
        changed = [o for o in stale_objects(plan, object_digests(observed)) if o not in touched]
        if changed:
            message = f"the saved plan is stale: {len(changed)} object(s) changed: " + ", ".join(
                changed[:10]
            )
            run_id = journal.start_run(plan.digest(), source, 0, cluster=",".join(clusters))
            journal.end_run(run_id, "refused", message)
            return {"run": run_id, "outcome": "refused", "message": message}
        locks = _wait_for_lease(journal, clusters, clock)
        run_id = journal.start_run(
            plan.digest(), source, len(plan.actions), cluster=",".join(clusters)
        )
        journal.attach_run(locks, run_id)
        try:
            report = Executor(
                provider,
                journal,
                clock,
                _NoProgress(),
                after_action=lambda: journal.renew(locks, LOCK_TTL_SECONDS),
            ).run(plan, run_id)
        finally:
            journal.unlock(locks)
        summary = (
            f"{report.count('done')} done, {report.count('already_done')} already done, "
            f"{len(report.root_causes)} failed, {report.count('skipped')} skipped"
        )
        journal.end_run(run_id, report.outcome, summary)
        return {"run": run_id, "outcome": report.outcome, "message": summary}
    finally:
        provider.close()
        journal.close()


def _wait_for_lease(
    journal: PostgresJournal, clusters: Sequence[str], clock: SystemClock
) -> list[LockRecord]:
    """A CLI apply may hold a cluster: wait for it (two lease lengths), then fail the job."""
    deadline = clock.now() + 2 * journal.lease_seconds
    while True:
        try:
            locks, _ = journal.try_lock(clusters, LOCK_TTL_SECONDS)
        except LockHeld:
            if clock.now() >= deadline:
                raise
            clock.sleep(1.0)
            continue
        return locks


class _NoProgress:
    def run_started(self, *_args: Any) -> None:
        pass

    def action_started(self, *_args: Any) -> None:
        pass

    def action_finished(self, *_args: Any) -> None:
        pass

    def run_finished(self, *_args: Any) -> None:
        pass


# --- deferring ------------------------------------------------------------------------------


def defer_reconcile(
    app: procrastinate.App,
    clusters: Sequence[str],
    mode: str,
    paths: Sequence[str],
    git_repo: str | None,
    ref: str,
) -> tuple[list[str], list[str]]:
    """One job per cluster; returns (queued, already queued)."""
    queued: list[str] = []
    waiting: list[str] = []
    task = app.tasks[RECONCILE_TASK]
    for cluster in clusters:
        try:
            task.configure(lock=cluster, queueing_lock=cluster).defer(
                cluster=cluster, mode=mode, paths=list(paths), git_repo=git_repo, ref=ref
            )
        except pq_exceptions.AlreadyEnqueued:
            waiting.append(cluster)
        else:
            queued.append(cluster)
    return queued, waiting


def defer_apply(app: procrastinate.App, plan_id: str, clusters: Sequence[str]) -> int:
    """One job for the whole plan, locked on its first cluster (plans are applied whole)."""
    lock = ",".join(sorted(clusters)) if len(clusters) != 1 else clusters[0]
    job_id: int = (
        app.tasks[APPLY_TASK]
        .configure(lock=lock, queueing_lock=f"apply:{plan_id}")
        .defer(cluster=lock, plan_id=plan_id)
    )
    return job_id
