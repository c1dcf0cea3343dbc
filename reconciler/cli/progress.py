"""Progress of an apply: plain lines for pipes and CI, a rich live view on a terminal."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from reconciler.cli.render import duration, size
from reconciler.cli.safe_text import markup_safe, visible
from reconciler.engine.plan import Plan
from reconciler.model.actions import Action
from reconciler.runtime.clock import Clock
from reconciler.runtime.executor import ActionResult, RunReport


class PlainProgress:
    """One line per event: for logs, pipes and CI."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.total = 0

    def _print(self, text: str) -> None:
        self.console.print(visible(text), markup=False, highlight=False)

    def run_started(self, plan: Plan, run_id: str) -> None:
        self.total = len(plan.actions)
        self._print(f"run {run_id}: {self.total} action(s)")

    def action_started(self, seq: int, action: Action) -> None:
        self._print(f"[{seq}/{self.total}] {action.id} ...")

    def action_finished(self, seq: int, action: Action, result: ActionResult) -> None:
        self._print(f"[{seq}/{self.total}] {action.id}: {describe_result(result)}")

    def run_finished(self, report: RunReport) -> None:
        pass


class LiveProgress:
    """rich progress: overall steps, the current action, migrations pass by pass."""

    def __init__(self, console: Console, clock: Clock, sim_speed: float | None) -> None:
        self.console = console
        self.clock = clock
        self.sim_speed = sim_speed
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.overall: TaskID | None = None
        self.current: TaskID | None = None

    def run_started(self, plan: Plan, run_id: str) -> None:
        self.bar.start()
        self.overall = self.bar.add_task(markup_safe(f"apply {run_id}"), total=len(plan.actions))

    def action_started(self, seq: int, action: Action) -> None:
        self.current = self.bar.add_task(markup_safe(f"  {action.id}"), total=1)

    def action_finished(self, seq: int, action: Action, result: ActionResult) -> None:
        passes = result.details.get("pass_seconds")
        if passes and self.current is not None and self.sim_speed:
            # Replay the migration's passes scaled to wall time, for demos.
            self.bar.update(self.current, total=len(passes))
            for i, seconds in enumerate(passes, start=1):
                self.clock.sleep(seconds / self.sim_speed)
                self.bar.update(
                    self.current,
                    completed=i,
                    description=markup_safe(f"  {action.id} pass {i}/{len(passes)}"),
                )
        elif result.seconds and self.sim_speed and result.status == "done":
            self.clock.sleep(result.seconds / self.sim_speed)
        if self.current is not None:
            self.bar.update(
                self.current,
                completed=self.bar.tasks[self.current].total,
                description=markup_safe(f"  {action.id}: {describe_result(result)}"),
            )
        if self.overall is not None:
            self.bar.advance(self.overall)

    def run_finished(self, report: RunReport) -> None:
        self.bar.stop()


def describe_result(result: ActionResult) -> str:
    text = result.status.replace("_", " ")
    if result.seconds:
        text += f" in {duration(result.seconds)}"
    d = result.details
    if "passes" in d and "bytes_sent" in d:
        text += (
            f" ({d['passes']} pass(es), {size(int(d['bytes_sent']))} sent, blackout "
            f"{float(d.get('downtime_seconds', 0)) * 1000:.0f} ms)"
        )
    if result.attempts > 1:
        text += f" after {result.attempts} attempts"
    if not result.ok and result.message:
        text += f": {result.message}"
    return text
