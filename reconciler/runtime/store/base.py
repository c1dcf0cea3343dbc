"""The state-store interface: what the journal, the locks and the drift table offer.

Two backends satisfy it: ``runtime.journal.Journal`` (SQLite in the state directory, the
default) and ``runtime.store.postgres.PostgresJournal`` (a shared PostgreSQL database, for
several workers on several machines). Callers type against ``StateStore`` and get one from
``open_store``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from reconciler.model.conditions import Condition
from reconciler.runtime.condition_log import ConditionRecord
from reconciler.runtime.journal import ActionRecord, DriftRecord, LockRecord, RunRecord


class StateStore(Protocol):
    clock: Callable[[], float]

    def close(self) -> None: ...

    def batch(self) -> AbstractContextManager[None]:
        """Writes inside may be committed together, when it ends (the SQLite journal does)."""
        ...

    # --- runs and actions -------------------------------------------------------------------

    def start_run(
        self,
        plan_hash: str,
        source: str,
        actions_total: int,
        kind: str = "apply",
        commit_id: str | None = None,
        cluster: str = "",
    ) -> str: ...

    def end_run(self, run_id: str, outcome: str, message: str = "") -> None: ...

    def action_started(self, run_id: str, seq: int, action: dict[str, Any]) -> None: ...

    def action_finished(
        self,
        run_id: str,
        seq: int,
        status: str,
        seconds: float | None,
        attempts: int,
        error: str = "",
        details: dict[str, Any] | None = None,
    ) -> None: ...

    def action_skipped(self, run_id: str, seq: int, action: dict[str, Any], why: str) -> None: ...

    def runs(self, limit: int = 20) -> list[RunRecord]: ...

    def run(self, run_id: str) -> RunRecord | None: ...

    def actions(self, run_id: str) -> list[ActionRecord]: ...

    def interrupted_runs(self) -> list[RunRecord]: ...

    def mark_interrupted(self, run: RunRecord) -> str: ...

    # --- drift ------------------------------------------------------------------------------

    def open_drift(self) -> dict[str, DriftRecord]: ...

    def note_drift(
        self, run_id: str | None, drifted: Mapping[str, list[dict[str, Any]]]
    ) -> list[str]: ...

    def close_drift(self, objects: Iterable[str], correction_run: str | None, note: str) -> int: ...

    def drift_history(self, limit: int = 50, open_only: bool = False) -> list[DriftRecord]: ...

    # --- conditions -------------------------------------------------------------------------

    def note_conditions(
        self,
        run_id: str | None,
        conditions: Sequence[Condition],
        scope: Collection[str] | None = None,
    ) -> list[str]: ...

    def condition_history(
        self, limit: int = 50, open_only: bool = False
    ) -> list[ConditionRecord]: ...

    # --- locks (leases) ---------------------------------------------------------------------

    def locks(self) -> list[LockRecord]: ...

    def lock_holder(self, clusters: Iterable[str]) -> LockRecord | None: ...

    def try_lock(
        self, clusters: Sequence[str], ttl_seconds: float, run_id: str | None = None
    ) -> tuple[list[LockRecord], list[str]]: ...

    def attach_run(self, locks: Sequence[LockRecord], run_id: str) -> None: ...

    def renew(self, locks: Sequence[LockRecord], ttl_seconds: float) -> None: ...

    def unlock(self, locks: Sequence[LockRecord]) -> None: ...

    def lock_is_live(self, lock: LockRecord) -> str | None: ...

    def force_unlock(self, lock_id: str, force: bool = False) -> LockRecord | None: ...

    def process_gone(self, run: RunRecord) -> bool: ...
