"""The journal, leases and drift history in PostgreSQL, for workers on several machines.

The same public methods as the SQLite ``Journal``; what differs is how locks behave. A lock
is a lease: it expires ``lease_seconds`` after its last renewal, and the process holding it
renews it from a thread of its own while it lives. A worker killed mid-apply stops renewing,
so its lease lapses (at once for a process on this host that is gone) and another worker
takes the cluster over and carries on from the journal. Who may take a lock is decided
inside one transaction under a per-cluster advisory lock: two workers never both win.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from reconciler.model.conditions import Condition
from reconciler.providers.postgres import StateDatabaseError, acquire, connect, migrate, release
from reconciler.runtime.condition_log import (
    POSTGRES_DDL,
    ConditionRecord,
    condition_history,
    note_conditions,
)
from reconciler.runtime.journal import (
    ACTION_COLUMNS,
    RUN_COLUMNS,
    ActionRecord,
    DriftRecord,
    LockHeld,
    LockLive,
    LockRecord,
    RunRecord,
    _pid_alive,
    action_from_row,
    whoami,
)

Conn = psycopg.Connection[Any]
LEASE_SECONDS = 60.0  # a lease not renewed for this long is free to take
WORKER_STALE_SECONDS = 60.0  # a worker whose heartbeat is older than this is gone

JOURNAL_STEPS = (
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY, started_at DOUBLE PRECISION NOT NULL,
        ended_at DOUBLE PRECISION, outcome TEXT NOT NULL, plan_hash TEXT NOT NULL,
        source TEXT NOT NULL, commit_id TEXT, kind TEXT NOT NULL,
        actions_total INTEGER NOT NULL, owner TEXT NOT NULL, host TEXT NOT NULL,
        pid INTEGER NOT NULL, message TEXT NOT NULL DEFAULT '',
        cluster TEXT NOT NULL DEFAULT '', seq BIGSERIAL
    );
    CREATE INDEX runs_running ON runs (outcome) WHERE outcome = 'running';
    CREATE TABLE run_actions (
        run_id TEXT NOT NULL, seq INTEGER NOT NULL, action_id TEXT NOT NULL,
        type TEXT NOT NULL, target TEXT NOT NULL, cluster TEXT NOT NULL, action TEXT NOT NULL,
        status TEXT NOT NULL, started_at DOUBLE PRECISION, ended_at DOUBLE PRECISION,
        seconds DOUBLE PRECISION, attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT NOT NULL DEFAULT '', details TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (run_id, seq)
    );
    CREATE TABLE locks (
        cluster TEXT PRIMARY KEY, lock_id TEXT NOT NULL, run_id TEXT, owner TEXT NOT NULL,
        pid INTEGER NOT NULL, host TEXT NOT NULL, acquired_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE drift (
        id BIGSERIAL PRIMARY KEY, detected_at DOUBLE PRECISION NOT NULL, tick_run TEXT,
        object TEXT NOT NULL, fields TEXT NOT NULL, corrected BOOLEAN NOT NULL DEFAULT FALSE,
        corrected_at DOUBLE PRECISION, correction_run TEXT, note TEXT NOT NULL DEFAULT '',
        last_seen_at DOUBLE PRECISION
    );
    CREATE INDEX drift_open ON drift (object) WHERE NOT corrected;
    CREATE TABLE reconciler_workers (
        name TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,
        concurrency INTEGER NOT NULL, started_at DOUBLE PRECISION NOT NULL,
        heartbeat_at DOUBLE PRECISION NOT NULL, jobs_done INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE reconciler_jobs_held (
        job_id BIGINT PRIMARY KEY, worker TEXT NOT NULL, host TEXT NOT NULL,
        pid INTEGER NOT NULL, cluster TEXT NOT NULL, task TEXT NOT NULL,
        started_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE reconciler_plans (
        id TEXT PRIMARY KEY, digest TEXT NOT NULL, plan TEXT NOT NULL, source TEXT NOT NULL,
        saved_at DOUBLE PRECISION NOT NULL, saved_by TEXT NOT NULL
    );
    CREATE TABLE reconciler_schedules (
        cluster TEXT PRIMARY KEY, every_seconds DOUBLE PRECISION NOT NULL,
        cron TEXT NOT NULL, mode TEXT NOT NULL, paths TEXT NOT NULL, git_repo TEXT,
        ref TEXT NOT NULL DEFAULT 'main', saved_at DOUBLE PRECISION NOT NULL
    );
    """,
    POSTGRES_DDL,  # 2: the conditions the loop saw
)

_LOCK_COLUMNS = "cluster, lock_id, run_id, owner, pid, host, acquired_at, expires_at"
_DRIFT_COLUMNS = (
    "id, detected_at, tick_run, object, fields, corrected, corrected_at, correction_run, "
    "note, last_seen_at"
)


def _drift_record(row: Sequence[Any]) -> DriftRecord:
    return DriftRecord(
        int(row[0]),
        row[1],
        row[2],
        row[3],
        json.loads(row[4]),
        bool(row[5]),
        row[6],
        row[7],
        row[8],
        row[9],
    )


class LeaseLost(StateDatabaseError):
    """A lease this process held is no longer its own: nothing more may be applied."""

    def __init__(self, locks: Sequence[LockRecord]) -> None:
        names = ", ".join(sorted(lock.cluster for lock in locks))
        super().__init__(
            f"the lease on cluster(s) {names} is no longer held by this process "
            "(force-unlocked, or lapsed and taken by another worker): stopped before the "
            "next action; the next run carries on from the journal"
        )


class _LeaseKeeper:
    """Renews the leases this process holds, every third of their length, on its own line."""

    def __init__(self, url: str, lease_seconds: float, clock: Callable[[], float]) -> None:
        self.url, self.lease_seconds, self.clock = url, lease_seconds, clock
        self.held: dict[str, LockRecord] = {}
        self.guard = threading.Lock()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def hold(self, locks: Iterable[LockRecord]) -> None:
        with self.guard:
            for lock in locks:
                self.held[lock.lock_id] = lock
            if self.thread is None and self.held:
                self.thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
                self.thread.start()

    def release(self, locks: Iterable[LockRecord]) -> None:
        with self.guard:
            for lock in locks:
                self.held.pop(lock.lock_id, None)

    def _run(self) -> None:
        conn: Conn | None = None
        while not self.stop.wait(self.lease_seconds / 3):
            with self.guard:
                ids = list(self.held)
            if not ids:
                continue
            try:
                conn = conn or connect(self.url)
                conn.execute(
                    "UPDATE locks SET expires_at = %s WHERE lock_id = ANY(%s)",
                    (self.clock() + self.lease_seconds, ids),
                )
            except (psycopg.Error, OSError):
                conn = None  # the database is away: try again next round; the lease may lapse
        if conn is not None:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=5.0)


class PostgresJournal:
    """Runs, actions, leases and drift in a PostgreSQL database shared by every worker."""

    def __init__(
        self,
        url: str,
        clock: Callable[[], float],
        lease_seconds: float = LEASE_SECONDS,
        connect_wait_seconds: float = 0.0,
    ) -> None:
        self.url = url
        self.clock = clock
        self.lease_seconds = lease_seconds
        self.conn: Conn = acquire(url, connect_wait_seconds)
        migrate(self.conn, "journal", JOURNAL_STEPS)
        self._keeper = _LeaseKeeper(url, lease_seconds, clock)

    def close(self) -> None:
        self._keeper.close()
        release(self.url, self.conn)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Each write commits on its own here (autocommit): a lost lease raised by renew
        must not take the action outcome written before it back with it."""
        yield

    # --- runs -------------------------------------------------------------------------------

    def start_run(
        self,
        plan_hash: str,
        source: str,
        actions_total: int,
        kind: str = "apply",
        commit_id: str | None = None,
        cluster: str = "",
    ) -> str:
        owner, host, pid = whoami()
        now = self.clock()
        run_id = f"r{int(now):010d}-{uuid.uuid4().hex[:6]}"
        self.conn.execute(
            "INSERT INTO runs (id, started_at, outcome, plan_hash, source, commit_id, kind, "
            "actions_total, owner, host, pid, cluster) "
            "VALUES (%s, %s, 'running', %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                run_id,
                now,
                plan_hash,
                source,
                commit_id,
                kind,
                actions_total,
                owner,
                host,
                pid,
                cluster,
            ),
        )
        return run_id

    def end_run(self, run_id: str, outcome: str, message: str = "") -> None:
        self.conn.execute(
            "UPDATE runs SET ended_at = %s, outcome = %s, message = %s WHERE id = %s",
            (self.clock(), outcome, message, run_id),
        )

    def action_started(self, run_id: str, seq: int, action: dict[str, Any]) -> None:
        self._record_action(run_id, seq, action, "started", self.clock(), "")

    def action_finished(
        self,
        run_id: str,
        seq: int,
        status: str,
        seconds: float | None,
        attempts: int,
        error: str = "",
        details: dict[str, Any] | None = None,
    ) -> None:
        self.conn.execute(
            "UPDATE run_actions SET status = %s, ended_at = %s, seconds = %s, attempts = %s, "
            "error = %s, details = %s WHERE run_id = %s AND seq = %s",
            (
                status,
                self.clock(),
                seconds,
                attempts,
                error,
                json.dumps(details or {}, sort_keys=True),
                run_id,
                seq,
            ),
        )

    def action_skipped(self, run_id: str, seq: int, action: dict[str, Any], why: str) -> None:
        self._record_action(run_id, seq, action, "skipped", None, why)

    def _record_action(
        self,
        run_id: str,
        seq: int,
        action: dict[str, Any],
        status: str,
        started_at: float | None,
        error: str,
    ) -> None:
        self.conn.execute(
            "INSERT INTO run_actions (run_id, seq, action_id, type, target, cluster, action, "
            "status, started_at, error) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (run_id, seq) DO UPDATE SET action_id = excluded.action_id, "
            "type = excluded.type, target = excluded.target, cluster = excluded.cluster, "
            "action = excluded.action, status = excluded.status, "
            "started_at = excluded.started_at, error = excluded.error",
            (
                run_id,
                seq,
                action["id"],
                action["type"],
                action["target"],
                action["cluster"],
                json.dumps(action, sort_keys=True),
                status,
                started_at,
                error,
            ),
        )

    def runs(self, limit: int = 20) -> list[RunRecord]:
        rows = self.conn.execute(
            f"SELECT {RUN_COLUMNS} FROM runs ORDER BY started_at DESC, seq DESC LIMIT %s",
            (limit,),
        ).fetchall()
        return [RunRecord(*r) for r in rows]

    def run(self, run_id: str) -> RunRecord | None:
        row = self.conn.execute(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE id = %s", (run_id,)
        ).fetchone()
        return RunRecord(*row) if row else None

    def actions(self, run_id: str) -> list[ActionRecord]:
        rows = self.conn.execute(
            f"SELECT {ACTION_COLUMNS} FROM run_actions WHERE run_id = %s ORDER BY seq",
            (run_id,),
        ).fetchall()
        return [action_from_row(r) for r in rows]

    def interrupted_runs(self) -> list[RunRecord]:
        """Runs marked running whose process is gone (see ``process_gone``)."""
        rows = self.conn.execute(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE outcome = 'running' ORDER BY started_at"
        ).fetchall()
        return [run for run in (RunRecord(*r) for r in rows) if self.process_gone(run)]

    def process_gone(self, run: RunRecord) -> bool:
        """A running run whose process is dead here, or silent elsewhere.

        A run on another host counts as gone once it holds no live lease and its worker's
        heartbeat (if it is a worker) is older than ``WORKER_STALE_SECONDS``.
        """
        if run.outcome != "running":
            return False
        _, host, _ = whoami()
        if run.host == host:
            return not _pid_alive(run.pid)
        now = self.clock()
        alive = self.conn.execute(
            "SELECT 1 FROM locks WHERE run_id = %s AND expires_at > %s UNION ALL "
            "SELECT 1 FROM reconciler_workers WHERE host = %s AND pid = %s "
            "AND heartbeat_at > %s",
            (run.id, now, run.host, run.pid, now - WORKER_STALE_SECONDS),
        ).fetchone()
        return alive is None

    def mark_interrupted(self, run: RunRecord) -> str:
        acts = self.actions(run.id)
        done = [a for a in acts if a.status in ("done", "already_done")]
        started = [a for a in acts if a.status == "started"]
        last = f"; {started[-1].action_id} had started and not finished" if started else ""
        message = f"interrupted after {len(done)} of {run.actions_total} action(s){last}"
        with self.conn.transaction():
            self.conn.execute(
                "UPDATE runs SET outcome = 'interrupted', ended_at = %s, message = %s "
                "WHERE id = %s AND outcome = 'running'",
                (self.clock(), message, run.id),
            )
            self.conn.execute(
                "UPDATE run_actions SET status = 'interrupted', error = 'the process ended "
                "while this action ran; the next apply re-observes it' "
                "WHERE run_id = %s AND status = 'started'",
                (run.id,),
            )
        return message

    # --- drift ------------------------------------------------------------------------------

    def open_drift(self) -> dict[str, DriftRecord]:
        rows = self.conn.execute(
            f"SELECT {_DRIFT_COLUMNS} FROM drift WHERE NOT corrected ORDER BY id"
        ).fetchall()
        return {r.object: r for r in map(_drift_record, rows)}

    def note_drift(
        self, run_id: str | None, drifted: Mapping[str, list[dict[str, Any]]]
    ) -> list[str]:
        now = self.clock()
        new: list[str] = []
        with self.conn.transaction():
            for obj, fields in sorted(drifted.items()):
                text = json.dumps(fields, sort_keys=True)
                cur = self.conn.execute(
                    "UPDATE drift SET fields = %s, last_seen_at = %s "
                    "WHERE object = %s AND NOT corrected",
                    (text, now, obj),
                )
                if cur.rowcount:
                    continue
                self.conn.execute(
                    "INSERT INTO drift (detected_at, tick_run, object, fields, last_seen_at) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    (now, run_id, obj, text, now),
                )
                new.append(obj)
        return new

    def close_drift(self, objects: Iterable[str], correction_run: str | None, note: str) -> int:
        wanted = sorted(set(objects))
        if not wanted:
            return 0
        cur = self.conn.execute(
            "UPDATE drift SET corrected = TRUE, corrected_at = %s, correction_run = %s, "
            "note = %s WHERE object = ANY(%s) AND NOT corrected",
            (self.clock(), correction_run, note, wanted),
        )
        return cur.rowcount

    def drift_history(self, limit: int = 50, open_only: bool = False) -> list[DriftRecord]:
        where = "WHERE NOT corrected " if open_only else ""
        rows = self.conn.execute(
            f"SELECT {_DRIFT_COLUMNS} FROM drift {where}"
            "ORDER BY detected_at DESC, id DESC LIMIT %s",
            (limit,),
        ).fetchall()
        return [_drift_record(r) for r in rows]

    # --- conditions (runtime/condition_log.py) ----------------------------------------------

    def note_conditions(
        self,
        run_id: str | None,
        conditions: Sequence[Condition],
        scope: Collection[str] | None = None,
    ) -> list[str]:
        with self.conn.transaction():
            return note_conditions(self.conn, "%s", self.clock(), run_id, conditions, scope)

    def condition_history(self, limit: int = 50, open_only: bool = False) -> list[ConditionRecord]:
        return condition_history(self.conn, "%s", limit, open_only)

    # --- leases -----------------------------------------------------------------------------

    def locks(self) -> list[LockRecord]:
        rows = self.conn.execute(f"SELECT {_LOCK_COLUMNS} FROM locks ORDER BY cluster").fetchall()
        return [LockRecord(*r) for r in rows]

    def _stale(self, lock: LockRecord) -> bool:
        _, host, _ = whoami()
        if lock.expires_at <= self.clock():
            return True
        return lock.host == host and not _pid_alive(lock.pid)

    def lock_holder(self, clusters: Iterable[str]) -> LockRecord | None:
        _, host, pid = whoami()
        wanted = set(clusters)
        for lock in self.locks():
            mine = lock.pid == pid and lock.host == host
            if lock.cluster in wanted and not mine and not self._stale(lock):
                return lock
        return None

    def try_lock(
        self, clusters: Sequence[str], ttl_seconds: float, run_id: str | None = None
    ) -> tuple[list[LockRecord], list[str]]:
        """Take every cluster's lease or none (``ttl_seconds`` is capped at the lease length).

        Another thread of this process holding a cluster counts as another holder: workers
        run several jobs in one process.
        """
        owner, host, pid = whoami()
        ttl = min(ttl_seconds, self.lease_seconds)
        now = self.clock()
        notes: list[str] = []
        taken: list[LockRecord] = []
        with self.conn.transaction():
            for cluster in sorted(set(clusters)):
                self.conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('reconciler-lease:' || %s))",
                    (cluster,),
                )
                row = self.conn.execute(
                    f"SELECT {_LOCK_COLUMNS} FROM locks WHERE cluster = %s", (cluster,)
                ).fetchone()
                if row is not None:
                    held = LockRecord(*row)
                    if held.lock_id in self._keeper.held:
                        taken.append(held)
                        continue
                    if not self._stale(held):
                        raise LockHeld(held)
                    notes.append(f"replaced the stale lock on {cluster} left by {held.describe()}")
                lock = LockRecord(
                    cluster, uuid.uuid4().hex[:12], run_id, owner, pid, host, now, now + ttl
                )
                self.conn.execute(
                    "INSERT INTO locks (cluster, lock_id, run_id, owner, pid, host, acquired_at, "
                    "expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (cluster) "
                    "DO UPDATE SET lock_id = excluded.lock_id, run_id = excluded.run_id, "
                    "owner = excluded.owner, pid = excluded.pid, host = excluded.host, "
                    "acquired_at = excluded.acquired_at, expires_at = excluded.expires_at",
                    (
                        lock.cluster,
                        lock.lock_id,
                        lock.run_id,
                        lock.owner,
                        lock.pid,
                        lock.host,
                        lock.acquired_at,
                        lock.expires_at,
                    ),
                )
                taken.append(lock)
        self._keeper.hold(taken)
        return taken, notes

    def attach_run(self, locks: Sequence[LockRecord], run_id: str) -> None:
        self.conn.execute(
            "UPDATE locks SET run_id = %s WHERE lock_id = ANY(%s)",
            (run_id, [lock.lock_id for lock in locks]),
        )

    def renew(self, locks: Sequence[LockRecord], ttl_seconds: float) -> None:
        """Extend the leases; LeaseLost if one is gone (force-unlocked, or lapsed and taken)."""
        rows = self.conn.execute(
            "UPDATE locks SET expires_at = %s WHERE lock_id = ANY(%s) RETURNING lock_id",
            (
                self.clock() + min(ttl_seconds, self.lease_seconds),
                [lock.lock_id for lock in locks],
            ),
        ).fetchall()
        kept = {r[0] for r in rows}
        lost = [lock for lock in locks if lock.lock_id not in kept]
        if lost:
            self._keeper.release(lost)
            raise LeaseLost(lost)

    def unlock(self, locks: Sequence[LockRecord]) -> None:
        self._keeper.release(locks)
        self.conn.execute(
            "DELETE FROM locks WHERE lock_id = ANY(%s)", ([lock.lock_id for lock in locks],)
        )

    def lock_is_live(self, lock: LockRecord) -> str | None:
        """Why a lease still counts (its holder may be at work), or None if it is stale."""
        _, host, _ = whoami()
        now = self.clock()
        if lock.expires_at <= now:
            return None
        if lock.host == host:
            if not _pid_alive(lock.pid):
                return None
            return f"process {lock.pid} on this host ({host}) is still running"
        return (
            f"it is held from another host ({lock.host}), whose process cannot be checked "
            f"from here, and its lease runs {lock.expires_at - now:.0f} s more (it is renewed "
            "while its holder lives)"
        )

    def force_unlock(self, lock_id: str, force: bool = False) -> LockRecord | None:
        """Remove a lease whose holder is gone; a live one only with ``force`` (LockLive)."""
        with self.conn.transaction():
            row = self.conn.execute(
                f"SELECT {_LOCK_COLUMNS} FROM locks WHERE lock_id = %s FOR UPDATE", (lock_id,)
            ).fetchone()
            if row is None:
                return None
            lock = LockRecord(*row)
            live = self.lock_is_live(lock)
            if live is not None and not force:
                raise LockLive(lock, live)
            self.conn.execute("DELETE FROM locks WHERE lock_id = %s", (lock_id,))
        return lock
