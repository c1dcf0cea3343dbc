"""Scale-out on the real PostgreSQL: the shared store, workers, leases, a kill -9 mid-apply.

A fixture creates a database per test session (and a copy of it per test, from a migrated
template) and drops them all at the end. Without a reachable server these tests are skipped
with the reason; CI starts the server first (.ci/run).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import procrastinate
import psycopg
import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from reconciler.cli.main import cli as main_cli
from reconciler.providers.postgres import StateDatabaseError, close_idle
from reconciler.runtime.clock import ManualClock
from reconciler.runtime.jobs import (
    RECONCILE_TASK,
    UnchangedFolders,
    WorkerConfig,
    make_app,
    prepare_database,
    run_cluster_tick,
)
from reconciler.runtime.journal import Journal, LockHeld, LockLive
from reconciler.runtime.reconcile import FolderSource
from reconciler.runtime.store.base import StateStore
from reconciler.runtime.store.factory import open_store
from reconciler.runtime.store.postgres import LeaseLost, PostgresJournal
from reconciler.runtime.worker import (
    Schedule,
    WorkerLabelled,
    cron_for,
    register_schedules,
)

ADMIN_URL = os.environ.get("RECONCILER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
ROOT = Path(__file__).resolve().parents[1]


# --- databases -------------------------------------------------------------------------------


def _admin() -> psycopg.Connection[Any]:
    return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A fresh database for this session, migrated; tests get copies of it."""
    try:
        admin = _admin()
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable at {ADMIN_URL} ({exc}); .ci/run starts it")
    name = f"reconciler_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        prepare_database(_url(name))
        close_idle()  # a template must have no session open when it is copied
        yield name
    finally:
        for (db,) in admin.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (name + "%",)
        ).fetchall():
            admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.close()


def _url(db: str) -> str:
    """The contract's form: the local socket, the default user."""
    return f"postgresql:///{db}"


@pytest.fixture
def db(pg_template: str) -> Iterator[str]:
    """A database of its own for one test: a copy of the migrated template."""
    name = f"{pg_template}_{uuid.uuid4().hex[:6]}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield _url(name)
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cli(url: str, state: Path, *args: str) -> str:
    """A command in this process (workers, below, are real processes)."""
    result = CliRunner().invoke(
        main_cli, ["--state-dir", str(state), "--state-url", url, *args], catch_exceptions=False
    )
    assert result.exit_code == 0, f"{args}: {result.output}"
    return result.output


def spawn_worker(url: str, state: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return subprocess.Popen(
        [sys.executable, "-m", "reconciler", "--state-dir", str(state), "worker", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "RECONCILER_STATE_URL": url, **(env or {})},
    )


def history(url: str, state: Path) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = json.loads(cli(url, state, "history", "--json", "--limit", "500"))
    return runs


def generated(url: str, tmp_path: Path, clusters: int, *faults: tuple[str, str]) -> Path:
    """A generated estate (2 nodes x 2 VMs per cluster) in the database, then drift."""
    out = tmp_path / "gen"
    state = tmp_path / "state"
    cli(url, state, "sim", "generate", "--clusters", str(clusters), "--nodes-per-cluster", "2",
        "--vms-per-node", "2", "--drift", "0", "--out", str(out))  # fmt: skip
    cli(url, state, "sim", "init", str(out / "world.yaml"))
    for kind, target in faults:
        cli(url, state, "sim", "fault", "drift", "--kind", kind, "--target", target, "--seed", "1")
    return out


def plan_exit(url: str, state: Path, desired: Path) -> int:
    result = CliRunner().invoke(
        main_cli,
        [
            "--state-dir",
            str(state),
            "--state-url",
            url,
            "plan",
            "--detailed-exitcode",
            str(desired),
        ],
    )
    return result.exit_code


# --- the contract ----------------------------------------------------------------------------


class TestContract:
    def test_two_workers_one_run_per_cluster_no_overlap(self, db: str, tmp_path: Path) -> None:
        state = tmp_path / "state"
        out = generated(
            db, tmp_path, 6, ("disk", "c001-vm0001"), ("vlan", "c004-n01"), ("vlan", "c005-n02")
        )
        assert plan_exit(db, state, out / "desired") == 2  # there is something to do
        queued = cli(db, state, "reconcile", str(out / "desired"), "--mode", "autocorrect",
                     "--enqueue")  # fmt: skip
        assert "queued 6 reconcile job(s)" in queued
        workers = [spawn_worker(db, state, "--until-idle") for _ in range(2)]
        for w in workers:
            w.wait(timeout=120)
            assert w.returncode == 0, w.stdout.read() if w.stdout else ""
        runs = history(db, state)
        assert sorted(r["cluster"] for r in runs) == ["c001", "c002", "c003", "c004", "c005",
                                                      "c006"]  # fmt: skip
        for r in runs:
            assert r["ended_at"] is not None and r["started_at"] <= r["ended_at"]
            assert r["outcome"] == "corrected", r
        assert plan_exit(db, state, out / "desired") == 0
        # The queue saw the same: six jobs, each succeeded once.
        with psycopg.connect(db) as conn:
            rows = conn.execute(
                "SELECT lock, queueing_lock, status FROM procrastinate_jobs ORDER BY lock"
            ).fetchall()
        assert rows == [(f"c00{i}", f"c00{i}", "succeeded") for i in range(1, 7)]

    def test_a_second_enqueue_does_not_pile_up(self, db: str, tmp_path: Path) -> None:
        state = tmp_path / "state"
        out = generated(db, tmp_path, 2)
        cli(db, state, "reconcile", str(out / "desired"), "--enqueue")
        again = cli(db, state, "reconcile", str(out / "desired"), "--enqueue")
        assert "queued 0 reconcile job(s)" in again
        assert "2 cluster(s) already had a job waiting" in again

    def test_enqueue_without_a_database_is_a_clear_error(self, tmp_path: Path) -> None:
        proc = subprocess.run(
            [sys.executable, "-m", "reconciler", "--state-dir", str(tmp_path), "reconcile",
             str(ROOT / "manifests" / "demo"), "--enqueue"],
            capture_output=True, text=True, timeout=60, check=False,
            env={k: v for k, v in os.environ.items() if k != "RECONCILER_STATE_URL"},
        )  # fmt: skip
        assert proc.returncode == 1
        assert "needs the shared state database: pass --state-url" in proc.stderr + proc.stdout
        assert "Traceback" not in proc.stderr

    def test_worker_without_its_database_waits_then_says_so(self, tmp_path: Path) -> None:
        started = time.monotonic()
        result = CliRunner().invoke(
            main_cli,
            ["--state-dir", str(tmp_path), "--state-url", "postgresql://127.0.0.1:1/none",
             "worker", "--until-idle", "--db-wait", "1"],
        )  # fmt: skip
        assert time.monotonic() - started >= 1.0  # it kept trying for the second it was given
        assert result.exit_code == 1
        assert isinstance(result.exception, SystemExit)
        assert "cannot reach the state database (dbname=none host=127.0.0.1 port=1)" in (
            result.output
        )

    def test_unreachable_database_is_a_clear_error(self, tmp_path: Path) -> None:
        proc = subprocess.run(
            [sys.executable, "-m", "reconciler", "--state-dir", str(tmp_path),
             "--state-url", "postgresql://nobody:s3cret@127.0.0.1:1/none", "history"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert proc.returncode == 1
        assert "cannot reach the state database (dbname=none host=127.0.0.1 port=1" in proc.stderr
        assert "s3cret" not in proc.stderr + proc.stdout
        assert "Traceback" not in proc.stderr


# --- high availability: kill -9 mid-apply ---------------------------------------------------


def _stopped(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "T"


class TestKillMidApply:
    def test_killed_worker_loses_its_lease_and_another_resumes(
        self, db: str, tmp_path: Path
    ) -> None:
        state = tmp_path / "state"
        # One cluster, four actions: set_vlan_trunk (10 simulated s), update_quorum (20 s; the
        # generator's drift) and two add_disk (20 s each).
        out = generated(
            db,
            tmp_path,
            1,
            ("disk", "c001-vm0001"),
            ("disk", "c001-vm0002"),
            ("vlan", "c001-n02"),
        )
        cli(db, state, "reconcile", str(out / "desired"), "--mode", "autocorrect", "--enqueue")
        # Worker A stops itself inside action 2's transaction; then it gets kill -9.
        a = spawn_worker(db, state, "--until-idle", env={"RECONCILER_SIM_HANG_MID_ACTION": "2"})
        deadline = time.monotonic() + 60
        while not _stopped(a.pid):
            assert a.poll() is None, a.stdout.read() if a.stdout else ""
            assert time.monotonic() < deadline, "worker A never reached action 2"
            time.sleep(0.05)
        with psycopg.connect(db) as conn:
            (lease_pid,) = conn.execute("SELECT pid FROM locks WHERE cluster = 'c001'").fetchone()
        assert lease_pid == a.pid  # A holds the cluster's lease while it hangs
        os.kill(a.pid, signal.SIGKILL)
        a.wait(timeout=30)
        assert a.returncode == -signal.SIGKILL

        b = spawn_worker(db, state, "--until-idle")
        b_out, _ = b.communicate(timeout=120)
        assert b.returncode == 0, b_out
        assert "ran again 1 job(s) of worker(s) that died" in b_out

        runs = {r["id"]: r for r in history(db, state)}
        assert sorted(r["outcome"] for r in runs.values()) == ["corrected", "interrupted"]
        (dead,) = (r for r in runs.values() if r["outcome"] == "interrupted")
        (resumed,) = (r for r in runs.values() if r["outcome"] == "corrected")
        assert dead["pid"] == a.pid and resumed["pid"] == b.pid
        assert dead["ended_at"] <= resumed["started_at"]  # no overlap
        assert "interrupted after 1 of 4 action(s)" in dead["message"]
        with psycopg.connect(db) as conn:
            done = conn.execute(
                "SELECT action_id, count(*) FROM run_actions WHERE status = 'done' "
                "GROUP BY action_id ORDER BY action_id"
            ).fetchall()
            clock = conn.execute("SELECT value FROM sim_meta WHERE key = 'clock_seconds'")
            (clock_seconds,) = clock.fetchone() or ("",)
            leases = conn.execute("SELECT count(*) FROM locks").fetchone()
        # Each of the four actions done once, by the journal; the world's clock agrees:
        # 10 + 20 + 20 + 20 s, none run twice (the vlan again would make it 80).
        assert [n for _, n in done] == [1, 1, 1, 1]
        assert float(clock_seconds) == 70.0
        assert leases == (0,)
        assert plan_exit(db, state, out / "desired") == 0

    def test_killed_apply_of_a_saved_plan_is_resumed_by_another_worker(
        self, db: str, tmp_path: Path
    ) -> None:
        state = tmp_path / "state"
        out = generated(
            db,
            tmp_path,
            1,
            ("disk", "c001-vm0001"),
            ("disk", "c001-vm0002"),
            ("vlan", "c001-n02"),
        )
        plan_file = tmp_path / "plan.json"
        cli(db, state, "plan", str(out / "desired"), "--out", str(plan_file))
        cli(db, state, "apply", "--plan", str(plan_file), "--enqueue", "--auto-approve")
        a = spawn_worker(db, state, "--until-idle", env={"RECONCILER_SIM_HANG_MID_ACTION": "2"})
        deadline = time.monotonic() + 60
        while not _stopped(a.pid):
            assert a.poll() is None, a.stdout.read() if a.stdout else ""
            assert time.monotonic() < deadline, "worker A never reached action 2"
            time.sleep(0.05)
        os.kill(a.pid, signal.SIGKILL)
        a.wait(timeout=30)

        b = spawn_worker(db, state, "--until-idle")
        b_out, _ = b.communicate(timeout=120)
        assert b.returncode == 0, b_out
        runs = history(db, state)
        assert sorted(r["outcome"] for r in runs) == ["interrupted", "succeeded"], runs
        assert {r["source"] for r in runs} == {runs[0]["source"]}  # both runs of the one plan
        with psycopg.connect(db) as conn:
            done = conn.execute(
                "SELECT action_id, count(*) FILTER (WHERE status = 'done'), "
                "count(*) FILTER (WHERE status = 'already_done') FROM run_actions "
                "GROUP BY action_id ORDER BY action_id"
            ).fetchall()
            (clock_seconds,) = conn.execute(
                "SELECT value FROM sim_meta WHERE key = 'clock_seconds'"
            ).fetchone() or ("",)
        # Done once each; the first one, done before the kill, comes back as already done.
        assert [d for _, d, _ in done] == [1, 1, 1, 1]
        assert sum(a for _, _, a in done) == 1
        assert float(clock_seconds) == 70.0  # 10 + 20 + 20 + 20 simulated s, none twice
        assert plan_exit(db, state, out / "desired") == 0


# --- apply --enqueue: a reviewed plan for the workers ---------------------------------------


class TestEnqueuedPlan:
    def test_saved_plan_is_applied_by_a_worker(self, db: str, tmp_path: Path) -> None:
        state = tmp_path / "state"
        out = generated(db, tmp_path, 2, ("disk", "c001-vm0001"), ("vlan", "c002-n02"))
        plan_file = tmp_path / "plan.json"
        cli(db, state, "plan", str(out / "desired"), "--out", str(plan_file))
        said = cli(db, state, "apply", "--plan", str(plan_file), "--enqueue", "--auto-approve")
        assert "queued the plan" in said
        cli(db, state, "worker", "--until-idle")
        (run,) = history(db, state)
        assert run["outcome"] == "succeeded" and run["cluster"] == "c001,c002"
        assert run["source"].startswith("plan:p")
        assert plan_exit(db, state, out / "desired") == 0

    def test_stale_saved_plan_is_refused_by_the_worker(self, db: str, tmp_path: Path) -> None:
        state = tmp_path / "state"
        out = generated(db, tmp_path, 1, ("disk", "c001-vm0001"))
        plan_file = tmp_path / "plan.json"
        cli(db, state, "plan", str(out / "desired"), "--out", str(plan_file))
        cli(db, state, "apply", "--plan", str(plan_file), "--enqueue", "--auto-approve")
        cli(db, state, "sim", "fault", "drift", "--kind", "memory", "--target", "c001-vm0001")
        cli(db, state, "worker", "--until-idle")
        (run,) = history(db, state)
        assert run["outcome"] == "refused"
        assert "VirtualMachine/c001-vm0001" in run["message"]


# --- the store interface, on both backends ---------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    clock = ManualClock()
    if request.param == "sqlite":
        s: StateStore = open_store(tmp_path, None, clock.now)
    else:
        url = request.getfixturevalue("db")
        s = open_store(tmp_path, url, clock.now)
    s.clock = clock.now
    yield s
    s.close()


def _foreign_lock(store: StateStore, cluster: str, expires_at: float) -> None:
    """A lease held by a process on another host (inserted as that process would)."""
    if isinstance(store, PostgresJournal):
        store.conn.execute(
            "INSERT INTO locks VALUES (%s, 'l-other', NULL, 'ops', 4242, 'elsewhere', 0, %s)",
            (cluster, expires_at),
        )
    else:
        assert isinstance(store, Journal)
        store.conn.execute(
            "INSERT INTO locks VALUES (?, 'l-other', NULL, 'ops', 4242, 'elsewhere', 0, ?)",
            (cluster, expires_at),
        )


class TestStoreInterface:
    def test_runs_carry_their_cluster(self, store: StateStore) -> None:
        run_id = store.start_run("sha256:x", "dir", 2, "reconcile-autocorrect", None, "c7")
        store.action_started(run_id, 1, {"id": "a1", "type": "add_disk", "target": "V/v",
                                         "cluster": "c7"})  # fmt: skip
        store.action_finished(run_id, 1, "done", 20.0, 1)
        store.end_run(run_id, "corrected", "ok")
        (run,) = store.runs()
        assert (run.cluster, run.outcome, run.message, run.actions_total) == (
            "c7", "corrected", "ok", 2
        )  # fmt: skip
        (action,) = store.actions(run_id)
        assert (action.action_id, action.status, action.seconds) == ("a1", "done", 20.0)

    def test_a_live_foreign_lease_is_respected_an_expired_one_taken(
        self, store: StateStore
    ) -> None:
        now = store.clock()
        _foreign_lock(store, "c1", now + 30)
        _foreign_lock(store, "c2", now - 1)
        with pytest.raises(LockHeld) as held:
            store.try_lock(["c1"], 900)
        assert held.value.lock.host == "elsewhere"
        taken, notes = store.try_lock(["c2"], 900)
        assert [lock.cluster for lock in taken] == ["c2"]
        assert notes == [
            "replaced the stale lock on c2 left by ops (pid 4242 on elsewhere, run -, lock l-other)"
        ]
        # all or none: c1 is held, so c2 and c3 are not taken with it
        store.unlock(taken)
        with pytest.raises(LockHeld):
            store.try_lock(["c2", "c1", "c3"], 900)
        assert [lock.cluster for lock in store.locks()] == ["c1"]

    def test_drift_opens_updates_and_closes(self, store: StateStore) -> None:
        fields = [{"path": "memory_mib", "observed": 1024, "desired": 2048}]
        assert store.note_drift("r1", {"VirtualMachine/v1": fields}) == ["VirtualMachine/v1"]
        assert store.note_drift("r2", {"VirtualMachine/v1": fields}) == []  # still the same row
        assert list(store.open_drift()) == ["VirtualMachine/v1"]
        assert store.close_drift(["VirtualMachine/v1", "Node/n9"], "r3", "corrected by r3") == 1
        (row,) = store.drift_history()
        assert (row.corrected, row.correction_run, row.tick_run) == (True, "r3", "r1")
        assert store.open_drift() == {}


def test_postgres_lease_is_capped_and_renewed(db: str) -> None:
    clock = ManualClock()
    journal = PostgresJournal(db, clock.now, lease_seconds=60.0)
    try:
        (lock,), _ = journal.try_lock(["c1"], 900)
        assert lock.expires_at == clock.now() + 60.0  # a lease, not the 15 min apply lock
        clock.advance(50)
        journal.renew([lock], 900)
        (renewed,) = journal.locks()
        assert renewed.expires_at == clock.now() + 60.0
    finally:
        journal.close()


def test_a_lost_lease_stops_the_holder(db: str) -> None:
    clock = ManualClock()
    journal = PostgresJournal(db, clock.now)
    try:
        (lock,), _ = journal.try_lock(["c1"], 900)
        with pytest.raises(LockLive, match="is still running"):
            journal.force_unlock(lock.lock_id)  # its holder (this process) lives
        assert journal.force_unlock(lock.lock_id, force=True) == lock
        with pytest.raises(LeaseLost, match=r"lease on cluster\(s\) c1 is no longer held"):
            journal.renew([lock], 900)
    finally:
        journal.close()


def test_interrupted_run_on_another_host_needs_silence(db: str) -> None:
    """A run elsewhere with a live lease is not interrupted; once the lease lapses, it is."""
    clock = ManualClock()
    journal = PostgresJournal(db, clock.now)
    try:
        now = clock.now()
        journal.conn.execute(
            "INSERT INTO runs (id, started_at, outcome, plan_hash, source, kind, actions_total, "
            "owner, host, pid) VALUES ('r-far', %s, 'running', '-', 'd', 'apply', 3, 'ops', "
            "'elsewhere', 4242)",
            (now,),
        )
        journal.conn.execute(
            "INSERT INTO locks VALUES ('c1', 'l1', 'r-far', 'ops', 4242, 'elsewhere', %s, %s)",
            (now, now + 60),
        )
        assert journal.interrupted_runs() == []
        clock.advance(61)
        assert [r.id for r in journal.interrupted_runs()] == ["r-far"]
    finally:
        journal.close()


def test_store_factory_refuses_other_urls(tmp_path: Path) -> None:
    with pytest.raises(StateDatabaseError, match="must be a postgresql:// URL"):
        open_store(tmp_path, "mysql://x/y", ManualClock().now)


# --- schedules and metrics -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("every", "cron"),
    [(30, "* * * * * */30"), (300, "*/5 * * * *"), (900, "*/15 * * * *"), (3600, "0 */1 * * *"),
     (21600, "0 */6 * * *"), (86400, "0 0 * * *")],
)  # fmt: skip
def test_cron_for_intervals(every: float, cron: str) -> None:
    assert cron_for(every) == cron


@pytest.mark.parametrize("every", [45 * 60, 7, 5400])
def test_cron_for_refuses_uneven_intervals(every: float) -> None:
    with pytest.raises(ValueError, match="does not divide"):
        cron_for(every)


def test_periodic_ticks_are_queued_once_per_cluster(db: str, tmp_path: Path) -> None:
    """Two workers' deferrers at the same cron instant queue one job per cluster."""
    config = WorkerConfig(db, tmp_path, "sim", None)
    schedules = [Schedule(c, 900, "*/15 * * * *", "monitor", ("/m",), None, "main")
                 for c in ("c1", "c2")]  # fmt: skip

    async def defer_twice() -> None:
        for _ in range(2):
            app = make_app(config)
            assert register_schedules(app, schedules) == 2
            deferrer = procrastinate.periodic.PeriodicDeferrer(app.periodic_registry)
            async with app.open_async():
                await deferrer.defer_jobs(
                    (pt, 1_800_000_000) for pt in app.periodic_registry.periodic_tasks.values()
                )

    asyncio.run(defer_twice())
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT task_name, lock, queueing_lock, args->>'cluster', args->>'mode' "
            "FROM procrastinate_jobs ORDER BY lock"
        ).fetchall()
    assert rows == [
        (RECONCILE_TASK, "c1", "c1", "c1", "monitor"),
        (RECONCILE_TASK, "c2", "c2", "c2", "monitor"),
    ]


def test_schedule_command_saves_one_schedule_per_cluster(db: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    out = generated(db, tmp_path, 3)
    said = cli(db, state, "schedule", str(out / "desired"), "--every", "15m")
    assert "scheduled 3 cluster(s) every 15m" in said
    listed = cli(db, state, "schedule", "--list").splitlines()
    assert listed == [f"c00{i}\tevery 900s\t*/15 * * * *\tmonitor" for i in (1, 2, 3)]


def test_metrics_carry_the_worker_label() -> None:
    inner = CollectorRegistry()
    Counter("reconciler_ticks", "Ticks.", ["outcome"], registry=inner).labels("corrected").inc(3)
    outer = CollectorRegistry(auto_describe=False)
    outer.register(WorkerLabelled(inner, "vm:42:ab12"))
    text = generate_latest(outer).decode()
    samples = [
        (s.name, s.labels, s.value)
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == "reconciler_ticks_total"
    ]
    assert samples == [
        ("reconciler_ticks_total", {"outcome": "corrected", "worker": "vm:42:ab12"}, 3.0)
    ]


def test_workers_lists_live_workers_and_what_they_hold(db: str, tmp_path: Path) -> None:
    from reconciler.runtime.worker import _Registration, list_workers

    reg = _Registration(db, "vm:1:aaaa", 4)
    try:
        journal = PostgresJournal(db, time.time)
        try:
            journal.try_lock(["c9"], 900)
            journal.conn.execute(
                "INSERT INTO reconciler_workers (name, host, pid, concurrency, started_at, "
                "heartbeat_at) VALUES ('gone:2:bbbb', 'x', 2, 1, 0, 0)"
            )
            journal.conn.execute(
                "INSERT INTO reconciler_jobs_held VALUES (7, 'vm:1:aaaa', 'h', 1, 'c9', "
                "'reconcile_cluster', 0)"
            )
            (w,) = list_workers(db, time.time())
            assert (w.name, w.concurrency, w.holding) == (
                "vm:1:aaaa", 4, ("reconcile_cluster c9 (job 7)",)
            )  # fmt: skip
            assert w.leases == ("c9",)  # the lease is this process's, and so the worker's
        finally:
            journal.close()
    finally:
        reg.close()


def test_workers_parse_manifests_again_only_after_a_change(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main_cli,
        ["sim", "generate", "--clusters", "2", "--nodes-per-cluster", "2", "--vms-per-node",
         "1", "--out", str(tmp_path / "gen")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    desired = tmp_path / "gen" / "desired"
    source = UnchangedFolders(FolderSource((str(desired),), None))
    first = source.load()
    assert source.load() is first  # nothing changed: the parsed estate is reused
    a_file = sorted(desired.rglob("*.yaml"))[0]
    a_file.write_text(a_file.read_text() + "\n# reviewed\n")
    again = source.load()
    assert again is not first
    assert sorted(again.desired.clusters) == ["c001", "c002"]


def test_a_job_for_a_cluster_gone_from_the_manifests_records_an_error(
    db: str, tmp_path: Path
) -> None:
    out = generated(db, tmp_path, 1)
    config = WorkerConfig(db, tmp_path / "state", "sim", None)
    report = run_cluster_tick(config, "c404", "monitor", [str(out / "desired")], None, "main")
    assert report.outcome == "error"
    (run,) = history(db, tmp_path / "state")
    assert (run["cluster"], run["outcome"]) == ("c404", "error")
    assert "cluster c404 is not in the manifests" in run["message"]
