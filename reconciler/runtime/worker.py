"""A reconciler worker: procrastinate's worker plus what HA and operators need around it.

Around ``App.run_worker_async`` it registers itself (host, pid, heartbeat) so ``reconciler
workers`` can list who is alive and what each holds; before taking work, and every
``stalled_after`` seconds while it runs, it hands back to the queue the jobs of workers that
died: at once for a dead process on this host, after ``stalled_after`` seconds of silence
for one elsewhere. The job that comes back resumes from the journal: the dead run is marked
interrupted, the estate is observed afresh, and what was done is not done again.
"""

from __future__ import annotations

import asyncio
import datetime
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import procrastinate
import psycopg
import structlog
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from reconciler.providers.postgres import StateDatabaseError, connect
from reconciler.runtime.clock import SystemClock
from reconciler.runtime.jobs import QUEUE, RECONCILE_TASK, WorkerConfig, make_app, prepare_database
from reconciler.runtime.journal import _pid_alive, whoami
from reconciler.runtime.metrics import LoopMetrics
from reconciler.runtime.store.postgres import WORKER_STALE_SECONDS

log = structlog.get_logger("reconciler.worker")

HEARTBEAT_SECONDS = 10.0


# --- metrics with a worker label -----------------------------------------------------------


class WorkerLabelled(Collector):
    """Every sample of ``inner`` with a ``worker`` label added: one scrape config, N workers."""

    def __init__(self, inner: CollectorRegistry, worker: str) -> None:
        self.inner, self.worker = inner, worker

    def collect(self) -> Iterator[Metric]:
        for family in self.inner.collect():
            out = Metric(family.name, family.documentation, family.type, family.unit)
            for s in family.samples:
                out.add_sample(
                    s.name, {**s.labels, "worker": self.worker}, s.value, s.timestamp, s.exemplar
                )
            yield out


def labelled_registry(metrics: LoopMetrics, worker: str) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerLabelled(metrics.registry, worker))
    return registry


# --- schedules: periodic ticks per cluster --------------------------------------------------


def cron_for(every_seconds: float) -> str:
    """A cron line for an interval that divides a minute, an hour or a day evenly."""
    s = int(every_seconds)
    if s != every_seconds or s <= 0:
        raise ValueError("the interval must be a whole number of seconds")
    if s < 60 and 60 % s == 0:
        return f"* * * * * */{s}"
    if s % 60 == 0 and s < 3600 and 3600 % s == 0:
        return f"*/{s // 60} * * * *"
    if s % 3600 == 0 and s < 86400 and 86400 % s == 0:
        return f"0 */{s // 3600} * * *"
    if s == 86400:
        return "0 0 * * *"
    raise ValueError(
        f"an interval of {s} s does not divide a minute, an hour or a day evenly: "
        "periodic ticks are cron lines (try 30s, 5m, 15m, 1h, 6h)"
    )


@dataclass(frozen=True, slots=True)
class Schedule:
    cluster: str
    every_seconds: float
    cron: str
    mode: str
    paths: tuple[str, ...]
    git_repo: str | None
    ref: str


def save_schedules(url: str, schedules: Sequence[Schedule], replace_all: bool) -> None:
    conn = connect(url)
    try:
        with conn.transaction():
            if replace_all:
                conn.execute("DELETE FROM reconciler_schedules")
            for s in schedules:
                conn.execute(
                    "INSERT INTO reconciler_schedules (cluster, every_seconds, cron, mode, paths, "
                    "git_repo, ref, saved_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (cluster) DO UPDATE SET every_seconds = excluded.every_seconds, "
                    "cron = excluded.cron, mode = excluded.mode, paths = excluded.paths, "
                    "git_repo = excluded.git_repo, ref = excluded.ref, "
                    "saved_at = excluded.saved_at",
                    (
                        s.cluster,
                        s.every_seconds,
                        s.cron,
                        s.mode,
                        "\n".join(s.paths),
                        s.git_repo,
                        s.ref,
                        SystemClock().now(),
                    ),
                )
    finally:
        conn.close()


def load_schedules(url: str) -> list[Schedule]:
    conn = connect(url)
    try:
        rows = conn.execute(
            "SELECT cluster, every_seconds, cron, mode, paths, git_repo, ref "
            "FROM reconciler_schedules ORDER BY cluster"
        ).fetchall()
    finally:
        conn.close()
    return [
        Schedule(r[0], float(r[1]), r[2], r[3], tuple(p for p in r[4].split("\n") if p), r[5], r[6])
        for r in rows
    ]


def register_schedules(app: procrastinate.App, schedules: Iterable[Schedule]) -> int:
    """Periodic reconcile tasks, one per cluster; the database dedups ticks across workers."""
    task = app.tasks[RECONCILE_TASK]
    count = 0
    for s in schedules:
        app.periodic_registry.register_task(
            task=task,
            cron=s.cron,
            periodic_id=s.cluster,
            configure_kwargs={
                "lock": s.cluster,
                "queueing_lock": s.cluster,
                "task_kwargs": {
                    "cluster": s.cluster,
                    "mode": s.mode,
                    "paths": list(s.paths),
                    "git_repo": s.git_repo,
                    "ref": s.ref,
                },
            },
        )
        count += 1
    return count


# --- live workers ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    name: str
    host: str
    pid: int
    concurrency: int
    started_at: float
    heartbeat_at: float
    jobs_done: int
    holding: tuple[str, ...] = ()  # "task cluster (job N)" per job it runs now
    leases: tuple[str, ...] = ()  # clusters whose journal lease its process holds


def list_workers(url: str, now: float) -> list[WorkerRecord]:
    """Workers whose heartbeat is fresh, with the jobs and leases they hold."""
    conn = connect(url)
    try:
        rows = conn.execute(
            "SELECT name, host, pid, concurrency, started_at, heartbeat_at, jobs_done "
            "FROM reconciler_workers WHERE heartbeat_at > %s ORDER BY name",
            (now - WORKER_STALE_SECONDS,),
        ).fetchall()
        out = []
        for r in rows:
            rec = WorkerRecord(*r)
            jobs = conn.execute(
                "SELECT task, cluster, job_id FROM reconciler_jobs_held WHERE worker = %s "
                "ORDER BY job_id",
                (rec.name,),
            ).fetchall()
            leases = conn.execute(
                "SELECT cluster FROM locks WHERE host = %s AND pid = %s AND expires_at > %s "
                "ORDER BY cluster",
                (rec.host, rec.pid, now),
            ).fetchall()
            out.append(
                replace(
                    rec,
                    holding=tuple(f"{t} {c} (job {j})" for t, c, j in jobs),
                    leases=tuple(c for (c,) in leases),
                )
            )
        return out
    finally:
        conn.close()


class _Registration:
    """The worker's row in reconciler_workers, kept fresh by a heartbeat thread."""

    def __init__(self, url: str, name: str, concurrency: int) -> None:
        self.url, self.name = url, name
        self.stop = threading.Event()
        _, host, pid = whoami()
        now = SystemClock().now()
        conn = connect(url)
        try:
            conn.execute(
                "INSERT INTO reconciler_workers (name, host, pid, concurrency, started_at, "
                "heartbeat_at) VALUES (%s, %s, %s, %s, %s, %s)",
                (name, host, pid, concurrency, now, now),
            )
        finally:
            conn.close()
        self.thread = threading.Thread(target=self._beat, name="worker-heartbeat", daemon=True)
        self.thread.start()

    def _beat(self) -> None:
        while not self.stop.wait(HEARTBEAT_SECONDS):
            try:
                conn = connect(self.url)
                try:
                    conn.execute(
                        "UPDATE reconciler_workers SET heartbeat_at = %s WHERE name = %s",
                        (SystemClock().now(), self.name),
                    )
                finally:
                    conn.close()
            except (psycopg.Error, StateDatabaseError) as exc:  # away: the next beat tries again
                log.warning("worker.heartbeat_failed", error=str(exc))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5.0)
        conn = connect(self.url)
        try:
            conn.execute("DELETE FROM reconciler_workers WHERE name = %s", (self.name,))
        finally:
            conn.close()


# --- recovering the jobs of dead workers ----------------------------------------------------


async def recover_stalled(app: procrastinate.App, url: str, stalled_after: float) -> list[int]:
    """Put back on the queue the jobs whose worker is gone; returns their ids."""
    _, host, _ = whoami()
    conn = connect(url)
    try:
        rows = conn.execute(
            "SELECT h.job_id, h.host, h.pid FROM reconciler_jobs_held h "
            "JOIN procrastinate_jobs j ON j.id = h.job_id WHERE j.status = 'doing'"
        ).fetchall()
        dead_here = {int(j) for j, h, p in rows if h == host and not _pid_alive(int(p))}
        silent = {
            int(job.id)
            for job in await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after)
            if job.id is not None
        }
        recovered = sorted(dead_here | silent)
        for job_id in recovered:
            await app.job_manager.retry_job_by_id_async(
                job_id, retry_at=datetime.datetime.now(datetime.UTC)
            )
            conn.execute("DELETE FROM reconciler_jobs_held WHERE job_id = %s", (job_id,))
            log.warning("worker.job_recovered", job=job_id)
    finally:
        conn.close()
    return recovered


def run_worker(
    config: WorkerConfig,
    concurrency: int,
    until_idle: bool,
    stalled_after: float = 30.0,
    metrics_port: int | None = None,
    metrics_address: str = "127.0.0.1",
    db_wait_seconds: float = 0.0,
) -> list[int]:
    """Run until stopped (SIGTERM/SIGINT), or with ``until_idle`` until the queue is empty.

    Returns the ids of the jobs this worker recovered from dead workers. A database that is
    down at start is waited for ``db_wait_seconds``.
    """
    prepare_database(config.state_url, db_wait_seconds)
    _, host, pid = whoami()
    name = config.worker_name or f"{host}:{pid}:{uuid.uuid4().hex[:4]}"
    metrics = config.metrics or LoopMetrics()
    config = replace(config, worker_name=name, metrics=metrics)
    server: Any = None
    if metrics_port is not None:
        server, _thread = start_http_server(
            metrics_port, metrics_address, registry=labelled_registry(metrics, name)
        )
    app = make_app(config)
    if not until_idle:
        register_schedules(app, load_schedules(config.state_url))
    registration = _Registration(config.state_url, name, concurrency)
    recovered: list[int] = []

    async def main() -> None:
        async with app.open_async():
            recovered.extend(await recover_stalled(app, config.state_url, stalled_after))
            keeper = None
            if not until_idle:
                keeper = asyncio.create_task(_keep_recovering(app, config.state_url, stalled_after))
            try:
                await app.run_worker_async(
                    queues=[QUEUE],
                    name=name,
                    concurrency=concurrency,
                    wait=not until_idle,
                    update_heartbeat_interval=min(HEARTBEAT_SECONDS, stalled_after / 3),
                    stalled_worker_timeout=stalled_after,
                    delete_jobs="never",
                )
            finally:
                if keeper is not None:
                    keeper.cancel()

    try:
        asyncio.run(main())
    finally:
        registration.close()
        if server is not None:
            server.shutdown()
            server.server_close()
    return recovered


async def _keep_recovering(app: procrastinate.App, url: str, stalled_after: float) -> None:
    while True:
        await asyncio.sleep(stalled_after)
        try:
            await recover_stalled(app, url, stalled_after)
        except (psycopg.Error, StateDatabaseError) as exc:  # an outage must not end the worker
            log.warning("worker.recovery_failed", error=str(exc))
