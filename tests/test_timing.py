"""Calibrated migration timing: a per-stream cap, a shared link, and plan estimates that agree
with what the simulator's clock does when migrations run together."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from reconciler.engine.plan import Plan, plan_from_json
from reconciler.manifest.load import load_paths, require
from reconciler.model.actions import Action
from reconciler.model.physics import actions_makespan, estimate_move
from reconciler.model.platforms import PLATFORM_NAMES, platform
from reconciler.model.records import ClusterNetwork, Estate, LiveMigrationSettings
from reconciler.model.timing import MigrationTiming, QueuedMigration, makespan, schedule_group
from reconciler.providers.sim.provider import SimProvider
from reconciler.runtime.clock import ManualClock
from reconciler.runtime.executor import Executor
from reconciler.runtime.journal import Journal

ROOT = Path(__file__).resolve().parents[1]
WORLD = ROOT / "manifests" / "worlds" / "demo.yaml"
# By hand: 1 GbE at 97% payload is 1e9 * 0.97 / 8 bytes/s = 115.633 MiB/s; a 1100 Mbit/s
# stream cap is 1.1e9 / 8 bytes/s = 131.134 MiB/s.
GBE_MIB_S = 115.633
CAP_1100_MIB_S = 131.134
TIMING = MigrationTiming(
    link_efficiency=0.97, stream_cap_mbps=1100, setup_seconds=1.5, stagger_seconds=0.7
)


def move(vm: str, source: str, destination: str) -> Action:
    params = {"vm": vm, "source": source, "destination": destination, "method": "live"}
    return Action(
        f"migrate_vm:{vm}",
        "migrate_vm",
        f"VirtualMachine/{vm}",
        "prod",
        {**params, "memory_mib": 0},
    )


def world(parallel: int, link_mbps: int = 1000, platform_name: str = "2008r2") -> Estate:
    estate = require(load_paths([str(WORLD)], world=True))
    cluster = estate.clusters["prod"]
    networks = tuple(
        replace(n, bandwidth_mbps=link_mbps) if "live_migration" in n.roles else n
        for n in cluster.networks
    )
    lm = LiveMigrationSettings(cluster.live_migration.network, parallel)
    cluster = replace(cluster, live_migration=lm, networks=networks, platform=platform_name)
    return estate.with_record(cluster)


MOVES = [
    move("WEB03", "hv03", "hv02"),
    move("WEB05", "hv04", "hv02"),
    move("WEB04", "hv03", "hv02"),
]


class TestPlatformConstants:
    """Every platform carries the fitted timing constants (platforms.yaml)."""

    @pytest.mark.parametrize("name", PLATFORM_NAMES)
    def test_each_platform_has_them(self, name: str) -> None:
        timing = MigrationTiming.of(platform(name))
        assert 0.9 <= timing.link_efficiency <= 1.0
        assert timing.stream_cap_mbps > 0
        assert timing.setup_seconds > 0
        assert timing.stagger_seconds >= 0


class TestStreamCap:
    """One migration alone does not fill 10 GbE: it runs at the platform's per-stream cap."""

    def test_link_and_cap_in_mib_s(self) -> None:
        assert TIMING.link_mib_s(1000) == pytest.approx(GBE_MIB_S, rel=1e-4)
        assert TIMING.stream_cap_mib_s == pytest.approx(CAP_1100_MIB_S, rel=1e-4)

    def test_alone_on_10_gbe_it_runs_at_the_cap(self) -> None:
        starts, [est] = schedule_group(
            [QueuedMigration(4096, 0.0)], 1, TIMING.link_mib_s(10_000), TIMING, 5, 256
        )
        assert starts == [0.0]
        # 1.5 s setup + 4096 MiB at 131.134 MiB/s (31.235 s) + 0.05 s resume.
        assert est.total_seconds == pytest.approx(32.785, abs=0.01)

    def test_the_cluster_model_uses_the_cap_on_10_gbe(self) -> None:
        estate = world(1, 10_000, "2016")
        vm = replace(estate.vms["WEB03"], status=replace(estate.vms["WEB03"].status))
        est = estimate_move(estate.clusters["prod"], vm, "live")
        ten_gbe_line = 10e9 / 8 / 2**20
        assert est.bytes_sent / 2**20 / (est.total_seconds - 1.55) < ten_gbe_line / 4


class TestSharedLink:
    """Migrations started together share the link, each after a fixed cost, starts staggered."""

    def test_two_on_one_gbe_by_hand(self) -> None:
        starts, ests = schedule_group(
            [QueuedMigration(1024, 0.0)] * 2, 2, TIMING.link_mib_s(1000), TIMING, 5, 256
        )
        assert starts == [0.0, pytest.approx(0.7)]
        # The link is the bottleneck once both copy: 1.5 s setup, 2048 MiB at 115.633 MiB/s
        # (17.711 s), 0.05 s resume; the first ends 0.7 s before the second.
        assert makespan(starts, ests) == pytest.approx(19.261, abs=0.01)
        assert starts[0] + ests[0].total_seconds == pytest.approx(18.561, abs=0.01)

    def test_twenty_at_once_end_far_sooner_than_one_by_one(self) -> None:
        ten_gbe = TIMING.link_mib_s(10_000)
        group = [QueuedMigration(512, 0.0)] * 20
        together = makespan(*schedule_group(group, 20, ten_gbe, TIMING, 5, 256))
        serial = makespan(*schedule_group(group, 1, ten_gbe, TIMING, 5, 256))
        # One by one: 20 x (1.5 + 512 / 131.134 + 0.05) = 109.1 s.
        assert serial == pytest.approx(109.09, abs=0.05)
        assert together < serial / 4


class TestPlanAgreesWithApply:
    """The plan's estimate is the makespan apply will see, not a serial sum."""

    def _apply(self, tmp_path: Path, estate: Estate, actions: list[Action]) -> tuple[float, float]:
        provider = SimProvider(state_dir=tmp_path)
        provider.init_world(estate, "test")
        before = provider.clock()
        journal = Journal(tmp_path, ManualClock().now)
        plan = Plan(tuple(actions), (), "sha256:x", {})
        run_id = journal.start_run(plan.digest(), "test", len(actions))
        report = Executor(provider, journal, ManualClock(), _Quiet()).run(plan, run_id)
        journal.close()
        assert [r.status for r in report.results.values()] == ["done"] * len(actions)
        return provider.clock() - before, report.simulated_seconds

    @pytest.mark.parametrize(
        ("parallel", "link_mbps", "release"),
        [(1, 1000, "2008r2"), (2, 1000, "2008r2"), (3, 10_000, "2016"), (1, 10_000, "2016")],
    )
    def test_estimate_equals_the_simulated_clock(
        self, tmp_path: Path, parallel: int, link_mbps: int, release: str
    ) -> None:
        estate = world(parallel, link_mbps, release)
        cluster = estate.clusters["prod"]
        actions = [
            replace(
                a,
                estimate_seconds=estimate_move(
                    cluster, estate.vms[a.params["vm"]], "live"
                ).total_seconds,
            )
            for a in MOVES
        ]
        estimate = actions_makespan(actions, estate)
        clock_advanced, reported = self._apply(tmp_path, estate, actions)
        assert estimate == pytest.approx(clock_advanced, abs=0.01)
        assert reported == pytest.approx(clock_advanced, abs=0.01), "apply reports the makespan"
        serial = sum(a.estimate_seconds for a in actions)
        if parallel == 1:
            assert estimate == pytest.approx(serial, abs=0.01)
        elif link_mbps == 1000:
            # A full 1 GbE link: sharing gains almost nothing (serial beats parallel).
            assert estimate == pytest.approx(serial, rel=0.05)
        else:
            # Single streams are capped far below 10 GbE: three at once overlap.
            assert estimate < serial * 0.5

    def test_the_makespan_survives_a_saved_plan(self) -> None:
        plan = Plan(tuple(MOVES), (), "sha256:x", {}, makespan_seconds=12.5)
        again = plan_from_json(plan.to_json())
        assert again.estimate_seconds() == 12.5
        assert again.dumps() == plan.dumps()


class _Quiet:
    def run_started(self, plan: object, run_id: str) -> None: ...
    def action_started(self, seq: int, action: Action) -> None: ...
    def action_finished(self, seq: int, action: Action, result: object) -> None: ...
    def run_finished(self, report: object) -> None: ...


def test_networks_keep_their_shape() -> None:
    # The helper above changes only the live-migration network's speed.
    estate = world(1, 10_000)
    speeds = {n.name: n.bandwidth_mbps for n in estate.clusters["prod"].networks}
    assert 10_000 in speeds.values()
    assert all(isinstance(n, ClusterNetwork) for n in estate.clusters["prod"].networks)
