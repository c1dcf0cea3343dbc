"""The provider protocol: observe the estate, apply one action, say what you can do, close.

Outcomes split what the executor must treat differently::

    Outcome.status
    ├── done                  the action ran and had its effect
    ├── already_done          the target was already as desired (idempotence)
    ├── precondition_failed   the world does not allow it now; nothing changed (reason given)
    ├── transient_error       try again later (retried with backoff)
    └── permanent_error       retrying will not help; stop this branch
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from reconciler.model.actions import Action
from reconciler.model.records import Estate

OutcomeStatus = Literal[
    "done", "already_done", "precondition_failed", "transient_error", "permanent_error"
]


@dataclass(frozen=True, slots=True)
class Outcome:
    status: OutcomeStatus
    message: str = ""
    seconds: float = 0.0  # how long the action took (simulated time on the simulator)
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.status in ("done", "already_done")


@dataclass(frozen=True, slots=True)
class Capabilities:
    name: str
    simulated: bool
    actions: frozenset[str]
    platforms: frozenset[str]


@runtime_checkable
class Provider(Protocol):
    def observe(self) -> Estate: ...

    def apply(self, action: Action) -> Outcome: ...

    def capabilities(self) -> Capabilities: ...

    def close(self) -> None: ...


@runtime_checkable
class RunsMigrationsTogether(Protocol):
    """Optional: a provider that can run several live migrations of one cluster at once."""

    def apply_migrations(self, actions: Sequence[Action]) -> list[Outcome]: ...


class ProviderError(Exception):
    """A provider could not be opened or reached (no world, no credentials, no route)."""
