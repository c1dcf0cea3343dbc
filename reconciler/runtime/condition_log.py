"""The conditions the scheduled loop saw, kept next to the drift rows: one open row per
condition while it holds (first seen, last seen, when it began on the world's clock), cleared
once a tick no longer sees it. ``drift`` shows them.

Both state backends store them with the same SQL; only the parameter marker differs.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.model.conditions import Condition

SQLITE_DDL = """
CREATE TABLE IF NOT EXISTS conditions (
    id INTEGER PRIMARY KEY, type TEXT NOT NULL, object TEXT NOT NULL, key TEXT NOT NULL,
    reason TEXT NOT NULL, since REAL, detected_at REAL NOT NULL, tick_run TEXT,
    last_seen_at REAL NOT NULL, cleared INTEGER NOT NULL DEFAULT 0, cleared_at REAL
)
"""
POSTGRES_DDL = """
CREATE TABLE conditions (
    id BIGSERIAL PRIMARY KEY, type TEXT NOT NULL, object TEXT NOT NULL, key TEXT NOT NULL,
    reason TEXT NOT NULL, since DOUBLE PRECISION, detected_at DOUBLE PRECISION NOT NULL,
    tick_run TEXT, last_seen_at DOUBLE PRECISION NOT NULL, cleared INTEGER NOT NULL DEFAULT 0,
    cleared_at DOUBLE PRECISION
);
CREATE INDEX conditions_open ON conditions (object) WHERE cleared = 0;
"""
_COLUMNS = (
    "id, type, object, key, reason, since, detected_at, tick_run, last_seen_at, cleared, cleared_at"
)


@dataclass(frozen=True, slots=True)
class ConditionRecord:
    id: int
    type: str
    object: str  # Kind/name
    key: str  # the condition's key on that object (its type, or type/subject)
    reason: str
    since: float | None  # when it began, on the world's clock (None: the provider cannot tell)
    detected_at: float  # when a tick first saw it (the journal's clock)
    tick_run: str | None
    last_seen_at: float
    cleared: bool
    cleared_at: float | None


def note_conditions(
    conn: Any,
    mark: str,
    now: float,
    run_id: str | None,
    conditions: Sequence[Condition],
    scope: Collection[str] | None = None,
) -> list[str]:
    """Record what a tick saw inside one open transaction of ``conn`` (``mark``: the
    backend's parameter marker); returns the new ones as "Type Kind/name". Open rows the tick
    did not see are cleared; with ``scope``, only those of the objects it names."""
    q = _sql(mark)
    open_rows = {
        (obj, key): rid
        for rid, obj, key in conn.execute(
            "SELECT id, object, key FROM conditions WHERE cleared = 0"
        ).fetchall()
    }
    new: list[str] = []
    seen: set[tuple[str, str]] = set()
    for c in conditions:
        key = c.key or c.type
        seen.add((c.target, key))
        rid = open_rows.get((c.target, key))
        if rid is not None:
            conn.execute(
                q("UPDATE conditions SET reason = ?, since = ?, last_seen_at = ? WHERE id = ?"),
                (c.reason, c.since, now, rid),
            )
            continue
        conn.execute(
            q(
                "INSERT INTO conditions (type, object, key, reason, since, detected_at, "
                "tick_run, last_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            (c.type, c.target, key, c.reason, c.since, now, run_id, now),
        )
        new.append(f"{c.type} {c.target}")
    for (obj, key), rid in sorted(open_rows.items()):
        if (obj, key) not in seen and (scope is None or obj in scope):
            conn.execute(
                q("UPDATE conditions SET cleared = 1, cleared_at = ? WHERE id = ?"), (now, rid)
            )
    return new


def condition_history(
    conn: Any, mark: str, limit: int = 50, open_only: bool = False
) -> list[ConditionRecord]:
    """Condition rows, newest first."""
    where = "WHERE cleared = 0 " if open_only else ""
    rows = conn.execute(
        _sql(mark)(
            f"SELECT {_COLUMNS} FROM conditions {where}ORDER BY detected_at DESC, id DESC LIMIT ?"
        ),
        (limit,),
    ).fetchall()
    return [
        ConditionRecord(
            int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], bool(r[9]), r[10]
        )
        for r in rows
    ]


def _sql(mark: str) -> Any:
    return (lambda text: text) if mark == "?" else (lambda text: text.replace("?", mark))
