"""Apply: idempotent, resumable after a crash at any point, locked per cluster, journaled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli.apply_commands import run_apply
from reconciler.cli.main import Context, cli
from reconciler.engine.planner import make_plan
from reconciler.manifest.load import load_paths, require
from reconciler.model.rules import invariants
from reconciler.providers.sim.provider import SimProvider
from reconciler.runtime.clock import ManualClock
from reconciler.runtime.journal import Journal

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "manifests" / "demo")
WORLD = str(ROOT / "manifests" / "worlds" / "demo.yaml")


def run(state: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--state-dir", str(state), *args], catch_exceptions=False)
    return result.exit_code, result.output


def run_process(
    state: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", "--state-dir", str(state), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.fixture
def state(tmp_path: Path) -> Path:
    code, out = run(tmp_path, "sim", "init", WORLD)
    assert code == 0, out
    return tmp_path


def demo_plan_ids() -> list[str]:
    desired = require(load_paths([DEMO]))
    observed = require(load_paths([WORLD], world=True))
    return [a.id for a in make_plan(desired, observed).actions]


def world(state: Path) -> object:
    provider = SimProvider(state_dir=state)
    try:
        return provider.observe()
    finally:
        provider.close()


class TestConverge:
    """apply --auto-approve makes the demo estate match its manifests, and then does nothing."""

    def test_apply_then_plan_has_no_changes(self, state: Path) -> None:
        code, out = run(state, "apply", "--auto-approve", DEMO)
        assert code == 0, out
        assert "succeeded" in out
        code, out = run(state, "plan", "--detailed-exitcode", DEMO)
        assert code == 0, out
        assert "No changes" in out

    def test_second_apply_does_nothing(self, state: Path) -> None:
        run(state, "apply", "--auto-approve", DEMO)
        before = world(state)
        code, out = run(state, "apply", "--auto-approve", DEMO)
        assert code == 0
        assert "No changes" in out
        assert world(state) == before
        journal = Journal(state, ManualClock().now)
        assert len(journal.runs()) == 1, "an empty plan starts no run"
        journal.close()

    def test_refuses_without_terminal_or_auto_approve(self, state: Path) -> None:
        code, out = run(state, "apply", DEMO)
        assert code == 1
        assert "refusing to apply without confirmation" in out
        code, _ = run(state, "plan", "--detailed-exitcode", DEMO)
        assert code == 2, "nothing was applied"

    def test_json_logs_go_to_stderr(self, state: Path) -> None:
        proc = run_process(state, "--log-format", "json", "apply", "--auto-approve", DEMO)
        assert proc.returncode == 0, proc.stderr
        events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
        assert any(e["event"] == "action" and e["status"] == "done" for e in events)
        assert not any(line.startswith("{") for line in proc.stdout.splitlines())


class TestCrashAndResume:
    """The simulator ends the process right after action N took effect, before the journal
    records it (a power loss); a normal apply then converges and does nothing twice."""

    @pytest.mark.parametrize("position", range(1, len(demo_plan_ids()) + 1))
    def test_crash_after_action_n(self, state: Path, position: int) -> None:
        code, out = run(state, "sim", "fault", "crash-after", str(position))
        assert code == 0, out
        proc = run_process(state, "apply", "--auto-approve", DEMO)
        assert proc.returncode == 137, proc.stdout + proc.stderr
        crashed = world(state)
        assert invariants(crashed) == []  # type: ignore[arg-type]
        # Action N took effect in the world: a plan now lacks it.
        desired = require(load_paths([DEMO]))
        left = [a.id for a in make_plan(desired, crashed).actions]  # type: ignore[arg-type]
        assert demo_plan_ids()[position - 1] not in left

        journal = Journal(state, ManualClock().now)
        (first,) = journal.runs()
        assert first.outcome == "running"
        first_actions = journal.actions(first.id)
        assert len(first_actions) == position
        assert first_actions[-1].status == "started", "the journal never heard it finish"
        done_before = {a.action_id for a in first_actions if a.status == "done"}
        assert len(done_before) == position - 1
        journal.close()

        code, out = run(state, "apply", "--auto-approve", DEMO)
        assert code == 0, out
        assert f"Run {first.id} was interrupted after {position - 1} of" in out

        journal = Journal(state, ManualClock().now)
        if position == len(demo_plan_ids()):
            # The last action took effect: nothing is left to do, and no run is started.
            assert "No changes" in out
            (interrupted,) = journal.runs()
            assert (interrupted.id, interrupted.outcome) == (first.id, "interrupted")
            journal.close()
            return
        second, interrupted = journal.runs()
        assert interrupted.id == first.id and interrupted.outcome == "interrupted"
        assert second.outcome == "succeeded"
        redone = {a.action_id for a in journal.actions(second.id) if a.status == "done"}
        assert not done_before & redone, "a completed action ran again"
        assert demo_plan_ids()[position - 1] not in redone, "the crashed action ran twice"
        journal.close()
        assert invariants(world(state)) == []  # type: ignore[arg-type]
        code, _ = run(state, "plan", "--detailed-exitcode", DEMO)
        assert code == 0

    def test_history_shows_a_run_whose_process_is_gone_as_interrupted(self, state: Path) -> None:
        assert run(state, "sim", "fault", "crash-after", "2")[0] == 0
        assert run_process(state, "apply", "--auto-approve", DEMO).returncode == 137
        code, out = run(state, "history", "--json")
        assert code == 0
        (crashed,) = json.loads(out)
        assert crashed["outcome"] == "interrupted"
        code, out = run(state, "history")
        assert "interrupted" in out and "running" not in out
        code, out = run(state, "show-run", crashed["id"])
        assert ": interrupted (" in out

    def test_no_environment_variable_changes_how_the_executor_runs(self, state: Path) -> None:
        """The old test hook is gone: setting it does not end an apply."""
        proc = run_process(
            state, "apply", "--auto-approve", DEMO, env={"RECONCILER_FAULT_KILL_AFTER": "1"}
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        executor = (ROOT / "reconciler" / "runtime" / "executor.py").read_text()
        assert "environ" not in executor and "_exit" not in executor


class TestSavedPlan:
    """apply --plan applies exactly a saved plan, and refuses one the estate has moved past."""

    def test_saved_plan_applies(self, state: Path, tmp_path: Path) -> None:
        plan_file = tmp_path / "plan.json"
        code, _ = run(state, "plan", "--out", str(plan_file), DEMO)
        assert code == 0
        code, out = run(state, "apply", "--auto-approve", "--plan", str(plan_file))
        assert code == 0, out
        code, _ = run(state, "plan", "--detailed-exitcode", DEMO)
        assert code == 0

    def test_stale_plan_is_refused_naming_what_changed(self, state: Path, tmp_path: Path) -> None:
        plan_file = tmp_path / "plan.json"
        run(state, "plan", "--out", str(plan_file), DEMO)
        code, out = run(
            state,
            "sim",
            "fault",
            "drift",
            "--kind",
            "placement",
            "--target",
            "WEB03",
            "--seed",
            "1",
        )
        assert code == 0, out
        code, out = run(state, "apply", "--auto-approve", "--plan", str(plan_file))
        assert code == 1
        assert "stale" in out and "VirtualMachine/WEB03" in out


class TestLocking:
    """One apply per cluster at a time; a second fails fast naming the holder."""

    def _hold(self, state: Path) -> str:
        journal = Journal(state, ManualClock().now)
        # Held by a live process that is not us: our parent.
        journal.conn.execute(
            "INSERT INTO locks (cluster, lock_id, run_id, owner, pid, host, acquired_at, "
            "expires_at) VALUES ('prod', 'lock123', 'r-other', 'alice', ?, ?, 0, 9e18)",
            (os.getppid(), os.uname().nodename),
        )
        journal.close()
        return "lock123"

    def test_concurrent_apply_is_refused(self, state: Path) -> None:
        self._hold(state)
        code, out = run(state, "apply", "--auto-approve", DEMO)
        assert code == 1
        assert "locked by alice" in out and "force-unlock lock123" in out
        code, _ = run(state, "plan", "--detailed-exitcode", DEMO)
        assert code == 2, "nothing was applied"

    def test_force_unlock_refuses_a_live_holder_without_force(self, state: Path) -> None:
        lock = self._hold(state)
        code, out = run(state, "force-unlock", lock)
        assert code == 1
        assert "is live" in out and f"process {os.getppid()} on this host" in out
        assert f"force-unlock {lock} --force" in out
        assert len(self._locks(state)) == 1, "the live lock stays"
        code, out = run(state, "force-unlock", lock, "--force")
        assert code == 0 and "alice" in out
        code, out = run(state, "apply", "--auto-approve", DEMO)
        assert code == 0, out

    def _locks(self, state: Path) -> list[object]:
        journal = Journal(state, ManualClock().now)
        try:
            return list(journal.locks())
        finally:
            journal.close()

    def _insert(self, state: Path, pid: int, host: str, expires_at: float) -> None:
        journal = Journal(state, ManualClock().now)
        journal.conn.execute(
            "INSERT INTO locks (cluster, lock_id, run_id, owner, pid, host, acquired_at, "
            "expires_at) VALUES ('prod', 'lock456', 'r-other', 'bob', ?, ?, 0, ?)",
            (pid, host, expires_at),
        )
        journal.close()

    def test_a_lock_whose_process_is_gone_is_removed_without_force(self, state: Path) -> None:
        gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
        self._insert(state, int(gone.stdout), os.uname().nodename, 9e18)
        code, out = run(state, "force-unlock", "lock456")
        assert code == 0, out
        assert self._locks(state) == []

    def test_another_hosts_lock_with_a_running_lease_is_refused(self, state: Path) -> None:
        self._insert(state, 1, "elsewhere.example", 9e18)
        code, out = run(state, "force-unlock", "lock456")
        assert code == 1 and "held from another host (elsewhere.example)" in out
        assert len(self._locks(state)) == 1

    def test_an_expired_lease_is_removed_without_force(self, state: Path) -> None:
        self._insert(state, 1, "elsewhere.example", 1.0)
        code, out = run(state, "force-unlock", "lock456")
        assert code == 0, out

    def test_lock_timeout_waits_on_the_injected_clock(self, state: Path) -> None:
        self._hold(state)
        clock = ManualClock()
        ctx = Context(state, "sim", "console")
        assert run_apply(ctx, [DEMO], None, True, "stop", 30.0, None, clock=clock) == 1
        assert sum(clock.slept) >= 30.0


class TestFailures:
    """Transient errors are retried with backoff; dependents of a failure are skipped."""

    def test_transient_migration_failures_are_retried(self, state: Path) -> None:
        run(state, "sim", "fault", "fail-migrations", "2")
        clock = ManualClock()
        ctx = Context(state, "sim", "console")
        code = run_apply(ctx, [DEMO], None, True, "stop", 0.0, None, clock=clock)
        assert code == 0
        assert clock.slept[:2] == [1.0, 2.0], "exponential backoff"
        journal = Journal(state, clock.now)
        (run_record,) = journal.runs()
        attempts = {a.action_id: a.attempts for a in journal.actions(run_record.id)}
        journal.close()
        assert attempts["test_live_migration:hv05/TEST01"] == 3

    def test_failure_skips_dependents_and_reports_root_cause(self, state: Path) -> None:
        run(state, "sim", "fault", "fail-migrations", "100")
        clock = ManualClock()
        ctx = Context(state, "sim", "console")
        code = run_apply(ctx, [DEMO], None, True, "continue", 0.0, None, clock=clock)
        assert code == 1
        journal = Journal(state, clock.now)
        (run_record,) = journal.runs()
        statuses = {a.action_id: (a.status, a.error) for a in journal.actions(run_record.id)}
        journal.close()
        assert run_record.outcome == "partial"
        assert statuses["test_live_migration:hv05/TEST01"][0] == "failed"
        status, error = statuses["validate_cluster:prod"]
        assert status == "skipped" and "test_live_migration:hv05/TEST01" in error
        # Independent branches went on with --on-failure continue.
        assert statuses["extend_volume:CSV02"][0] == "done"

    def test_stop_on_failure_skips_everything_after(self, state: Path) -> None:
        run(state, "sim", "fault", "fail-migrations", "100")
        clock = ManualClock()
        ctx = Context(state, "sim", "console")
        assert run_apply(ctx, [DEMO], None, True, "stop", 0.0, None, clock=clock) == 1
        journal = Journal(state, clock.now)
        (run_record,) = journal.runs()
        statuses = {a.action_id: a.status for a in journal.actions(run_record.id)}
        journal.close()
        assert statuses["extend_volume:CSV02"] == "skipped"


class TestHistory:
    """history lists runs newest first; show-run lists every action with its outcome."""

    def test_history_and_show_run(self, state: Path) -> None:
        run(state, "apply", "--auto-approve", DEMO)
        code, out = run(state, "history", "--json")
        assert code == 0
        runs = json.loads(out)
        assert runs[0]["outcome"] == "succeeded"
        code, out = run(state, "show-run", runs[0]["id"], "--json")
        assert code == 0
        detail = json.loads(out)
        assert [a["action_id"] for a in detail["actions"]] == demo_plan_ids()
        assert all(a["status"] == "done" for a in detail["actions"])
        code, out = run(state, "show-run", "r-nope")
        assert code == 1
