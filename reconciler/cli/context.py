"""What every subcommand shares: the global options, the output, and the exit codes.

Subcommand modules import this, never ``cli/main.py``, so imports run one way.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reconciler.cli.console import Output
from reconciler.providers.base import Provider, ProviderError
from reconciler.providers.postgres import StateDatabaseError
from reconciler.providers.registry import open_provider
from reconciler.runtime.store.base import StateStore
from reconciler.runtime.store.factory import open_store

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2
EXIT_BLOCKED = 3


class Context:
    """Options shared by every subcommand."""

    def __init__(
        self,
        state_dir: Path,
        provider: str,
        log_format: str,
        state_url: str | None = None,
        connections: Path | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.state_url = state_url or None  # postgresql://...: the shared state database
        self.provider = provider
        self.log_format = log_format
        self.connections = connections  # the hyperv provider's connections file
        self.out = Output()

    @property
    def cache_dir(self) -> Path | None:
        """Parsed manifests keyed by content; RECONCILER_NO_CACHE=1 turns it off."""
        if os.environ.get("RECONCILER_NO_CACHE"):
            return None
        return self.state_dir / "cache" / "manifests"

    @property
    def memo_dir(self) -> Path | None:
        """Where the last plan is kept for reuse (runtime/plan_memo.py); off with the cache."""
        if os.environ.get("RECONCILER_NO_CACHE"):
            return None
        return self.state_dir / "cache"

    def provider_instance(self) -> Provider:
        try:
            return open_provider(self.provider, self.state_dir, **self.provider_options)
        except ProviderError as exc:
            self.out.error(str(exc))
            raise SystemExit(EXIT_ERROR) from exc

    @property
    def provider_options(self) -> dict[str, Any]:
        """The simulator keeps its world beside the journal: in the state database if any."""
        options: dict[str, Any] = {"state_url": self.state_url} if self.state_url else {}
        if self.connections is not None:
            options["connections"] = self.connections  # the hyperv provider's
        return options

    def store(self, clock: Callable[[], float]) -> StateStore:
        """The journal, locks and drift history: SQLite in the state directory, or PostgreSQL."""
        try:
            return open_store(self.state_dir, self.state_url, clock)
        except StateDatabaseError as exc:
            self.out.error(str(exc))
            raise SystemExit(EXIT_ERROR) from exc
