"""Scale-out benchmark: reconcile ticks per minute with 1, 2 and 4 workers on PostgreSQL.

    python bench/scale_out.py [--clusters 256] [--workers 1,2,4] [--admin-url URL]

Each configuration gets a fresh database and the same generated estate (CLUSTERS tiny
clusters, 2 nodes x 2 VMs each, each with one non-disruptive drift: the generator's quorum
mode). Two rounds of one autocorrect reconcile job per cluster (the first corrects, the
second finds it converged): round 1 is queued, the workers are started (``worker``, separate
processes), and from half-way through round 1 each cluster's round-2 job is queued as soon as
the queueing lock lets it, so some find their cluster's round-1 job still running and wait
on its lock. The wall time runs from starting the workers to the last of the 2 x CLUSTERS
runs in the journal. Reported: ticks per minute (journal runs / that wall time), lock waits
(jobs queued while a job of the same cluster ran, and how long they waited, from
procrastinate's own event table), and the ratio to one process ticking the same clusters
one after the other (the same two rounds) on the SQLite state directory. Every run is
bounded (--timeout).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import structlog

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reconciler.runtime.clock import SystemClock  # noqa: E402
from reconciler.runtime.jobs import (  # noqa: E402
    ClusterProvider,
    ClusterSource,
    UnchangedFolders,
    WorkerConfig,
    defer_reconcile,
    make_app,
)
from reconciler.runtime.journal import Journal  # noqa: E402
from reconciler.runtime.reconcile import FolderSource, Reconciler  # noqa: E402


def reconciler(url: str | None, state: Path, *args: str) -> str:
    env = dict(os.environ)
    env.pop("RECONCILER_STATE_URL", None)
    if url:
        env["RECONCILER_STATE_URL"] = url
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler", "--state-dir", str(state), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"reconciler {' '.join(args)} failed: {proc.stdout}{proc.stderr}")
    return proc.stdout


def count_runs(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM runs WHERE ended_at IS NOT NULL").fetchone()
    return int(row[0]) if row else 0


def lock_waits(url: str) -> tuple[int, float]:
    """Jobs deferred while a job of the same cluster was running, and their total wait."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT j.id, j.lock, "
            "min(e.at) FILTER (WHERE e.type = 'deferred'), "
            "min(e.at) FILTER (WHERE e.type = 'started'), "
            "max(e.at) FILTER (WHERE e.type IN ('succeeded', 'failed')) "
            "FROM procrastinate_jobs j JOIN procrastinate_events e ON e.job_id = j.id "
            "GROUP BY j.id, j.lock ORDER BY j.lock, 4"
        ).fetchall()
    waits, seconds = 0, 0.0
    previous: dict[str, Any] = {}
    for _job, lock, deferred, started, finished in rows:
        before = previous.get(lock)
        if before is not None and deferred is not None and started is not None:
            prev_started, prev_finished = before
            if prev_started <= deferred < prev_finished:
                waits += 1
                seconds += (min(started, prev_finished) - deferred).total_seconds()
        previous[lock] = (started, finished)
    return waits, seconds


def run_workers(
    admin: str, estate: Path, workers: int, clusters: int, timeout: float
) -> dict[str, Any]:
    name = f"reconciler_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.rsplit("/", 1)[0] + f"/{name}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            state = Path(tmp)
            reconciler(url, state, "sim", "init", str(estate / "world.yaml"))
            desired = str(estate / "desired")
            reconciler(url, state, "reconcile", desired, "--mode", "autocorrect", "--enqueue")
            env = {**os.environ, "RECONCILER_STATE_URL": url}
            started = time.perf_counter()
            procs = [
                subprocess.Popen(
                    [sys.executable, "-m", "reconciler", "--state-dir", str(state), "worker"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for _ in range(workers)
            ]
            try:
                # Round 2 is queued from half-way through round 1, cluster by cluster as its
                # round-1 job leaves the queue (the queueing lock refuses it before that).
                app = make_app(WorkerConfig(url, state, "sim", None))
                pending = [f"c{i:03d}" for i in range(1, clusters + 1)]
                with app.open():
                    while count_runs(url) < 2 * clusters:
                        if time.perf_counter() - started > timeout:
                            raise SystemExit(f"{workers} worker(s): not done in {timeout:.0f} s")
                        if pending and count_runs(url) >= clusters // 2:
                            _queued, waiting = defer_reconcile(
                                app, pending, "autocorrect", [desired], None, "main"
                            )
                            pending = waiting
                        time.sleep(0.1)
            finally:
                for p in procs:
                    p.terminate()
                for p in procs:
                    p.wait(timeout=60)
            wall = time.perf_counter() - started
            ticks_in_wall = count_runs(url)
            waits, wait_seconds = lock_waits(url)
            return {
                "workers": workers,
                "ticks": ticks_in_wall,
                "seconds": wall,
                "lock_waits": waits,
                "lock_wait_seconds": wait_seconds,
            }
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlite_one_process(estate: Path, clusters: int) -> dict[str, Any]:
    """The same per-cluster ticks, one after the other, in one process on SQLite."""
    from reconciler.providers.sim.provider import SimProvider

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        reconciler(None, state, "sim", "init", str(estate / "world.yaml"))
        clock = SystemClock()
        journal = Journal(state, clock.now)
        source = UnchangedFolders(FolderSource((str(estate / "desired"),), None))
        started = time.perf_counter()
        for i in [*range(1, clusters + 1), *range(1, clusters + 1)]:  # two rounds, as above
            cluster = f"c{i:03d}"
            Reconciler(
                ClusterSource(source, cluster),
                lambda c=cluster: ClusterProvider(SimProvider(state), c),  # type: ignore[misc]
                journal,
                clock,
                "autocorrect",
                scope=cluster,
            ).tick()
        wall = time.perf_counter() - started
        ticks = len(journal.runs(10 * clusters))
        journal.close()
    return {"workers": "1 process, SQLite", "ticks": ticks, "seconds": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=256)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "RECONCILER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="Seconds per configuration.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        estate = Path(tmp) / "estate"
        reconciler(None, Path(tmp) / "gen-state", "sim", "generate", "--clusters",
                   str(args.clusters), "--nodes-per-cluster", "2", "--vms-per-node", "2",
                   "--drift", "0", "--out", str(estate))  # fmt: skip
        base = sqlite_one_process(estate, args.clusters)
        base_rate = base["ticks"] / base["seconds"] * 60
        print(f"{args.clusters} clusters (2 nodes x 2 VMs), autocorrect, one job per cluster; "
              f"{os.cpu_count()} CPU(s)")  # fmt: skip
        print()
        print("| workers | ticks | wall s | ticks/min | lock waits | waited s | vs 1 proc SQLite |")
        print("|---|---|---|---|---|---|---|")
        print(f"| {base['workers']} | {base['ticks']} | {base['seconds']:.1f} | "
              f"{base_rate:.0f} | - | - | 1.00 |")  # fmt: skip
        for n in (int(w) for w in args.workers.split(",")):
            r = run_workers(args.admin_url, estate, n, args.clusters, args.timeout)
            rate = r["ticks"] / r["seconds"] * 60
            waited = r["lock_wait_seconds"]
            print(f"| {n} | {r['ticks']} | {r['seconds']:.1f} | {rate:.0f} | {r['lock_waits']} | "
                  f"{waited:.1f} | {rate / base_rate:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
