"""``open_store``: the SQLite journal in the state directory, or PostgreSQL from a state URL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from reconciler.providers.postgres import StateDatabaseError, is_postgres_url
from reconciler.runtime.journal import Journal
from reconciler.runtime.store.base import StateStore

STATE_URL_ENV = "RECONCILER_STATE_URL"


def open_store(
    state_dir: Path,
    state_url: str | None,
    clock: Callable[[], float],
    connect_wait_seconds: float = 0.0,
) -> StateStore:
    if not state_url:
        return Journal(state_dir, clock)
    if not is_postgres_url(state_url):
        raise StateDatabaseError(
            f"--state-url must be a postgresql:// URL (env {STATE_URL_ENV}); "
            "leave it unset for the SQLite state directory"
        )
    from reconciler.runtime.store.postgres import PostgresJournal

    return PostgresJournal(state_url, clock, connect_wait_seconds=connect_wait_seconds)
