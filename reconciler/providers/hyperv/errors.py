"""STAND-IN until engineer W's errors.py lands (same interface)."""

from __future__ import annotations

from typing import Literal

Status = Literal["precondition_failed", "transient_error", "permanent_error"]
TRANSIENT = frozenset(
    {"ResourceBusy", "OperationTimeout", "ResourceUnavailable", "ConnectionError"}
)
PRECONDITION = frozenset({"InvalidOperation", "ObjectNotFound"})


class CommandError(Exception):
    def __init__(
        self, cmdlet: str, message: str, category: str, fq_error_id: str, target: str | None
    ) -> None:
        super().__init__(f"{cmdlet}: {message}")
        self.cmdlet = cmdlet
        self.message = message
        self.category = category
        self.fq_error_id = fq_error_id
        self.target = target

    @property
    def status(self) -> Status:
        if self.category in TRANSIENT:
            return "transient_error"
        if self.category in PRECONDITION:
            return "precondition_failed"
        return "permanent_error"


class ConnectionFailed(Exception):
    pass
