"""PSRP pipelines of the WinRM peer: what a handler receives and the writer it writes to.

One WinRS shell is one psrpcore server runspace pool; its fragments are queued per pipeline.
"""

from __future__ import annotations

import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from psrpcore import ServerPipeline, ServerRunspacePool
from psrpcore.types import (
    ErrorCategory,
    ErrorCategoryInfo,
    ErrorRecord,
    NETException,
    PSInvocationState,
)

MAX_ENVELOPE_WINRM2 = 153600  # WinRM 2.0 (Windows Server 2008 R2): MaxEnvelopeSizekb 150
MAX_ENVELOPE_WINRM3 = 512000  # WinRM 3.0 and later: 500 KiB
_ENVELOPE_OVERHEAD = 2048  # bytes of SOAP around the streams of a ReceiveResponse


@dataclass(frozen=True)
class Command:
    """One command of a received pipeline; values are psrpcore types as deserialized."""

    name: str
    parameters: list[tuple[str | None, Any]]
    is_script: bool = False


@dataclass(frozen=True)
class Invocation:
    node: str
    commands: list[Command]
    username: str


class PipelineWriter(Protocol):
    def write_output(self, value: Any) -> None: ...
    def write_error(
        self,
        message: str,
        *,
        category: str,
        fq_error_id: str,
        target: str | None = None,
        exception_type: str = "System.Exception",
    ) -> None: ...
    def write_warning(self, message: str) -> None: ...
    @property
    def stopped(self) -> bool: ...
    def wait_stopped(self, timeout: float) -> bool: ...


Handler = Callable[[Invocation, PipelineWriter], None]


class TerminatingError(Exception):
    """Raised by a handler to fail the pipeline with this error (ErrorAction Stop)."""

    def __init__(
        self,
        message: str,
        category: str,
        fq_error_id: str,
        target: str | None = None,
        exception_type: str = "System.Exception",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.category = category
        self.fq_error_id = fq_error_id
        self.target = target
        self.exception_type = exception_type


def error_record(
    message: str,
    *,
    category: str,
    fq_error_id: str,
    target: str | None,
    exception_type: str,
) -> ErrorRecord:
    try:
        error_category = ErrorCategory[category]
    except KeyError:
        raise ValueError(f"unknown PowerShell ErrorCategory {category!r}") from None
    exception = NETException(Message=message)
    exception.PSObject.type_names = [exception_type, *exception.PSTypeNames]
    return ErrorRecord(
        Exception=exception,
        CategoryInfo=ErrorCategoryInfo(
            Category=error_category,
            Reason=exception_type.rsplit(".", 1)[-1],
            TargetName=target or "",
        ),
        TargetObject=target,
        FullyQualifiedErrorId=fq_error_id,
    )


class PipelineRun:
    """One WSMan command = one PSRP pipeline, written to by its handler thread."""

    def __init__(self, shell: ShellState, pipeline: ServerPipeline) -> None:
        self._shell = shell
        self.pipeline = pipeline
        self.handler_done = False
        self._stopped = threading.Event()

    # PipelineWriter -------------------------------------------------------------------
    def write_output(self, value: Any) -> None:
        self._write(lambda: self.pipeline.write_output(value))

    def write_error(
        self,
        message: str,
        *,
        category: str,
        fq_error_id: str,
        target: str | None = None,
        exception_type: str = "System.Exception",
    ) -> None:
        record = error_record(
            message,
            category=category,
            fq_error_id=fq_error_id,
            target=target,
            exception_type=exception_type,
        )
        self._write(
            lambda: self.pipeline.write_error(
                record.Exception,
                record.CategoryInfo,
                target_object=record.TargetObject,
                fully_qualified_error_id=record.FullyQualifiedErrorId,
            )
        )

    def write_warning(self, message: str) -> None:
        self._write(lambda: self.pipeline.write_warning(message))

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def wait_stopped(self, timeout: float) -> bool:
        """Block until the client stops the pipeline or ``timeout`` seconds pass."""
        return self._stopped.wait(timeout)

    # transport side -------------------------------------------------------------------
    def _write(self, action: Callable[[], None]) -> None:
        with self._shell.cond:
            if self.pipeline.state != PSInvocationState.Running:
                return  # stopped by the client: drop late writes, like PowerShell does
            action()
            self._shell.pump()

    def stop(self) -> None:
        self._stopped.set()
        if self.pipeline.state == PSInvocationState.Running:
            self.pipeline.stop()

    def finish(self, error: BaseException | None) -> None:
        with self._shell.cond:
            if self.pipeline.state == PSInvocationState.Running:
                if isinstance(error, TerminatingError):
                    try:
                        category = ErrorCategory[error.category].name
                    except KeyError:  # a handler bug must still fail the pipeline
                        category = "NotSpecified"
                    record = error_record(
                        error.message,
                        category=category,
                        fq_error_id=error.fq_error_id,
                        target=error.target,
                        exception_type=error.exception_type,
                    )
                    # psrpcore has no public "fail"; the state message carries the error.
                    self.pipeline._change_state(PSInvocationState.Failed, error=record)
                else:
                    if error is not None:
                        self.pipeline.write_error(
                            NETException(Message=f"{type(error).__name__}: {error}"),
                            ErrorCategoryInfo(Category=ErrorCategory.NotSpecified),
                            fully_qualified_error_id="PeerHandlerFailed",
                        )
                    self.pipeline.complete()
            self.handler_done = True
            self._shell.pump()
            if self._stopped.is_set():  # nobody reads a stopped pipeline's queue
                self._shell.forget(self.pipeline.pipeline_id)

    @property
    def done(self) -> bool:
        return self.handler_done and self.pipeline.state != PSInvocationState.Running


@dataclass
class ShellState:
    """One WinRS shell = one PSRP runspace pool, with outgoing fragments per destination."""

    shell_id: str
    node: str
    username: str
    pool: ServerRunspacePool
    max_envelope_size: int
    cond: threading.Condition = field(default_factory=threading.Condition)
    outgoing: dict[uuid.UUID | None, deque[bytes]] = field(default_factory=dict)
    pipelines: dict[uuid.UUID, PipelineRun] = field(default_factory=dict)
    client_envelope_size: int = MAX_ENVELOPE_WINRM2
    closed: bool = False
    last_used: float = 0.0

    def envelope_budget(self) -> int:
        return min(self.max_envelope_size, self.client_envelope_size) - _ENVELOPE_OVERHEAD

    def forget(self, command_id: uuid.UUID) -> None:
        """Drop a finished or terminated command (call with ``cond`` held)."""
        run = self.pipelines.pop(command_id, None)
        if run is not None and run.pipeline.state != PSInvocationState.Running:
            run.pipeline.close()
        self.outgoing.pop(command_id, None)

    def pump(self) -> None:
        """Move psrpcore's send buffer into per-pipeline queues (call with ``cond`` held)."""
        fragment_size = self.envelope_budget() * 3 // 4
        while (payload := self.pool.data_to_send(fragment_size)) is not None:
            self.outgoing.setdefault(payload.pipeline_id, deque()).append(payload.data)
        self.cond.notify_all()
