"""Values from manifests, the world, hooks or the command line, made safe to print.

Such a value may hold rich markup (``[/x]`` would raise MarkupError, ``[red]`` would colour)
or control characters and ANSI escape sequences (which would move the cursor or retitle the
terminal). Escape it where it joins our own markup; show control characters as ``\\x1b``.
JSON output needs none of this: json.dumps writes control characters as JSON escapes.
"""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from reconciler.manifest.errors import visible

__all__ = ["add_row", "cell", "markup_safe", "visible"]


def markup_safe(value: object) -> str:
    """For a string printed with markup on: no markup of its own, no control characters."""
    return escape(visible(str(value)))


def cell(value: object) -> Text:
    """A table cell: rich reads no markup in a Text, and control characters are shown."""
    return Text(visible(str(value)))


def add_row(table: Table, *values: object) -> None:
    """``table.add_row`` with every value shown as it is (see ``cell``)."""
    table.add_row(*(cell(v) for v in values))
