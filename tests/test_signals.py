"""SIGTERM and Ctrl-C during apply: the action under way finishes, the rest waits, the run is
recorded as interrupted, exit 143 / 130, and the next apply carries on.

The signal comes from the rolling-update hook itself (it signals its parent, the reconciler),
so it arrives at a known point with no sleeps: while patch_node of the first node runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_hook import CYCLE, DEMO, NODES, WORLD, observe, rolling

from reconciler.cli.main import cli
from reconciler.runtime.clock import ManualClock
from reconciler.runtime.journal import Journal

ROOT = Path(__file__).resolve().parents[1]


def run(state: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--state-dir", str(state), *args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def converged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("converged") / "state"
    assert run(state, "sim", "init", str(WORLD))[0] == 0
    assert run(state, "apply", "--auto-approve", str(DEMO))[0] == 0
    return state


class TestStopSignals:
    @pytest.mark.parametrize(("signal_name", "exit_code"), [("TERM", 143), ("INT", 130)])
    def test_stops_after_the_action_under_way_and_the_next_apply_resumes(
        self, converged: Path, tmp_path: Path, signal_name: str, exit_code: int
    ) -> None:
        state = Path(shutil.copytree(converged, tmp_path / "state"))
        once = tmp_path / "signalled"
        # Signal the reconciler the first time only; every run of the hook patches its node.
        hook = f"[ -e {once} ] || {{ touch {once}; kill -{signal_name} $PPID; }}"
        manifests = rolling(tmp_path / "m", ["sh", "-c", hook])
        proc = subprocess.run(
            [sys.executable, "-m", "reconciler", "--state-dir", str(state), "apply",
             "--auto-approve", str(manifests)],
            capture_output=True, text=True, cwd=ROOT, env=dict(os.environ), check=False,
            timeout=120,
        )  # fmt: skip
        assert proc.returncode == exit_code, proc.stdout + proc.stderr
        assert f"Stopped by SIG{signal_name}" in proc.stdout
        assert "Traceback" not in proc.stderr

        journal = Journal(state, ManualClock().now)
        try:
            latest = journal.runs()[0]
            assert latest.outcome == "interrupted"
            actions = journal.actions(latest.id)
        finally:
            journal.close()
        statuses = {a.action_id: a.status for a in actions}
        patched = [a.action_id for a in actions if a.type == "patch_node" and a.status == "done"]
        assert len(patched) == 1, "the action under way finished"
        first = actions.index(next(a for a in actions if a.action_id == patched[0]))
        assert all(a.status == "skipped" for a in actions[first + 1 :])
        assert all("stop requested" in a.error for a in actions[first + 1 :])
        assert "started" not in statuses.values()
        world = observe(state)
        assert world.nodes[patched[0].split(":")[1]].hardware.patch_level == CYCLE

        code, out = run(state, "apply", "--auto-approve", str(manifests))
        assert code == 0, out
        world = observe(state)
        assert {world.nodes[n].hardware.patch_level for n in NODES} == {CYCLE}
        assert world.clusters["prod"].status.rolling_update_done == CYCLE
