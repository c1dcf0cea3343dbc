"""PostgreSQL connections and schema migrations, shared by the simulator's world and the journal.

A state URL is a libpq URL (``postgresql://user@host/db``, ``postgresql:///db`` for the local
socket). Passwords never appear in messages: ``describe`` prints the URL without them.
Migrations are numbered steps per component, applied once under an advisory lock, so
workers starting together do not race; ``reconciler_schema`` records what was applied.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

_MIGRATION_LOCK = 72_201_801  # pg_advisory_xact_lock key: one migrating process at a time


class StateDatabaseError(Exception):
    """The state database cannot be reached, or its schema is newer than this program."""


def is_postgres_url(url: str | None) -> bool:
    return bool(url) and str(url).startswith(("postgresql:", "postgres:"))


def describe(url: str) -> str:
    """The URL's host, port, database and user, never its password."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "an unparsable PostgreSQL URL"
    shown = {k: v for k, v in parts.items() if k in ("host", "port", "dbname", "user")}
    return " ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "the default local database"


def connect(url: str, wait_seconds: float = 0.0) -> psycopg.Connection[Any]:
    """An autocommit connection; retried for ``wait_seconds`` while the server is down."""
    deadline = time.monotonic() + wait_seconds
    delay = 0.5
    while True:
        try:
            return psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            if time.monotonic() >= deadline:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc)
                raise StateDatabaseError(
                    f"cannot reach the state database ({describe(url)}): {first}"
                ) from exc
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 5.0)


_IDLE: dict[str, list[psycopg.Connection[Any]]] = {}
_IDLE_GUARD = threading.Lock()
_IDLE_MAX = 8  # idle connections kept per URL: a worker's jobs reuse them
_MIGRATED: set[tuple[str, str, int]] = set()  # (url, component, steps) checked in this process


def acquire(url: str, wait_seconds: float = 0.0) -> psycopg.Connection[Any]:
    """A connection from this process's idle ones, or a new one; give it back with release."""
    with _IDLE_GUARD:
        idle = _IDLE.get(url, [])
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE:
                return conn
            conn.close()
    return connect(url, wait_seconds)


def release(url: str, conn: psycopg.Connection[Any]) -> None:
    """Keep a healthy idle connection for the next user; close anything else."""
    healthy = not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE
    with _IDLE_GUARD:
        idle = _IDLE.setdefault(url, [])
        if healthy and len(idle) < _IDLE_MAX:
            idle.append(conn)
            return
    conn.close()


def close_idle(url: str | None = None) -> None:
    """Close the idle connections kept for ``url`` (all of them without one)."""
    with _IDLE_GUARD:
        urls = [url] if url is not None else list(_IDLE)
        conns = [c for u in urls for c in _IDLE.pop(u, [])]
    for conn in conns:
        conn.close()


def migrate(conn: psycopg.Connection[Any], component: str, steps: Sequence[str]) -> int:
    """Apply the steps of ``component`` not yet applied; returns how many ran.

    Step ``i`` (1-based) is applied once, in one transaction with its record. A database
    with steps this program does not know was migrated by a newer release: refused.
    """
    key = (str(conn.info.dsn), component, len(steps))
    if key in _MIGRATED:
        return 0
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS reconciler_schema (component TEXT NOT NULL, "
            "version INTEGER NOT NULL, applied_at DOUBLE PRECISION NOT NULL, "
            "PRIMARY KEY (component, version))"
        )
        row = conn.execute(
            "SELECT coalesce(max(version), 0) FROM reconciler_schema WHERE component = %s",
            (component,),
        ).fetchone()
        have = int(row[0]) if row else 0
        if have > len(steps):
            raise StateDatabaseError(
                f"the state database's {component} schema is at version {have}, newer than "
                f"this program's {len(steps)}: upgrade reconciler"
            )
        for version in range(have + 1, len(steps) + 1):
            conn.execute(steps[version - 1])
            conn.execute(
                "INSERT INTO reconciler_schema (component, version, applied_at) "
                "VALUES (%s, %s, %s)",
                (component, version, time.time()),
            )
    _MIGRATED.add(key)
    return len(steps) - have
