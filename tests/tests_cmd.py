"""A received command as the transport hands it to the peer (for tests that call it directly)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Cmd:
    name: str
    parameters: list[tuple[str | None, Any]] = field(default_factory=list)
    is_script: bool = False
