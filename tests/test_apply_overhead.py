"""What an apply costs besides the actions: one journal commit per action, verify reads only
what the action touched (bench/apply.py measures the time; these pin the mechanisms)."""

from __future__ import annotations

from pathlib import Path

from reconciler.engine.planner import make_plan
from reconciler.manifest.load import load_paths, require
from reconciler.model.actions import Action
from reconciler.providers.base import Scope
from reconciler.providers.sim.provider import SimProvider
from reconciler.runtime.clock import ManualClock
from reconciler.runtime.executor import Executor
from reconciler.runtime.journal import Journal

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "manifests" / "demo")
WORLD = ROOT / "manifests" / "worlds" / "demo.yaml"


class _Quiet:
    def run_started(self, plan: object, run_id: str) -> None: ...
    def action_started(self, seq: int, action: Action) -> None: ...
    def action_finished(self, seq: int, action: Action, result: object) -> None: ...
    def run_finished(self, report: object) -> None: ...


def _commits(journal: Journal) -> list[str]:
    seen: list[str] = []
    journal.conn.set_trace_callback(
        lambda sql: seen.append(sql) if sql.strip().upper() == "COMMIT" else None
    )
    return seen


class TestOneCommitPerAction:
    def test_each_action_is_one_journal_commit_and_every_outcome_is_recorded(
        self, tmp_path: Path
    ) -> None:
        provider = SimProvider(tmp_path)
        provider.init_world(require(load_paths([str(WORLD)], world=True)), "test")
        plan = make_plan(require(load_paths([DEMO])), provider.observe())
        assert len(plan.actions) >= 5  # the demo's drift: moves, a VLAN, a disk
        journal = Journal(tmp_path, ManualClock().now)
        run_id = journal.start_run(plan.digest(), "test", len(plan.actions))
        renewed: list[int] = []
        commits = _commits(journal)
        executor = Executor(
            provider, journal, ManualClock(), _Quiet(), after_action=lambda: renewed.append(1)
        )
        report = executor.run(plan, run_id)
        journal.conn.set_trace_callback(None)
        assert report.outcome == "succeeded"
        # Before: a start, an outcome and a lease renewal each committed (3 fsyncs an action).
        # Now: each start carries the previous outcome and renewal; one more for the last.
        assert len(commits) == len(plan.actions) + 1
        assert len(renewed) == len(plan.actions)
        statuses = [a.status for a in journal.actions(run_id)]
        assert statuses == ["done"] * len(plan.actions)
        journal.close()
        provider.close()

    def test_a_batch_that_fails_writes_nothing(self, tmp_path: Path) -> None:
        journal = Journal(tmp_path, ManualClock().now)
        run_id = journal.start_run("sha256:x", "test", 2)
        payload = {"id": "a", "type": "stop_vm", "target": "VirtualMachine/x", "cluster": "c"}
        try:
            with journal.batch():
                journal.action_started(run_id, 1, payload)
                raise RuntimeError("the process fails before the batch ends")
        except RuntimeError:
            pass
        assert journal.actions(run_id) == []
        with journal.batch():
            journal.action_started(run_id, 1, payload)
            journal.action_finished(run_id, 1, "done", 1.0, 1)
        assert [a.status for a in journal.actions(run_id)] == ["done"]
        journal.close()


class TestScopedObserve:
    def test_reads_only_the_named_rows(self, tmp_path: Path) -> None:
        provider = SimProvider(tmp_path)
        provider.init_world(require(load_paths([str(WORLD)], world=True)), "test")
        provider.store.open()
        assert provider.store.conn is not None
        rows: list[str] = []
        provider.store.conn.set_trace_callback(rows.append)
        part = provider.observe(
            Scope("prod", frozenset({"VirtualMachine/WEB03", "Node/hv02", "VirtualMachine/NOPE"}))
        )
        provider.store.conn.set_trace_callback(None)
        assert set(part.vms) == {"WEB03"} and set(part.nodes) == {"hv02"}
        assert not part.clusters and not part.volumes and not part.switches
        selects = [sql for sql in rows if sql.lstrip().upper().startswith("SELECT")]
        assert selects and all("name =" in sql for sql in selects), selects
        # Another cluster's object is not read through this cluster's scope.
        assert provider.observe(Scope("elsewhere", frozenset({"VirtualMachine/WEB03"}))).vms == {}
        provider.close()
