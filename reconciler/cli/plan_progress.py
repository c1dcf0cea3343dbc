"""Progress of observe and plan on a terminal: one line on stderr, gone when the work is done.

Shown only to a person watching: stdout and stderr both terminals, text output, console logs.
Never in JSON (``--json``, ``--format json``, ``--log-format json``) and never when piped, so
nothing but the result reaches a file or another program.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from reconciler.cli.context import Context


class PlanBar:
    """A spinner for each phase; a bar over the clusters while they are planned."""

    def __init__(self, console: Console) -> None:
        self.bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<28}"),
            BarColumn(),
            TextColumn("{task.fields[count]}"),  # clusters done / all; blank while uncounted
            TimeElapsedColumn(),
            console=console,
            transient=True,  # the plan replaces it: no stale bar above the output
        )
        self.task: TaskID | None = None
        self.name = ""

    def __enter__(self) -> PlanBar:
        self.bar.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.bar.stop()

    def phase(self, name: str, total: int | None = None) -> None:
        self.name = name
        count = f"0/{total}" if total is not None else ""
        if self.task is None:
            self.task = self.bar.add_task(name, total=total, count=count)
        else:
            self.bar.reset(self.task, total=total, description=name, count=count)

    def advance(self, item: str) -> None:
        if self.task is not None:
            self.bar.update(self.task, advance=1, description=f"{self.name}: {item}")
            task = self.bar.tasks[self.task]
            self.bar.update(self.task, count=f"{task.completed:.0f}/{task.total:.0f}")


def wants_progress(obj: Context, text_output: bool) -> bool:
    """A person is watching: text output on a terminal, and no JSON events on stderr."""
    return (
        text_output
        and obj.log_format == "console"
        and obj.out.interactive
        and obj.out.err.is_terminal
    )


def plan_bar(obj: Context, text_output: bool) -> PlanBar | None:
    return PlanBar(obj.out.err) if wants_progress(obj, text_output) else None
