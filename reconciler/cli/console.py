"""Terminal output: rich when stdout is a terminal, plain lines otherwise."""

from __future__ import annotations

import sys

from rich.console import Console


class Output:
    def __init__(self) -> None:
        # Plain output (pipes, CI logs) gets a wide page so tables do not wrap.
        wide = None if sys.stdout.isatty() else 120
        self.console = Console(highlight=False, width=wide)
        self.err = Console(stderr=True, highlight=False)
        self.interactive = sys.stdout.isatty()

    def ok(self, message: str) -> None:
        self.console.print(f"[green]✓[/green] {message}" if self.interactive else message)

    def error(self, message: str) -> None:
        self.err.print(f"[red]error:[/red] {message}", markup=True)

    def note(self, message: str) -> None:
        self.console.print(message, markup=False)
