"""Terminal output: rich when stdout is a terminal, plain lines otherwise."""

from __future__ import annotations

import sys

from rich.console import Console

from reconciler.cli.safe_text import markup_safe, visible


class Output:
    def __init__(self) -> None:
        # Plain output (pipes, CI logs): lines are never wrapped; tables get a wide page.
        plain = not sys.stdout.isatty()
        self.console = Console(highlight=False, width=160 if plain else None, soft_wrap=plain)
        plain_err = not sys.stderr.isatty()
        self.err = Console(
            stderr=True, highlight=False, width=160 if plain_err else None, soft_wrap=plain_err
        )
        self.interactive = sys.stdout.isatty()

    # Messages are plain text that may quote user values: never read as markup, and their
    # control characters are shown as escapes (cli/safe_text.py).
    def ok(self, message: str) -> None:
        text = markup_safe(message)
        self.console.print(f"[green]✓[/green] {text}" if self.interactive else text)

    def error(self, message: str) -> None:
        self.err.print(f"[red]error:[/red] {markup_safe(message)}", markup=True)

    def note(self, message: str) -> None:
        self.console.print(visible(message), markup=False)
