"""The journal and the locks: SQLite in the state directory, every record flushed before it counts.

A run row (plan hash, manifest source, start, end, outcome) and a row per action, written
before the action starts and again when it ends, so a killed apply leaves a precise trace.
Locks are rows too: one apply per cluster, with owner, process, host, start and expiry.
Drift rows (one open row per drifted object) are the scheduled loop's audit trail.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import sqlite3
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.model.conditions import Condition
from reconciler.runtime.condition_log import (
    SQLITE_DDL,
    ConditionRecord,
    condition_history,
    note_conditions,
)

JOURNAL_FILE = "journal.db"
LOCK_TTL_SECONDS = 15 * 60  # renewed after every action; a lock older than this is stale

_DDL = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, started_at REAL NOT NULL, ended_at REAL, outcome TEXT NOT NULL,
    plan_hash TEXT NOT NULL, source TEXT NOT NULL, commit_id TEXT, kind TEXT NOT NULL,
    actions_total INTEGER NOT NULL, owner TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
    message TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS run_actions (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, action_id TEXT NOT NULL, type TEXT NOT NULL,
    target TEXT NOT NULL, cluster TEXT NOT NULL, action TEXT NOT NULL, status TEXT NOT NULL,
    started_at REAL, ended_at REAL, seconds REAL, attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '', details TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS locks (
    cluster TEXT PRIMARY KEY, lock_id TEXT NOT NULL, run_id TEXT, owner TEXT NOT NULL,
    pid INTEGER NOT NULL, host TEXT NOT NULL, acquired_at REAL NOT NULL, expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS drift (
    id INTEGER PRIMARY KEY, detected_at REAL NOT NULL, tick_run TEXT, object TEXT NOT NULL,
    fields TEXT NOT NULL, corrected INTEGER NOT NULL DEFAULT 0, corrected_at REAL,
    correction_run TEXT, note TEXT NOT NULL DEFAULT ''
);
"""
# Columns added after the first release: (table, column, definition).
_ADDED_COLUMNS = (
    ("drift", "last_seen_at", "REAL"),
    ("runs", "cluster", "TEXT NOT NULL DEFAULT ''"),
)


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: str
    started_at: float
    ended_at: float | None
    outcome: str
    plan_hash: str
    source: str
    commit_id: str | None
    kind: str
    actions_total: int
    owner: str
    host: str
    pid: int
    message: str
    cluster: str = ""  # the cluster it concerned; several: comma-separated, sorted


@dataclass(frozen=True, slots=True)
class ActionRecord:
    run_id: str
    seq: int
    action_id: str
    type: str
    target: str
    cluster: str
    status: str
    started_at: float | None
    ended_at: float | None
    seconds: float | None
    attempts: int
    error: str
    details: dict[str, Any]


# The columns both state backends select, in record field order, and the row decoders.
RUN_COLUMNS = (
    "id, started_at, ended_at, outcome, plan_hash, source, commit_id, kind, actions_total, "
    "owner, host, pid, message, cluster"
)
ACTION_COLUMNS = (
    "run_id, seq, action_id, type, target, cluster, status, started_at, ended_at, "
    "seconds, attempts, error, details"
)


def action_from_row(row: Sequence[Any]) -> ActionRecord:
    """An ActionRecord from a row of ACTION_COLUMNS (details are stored as JSON text)."""
    r = row
    return ActionRecord(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], json.loads(r[12])
    )


@dataclass(frozen=True, slots=True)
class LockRecord:
    cluster: str
    lock_id: str
    run_id: str | None
    owner: str
    pid: int
    host: str
    acquired_at: float
    expires_at: float

    def describe(self) -> str:
        return (
            f"{self.owner} (pid {self.pid} on {self.host}, run {self.run_id or '-'}, "
            f"lock {self.lock_id})"
        )


@dataclass(frozen=True, slots=True)
class DriftRecord:
    """An object found drifted; open until an observation shows it as desired again."""

    id: int
    detected_at: float
    tick_run: str | None
    object: str  # Kind/name
    fields: list[dict[str, Any]]  # each {"path", "observed", "desired"}
    corrected: bool
    corrected_at: float | None
    correction_run: str | None  # the run whose actions corrected it; None if fixed elsewhere
    note: str
    last_seen_at: float | None


class JournalError(Exception):
    """The journal database cannot be used: damaged, locked, read-only or full (the message
    names the file and what to do)."""


def _explain(path: Path, exc: sqlite3.Error) -> JournalError:
    text = str(exc)
    low = text.lower()
    if "not a database" in low or "malformed" in low or "disk i/o" in low:
        why = (
            f"the journal {path} is damaged or not a journal database ({text}): move it "
            "away (a new journal starts empty) or restore it from a backup"
        )
    elif "locked" in low or "busy" in low:
        why = (
            f"the journal {path} stayed locked by another process ({text}): wait for it, "
            "or find the process that holds it"
        )
    elif "readonly" in low or "read-only" in low or "unable to open" in low:
        why = (
            f"cannot write the journal {path} ({text}): the file or its folder is read-only; "
            "fix the permissions or pass --state-dir a writable folder"
        )
    elif "full" in low:
        why = (
            f"cannot write the journal {path}: the disk is full ({text}); entries already "
            "written are kept. Free some space and run again"
        )
    else:
        why = f"the journal {path} cannot be used: {text}"
    return JournalError(why)


class LockHeld(Exception):
    """Another apply holds a cluster's lock."""

    def __init__(self, lock: LockRecord) -> None:
        self.lock = lock
        super().__init__(
            f"cluster {lock.cluster} is locked by {lock.describe()}; wait for it, pass "
            f"--lock-timeout SECONDS to wait, or if that apply is gone: "
            f"reconciler force-unlock {lock.lock_id}"
        )


class LockLive(Exception):
    """force-unlock of a lock whose holder may still be at work."""

    def __init__(self, lock: LockRecord, why: str) -> None:
        self.lock = lock
        super().__init__(
            f"the lock on cluster {lock.cluster} held by {lock.describe()} is live: {why}. "
            "Removing it could let two applies change the cluster at once; if you are sure "
            f"its apply is gone, run: reconciler force-unlock {lock.lock_id} --force"
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def whoami() -> tuple[str, str, int]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return user, socket.gethostname(), os.getpid()


class Journal:
    def __init__(
        self, state_dir: Path, clock: Callable[[], float], busy_timeout_seconds: float = 30.0
    ) -> None:
        self.path = Path(state_dir) / JOURNAL_FILE
        self.clock = clock
        self._batching = False  # inside batch(): writes join its transaction
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(
                f"cannot create the state folder {self.path.parent}: {exc.strerror or exc}"
            ) from exc
        try:
            self.conn = sqlite3.connect(
                self.path, isolation_level=None, timeout=busy_timeout_seconds
            )
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")  # a record is on disk before we go on
        except sqlite3.Error as exc:
            raise _explain(self.path, exc) from exc
        self._migrate()

    def _migrate(self) -> None:
        """Create or bring the schema up to date in one write transaction, so processes that
        start together migrate it once (the others wait, then find nothing to do)."""
        with self._tx() as c:
            for statement in _DDL.split(";"):
                if statement.strip():
                    c.execute(statement)
            c.execute(SQLITE_DDL)
            for table, column, definition in _ADDED_COLUMNS:
                have = {row[1] for row in c.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    c.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")

    def close(self) -> None:
        self.conn.close()

    def _rollback(self) -> None:
        # The failed statement may have ended the transaction already.
        with suppress(sqlite3.Error):
            self.conn.execute("ROLLBACK")

    @contextmanager
    def batch(self) -> Iterator[None]:
        """The writes inside are one transaction, durable together when it ends (one fsync).

        The executor writes an action's outcome, the lease renewal and the next action's
        start this way, before the next action runs: a crash loses all three or none, and
        never anything an action did after its start was on disk.
        """
        if self._batching:
            yield
            return
        with self._tx():
            self._batching = True
            try:
                yield
            finally:
                self._batching = False

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; a SQLite failure becomes a JournalError naming the file.
        Commits are durable (WAL, synchronous=FULL): a failed one loses nothing written before."""
        if self._batching:
            yield self.conn  # part of the batch's transaction, which commits or rolls back
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _explain(self.path, exc) from exc
        try:
            yield self.conn
        except sqlite3.Error as exc:
            self._rollback()
            raise _explain(self.path, exc) from exc
        except BaseException:
            self._rollback()
            raise
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise _explain(self.path, exc) from exc

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
        with self._tx() as c:
            c.execute(
                "INSERT INTO runs (id, started_at, outcome, plan_hash, source, commit_id, kind, "
                "actions_total, owner, host, pid, cluster) "
                "VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        with self._tx() as c:
            c.execute(
                "UPDATE runs SET ended_at = ?, outcome = ?, message = ? WHERE id = ?",
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
        with self._tx() as c:
            c.execute(
                "UPDATE run_actions SET status = ?, ended_at = ?, seconds = ?, attempts = ?, "
                "error = ?, details = ? WHERE run_id = ? AND seq = ?",
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
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO run_actions (run_id, seq, action_id, type, target, "
                "cluster, action, status, started_at, error) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            f"SELECT {RUN_COLUMNS} FROM runs ORDER BY started_at DESC, rowid DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [RunRecord(*r) for r in rows]

    def run(self, run_id: str) -> RunRecord | None:
        row = self.conn.execute(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?",
            (run_id,),
        ).fetchone()
        return RunRecord(*row) if row else None

    def actions(self, run_id: str) -> list[ActionRecord]:
        rows = self.conn.execute(
            f"SELECT {ACTION_COLUMNS} FROM run_actions WHERE run_id = ? ORDER BY seq",
            (run_id,),
        ).fetchall()
        return [action_from_row(r) for r in rows]

    def interrupted_runs(self) -> list[RunRecord]:
        """Runs still marked running whose process is gone: killed, crashed or cut off."""
        return [run for run in self.runs(limit=1000) if self.process_gone(run)]

    def _holds_live_lock(self, run_id: str) -> bool:
        row = self.conn.execute(
            "SELECT expires_at FROM locks WHERE run_id = ?", (run_id,)
        ).fetchone()
        return row is not None and float(row[0]) > self.clock()

    def mark_interrupted(self, run: RunRecord) -> str:
        """Close an interrupted run; the message says how far it got."""
        acts = self.actions(run.id)
        done = [a for a in acts if a.status in ("done", "already_done")]
        started = [a for a in acts if a.status == "started"]
        last = f"; {started[-1].action_id} had started and not finished" if started else ""
        message = f"interrupted after {len(done)} of {run.actions_total} action(s){last}"
        with self._tx() as c:
            c.execute(
                "UPDATE runs SET outcome = 'interrupted', ended_at = ?, message = ? WHERE id = ?",
                (self.clock(), message, run.id),
            )
            c.execute(
                "UPDATE run_actions SET status = 'interrupted', error = 'the process ended "
                "while this action ran; the next apply re-observes it' "
                "WHERE run_id = ? AND status = 'started'",
                (run.id,),
            )
        return message

    # --- drift ------------------------------------------------------------------------------

    _DRIFT_COLUMNS = (
        "id, detected_at, tick_run, object, fields, corrected, corrected_at, correction_run, "
        "note, last_seen_at"
    )

    @staticmethod
    def _drift_record(row: Sequence[Any]) -> DriftRecord:
        return DriftRecord(
            row[0],
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

    def open_drift(self) -> dict[str, DriftRecord]:
        """The drifted objects not yet seen as desired again, by Kind/name."""
        rows = self.conn.execute(
            f"SELECT {self._DRIFT_COLUMNS} FROM drift WHERE corrected = 0 ORDER BY id"
        ).fetchall()
        return {r.object: r for r in map(self._drift_record, rows)}

    def note_drift(
        self, run_id: str | None, drifted: Mapping[str, list[dict[str, Any]]]
    ) -> list[str]:
        """Record what a tick saw drifted; returns the objects that were not drifting before.

        An object already open keeps its row (and when it was first seen); its fields are
        brought up to date.
        """
        now = self.clock()
        new: list[str] = []
        with self._tx() as c:
            open_rows = {
                obj: rid
                for rid, obj in c.execute("SELECT id, object FROM drift WHERE corrected = 0")
            }
            for obj, fields in sorted(drifted.items()):
                text = json.dumps(fields, sort_keys=True)
                if obj in open_rows:
                    c.execute(
                        "UPDATE drift SET fields = ?, last_seen_at = ? WHERE id = ?",
                        (text, now, open_rows[obj]),
                    )
                    continue
                c.execute(
                    "INSERT INTO drift (detected_at, tick_run, object, fields, last_seen_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (now, run_id, obj, text, now),
                )
                new.append(obj)
        return new

    def close_drift(self, objects: Iterable[str], correction_run: str | None, note: str) -> int:
        """Mark the open rows of ``objects`` corrected; returns how many were open."""
        now = self.clock()
        closed = 0
        with self._tx() as c:
            for obj in sorted(set(objects)):
                cur = c.execute(
                    "UPDATE drift SET corrected = 1, corrected_at = ?, correction_run = ?, "
                    "note = ? WHERE object = ? AND corrected = 0",
                    (now, correction_run, note, obj),
                )
                closed += cur.rowcount
        return closed

    def drift_history(self, limit: int = 50, open_only: bool = False) -> list[DriftRecord]:
        """Drift rows, newest first."""
        where = "WHERE corrected = 0 " if open_only else ""
        rows = self.conn.execute(
            f"SELECT {self._DRIFT_COLUMNS} FROM drift {where}"
            "ORDER BY detected_at DESC, id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [self._drift_record(r) for r in rows]

    # --- conditions (runtime/condition_log.py) ----------------------------------------------

    def note_conditions(
        self,
        run_id: str | None,
        conditions: Sequence[Condition],
        scope: Collection[str] | None = None,
    ) -> list[str]:
        with self._tx() as c:
            return note_conditions(c, "?", self.clock(), run_id, conditions, scope)

    def condition_history(self, limit: int = 50, open_only: bool = False) -> list[ConditionRecord]:
        return condition_history(self.conn, "?", limit, open_only)

    # --- locks ------------------------------------------------------------------------------

    def locks(self) -> list[LockRecord]:
        rows = self.conn.execute(
            "SELECT cluster, lock_id, run_id, owner, pid, host, acquired_at, expires_at "
            "FROM locks ORDER BY cluster"
        ).fetchall()
        return [LockRecord(*r) for r in rows]

    def _stale(self, lock: LockRecord) -> bool:
        _, host, _ = whoami()
        if lock.expires_at <= self.clock():
            return True
        return lock.host == host and not _pid_alive(lock.pid)

    def lock_holder(self, clusters: Iterable[str]) -> LockRecord | None:
        """A live lock on one of ``clusters`` held by another process, if any."""
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
        """Take every cluster's lock or none; returns (taken, notes about stale locks replaced)."""
        owner, host, pid = whoami()
        now = self.clock()
        notes: list[str] = []
        taken: list[LockRecord] = []
        with self._tx() as c:
            for cluster in sorted(set(clusters)):
                row = c.execute(
                    "SELECT cluster, lock_id, run_id, owner, pid, host, acquired_at, expires_at "
                    "FROM locks WHERE cluster = ?",
                    (cluster,),
                ).fetchone()
                if row is not None:
                    held = LockRecord(*row)
                    if held.pid == pid and held.host == host:
                        taken.append(held)
                        continue
                    if not self._stale(held):
                        raise LockHeld(held)
                    notes.append(f"replaced the stale lock on {cluster} left by {held.describe()}")
                lock = LockRecord(
                    cluster, uuid.uuid4().hex[:12], run_id, owner, pid, host, now, now + ttl_seconds
                )
                c.execute(
                    "INSERT OR REPLACE INTO locks (cluster, lock_id, run_id, owner, pid, host, "
                    "acquired_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
        return taken, notes

    def attach_run(self, locks: Sequence[LockRecord], run_id: str) -> None:
        with self._tx() as c:
            for lock in locks:
                c.execute("UPDATE locks SET run_id = ? WHERE lock_id = ?", (run_id, lock.lock_id))

    def renew(self, locks: Sequence[LockRecord], ttl_seconds: float) -> None:
        with self._tx() as c:
            for lock in locks:
                c.execute(
                    "UPDATE locks SET expires_at = ? WHERE lock_id = ?",
                    (self.clock() + ttl_seconds, lock.lock_id),
                )

    def unlock(self, locks: Sequence[LockRecord]) -> None:
        with self._tx() as c:
            for lock in locks:
                c.execute("DELETE FROM locks WHERE lock_id = ?", (lock.lock_id,))

    def lock_is_live(self, lock: LockRecord) -> str | None:
        """Why a lock still counts (its holder may be at work), or None if it is stale."""
        _, host, _ = whoami()
        now = self.clock()
        if lock.expires_at <= now:
            return None
        if lock.host == host:
            if not _pid_alive(lock.pid):
                return None
            return f"process {lock.pid} on this host ({host}) is still running"
        left = lock.expires_at - now
        return (
            f"it is held from another host ({lock.host}), whose process cannot be checked "
            f"from here, and its lease runs {left:.0f} s more"
        )

    def force_unlock(self, lock_id: str, force: bool = False) -> LockRecord | None:
        """Remove a lock whose holder is gone; a live one only with ``force`` (LockLive)."""
        with self._tx() as c:
            row = c.execute(
                "SELECT cluster, lock_id, run_id, owner, pid, host, acquired_at, expires_at "
                "FROM locks WHERE lock_id = ?",
                (lock_id,),
            ).fetchone()
            if row is None:
                return None
            lock = LockRecord(*row)
            live = self.lock_is_live(lock)
            if live is not None and not force:
                raise LockLive(lock, live)
            c.execute("DELETE FROM locks WHERE lock_id = ?", (lock_id,))
        return lock

    def process_gone(self, run: RunRecord) -> bool:
        """A run still marked running whose process is gone: killed, crashed or cut off."""
        if run.outcome != "running":
            return False
        _, host, _ = whoami()
        return not _pid_alive(run.pid) if run.host == host else not self._holds_live_lock(run.id)
