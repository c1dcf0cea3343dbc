"""Concurrent live migrations: at most max_parallel_migrations run, the others wait."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from reconciler.manifest.load import load_paths, require
from reconciler.model.actions import Action
from reconciler.model.physics import estimate_move
from reconciler.model.platforms import platform
from reconciler.model.records import Estate, LiveMigrationSettings
from reconciler.providers.sim.provider import SimProvider

ROOT = Path(__file__).resolve().parents[1]
WORLD = ROOT / "manifests" / "worlds" / "demo.yaml"


def move(vm: str, source: str, destination: str) -> Action:
    return Action(
        f"migrate_vm:{vm}",
        "migrate_vm",
        f"VirtualMachine/{vm}",
        "prod",
        {"vm": vm, "source": source, "destination": destination, "method": "live", "memory_mib": 0},
    )


def world(parallel: int) -> Estate:
    estate = require(load_paths([str(WORLD)], world=True))
    cluster = estate.clusters["prod"]
    lm = LiveMigrationSettings(cluster.live_migration.network, parallel)
    return estate.with_record(replace(cluster, live_migration=lm))


@pytest.fixture
def moves() -> list[Action]:
    # Three web servers leave hv03 and hv04 for hv02, which has room for all of them.
    return [
        move("WEB03", "hv03", "hv02"),
        move("WEB05", "hv04", "hv02"),
        move("WEB04", "hv03", "hv02"),
    ]


def provider_with(tmp_path: Path, parallel: int) -> SimProvider:
    provider = SimProvider(state_dir=tmp_path)
    provider.init_world(world(parallel), "test")
    return provider


class TestOneAtATime:
    """With the default of 1, a second migration waits for the first: no sharing, no overlap."""

    def test_second_waits_for_first(self, tmp_path: Path, moves: list[Action]) -> None:
        provider = provider_with(tmp_path, 1)
        estate = provider.observe()
        outcomes = provider.apply_migrations(moves[:2])
        assert [o.status for o in outcomes] == ["done", "done"]
        cluster = estate.clusters["prod"]
        alone = [estimate_move(cluster, estate.vms[m.params["vm"]], "live") for m in moves[:2]]
        assert outcomes[0].details["waited_seconds"] == 0.0
        assert outcomes[1].details["waited_seconds"] == pytest.approx(alone[0].total_seconds)
        for outcome, solo in zip(outcomes, alone, strict=True):
            assert outcome.seconds == pytest.approx(solo.total_seconds, rel=1e-6)
        assert provider.clock() == pytest.approx(sum(a.total_seconds for a in alone))
        observed = provider.observe()
        assert observed.vms["WEB03"].node == "hv02"
        assert observed.vms["WEB05"].node == "hv02"


class TestSharedLink:
    """With 2 allowed, two run at once and share the link; a third waits for a slot."""

    def test_two_share_the_link_and_a_third_waits(
        self, tmp_path: Path, moves: list[Action]
    ) -> None:
        provider = provider_with(tmp_path, 2)
        estate = provider.observe()
        cluster = estate.clusters["prod"]
        outcomes = provider.apply_migrations(moves)
        assert [o.status for o in outcomes] == ["done", "done", "done"]
        waited = [o.details["waited_seconds"] for o in outcomes]
        # The source starts them one after another, the platform's stagger apart.
        assert waited[0] == 0.0
        assert waited[1] == pytest.approx(platform(cluster.platform).live_migration_stagger_seconds)
        assert waited[2] > outcomes[0].seconds * 0.5
        for outcome, action in zip(outcomes[:2], moves[:2], strict=True):
            solo = estimate_move(cluster, estate.vms[action.params["vm"]], "live")
            assert outcome.seconds > solo.total_seconds, "sharing the link slows each one"
        records = provider.store.migrations()
        assert len(records) == 3
        ends = sorted(r.at_seconds + r.total_seconds for r in records[:2])
        assert records[2].at_seconds == pytest.approx(ends[0]), "starts when a slot frees"

    def test_a_refused_move_does_not_stop_the_others(self, tmp_path: Path) -> None:
        provider = provider_with(tmp_path, 2)
        # hv03 lacks VLAN 40 in the demo world: APP03 (VLAN 40) cannot go there.
        outcomes = provider.apply_migrations(
            [move("APP03", "hv02", "hv03"), move("WEB05", "hv04", "hv02")]
        )
        assert outcomes[0].status == "precondition_failed"
        assert "VLAN 40" in outcomes[0].message
        assert outcomes[1].status == "done"
        assert provider.observe().vms["APP03"].node == "hv02"


class _Quiet:
    def run_started(self, plan: object, run_id: str) -> None: ...
    def action_started(self, seq: int, action: Action) -> None: ...
    def action_finished(self, seq: int, action: Action, result: object) -> None: ...
    def run_finished(self, report: object) -> None: ...


class TestExecutorRunsThemTogether:
    """The executor hands independent live migrations to the provider together, up to the limit."""

    def _run(self, tmp_path: Path, parallel: int, moves: list[Action]) -> SimProvider:
        from reconciler.engine.plan import Plan
        from reconciler.runtime.clock import ManualClock
        from reconciler.runtime.executor import Executor
        from reconciler.runtime.journal import Journal

        provider = provider_with(tmp_path, parallel)
        journal = Journal(tmp_path, ManualClock().now)
        plan = Plan(tuple(moves), (), "sha256:x", {})
        run_id = journal.start_run(plan.digest(), "test", len(moves))
        report = Executor(provider, journal, ManualClock(), _Quiet()).run(plan, run_id)
        assert [r.status for r in report.results.values()] == ["done"] * len(moves)
        statuses = [a.status for a in journal.actions(run_id)]
        journal.close()
        assert statuses == ["done"] * len(moves)
        return provider

    def test_independent_moves_overlap_when_two_are_allowed(
        self, tmp_path: Path, moves: list[Action]
    ) -> None:
        provider = self._run(tmp_path, 2, moves[:2])
        first, second = provider.store.migrations()
        assert second.at_seconds < first.at_seconds + first.total_seconds, "they overlap"
        assert second.at_seconds == pytest.approx(first.at_seconds + 0.7), "2008r2 stagger"

    def test_one_at_a_time_by_default(self, tmp_path: Path, moves: list[Action]) -> None:
        provider = self._run(tmp_path, 1, moves[:2])
        first, second = provider.store.migrations()
        assert second.at_seconds == pytest.approx(first.at_seconds + first.total_seconds)

    def test_a_dependent_move_waits_for_its_dependency(
        self, tmp_path: Path, moves: list[Action]
    ) -> None:
        chained = [moves[0], replace(moves[1], depends_on=(moves[0].id,))]
        provider = self._run(tmp_path, 2, chained)
        first, second = provider.store.migrations()
        assert second.at_seconds >= first.at_seconds + first.total_seconds
