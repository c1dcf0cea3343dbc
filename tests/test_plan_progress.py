"""Progress for observe and plan: on a terminal only, never in JSON or through a pipe."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from reconciler.cli.context import Context
from reconciler.cli.main import cli
from reconciler.cli.plan_progress import PlanBar, wants_progress
from reconciler.engine.planner import make_plan
from reconciler.providers.sim.generate import generate_estate

ROOT = Path(__file__).resolve().parents[1]


def test_bar_shows_each_phase_and_counts_the_clusters() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100, color_system=None)
    with PlanBar(console) as bar:
        bar.phase("load manifests")
        bar.phase("observe")
        bar.phase("plan clusters", total=3)
        for name in ("a", "b", "c"):
            bar.advance(name)
        bar.bar.refresh()
    shown = screen.getvalue()
    assert "plan clusters: c" in shown
    assert "3/3" in shown


@pytest.mark.parametrize(
    ("text_output", "log_format", "stdout_tty", "stderr_tty", "shown"),
    [
        (True, "console", True, True, True),
        (False, "console", True, True, False),  # --json / --format json|markdown|dot
        (True, "json", True, True, False),  # --log-format json: events only on stderr
        (True, "console", False, True, False),  # stdout piped
        (True, "console", True, False, False),  # stderr piped
    ],
)
def test_progress_only_for_a_person_at_a_terminal(
    tmp_path: Path,
    text_output: bool,
    log_format: str,
    stdout_tty: bool,
    stderr_tty: bool,
    shown: bool,
) -> None:
    obj = Context(tmp_path, "sim", log_format)
    obj.out.interactive = stdout_tty
    obj.out.err = Console(file=io.StringIO(), force_terminal=stderr_tty)
    assert wants_progress(obj, text_output) is shown


def test_make_plan_reports_each_cluster_once_in_order() -> None:
    gen = generate_estate(3, 2, 2, drift=0.3, seed=4)
    seen: list[str] = []
    make_plan(gen.desired, gen.world, on_cluster=seen.append)
    assert seen == sorted(gen.desired.clusters)
    assert len(seen) == 3


def test_log_format_json_gives_plan_events_and_no_progress(tmp_path: Path) -> None:
    runner = CliRunner()
    state = ["--state-dir", str(tmp_path)]
    world = str(ROOT / "manifests" / "worlds" / "demo.yaml")
    assert runner.invoke(cli, [*state, "sim", "init", world]).exit_code == 0
    result = runner.invoke(
        cli, [*state, "--log-format", "json", "plan", str(ROOT / "manifests" / "demo")]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Plan: 13 action(s)")
    events = [json.loads(line) for line in result.stderr.splitlines()]
    by_name = {e["event"]: e for e in events}
    assert [e["event"] for e in events] == ["manifests_loaded", "observed", "planned"]
    assert (by_name["manifests_loaded"]["clusters"], by_name["manifests_loaded"]["vms"]) == (1, 20)
    assert (by_name["observed"]["nodes"], by_name["observed"]["vms"]) == (5, 20)
    assert by_name["planned"]["actions"] == 13
    assert by_name["planned"]["blocked"] is False
