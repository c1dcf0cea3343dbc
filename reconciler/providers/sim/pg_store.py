"""The simulator's world in PostgreSQL: the same tables and calls as the SQLite ``WorldStore``.

Workers on several machines share one simulated estate through it. Each change is one
transaction; the simulated clock advances with one atomic UPDATE, so concurrent actions on
different clusters never lose a tick of each other's time. Two actions on one cluster never
run at once: the journal's cluster lease sees to that, as it does on a real estate.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from reconciler.model.codec import canonical_text, decode_record, stamp_digest
from reconciler.model.records import KINDS, Estate, Record, kind_of
from reconciler.providers.postgres import acquire, describe, migrate, release
from reconciler.providers.sim.store import (
    SCHEMA_VERSION,
    MigrationRecord,
    cluster_of,
    rows_digest,
    scoped_keys,
)

Conn = psycopg.Connection[Any]

WORLD_STEPS = (
    """
    CREATE TABLE sim_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE sim_objects (
        kind TEXT NOT NULL, name TEXT NOT NULL, cluster TEXT NOT NULL, doc TEXT NOT NULL,
        PRIMARY KEY (kind, name)
    );
    CREATE INDEX sim_objects_by_cluster ON sim_objects (cluster);
    CREATE TABLE sim_migrations (
        id BIGSERIAL PRIMARY KEY, at_seconds DOUBLE PRECISION NOT NULL, cluster TEXT NOT NULL,
        vm TEXT NOT NULL, source TEXT, destination TEXT NOT NULL, method TEXT NOT NULL,
        total_seconds DOUBLE PRECISION NOT NULL, downtime_seconds DOUBLE PRECISION NOT NULL,
        passes INTEGER NOT NULL, bytes_sent BIGINT NOT NULL, outcome TEXT NOT NULL
    );
    CREATE TABLE sim_faults (
        id BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL, cluster TEXT, remaining INTEGER,
        factor DOUBLE PRECISION, created_seconds DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE sim_events (
        id BIGSERIAL PRIMARY KEY, at_seconds DOUBLE PRECISION NOT NULL, kind TEXT NOT NULL,
        message TEXT NOT NULL
    );
    """,
)


class PostgresWorldStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.location = f"the state database ({describe(url)})"
        self.conn: Conn | None = None

    def open(self) -> Conn:
        if self.conn is None:
            conn = acquire(self.url)
            migrate(conn, "sim-world", WORLD_STEPS)
            self.conn = conn
        return self.conn

    @property
    def exists(self) -> bool:
        return self.meta("schema_version") is not None

    def close(self) -> None:
        if self.conn is not None:
            release(self.url, self.conn)
            self.conn = None

    @contextmanager
    def transaction(self) -> Iterator[Conn]:
        conn = self.open()
        with conn.transaction():
            yield conn

    # --- whole world ------------------------------------------------------------------------

    def replace_world(self, estate: Estate, source: str) -> None:
        with self.transaction() as conn:
            conn.execute("TRUNCATE sim_objects, sim_migrations, sim_faults, sim_events, sim_meta")
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO sim_objects (kind, name, cluster, doc) VALUES (%s, %s, %s, %s)",
                    [self._row(r) for r in estate.records()],
                )
                cur.executemany(
                    "INSERT INTO sim_meta (key, value) VALUES (%s, %s)",
                    [
                        ("schema_version", SCHEMA_VERSION),
                        ("source", source),
                        ("clock_seconds", "0"),
                    ],
                )

    @staticmethod
    def _row(record: Record) -> tuple[str, str, str, str]:
        doc = canonical_text(record)
        stamp_digest(record, doc)
        return kind_of(record), record.name, cluster_of(record), doc

    def load(
        self, conn: Conn | None = None, cluster: str | None = None, objects: Collection[str] = ()
    ) -> Estate:
        conn = conn or self.open()
        if cluster is None:
            rows = conn.execute("SELECT kind, doc FROM sim_objects").fetchall()
        elif objects:
            rows = []
            for kind, name in scoped_keys(objects):
                rows.extend(
                    conn.execute(
                        "SELECT kind, doc FROM sim_objects "
                        "WHERE kind = %s AND name = %s AND cluster = %s",
                        (kind, name, cluster),
                    ).fetchall()
                )
        else:
            rows = conn.execute(
                "SELECT kind, doc FROM sim_objects WHERE cluster = %s", (cluster,)
            ).fetchall()
        tables: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        for kind, doc in rows:
            record = decode_record(kind, json.loads(doc))
            stamp_digest(record, doc)
            tables[kind][record.name] = record
        return Estate.from_tables(tables)

    def objects_digest(self) -> str:
        rows = self.open().execute("SELECT kind, name, doc FROM sim_objects ORDER BY kind, name")
        return rows_digest(rows)

    def save_changes(self, conn: Conn, before: Estate, after: Estate) -> int:
        changed = 0
        for kind in KINDS:
            old, new = before.table(kind), after.table(kind)
            for name, record in new.items():
                if old.get(name) is not record and old.get(name) != record:
                    conn.execute(
                        "INSERT INTO sim_objects (kind, name, cluster, doc) "
                        "VALUES (%s, %s, %s, %s) ON CONFLICT (kind, name) DO UPDATE SET "
                        "cluster = excluded.cluster, doc = excluded.doc",
                        self._row(record),
                    )
                    changed += 1
            for name in old.keys() - new.keys():
                conn.execute("DELETE FROM sim_objects WHERE kind = %s AND name = %s", (kind, name))
                changed += 1
        return changed

    # --- clock, migrations, faults, events --------------------------------------------------

    def meta(self, key: str, conn: Conn | None = None) -> str | None:
        row = (
            (conn or self.open())
            .execute("SELECT value FROM sim_meta WHERE key = %s", (key,))
            .fetchone()
        )
        return None if row is None else str(row[0])

    def clock(self, conn: Conn | None = None) -> float:
        return float(self.meta("clock_seconds", conn) or 0.0)

    def advance_clock(self, conn: Conn, seconds: float) -> float:
        row = conn.execute(
            "UPDATE sim_meta SET value = (value::double precision + %s)::text "
            "WHERE key = 'clock_seconds' RETURNING value",
            (seconds,),
        ).fetchone()
        return float(row[0]) if row else 0.0

    def record_migration(self, conn: Conn, m: MigrationRecord) -> None:
        conn.execute(
            "INSERT INTO sim_migrations (at_seconds, cluster, vm, source, destination, method, "
            "total_seconds, downtime_seconds, passes, bytes_sent, outcome) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
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

    def last_migration(self, conn: Conn) -> dict[str, Any]:
        """The migration this session recorded last (another worker's never counts)."""
        row = conn.execute(
            "SELECT total_seconds, downtime_seconds, passes, bytes_sent FROM sim_migrations "
            "WHERE id = currval(pg_get_serial_sequence('sim_migrations', 'id'))"
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
                "downtime_seconds, passes, bytes_sent, outcome FROM sim_migrations ORDER BY id"
            )
            .fetchall()
        )
        return [MigrationRecord(*row) for row in rows]

    def add_fault(
        self,
        conn: Conn,
        kind: str,
        cluster: str | None,
        remaining: int | None = None,
        factor: float | None = None,
    ) -> None:
        conn.execute(
            "INSERT INTO sim_faults (kind, cluster, remaining, factor, created_seconds) "
            "VALUES (%s, %s, %s, %s, %s)",
            (kind, cluster, remaining, factor, self.clock(conn)),
        )

    def take_migration_failure(self, conn: Conn, cluster: str) -> bool:
        row = conn.execute(
            "SELECT id FROM sim_faults WHERE kind = 'fail_migrations' "
            "AND (cluster IS NULL OR cluster = %s) AND remaining > 0 ORDER BY id LIMIT 1 "
            "FOR UPDATE",
            (cluster,),
        ).fetchone()
        if row is None:
            return False
        conn.execute("UPDATE sim_faults SET remaining = remaining - 1 WHERE id = %s", (row[0],))
        return True

    def count_toward_crash(self, conn: Conn, kind: str, actions: int = 1) -> bool:
        """Count ``actions`` against the pending crash fault of ``kind``; True when it fires."""
        row = conn.execute(
            "SELECT id, remaining FROM sim_faults WHERE kind = %s AND remaining > 0 "
            "ORDER BY id LIMIT 1 FOR UPDATE",
            (kind,),
        ).fetchone()
        if row is None:
            return False
        left = int(row[1]) - actions
        conn.execute("UPDATE sim_faults SET remaining = %s WHERE id = %s", (max(0, left), row[0]))
        return left <= 0

    def clear_faults(self, conn: Conn, kind: str) -> None:
        conn.execute("DELETE FROM sim_faults WHERE kind = %s", (kind,))

    def has_fault(self, kind: str) -> bool:
        row = (
            self.open()
            .execute("SELECT 1 FROM sim_faults WHERE kind = %s AND remaining > 0 LIMIT 1", (kind,))
            .fetchone()
        )
        return row is not None

    def link_factor(self, conn: Conn, cluster: str) -> float:
        row = conn.execute(
            "SELECT factor FROM sim_faults WHERE kind = 'slow_link' "
            "AND (cluster IS NULL OR cluster = %s) ORDER BY id DESC LIMIT 1",
            (cluster,),
        ).fetchone()
        return 1.0 if row is None else float(row[0])

    def log_event(self, conn: Conn, kind: str, message: str) -> None:
        conn.execute(
            "INSERT INTO sim_events (at_seconds, kind, message) VALUES (%s, %s, %s)",
            (self.clock(conn), kind, message),
        )

    def events(self, limit: int = 50) -> list[tuple[float, str, str]]:
        rows = (
            self.open()
            .execute(
                "SELECT at_seconds, kind, message FROM sim_events ORDER BY id DESC LIMIT %s",
                (limit,),
            )
            .fetchall()
        )
        return [(float(a), str(k), str(m)) for a, k, m in rows]
