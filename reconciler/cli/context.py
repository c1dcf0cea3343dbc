"""What every subcommand shares: the global options, the output, and the exit codes.

Subcommand modules import this, never ``cli/main.py``, so imports run one way.
"""

from __future__ import annotations

import os
from pathlib import Path

from reconciler.cli.console import Output
from reconciler.providers.base import Provider, ProviderError
from reconciler.providers.registry import open_provider

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2
EXIT_BLOCKED = 3


class Context:
    """Options shared by every subcommand."""

    def __init__(
        self, state_dir: Path, provider: str, log_format: str, connections: Path | None = None
    ) -> None:
        self.state_dir = state_dir
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

    def provider_instance(self) -> Provider:
        try:
            options = {} if self.connections is None else {"connections": self.connections}
            return open_provider(self.provider, self.state_dir, **options)
        except ProviderError as exc:
            self.out.error(str(exc))
            raise SystemExit(EXIT_ERROR) from exc
