"""The simulator's world on disk: SQLite in the state directory, one transaction per change.

A row per object (JSON of the record), the simulated clock, migration records, pending faults
and an event log. ``transaction()`` is BEGIN IMMEDIATE ... COMMIT: a crash loses the whole
change or none of it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Collection, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from reconciler.model.codec import canonical_text, decode_record, stamp_digest
from reconciler.model.records import KINDS, Estate, Record, kind_of
from reconciler.providers.base import ProviderError

WORLD_FILE = "world.db"
SCHEMA_VERSION = "1"

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL, name TEXT NOT NULL, cluster TEXT NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (kind, name)
);
CREATE INDEX IF NOT EXISTS objects_by_cluster ON objects (cluster);
CREATE TABLE IF NOT EXISTS migrations (
    id INTEGER PRIMARY KEY, at_seconds REAL NOT NULL, cluster TEXT NOT NULL, vm TEXT NOT NULL,
    source TEXT, destination TEXT NOT NULL, method TEXT NOT NULL, total_seconds REAL NOT NULL,
    downtime_seconds REAL NOT NULL, passes INTEGER NOT NULL, bytes_sent INTEGER NOT NULL,
    outcome TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS faults (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, cluster TEXT, remaining INTEGER, factor REAL,
    created_seconds REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, at_seconds REAL NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL
);
"""


def scoped_keys(objects: Collection[str]) -> list[tuple[str, str]]:
    """(kind, name) of each "Kind/name" of a known kind, in a stable order."""
    keys = {ref.partition("/")[::2] for ref in objects}
    return sorted((kind, name) for kind, name in keys if kind in KINDS)


def rows_digest(rows: Iterable[tuple[str, str, str]]) -> str:
    """A digest of the object rows (kind, name, doc) in key order: all that ``load`` reads."""
    h = hashlib.sha256()
    for kind, name, doc in rows:
        h.update(f"{kind}\0{name}\0{len(doc)}\0".encode())
        h.update(doc.encode())
    return "sha256:" + h.hexdigest()


def cluster_of(record: Record) -> str:
    return record.name if kind_of(record) == "Cluster" else getattr(record, "cluster", "")


@dataclass(frozen=True, slots=True)
class MigrationRecord:
    at_seconds: float
    cluster: str
    vm: str
    source: str | None
    destination: str
    method: str
    total_seconds: float
    downtime_seconds: float
    passes: int
    bytes_sent: int
    outcome: str


# A transaction handle: an sqlite3 or a psycopg connection, passed back to the same store.
WorldTx = Any


class WorldBackend(Protocol):
    """What the simulator needs of its world's storage: SQLite here, or PostgreSQL."""

    location: str  # where the world lives, for messages

    @property
    def exists(self) -> bool: ...

    def close(self) -> None: ...

    def transaction(self) -> AbstractContextManager[WorldTx]: ...

    def replace_world(self, estate: Estate, source: str) -> None: ...

    def load(
        self,
        conn: WorldTx | None = None,
        cluster: str | None = None,
        objects: Collection[str] = (),
    ) -> Estate: ...

    def save_changes(self, conn: WorldTx, before: Estate, after: Estate) -> int: ...

    def objects_digest(self) -> str: ...

    def meta(self, key: str, conn: WorldTx | None = None) -> str | None: ...

    def clock(self, conn: WorldTx | None = None) -> float: ...

    def advance_clock(self, conn: WorldTx, seconds: float) -> float: ...

    def record_migration(self, conn: WorldTx, m: MigrationRecord) -> None: ...

    def last_migration(self, conn: WorldTx) -> dict[str, Any]: ...

    def migrations(self) -> list[MigrationRecord]: ...

    def add_fault(
        self,
        conn: WorldTx,
        kind: str,
        cluster: str | None,
        remaining: int | None = None,
        factor: float | None = None,
    ) -> None: ...

    def take_migration_failure(self, conn: WorldTx, cluster: str) -> bool: ...

    def count_toward_crash(self, conn: WorldTx, kind: str, actions: int = 1) -> bool: ...

    def clear_faults(self, conn: WorldTx, kind: str) -> None: ...

    def has_fault(self, kind: str) -> bool: ...

    def link_factor(self, conn: WorldTx, cluster: str) -> float: ...

    def log_event(self, conn: WorldTx, kind: str, message: str) -> None: ...

    def events(self, limit: int = 50) -> list[tuple[float, str, str]]: ...


def open_world_store(state_dir: Path, state_url: str | None = None) -> WorldBackend:
    """The world in the state directory, or in the PostgreSQL database of ``state_url``."""
    if state_url:
        from reconciler.providers.sim.pg_store import PostgresWorldStore

        return PostgresWorldStore(state_url)
    return WorldStore(state_dir)


class WorldStore:
    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / WORLD_FILE
        self.location = str(self.path.parent)
        self.conn: sqlite3.Connection | None = None

    @property
    def exists(self) -> bool:
        return self.path.exists()

    def open(self) -> sqlite3.Connection:
        """The world's connection; ProviderError naming the file if it cannot be used."""
        if self.conn is None:
            if self.path.exists() and self.path.stat().st_size == 0:
                raise ProviderError(
                    f"the simulated world {self.path} is an empty (zero-byte) file, not an "
                    "empty world: recreate it with 'reconciler sim init WORLD.yaml'"
                )
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.executescript(_DDL)
            except (sqlite3.Error, OSError) as exc:
                raise ProviderError(
                    f"the simulated world {self.path} cannot be used ({exc}): it is damaged, "
                    "locked or read-only; recreate it with 'reconciler sim init WORLD.yaml'"
                ) from exc
            self.conn = conn
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.open()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    # --- whole world ------------------------------------------------------------------------

    def replace_world(self, estate: Estate, source: str) -> None:
        if self.path.exists() and self.path.stat().st_size == 0:
            self.path.unlink()  # sim init recreates a world that was an empty file
        with self.transaction() as conn:
            for table in ("objects", "migrations", "faults", "events", "meta"):
                conn.execute(f"DELETE FROM {table}")
            conn.executemany(
                "INSERT INTO objects (kind, name, cluster, doc) VALUES (?, ?, ?, ?)",
                [self._row(r) for r in estate.records()],
            )
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("schema_version", SCHEMA_VERSION), ("source", source), ("clock_seconds", "0")],
            )

    @staticmethod
    def _row(record: Record) -> tuple[str, str, str, str]:
        doc = canonical_text(record)
        stamp_digest(record, doc)
        return kind_of(record), record.name, cluster_of(record), doc

    def load(
        self,
        conn: sqlite3.Connection | None = None,
        cluster: str | None = None,
        objects: Collection[str] = (),
    ) -> Estate:
        """The world, one cluster of it, or only ``objects`` ("Kind/name") of that cluster.

        Reading only the objects an action touched is what keeps verifying it cheap: a
        cluster's rows take tens of milliseconds to decode, a few rows a fraction of one.
        """
        conn = conn or self.open()
        if cluster is None:
            rows = conn.execute("SELECT kind, doc FROM objects").fetchall()
        elif objects:
            rows = []
            for kind, name in scoped_keys(objects):
                rows.extend(
                    conn.execute(
                        "SELECT kind, doc FROM objects WHERE kind = ? AND name = ? AND cluster = ?",
                        (kind, name, cluster),
                    ).fetchall()
                )
        else:
            rows = conn.execute(
                "SELECT kind, doc FROM objects WHERE cluster = ?", (cluster,)
            ).fetchall()
        tables: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        for kind, doc in rows:
            record = decode_record(kind, json.loads(doc))
            stamp_digest(record, doc)
            tables[kind][record.name] = record
        return Estate.from_tables(tables)

    def objects_digest(self) -> str:
        rows = self.open().execute("SELECT kind, name, doc FROM objects ORDER BY kind, name")
        return rows_digest(rows)

    def save_changes(self, conn: sqlite3.Connection, before: Estate, after: Estate) -> int:
        """Write the records that differ between two states; returns how many rows changed."""
        changed = 0
        for kind in KINDS:
            old, new = before.table(kind), after.table(kind)
            for name, record in new.items():
                if old.get(name) is not record and old.get(name) != record:
                    conn.execute(
                        "INSERT OR REPLACE INTO objects (kind, name, cluster, doc) "
                        "VALUES (?, ?, ?, ?)",
                        self._row(record),
                    )
                    changed += 1
            for name in old.keys() - new.keys():
                conn.execute("DELETE FROM objects WHERE kind = ? AND name = ?", (kind, name))
                changed += 1
        return changed

    # --- clock, migrations, faults, events --------------------------------------------------

    def meta(self, key: str, conn: sqlite3.Connection | None = None) -> str | None:
        row = (
            (conn or self.open()).execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        )
        return None if row is None else str(row[0])

    def clock(self, conn: sqlite3.Connection | None = None) -> float:
        return float(self.meta("clock_seconds", conn) or 0.0)

    def advance_clock(self, conn: sqlite3.Connection, seconds: float) -> float:
        now = self.clock(conn) + seconds
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('clock_seconds', ?)", (repr(now),)
        )
        return now

    def record_migration(self, conn: sqlite3.Connection, m: MigrationRecord) -> None:
        conn.execute(
            "INSERT INTO migrations (at_seconds, cluster, vm, source, destination, method, "
            "total_seconds, downtime_seconds, passes, bytes_sent, outcome) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                m.at_seconds,
                m.cluster,
                m.vm,
                m.source,
                m.destination,
                m.method,
                m.total_seconds,
                m.downtime_seconds,
                m.passes,
                m.bytes_sent,
                m.outcome,
            ),
        )

    def last_migration(self, conn: sqlite3.Connection) -> dict[str, Any]:
        row = conn.execute(
            "SELECT total_seconds, downtime_seconds, passes, bytes_sent FROM migrations "
            "ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return {}
        return {
            "migration_seconds": row[0],
            "downtime_seconds": row[1],
            "passes": row[2],
            "bytes_sent": row[3],
        }

    def migrations(self) -> list[MigrationRecord]:
        rows = (
            self.open()
            .execute(
                "SELECT at_seconds, cluster, vm, source, destination, method, total_seconds, "
                "downtime_seconds, passes, bytes_sent, outcome FROM migrations ORDER BY id"
            )
            .fetchall()
        )
        return [MigrationRecord(*row) for row in rows]

    def add_fault(
        self,
        conn: sqlite3.Connection,
        kind: str,
        cluster: str | None,
        remaining: int | None = None,
        factor: float | None = None,
    ) -> None:
        conn.execute(
            "INSERT INTO faults (kind, cluster, remaining, factor, created_seconds) "
            "VALUES (?, ?, ?, ?, ?)",
            (kind, cluster, remaining, factor, self.clock(conn)),
        )

    def take_migration_failure(self, conn: sqlite3.Connection, cluster: str) -> bool:
        """Consume one pending 'next N migrations fail' fault for the cluster, if any."""
        row = conn.execute(
            "SELECT id, remaining FROM faults WHERE kind = 'fail_migrations' "
            "AND (cluster IS NULL OR cluster = ?) AND remaining > 0 ORDER BY id LIMIT 1",
            (cluster,),
        ).fetchone()
        if row is None:
            return False
        conn.execute("UPDATE faults SET remaining = remaining - 1 WHERE id = ?", (row[0],))
        return True

    def count_toward_crash(self, conn: sqlite3.Connection, kind: str, actions: int = 1) -> bool:
        """Count ``actions`` against the pending crash fault of ``kind``; True when it fires."""
        row = conn.execute(
            "SELECT id, remaining FROM faults WHERE kind = ? AND remaining > 0 ORDER BY id LIMIT 1",
            (kind,),
        ).fetchone()
        if row is None:
            return False
        left = int(row[1]) - actions
        conn.execute("UPDATE faults SET remaining = ? WHERE id = ?", (max(0, left), row[0]))
        return left <= 0

    def clear_faults(self, conn: sqlite3.Connection, kind: str) -> None:
        conn.execute("DELETE FROM faults WHERE kind = ?", (kind,))

    def has_fault(self, kind: str) -> bool:
        row = (
            self.open()
            .execute("SELECT 1 FROM faults WHERE kind = ? AND remaining > 0 LIMIT 1", (kind,))
            .fetchone()
        )
        return row is not None

    def link_factor(self, conn: sqlite3.Connection, cluster: str) -> float:
        row = conn.execute(
            "SELECT factor FROM faults WHERE kind = 'slow_link' "
            "AND (cluster IS NULL OR cluster = ?) ORDER BY id DESC LIMIT 1",
            (cluster,),
        ).fetchone()
        return 1.0 if row is None else float(row[0])

    def log_event(self, conn: sqlite3.Connection, kind: str, message: str) -> None:
        conn.execute(
            "INSERT INTO events (at_seconds, kind, message) VALUES (?, ?, ?)",
            (self.clock(conn), kind, message),
        )

    def events(self, limit: int = 50) -> list[tuple[float, str, str]]:
        rows = (
            self.open()
            .execute(
                "SELECT at_seconds, kind, message FROM events ORDER BY id DESC LIMIT ?", (limit,)
            )
            .fetchall()
        )
        return [(float(a), str(k), str(m)) for a, k, m in rows]
