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
import tempfile
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

from reconciler.engine.plan import (
    Plan,
    PlanRefused,
    object_digests,
    stale_objects,
    verify_document,
)
from reconciler.model.records import Estate
from reconciler.providers.base import Provider, Scope
from reconciler.providers.postgres import (
    StateDatabaseError,
    acquire,
    connect,
    migrate,
    release,
)
from reconciler.providers.registry import open_provider
from reconciler.runtime.apply import (
    apply_plan,
    check_saved,
    close_interrupted,
    signing_key,
    take_locks,
)
from reconciler.runtime.clock import SystemClock
from reconciler.runtime.executor import NoProgress
from reconciler.runtime.journal import whoami
from reconciler.runtime.metrics import LoopMetrics
from reconciler.runtime.reconcile import (
    FolderSource,
    GitSource,
    Manifests,
    ManifestSource,
    Reconciler,
)
from reconciler.runtime.store.postgres import PostgresJournal
from reconciler.runtime.ticks import Mode, TickReport

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

    def observe(self, scope: Scope | None = None) -> Estate:
        # The protocol's targeted read: the whole of this cluster, or the objects asked for.
        return self.inner.observe(scope if scope is not None else Scope(self.cluster))

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
    """Apply a saved plan as reviewed (the checks of ``apply --plan``), under the leases.

    A job retried after its worker died finds its earlier, interrupted run in the journal:
    the objects that run's actions touched are expected to have changed, so the plan is
    checked (signature, digests) without them; the actions already done come back from the
    provider as already done instead of running again.
    """
    clock = SystemClock()
    journal = PostgresJournal(config.state_url, clock.now)
    provider = open_provider(config.provider, config.state_dir, state_url=config.state_url)
    try:
        row = journal.conn.execute(
            "SELECT plan FROM reconciler_plans WHERE id = %s", (plan_id,)
        ).fetchone()
        if row is None:
            return {"outcome": "error", "message": f"no saved plan {plan_id}"}
        source = f"plan:{plan_id}"
        close_interrupted(journal)
        touched = {
            a.target
            for run in journal.runs(1000)
            if run.source == source and run.outcome == "interrupted"
            for a in journal.actions(run.id)
            if a.status != "skipped"
        }
        observed = provider.observe()
        try:
            plan = _checked_plan(str(row[0]), observed, touched, config.cache_dir)
        except PlanRefused as refused:
            run_id = journal.start_run("-", source, 0)
            journal.end_run(run_id, "refused", f"refusing the plan: {refused}")
            return {"run": run_id, "outcome": "refused", "message": str(refused)}
        clusters = sorted({a.cluster for a in plan.actions})
        # A CLI apply may hold a cluster: wait for it (two lease lengths), then fail the job.
        locks, _ = take_locks(journal, clusters, 2 * journal.lease_seconds, clock)
        try:
            applied = apply_plan(plan, provider, journal, clock, NoProgress(), locks, source=source)
        finally:
            journal.unlock(locks)
        return {"run": applied.run_id, "outcome": applied.outcome, "message": applied.summary}
    finally:
        provider.close()
        journal.close()


def _checked_plan(text: str, observed: Estate, touched: set[str], cache_dir: Path | None) -> Plan:
    """The saved plan, if it may run: every check of ``apply --plan`` on a first attempt."""
    key = signing_key()
    if not touched:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "plan.json"
            path.write_text(text, encoding="utf-8")
            plan, _notes = check_saved(path, observed, key, cache_dir)
        return plan
    plan = verify_document(json.loads(text), key)
    changed = [o for o in stale_objects(plan, object_digests(observed)) if o not in touched]
    if changed:
        raise PlanRefused(
            f"it is stale: {len(changed)} object(s) changed since it was made, besides what "
            f"the interrupted run of it did: {', '.join(changed[:10])}; make a new plan"
        )
    return plan


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
