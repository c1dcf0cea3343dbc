"""The scheduled loop on the simulator: drift reported and corrected, windows, metrics, git."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from reconciler.cli.main import cli, main
from reconciler.cli.reconcile_commands import parse_duration
from reconciler.engine.plan import Plan, PlanViolation
from reconciler.engine.planner import make_plan
from reconciler.manifest.load import load_paths, require
from reconciler.model.actions import Action
from reconciler.model.records import Estate
from reconciler.providers.base import Provider
from reconciler.providers.sim.drift import make_drift
from reconciler.providers.sim.provider import SimProvider
from reconciler.runtime import reconcile as reconcile_module
from reconciler.runtime.clock import ManualClock
from reconciler.runtime.executor import ActionResult, Executor, RunReport
from reconciler.runtime.journal import Journal
from reconciler.runtime.metrics import LoopMetrics, MetricsServer
from reconciler.runtime.reconcile import (
    FolderSource,
    GitSource,
    ManifestSource,
    Reconciler,
)
from reconciler.runtime.ticks import Mode, TickReport

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "manifests" / "demo"
WORLD = ROOT / "manifests" / "worlds" / "demo.yaml"
FRIDAY_0800 = 1_800_000_000.0  # ManualClock's start: Fri 2027-01-15 08:00 UTC
HOUR = 3600.0


# --- fixtures and helpers --------------------------------------------------------------------


def cli_run(state: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--state-dir", str(state), *args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="session")
def converged_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo world after one apply: the manifests and the world agree."""
    state = tmp_path_factory.mktemp("converged")
    assert cli_run(state, "sim", "init", str(WORLD))[0] == 0
    code, out = cli_run(state, "apply", "--auto-approve", str(DEMO))
    assert code == 0, out
    return state / "world.db"


@pytest.fixture
def state(tmp_path: Path, converged_world: Path) -> Path:
    """A state directory holding a copy of the converged world and no journal yet."""
    state = tmp_path / "state"
    state.mkdir()
    shutil.copy(converged_world, state / "world.db")
    return state


def observe(state: Path) -> Estate:
    provider = SimProvider(state)
    try:
        return provider.observe()
    finally:
        provider.close()


def drift(state: Path, kind: str, target: str) -> str:
    """A change behind the tool's back, made with the simulator's own drift maker."""
    provider = SimProvider(state)
    try:
        before = provider.observe()
        after, message = make_drift(before, seed=7, kind=kind, target=target)
        provider.change_behind_back(before, after, message)
        return message
    finally:
        provider.close()


def _edit_spec(text: str, name: str, line: str) -> str:
    """Add ``line`` at the top of the spec of the document named ``name``."""
    pattern = re.compile(rf"(\n  name: {name}\n(?:.*\n)*?spec:\n)")
    edited, count = pattern.subn(rf"\g<1>  {line}\n", text, count=1)
    assert count == 1, name
    return edited


def demo_copy(
    tmp_path: Path,
    windows: Sequence[str] = (),
    pins: dict[str, str] | None = None,
    maintenance: tuple[str, ...] = (),
) -> Path:
    """The demo manifests in tmp, with maintenance windows, VM pins and nodes in maintenance."""
    out = tmp_path / "manifests"
    shutil.copytree(DEMO, out)
    cluster = out / "cluster.yaml"
    if windows:
        cluster.write_text(
            cluster.read_text()
            + "  maintenance_windows:\n"
            + "".join(f"    - {w}\n" for w in windows)
        )
    vms = out / "vms.yaml"
    for vm, node in (pins or {}).items():
        vms.write_text(_edit_spec(vms.read_text(), vm, f"node: {node}"))
    nodes = out / "nodes.yaml"
    for node in maintenance:
        nodes.write_text(_edit_spec(nodes.read_text(), node, "maintenance: true"))
    return out


# Fridays 10:00-10:05 UTC: short on purpose, so a ten-minute action outlasts it.
FRIDAY_WINDOW = "{days: [fri], start: '10:00', duration_minutes: 5}"


class ActionsTake:
    """Executor progress: every action takes ``seconds`` on the loop's clock."""

    def __init__(self, clock: ManualClock, seconds: float) -> None:
        self.clock = clock
        self.seconds = seconds
        self.finished: list[str] = []

    def run_started(self, plan: Plan, run_id: str) -> None:
        pass

    def action_started(self, seq: int, action: Action) -> None:
        self.clock.advance(self.seconds)

    def action_finished(self, seq: int, action: Action, result: ActionResult) -> None:
        self.finished.append(f"{action.id}:{result.status}")

    def run_finished(self, report: RunReport) -> None:
        pass


@pytest.fixture
def journal(state: Path, clock: ManualClock) -> Iterator[Journal]:
    j = Journal(state, clock.now)
    yield j
    j.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(FRIDAY_0800)


def make_loop(
    state: Path,
    journal: Journal,
    clock: ManualClock,
    mode: Mode,
    manifests: Path | ManifestSource = DEMO,
    interval_seconds: float = 900.0,
    **options: object,
) -> Reconciler:
    source = manifests if not isinstance(manifests, Path) else FolderSource((str(manifests),), None)

    def provider() -> Provider:
        return SimProvider(state)

    return Reconciler(
        source,
        provider,
        journal,
        clock,
        mode,
        interval_seconds,
        **options,  # type: ignore[arg-type]
    )


# --- monitor ---------------------------------------------------------------------------------


class TestMonitor:
    """Monitor mode records and reports drift and changes nothing."""

    def test_no_drift_exits_0(self, state: Path) -> None:
        code, out = cli_run(state, "reconcile", "--once", str(DEMO))
        assert code == 0, out
        assert "outcome: converged" in out

    def test_injected_drift_is_reported_with_exit_2_and_nothing_changes(self, state: Path) -> None:
        for kind, target in (("placement", "SQL02"), ("vlan", "hv01")):
            code, out = cli_run(state, "sim", "fault", "drift", "--kind", kind, "--target", target)
            assert code == 0, out
        before = observe(state)
        code, out = cli_run(state, "reconcile", "--once", "--mode", "monitor", str(DEMO))
        assert code == 2, out
        assert "drift: VirtualMachine/SQL02 (new): spec.node: " in out
        assert "drift: VirtualSwitch/vSwitch-VM (new): nodes.hv01.vlan_trunk.allowed" in out
        assert observe(state) == before
        j = Journal(state, ManualClock().now)
        rows = {r.object: r for r in j.drift_history()}
        run = j.runs()[0]
        j.close()
        assert sorted(rows) == ["VirtualMachine/SQL02", "VirtualSwitch/vSwitch-VM"]
        assert not any(r.corrected for r in rows.values())
        assert rows["VirtualMachine/SQL02"].fields[0]["path"] == "spec.node"
        assert rows["VirtualMachine/SQL02"].fields[0]["desired"] == "hv02"
        assert rows["VirtualMachine/SQL02"].tick_run == run.id
        assert (run.kind, run.outcome) == ("reconcile-monitor", "drift")

    def test_drift_keeps_one_row_while_it_lasts(
        self, state: Path, journal: Journal, clock: ManualClock
    ) -> None:
        drift(state, "placement", "SQL02")
        loop = make_loop(state, journal, clock, "monitor")
        first = loop.run(max_ticks=3)
        assert first is not None and first.outcome == "drift"
        rows = journal.drift_history()
        assert len(rows) == 1
        assert rows[0].detected_at == FRIDAY_0800
        assert rows[0].last_seen_at == FRIDAY_0800 + 2 * 900
        assert len(journal.runs()) == 3

    def test_drift_fixed_by_hand_is_marked_resolved(
        self, state: Path, journal: Journal, clock: ManualClock
    ) -> None:
        drift(state, "placement", "SQL02")
        loop = make_loop(state, journal, clock, "monitor")
        assert loop.tick().exit_code == 2
        code, out = cli_run(state, "apply", "--auto-approve", str(DEMO))
        assert code == 0, out
        clock.advance(900)
        second = loop.tick()
        assert (second.outcome, second.exit_code) == ("converged", 0)
        assert second.resolved == ("VirtualMachine/SQL02",)
        (row,) = journal.drift_history()
        assert row.corrected and row.correction_run is None
        assert row.corrected_at == FRIDAY_0800 + 900
        assert "changed outside this loop" in row.note

    def test_a_held_lock_skips_the_tick(
        self, state: Path, journal: Journal, clock: ManualClock
    ) -> None:
        drift(state, "placement", "SQL02")
        # Another live process (pid 1 on this host) holds the cluster's lock.
        journal.conn.execute(
            "INSERT INTO locks VALUES ('prod', 'L1', 'r-other', 'someone', 1, ?, ?, ?)",
            (socket.gethostname(), clock.now(), clock.now() + 900),
        )
        for mode in ("monitor", "autocorrect"):
            report = make_loop(state, journal, clock, mode).tick()
            assert (report.outcome, report.exit_code) == ("locked", 1), mode
            assert "cluster prod is locked by someone (pid 1" in report.message
        assert journal.drift_history() == []
        assert observe(state).vms["SQL02"].node != "hv02"


# --- autocorrect -----------------------------------------------------------------------------


class TestAutocorrect:
    """Autocorrect applies what is safe at once and records each correction."""

    def test_a_vlan_removed_from_a_trunk_is_corrected_at_once(self, state: Path) -> None:
        message = drift(state, "vlan", "hv01")
        assert "removed from vSwitch-VM's trunk" in message
        code, out = cli_run(state, "reconcile", "--once", "--mode", "autocorrect", str(DEMO))
        assert code == 0, out
        assert "set_vlan_trunk:hv01/vSwitch-VM: done" in out
        assert "outcome: corrected" in out
        code, out = cli_run(state, "plan", "--detailed-exitcode", str(DEMO))
        assert code == 0, out
        code, out = cli_run(state, "drift", "--json")
        (row,) = json.loads(out)
        code, out = cli_run(state, "history", "--json")
        run = json.loads(out)[0]
        assert (row["object"], row["status"]) == ("VirtualSwitch/vSwitch-VM", "corrected")
        assert row["correction_run"] == run["id"] == row["tick_run"]
        assert (run["kind"], run["outcome"]) == ("reconcile-autocorrect", "corrected")

    def test_drift_command_lists_the_audit_trail(self, state: Path) -> None:
        drift(state, "vlan", "hv01")
        drift(state, "placement", "SQL02")
        cli_run(state, "reconcile", "--once", "--mode", "autocorrect", str(DEMO))
        code, out = cli_run(state, "drift")
        assert code == 0
        assert re.search(r"VirtualSwitch/vSwitch-VM .*corrected", out)
        assert re.search(r"VirtualMachine/SQL02 .*spec.node: hv0\d -> hv02 .*open", out)
        code, out = cli_run(state, "drift", "--open", "--json")
        assert [r["object"] for r in json.loads(out)] == ["VirtualMachine/SQL02"]

    def test_a_blocked_plan_is_never_applied(
        self, state: Path, journal: Journal, clock: ManualClock
    ) -> None:
        drift(state, "vlan", "hv01")
        drift(state, "memory", "WEB01")  # set_vm needs downtime WEB01 does not allow
        before = observe(state)
        report = make_loop(state, journal, clock, "autocorrect").tick()
        assert (report.outcome, report.exit_code) == ("blocked", 3)
        assert "downtime_not_allowed" in report.message
        assert observe(state) == before
        run = journal.runs()[0]
        assert run.outcome == "blocked"
        assert journal.actions(run.id) == []
        assert not any(r.corrected for r in journal.drift_history())

    def test_a_failed_action_exits_1(
        self, tmp_path: Path, state: Path, journal: Journal, clock: ManualClock
    ) -> None:
        drift(state, "placement", "SQL02")
        provider = SimProvider(state)
        provider.fail_migrations(10)
        provider.close()
        windows = demo_copy(tmp_path, [FRIDAY_WINDOW.replace("10:00", "08:00")])
        report = make_loop(state, journal, clock, "autocorrect", windows).tick()
        assert (report.outcome, report.exit_code, report.failed) == ("failed", 1, 1)
        assert "migrate_vm:SQL02 failed" in report.message
        assert clock.slept, "retries back off on the loop's clock"


# --- maintenance windows ---------------------------------------------------------------------


class TestWindows:
    """Disruptive actions wait for the cluster's window; a closing window stops the plan."""

    def test_the_edited_demo_manifests_load(self, tmp_path: Path) -> None:
        manifests = demo_copy(
            tmp_path, [FRIDAY_WINDOW], pins={"WEB01": "hv01"}, maintenance=("hv01",)
        )
        desired = require(load_paths([str(manifests)]))
        window = desired.clusters["prod"].maintenance_windows[0]
        assert (window.days, window.start, window.duration_minutes) == (("fri",), "10:00", 5)
        assert desired.vms["WEB01"].node == "hv01" and desired.nodes["hv01"].maintenance

    def test_no_window_means_disruption_never_runs_automatically(
        self, state: Path, journal: Journal, clock: ManualClock
    ) -> None:
        drift(state, "placement", "SQL02")
        report = make_loop(state, journal, clock, "autocorrect").tick()
        assert (report.outcome, report.exit_code) == ("drift", 2)
        ((action, why),) = report.deferred
        assert action == "migrate_vm:SQL02"
        assert "declares no maintenance window" in why

    def test_outside_a_window_the_disruptive_part_waits_for_the_next_one(
        self, tmp_path: Path, state: Path, journal: Journal, clock: ManualClock
    ) -> None:
        manifests = demo_copy(tmp_path, [FRIDAY_WINDOW])
        drift(state, "vlan", "hv01")
        drift(state, "placement", "SQL02")
        reports: list[TickReport] = []
        loop = make_loop(
            state, journal, clock, "autocorrect", manifests, HOUR, on_tick=[reports.append]
        )
        loop.run(max_ticks=3)  # 08:00, 09:00 and 10:00, when the window opens
        first, second, third = reports
        assert [r.started_at for r in reports] == [FRIDAY_0800 + i * HOUR for i in range(3)]
        assert (first.outcome, first.exit_code) == ("partial", 2)
        assert first.corrected == ("VirtualSwitch/vSwitch-VM",)
        assert first.deferred == (
            (
                "migrate_vm:SQL02",
                "waits for the maintenance window of cluster prod (opens Fri 2027-01-15 10:00 UTC)",
            ),
        )
        assert (second.outcome, second.applied) == ("drift", 0)
        assert (third.outcome, third.exit_code, third.applied) == ("corrected", 0, 1)
        assert observe(state).vms["SQL02"].node == "hv02"
        rows = {r.object: r for r in journal.drift_history()}
        assert rows["VirtualMachine/SQL02"].correction_run == third.run_id
        assert rows["VirtualSwitch/vSwitch-VM"].correction_run == first.run_id

    def test_dependents_of_a_waiting_action_wait_too(
        self, tmp_path: Path, state: Path, journal: Journal, clock: ManualClock
    ) -> None:
        manifests = demo_copy(tmp_path, [FRIDAY_WINDOW], maintenance=("hv01",))
        report = make_loop(state, journal, clock, "autocorrect", manifests).tick()
        deferred = dict(report.deferred)
        assert deferred["drain_node:hv01"].startswith("depends on migrate_vm:")
        assert sum(a.startswith("migrate_vm:") for a in deferred) == 4
        assert report.applied == 0
        assert not observe(state).nodes["hv01"].maintenance

    def test_if_the_rest_is_not_safe_alone_everything_after_the_first_wait_waits(
        self, state: Path, journal: Journal, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        drift(state, "vlan", "hv04")
        drift(state, "placement", "SQL02")
        drift(state, "disk", "FS01")
        loop = make_loop(state, journal, clock, "autocorrect")
        plan_ids = [
            a.id for a in make_plan(require(load_paths([str(DEMO)])), observe(state)).actions
        ]
        assert plan_ids == ["set_vlan_trunk:hv04/vSwitch-VM", "migrate_vm:SQL02", "add_disk:FS01"]
        rule = PlanViolation("memory", "Node/hv02", "over", "free memory")  # as if it broke one
        monkeypatch.setattr(reconcile_module, "replay", lambda *_: (None, [rule]))
        report = loop.tick()
        assert report.applied == 1  # the prefix before the first waiting action
        assert [a for a, _ in report.deferred] == ["migrate_vm:SQL02", "add_disk:FS01"]
        assert "not proven safe" in dict(report.deferred)["add_disk:FS01"]

    def test_a_window_closing_mid_plan_stops_before_the_next_disruptive_action(
        self, tmp_path: Path, state: Path, journal: Journal, clock: ManualClock
    ) -> None:
        web01_node = observe(state).vms["WEB01"].node
        assert web01_node is not None
        manifests = demo_copy(tmp_path, [FRIDAY_WINDOW], pins={"WEB01": web01_node})
        drift(state, "placement", "SQL02")
        drift(state, "placement", "WEB01")
        clock.t = FRIDAY_0800 + 2 * HOUR  # 10:00, the window has just opened
        progress = ActionsTake(clock, 600)  # each action takes ten minutes
        loop = make_loop(state, journal, clock, "autocorrect", manifests, progress=progress)
        first = loop.tick()
        assert (first.outcome, first.exit_code, first.applied) == ("partial", 2, 1)
        ((stopped, why),) = first.stopped
        assert why.startswith("the maintenance window of cluster prod closed")
        assert "opens Fri 2027-01-22 10:00 UTC" in why
        statuses = [(a.action_id, a.status) for a in journal.actions(first.run_id or "")]
        assert statuses[1] == (stopped, "skipped")
        assert progress.finished[0].endswith(":done")
        clock.t = FRIDAY_0800 + 7 * 24 * HOUR + 2 * HOUR  # the next Friday, 10:00
        second = loop.tick()
        assert (second.outcome, second.applied) == ("corrected", 1)
        world = observe(state)
        assert (world.vms["SQL02"].node, world.vms["WEB01"].node) == ("hv02", web01_node)


class TestExecutorDefer:
    """The executor leaves a deferred action and its dependents, and runs the rest."""

    def test_dependents_wait_and_independent_actions_run(
        self, tmp_path: Path, state: Path, journal: Journal, clock: ManualClock
    ) -> None:
        drift(state, "vlan", "hv04")
        desired = require(load_paths([str(demo_copy(tmp_path, maintenance=("hv01",)))]))
        plan = make_plan(desired, observe(state))
        first = next(a.id for a in plan.actions if a.type == "migrate_vm")
        provider = SimProvider(state)
        try:
            executor = Executor(
                provider,
                journal,
                clock,
                ActionsTake(clock, 0),
                defer=lambda a: "later" if a.id == first else None,
            )
            report = executor.run(plan, journal.start_run(plan.digest(), "test", 0))
        finally:
            provider.close()
        statuses = {aid: (r.status, r.message) for aid, r in report.results.items()}
        assert statuses[first] == ("skipped", "deferred: later")
        assert statuses["drain_node:hv01"][1].startswith("deferred: depends on migrate_vm:")
        assert statuses["set_vlan_trunk:hv04/vSwitch-VM"][0] == "done"
        assert report.root_causes == []


# --- scheduling and stopping -----------------------------------------------------------------


class TestSchedule:
    """Ticks run at multiples of the interval on the injected clock; overruns skip the next."""

    def test_ticks_at_each_interval(
        self, state: Path, journal: Journal, clock: ManualClock
    ) -> None:
        reports: list[TickReport] = []
        loop = make_loop(state, journal, clock, "monitor", on_tick=[reports.append])
        last = loop.run(max_ticks=3)
        assert last is reports[-1]
        assert [r.started_at for r in reports] == [FRIDAY_0800 + i * 900 for i in range(3)]
        assert sum(clock.slept) == 1800
        assert loop.skipped_ticks == 0

    def test_an_overrunning_tick_makes_the_next_ones_skip(
        self, tmp_path: Path, state: Path, journal: Journal, clock: ManualClock
    ) -> None:
        manifests = demo_copy(tmp_path, [FRIDAY_WINDOW.replace("10:00", "08:00")])
        drift(state, "placement", "SQL02")
        reports: list[TickReport] = []
        metrics = LoopMetrics()
        loop = make_loop(
            state,
            journal,
            clock,
            "autocorrect",
            manifests,
            60.0,
            progress=ActionsTake(clock, 150),  # the migration outlasts two intervals
            on_tick=[reports.append],
            metrics=metrics,
        )
        loop.run(max_ticks=2)
        first, second = reports
        assert first.duration_seconds == 150
        assert second.started_at == FRIDAY_0800 + 180  # not at +60 or +120
        assert second.skipped_before == 2
        assert loop.skipped_ticks == 2
        assert sum(clock.slept) == 30  # waited for the next multiple only
        assert metrics.registry.get_sample_value("reconciler_ticks_skipped_total") == 2

    def test_a_stop_request_finishes_the_current_action_and_ends_cleanly(
        self, tmp_path: Path, state: Path, journal: Journal, clock: ManualClock
    ) -> None:
        manifests = demo_copy(tmp_path, [FRIDAY_WINDOW.replace("10:00", "08:00")])
        drift(state, "vlan", "hv01")
        drift(state, "placement", "SQL02")
        stop = threading.Event()

        class StopAfterFirst(ActionsTake):
            def action_finished(self, seq: int, action: Action, result: ActionResult) -> None:
                super().action_finished(seq, action, result)
                stop.set()  # as the SIGTERM handler does

        progress = StopAfterFirst(clock, 1)
        loop = make_loop(state, journal, clock, "autocorrect", manifests, progress=progress)
        last = loop.run(stop)
        assert loop.ticks == 1 and last is not None
        assert progress.finished == [
            "set_vlan_trunk:hv01/vSwitch-VM:done",
            "migrate_vm:SQL02:skipped",
        ]
        assert last.stopped == (
            ("migrate_vm:SQL02", "stop requested: the rest waits for the next run"),
        )
        assert journal.runs()[0].outcome == "partial"
        assert journal.locks() == []

    def test_sigterm_stops_the_process_cleanly(self, state: Path) -> None:
        args = ["--state-dir", str(state), "reconcile", "--every", "1h", str(DEMO)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "reconciler", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if "outcome:" in line:
                    break
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=20)
        finally:
            proc.kill()
        assert proc.returncode == 0, err
        assert "SIGTERM: finishing the current action, then stopping" in out
        assert "stopped after 1 tick(s), 0 skipped" in out

    @pytest.mark.parametrize(
        ("text", "seconds"), [("30s", 30), ("15m", 900), ("1h", 3600), ("1h30m", 5400), ("90", 90)]
    )
    def test_durations(self, text: str, seconds: float) -> None:
        assert parse_duration(text) == seconds

    @pytest.mark.parametrize("text", ["", "0s", "15x", "m", "-5m"])
    def test_bad_durations_are_refused(
        self, text: str, state: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with pytest.raises(ValueError, match=r"duration|longer than zero"):
            parse_duration(text)
        with pytest.raises(SystemExit) as exited:
            main(["--state-dir", str(state), "reconcile", "--once", "--every", text, str(DEMO)])
        assert exited.value.code == 1
        assert "Invalid value for '--every'" in capsys.readouterr().err


# --- metrics ---------------------------------------------------------------------------------


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


class TestMetrics:
    """The Prometheus endpoint serves the values the ticks produced."""

    def test_endpoint_serves_what_the_tick_did(
        self, state: Path, journal: Journal, clock: ManualClock
    ) -> None:
        drift(state, "vlan", "hv01")
        drift(state, "placement", "SQL02")
        metrics = LoopMetrics()
        server = MetricsServer(metrics, 0, "127.0.0.1")
        try:
            assert server.url == f"http://127.0.0.1:{server.port}/metrics"
            loop = make_loop(
                state,
                journal,
                clock,
                "autocorrect",
                progress=ActionsTake(clock, 12),
                metrics=metrics,
            )
            report = loop.tick()
            values = scrape(server.url)
        finally:
            server.close()
        assert report.outcome == "partial"
        assert values["reconciler_last_tick_timestamp_seconds"] == FRIDAY_0800 + 12
        assert values["reconciler_last_tick_duration_seconds"] == 12
        assert values["reconciler_last_tick_outcome{outcome=partial}"] == 1
        assert values["reconciler_last_tick_outcome{outcome=corrected}"] == 0
        assert values["reconciler_drifted_objects"] == 2
        assert values["reconciler_drift_remaining_objects"] == 1
        assert values["reconciler_actions_deferred"] == 1
        assert values["reconciler_actions_applied_total"] == 1
        assert values["reconciler_actions_failed_total"] == 0
        assert values["reconciler_ticks_total{outcome=partial}"] == 1
        assert values["reconciler_tick_duration_seconds_count"] == 1
        with pytest.raises(OSError, match="refused"):
            urllib.request.urlopen(server.url, timeout=2)

    def test_cli_serves_on_localhost_by_default(self, state: Path) -> None:
        code, out = cli_run(state, "reconcile", "--once", "--metrics-port", "0", str(DEMO))
        assert code == 0, out
        assert re.search(r"metrics: http://127\.0\.0\.1:\d+/metrics", out)


# --- git -------------------------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, env=env
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with the demo manifests committed on main."""
    repo = tmp_path / "repo"
    shutil.copytree(DEMO, repo / "manifests" / "demo")
    git(repo.parent, "init", "-q", "-b", "main", str(repo))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "demo estate")
    return repo


class TestGitSource:
    """In git mode each tick reads the manifests as committed at the ref, never the work tree."""

    def test_reads_the_commit_not_the_working_tree(self, state: Path, repo: Path) -> None:
        head = git(repo, "rev-parse", "HEAD")
        vms = repo / "manifests" / "demo" / "vms.yaml"
        vms.write_text(vms.read_text().replace("node: hv02", "node: hv03"))  # not committed
        (repo / "manifests" / "demo" / "volumes.yaml").unlink()
        code, out = cli_run(
            state, "reconcile", "--once", "--git", str(repo), "--ref", "main", "manifests/demo"
        )
        assert code == 0, out
        assert f"commit {head[:12]}" in out
        j = Journal(state, ManualClock().now)
        run = j.runs()[0]
        j.close()
        assert run.commit_id == head
        assert run.source == f"git:{repo}@main:manifests/demo"

    def test_each_tick_follows_the_ref(
        self, state: Path, repo: Path, journal: Journal, clock: ManualClock
    ) -> None:
        loop = make_loop(
            state, journal, clock, "monitor", GitSource(str(repo), "main", ("manifests/demo",))
        )
        first = loop.tick()
        vms = repo / "manifests" / "demo" / "vms.yaml"
        vms.write_text(vms.read_text().replace("node: hv02", "node: hv03"))
        git(repo, "commit", "-q", "-am", "pin SQL02 to hv03")
        second = loop.tick()
        assert (first.outcome, second.outcome) == ("converged", "drift")
        assert second.commit_id == git(repo, "rev-parse", "HEAD") != first.commit_id
        assert [d.ref for d in second.drifted] == ["VirtualMachine/SQL02"]
        assert [r.commit_id for r in journal.runs()] == [second.commit_id, first.commit_id]

    def test_an_unknown_ref_is_an_error_tick(
        self, state: Path, repo: Path, journal: Journal, clock: ManualClock
    ) -> None:
        loop = make_loop(state, journal, clock, "monitor", GitSource(str(repo), "nope"))
        report = loop.tick()
        assert (report.outcome, report.exit_code) == ("error", 1)
        assert journal.runs()[0].outcome == "error"
