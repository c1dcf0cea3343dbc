"""Manifest errors: each names file, line, column, object and field, and says what is allowed.

Rendered as ``FILE:LINE:COL: Kind/name: field.path: what is wrong (what is allowed)``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True, order=True)
class ManifestError:
    file: str
    line: int
    col: int
    target: str  # "Kind/name", or "-" when the document has no usable identity
    field: str  # dotted path such as spec.disks[1].slot, or "-"
    message: str
    allowed: str = ""
    severity: Severity = "error"

    def __str__(self) -> str:
        """One line, whatever the manifest held: control characters are shown as escapes."""
        allowed = f" ({self.allowed})" if self.allowed else ""
        prefix = "warning: " if self.severity == "warning" else ""
        return visible(
            f"{self.file}:{self.line}:{self.col}: {self.target}: {self.field}: "
            f"{prefix}{self.message}{allowed}"
        )

    def as_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.col,
            "object": self.target,
            "field": self.field,
            "message": self.message,
            "allowed": self.allowed,
            "severity": self.severity,
        }


# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: anything that could
# break a line, move the cursor or start a terminal escape sequence.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape(found: re.Match[str]) -> str:
    char = found.group()
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` with every control character written as an escape (ESC becomes ``\\x1b``)."""
    return _CONTROL.sub(_escape, text) if _CONTROL.search(text) else text


class ManifestLoadError(Exception):
    """Raised by callers that need a valid estate and got errors instead."""

    def __init__(self, errors: list[ManifestError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def one_of(values: Iterable[str]) -> str:
    return "one of " + ", ".join(values)


def did_you_mean_target(word: str, candidates: Iterable[str]) -> str | None:
    """The closest spelling of ``word`` among the candidates, or None."""
    if len(word) > 200:  # no name is that long; difflib's cost grows with the product
        return None
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """'did you mean X? ' when a close spelling exists, else ''."""
    target = did_you_mean_target(word, candidates)
    return f"did you mean '{target}'? " if target else ""


def format_path(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "-"
