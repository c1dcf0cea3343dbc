"""What goes wrong talking to a Hyper-V node, and which outcome status each failure means.

HyperVError
├── ConnectionFailed      unreachable, TLS, authentication, a broken pool: nothing ran
└── CommandError          a cmdlet's error record (status from category + FullyQualifiedErrorId)
    └── DeadlineExceeded  our per-call deadline passed; the pipeline was stopped
"""

from __future__ import annotations

from typing import Literal

Status = Literal["precondition_failed", "transient_error", "permanent_error"]

# System.Management.Automation.ErrorCategory: pypsrp hands us the number.
ERROR_CATEGORIES = (
    "NotSpecified",
    "OpenError",
    "CloseError",
    "DeviceError",
    "DeadlockDetected",
    "InvalidArgument",
    "InvalidData",
    "InvalidOperation",
    "InvalidResult",
    "InvalidType",
    "MetadataError",
    "NotImplemented",
    "NotInstalled",
    "ObjectNotFound",
    "OperationStopped",
    "OperationTimeout",
    "SyntaxError",
    "ParserError",
    "PermissionDenied",
    "ResourceBusy",
    "ResourceExists",
    "ResourceUnavailable",
    "ReadError",
    "WriteError",
    "FromStdErr",
    "SecurityError",
    "ProtocolError",
    "ConnectionError",
    "AuthenticationError",
    "LimitsExceeded",
    "QuotaExceeded",
    "NotEnabled",
)

# The world is not as the action assumed: re-observe and re-plan, do not retry blindly.
_PRECONDITION = frozenset({"ObjectNotFound", "InvalidOperation", "ResourceExists", "NotEnabled"})
# Worth a retry with backoff: busy, timing out, or a link that came back.
_TRANSIENT = frozenset(
    {
        "ResourceBusy",
        "ResourceUnavailable",
        "OperationTimeout",
        "OperationStopped",
        "ConnectionError",
        "DeadlockDetected",
        "LimitsExceeded",
        "QuotaExceeded",
    }
)
# Error ids (the part of the FullyQualifiedErrorId before the first comma) that decide the
# status whatever the category says. Everything else not listed above is permanent.
_BY_ERROR_ID: dict[str, Status] = {
    # PowerShell's own binding errors: our call is wrong, retrying cannot help.
    "CommandNotFoundException": "permanent_error",  # module missing on the node
    "NamedParameterNotFound": "permanent_error",
    "ParameterArgumentTransformationError": "permanent_error",  # e.g. Int32 where UInt64 is
    "ParameterArgumentValidationError": "permanent_error",
    "MissingMandatoryParameter": "permanent_error",
    "AmbiguousParameterSet": "permanent_error",
    # Stopped by our own deadline or by the admin: the operation may still finish; look again.
    "PipelineStopped": "transient_error",
    # Hyper-V: the VM is not in a state that allows the operation (e.g. Start-VM on Running).
    "InvalidState": "precondition_failed",
    # Access is denied: delegation or JEA role missing; an admin must act.
    "AccessDenied": "permanent_error",
    "UnauthorizedAccess": "permanent_error",
}


def category_name(category: int | str | None) -> str:
    """The ErrorCategory name of pypsrp's number (or a name already)."""
    if isinstance(category, str):
        return category
    if isinstance(category, int) and 0 <= category < len(ERROR_CATEGORIES):
        return ERROR_CATEGORIES[category]
    return "NotSpecified"


def classify(category: str, fq_error_id: str) -> Status:
    error_id = fq_error_id.split(",", 1)[0].strip()
    if error_id in _BY_ERROR_ID:
        return _BY_ERROR_ID[error_id]
    if category in _PRECONDITION:
        return "precondition_failed"
    if category in _TRANSIENT:
        return "transient_error"
    return "permanent_error"


class HyperVError(Exception):
    """Any failure of the hyperv provider's remoting."""


class ConnectionFailed(HyperVError):
    """The node could not be reached, trusted or logged on to; no command ran."""


class CommandError(HyperVError):
    """A cmdlet wrote an error record or failed; ``message`` is the cmdlet's own text."""

    def __init__(
        self,
        cmdlet: str,
        message: str,
        category: str,
        fq_error_id: str,
        target: str | None = None,
        *,
        node: str | None = None,
    ) -> None:
        where = f" on {node}" if node else ""
        super().__init__(f"{cmdlet}{where}: {message}")
        self.cmdlet = cmdlet
        self.message = message
        self.category = category
        self.fq_error_id = fq_error_id
        self.target = target
        self.node = node

    @property
    def status(self) -> Status:
        return classify(self.category, self.fq_error_id)


class DeadlineExceeded(CommandError):
    """The call ran past its deadline and was stopped (ctrl_c); it may have had effects."""

    def __init__(self, cmdlet: str, seconds: float, *, node: str | None = None) -> None:
        super().__init__(
            cmdlet,
            f"no result within the {seconds:g} s deadline; the pipeline was stopped",
            "OperationTimeout",
            "ReconcilerDeadlineExceeded",
            node=node,
        )
        self.seconds = seconds
