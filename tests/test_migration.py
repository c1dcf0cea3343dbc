"""Tests for reconciler.model.migration: the closed form, the pass-by-pass and shared-link sims."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.model.migration import (
    MIB,
    ConcurrentMigration,
    LiveMigrationInputs,
    MigrationEstimate,
    closed_form,
    mbps_to_mib_s,
    quick_migration,
    simulate_concurrent,
    simulate_live,
)

GBE = mbps_to_mib_s(1000)  # 112.0567 MiB/s
TEN_GBE = mbps_to_mib_s(10_000)  # 1120.567 MiB/s
MB_PER_MIB = 1.048576  # decimal MB/s -> MiB/s


def assert_agree(a: MigrationEstimate, b: MigrationEstimate, rel: float = 0.01) -> None:
    assert a.passes == b.passes
    assert a.total_seconds == pytest.approx(b.total_seconds, rel=rel)
    assert a.downtime_seconds == pytest.approx(b.downtime_seconds, rel=rel)
    assert a.bytes_sent == pytest.approx(b.bytes_sent, rel=rel)


class TestBandwidthUnits:
    """Link speeds in Mbit/s become usable MiB/s after protocol efficiency."""

    def test_one_gigabit_is_117_5_decimal_mb(self) -> None:
        assert pytest.approx(117.5) == GBE * MB_PER_MIB
        assert pytest.approx(112.06, abs=0.01) == GBE

    def test_scales_linearly_with_speed_and_efficiency(self) -> None:
        assert pytest.approx(10 * GBE) == TEN_GBE
        assert mbps_to_mib_s(1000, efficiency=1.0) == pytest.approx(125e6 / MIB)


class TestClosedFormTable:
    """The closed form reproduces hand-computed rows (docs/domain.md section 8)."""

    def test_issue_reference_row(self) -> None:
        # 4 GiB, 10 MB/s dirty, 117.5 MB/s link: λ = 10/117.5 = 0.08511.
        # n = ceil(ln(0.25/4096) / ln 0.08511) = ceil(-9.704 / -2.464) = ceil(3.94) = 4.
        # bytes = 4096 (1 - λ^5)/(1 - λ) = 4477.0 MiB; time = 4477.0 / 112.057 = 39.953 s.
        # down = 4096 λ^4 / 112.057 = 4096 * 5.246e-5 / 112.057 = 1.918 ms.
        inputs = LiveMigrationInputs(
            memory_mib=4096,
            dirty_mib_s=10 / MB_PER_MIB,
            bandwidth_mib_s=117.5 / MB_PER_MIB,
            max_passes=10,
            threshold_kib=256,
        )
        est = closed_form(inputs)
        assert est.passes == 4
        assert est.total_seconds == pytest.approx(39.953, abs=0.001)
        assert est.downtime_seconds == pytest.approx(1.918e-3, abs=0.001e-3)
        assert est.bytes_sent / MIB == pytest.approx(4477.0, abs=0.1)
        assert_agree(simulate_live(inputs), est, rel=1e-9)

    @pytest.mark.parametrize(
        ("inputs", "passes", "total", "down", "sent_mib"),
        [
            # 1 GiB on 2008r2 (10 passes), 1 GbE, light 5 MiB/s dirtying: λ = 0.04462,
            # ln(0.25/1024)/ln λ = 2.675 -> n = 3; bytes = 1024 (1-λ^4)/(1-λ) = 1071.8 MiB,
            # time = 1071.8/112.057 = 9.565 s; down = 1024 * 8.884e-5 / 112.057 = 0.812 ms.
            pytest.param(LiveMigrationInputs(1024, 5, GBE), 3, 9.565, 0.812e-3, 1071.8, id="1g"),
            # 16 GiB busy SQL VM, 400 MiB/s dirty, 10 GbE, 5 passes (2012r2+): λ = 0.35696,
            # ln(0.25/16384)/ln λ = 10.77 -> capped at n = 5; bytes = 16384 (1-λ^6)/(1-λ) =
            # 25426.3 MiB, time = 22.691 s; down = 16384 * 5.796e-3 / 1120.57 = 84.74 ms.
            pytest.param(
                LiveMigrationInputs(16384, 400, TEN_GBE, max_passes=5),
                5,
                22.691,
                84.74e-3,
                25426.3,
                id="16g-sql-10gbe",
            ),
            # 8 GiB, 30 MiB/s dirty, 1 GbE, setup 1 s, resume 50 ms: λ = 0.26772,
            # ln(0.25/8192)/ln λ = 7.89 -> n = 8; bytes = 8192 (1-λ^9)/(1-λ) = 11186.9 MiB,
            # time = 1 + 11186.9/112.057 + 0.05 = 100.883 s; down = 8192 * 2.639e-5/112.057 + 0.05
            # = 51.93 ms.
            pytest.param(
                LiveMigrationInputs(8192, 30, GBE, setup_seconds=1.0, resume_seconds=0.05),
                8,
                100.883,
                51.93e-3,
                11186.9,
                id="8g-setup-resume",
            ),
        ],
    )
    def test_hand_computed_rows(
        self, inputs: LiveMigrationInputs, passes: int, total: float, down: float, sent_mib: float
    ) -> None:
        est = closed_form(inputs)
        assert est.passes == passes
        assert est.total_seconds == pytest.approx(total, abs=0.001)
        assert est.downtime_seconds == pytest.approx(down, rel=1e-3)
        assert est.bytes_sent / MIB == pytest.approx(sent_mib, abs=0.1)


class TestClosedFormEdgeCases:
    """Degenerate inputs give sensible answers instead of math errors."""

    def test_zero_dirty_rate_is_one_live_pass_and_no_stop_and_copy(self) -> None:
        est = closed_form(LiveMigrationInputs(4096, 0, 128, resume_seconds=0.1))
        assert est.passes == 0
        assert est.bytes_sent == 4096 * MIB
        assert est.total_seconds == pytest.approx(32.1)
        assert est.downtime_seconds == pytest.approx(0.1)

    def test_ratio_exactly_one_sends_memory_every_pass(self) -> None:
        est = closed_form(LiveMigrationInputs(1024, 100, 100, max_passes=5))
        assert est.passes == 5
        assert est.bytes_sent == 6 * 1024 * MIB
        assert est.downtime_seconds == pytest.approx(10.24)

    def test_ratio_above_one_runs_to_the_cap(self) -> None:
        est = closed_form(LiveMigrationInputs(1024, 200, 100, max_passes=5))
        assert est.passes == 5
        # Uncapped formula: M (1 - 2^6)/(1 - 2) = 63 M; remainder M 2^5.
        assert est.bytes_sent == 63 * 1024 * MIB
        assert est.downtime_seconds == pytest.approx(32 * 1024 / 100)

    def test_memory_below_threshold_is_copied_in_the_blackout(self) -> None:
        est = closed_form(LiveMigrationInputs(0.125, 50, 100, threshold_kib=256))
        assert est.passes == 0
        assert est.downtime_seconds == pytest.approx(0.125 / 100)
        assert est.bytes_sent == 0.125 * MIB

    def test_zero_pass_cap_pauses_at_once(self) -> None:
        for dirty in (0.0, 10.0, 500.0):
            est = closed_form(LiveMigrationInputs(1024, dirty, 100, max_passes=0))
            assert est.passes == 0
            assert est.downtime_seconds == pytest.approx(10.24)

    def test_zero_memory_costs_only_setup_and_resume(self) -> None:
        est = closed_form(LiveMigrationInputs(0, 10, 100, setup_seconds=1, resume_seconds=0.5))
        assert est == MigrationEstimate(1.5, 0.5, 0, 0)

    def test_exact_threshold_boundary_does_not_add_a_pass(self) -> None:
        # 1 GiB * 0.5^12 = 0.25 MiB exactly; float log rounding must not make it 13.
        inputs = LiveMigrationInputs(1024, 50, 100, max_passes=20, threshold_kib=256)
        assert closed_form(inputs).passes == 12
        assert simulate_live(inputs).passes == 12

    def test_zero_threshold_never_converges_so_runs_to_the_cap(self) -> None:
        inputs = LiveMigrationInputs(1024, 10, 100, max_passes=5, threshold_kib=0)
        assert closed_form(inputs).passes == 5
        assert_agree(simulate_live(inputs), closed_form(inputs), rel=1e-9)

    def test_formula_overflow_is_a_clear_error_not_a_nan(self) -> None:
        inputs = LiveMigrationInputs(1024, 1e300, 1e-10, max_passes=10)
        with pytest.raises(ValueError, match="overflows"):
            closed_form(inputs)
        assert simulate_live(inputs).bytes_sent == 11 * 1024 * MIB  # the capped sim still works

    @pytest.mark.parametrize("ratio", [1e-9, 0.001, 0.5, 0.999999])
    def test_passes_never_negative_or_above_cap(self, ratio: float) -> None:
        est = closed_form(LiveMigrationInputs(64, ratio * 100, 100, max_passes=7))
        assert 0 <= est.passes <= 7

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"memory_mib": -1.0},
            {"dirty_mib_s": -1.0},
            {"bandwidth_mib_s": 0.0},
            {"bandwidth_mib_s": math.nan},
            {"max_passes": -1},
            {"threshold_kib": -1.0},
            {"setup_seconds": -0.1},
        ],
    )
    def test_invalid_inputs_are_rejected(self, kwargs: dict[str, float]) -> None:
        base: dict[str, float] = {"memory_mib": 1024, "dirty_mib_s": 10, "bandwidth_mib_s": 100}
        with pytest.raises(ValueError, match="must be"):
            LiveMigrationInputs(**(base | kwargs))  # type: ignore[arg-type]


GRID = list(
    itertools.product(
        [512, 4096, 65536],  # memory MiB
        [0.01, 0.2, 0.5, 0.9],  # λ
        [5, 10],  # pass cap
        [64, 256, 1024],  # threshold KiB
        [(0.0, 0.0), (2.0, 0.25)],  # setup, resume seconds
    )
)


class TestSimulateLiveAgreesWithClosedForm:
    """For λ < 1 the pass-by-pass simulation matches the closed form within 1%."""

    @pytest.mark.parametrize(("memory", "ratio", "cap", "threshold", "timings"), GRID)
    def test_grid(
        self,
        memory: float,
        ratio: float,
        cap: int,
        threshold: float,
        timings: tuple[float, float],
    ) -> None:
        inputs = LiveMigrationInputs(
            memory_mib=memory,
            dirty_mib_s=ratio * GBE,
            bandwidth_mib_s=GBE,
            max_passes=cap,
            threshold_kib=threshold,
            setup_seconds=timings[0],
            resume_seconds=timings[1],
        )
        assert_agree(simulate_live(inputs), closed_form(inputs))

    @settings(max_examples=300, deadline=None)
    @given(
        ratio=st.floats(min_value=0, max_value=0.95, exclude_min=True, exclude_max=True),
        memory=st.floats(min_value=1, max_value=256 * 1024),
        bandwidth=st.floats(min_value=1, max_value=20_000),
        cap=st.integers(min_value=0, max_value=30),
        threshold=st.floats(min_value=1, max_value=4096),
        setup=st.floats(min_value=0, max_value=30),
        resume=st.floats(min_value=0, max_value=5),
    )
    def test_property(
        self,
        ratio: float,
        memory: float,
        bandwidth: float,
        cap: int,
        threshold: float,
        setup: float,
        resume: float,
    ) -> None:
        inputs = LiveMigrationInputs(
            memory, ratio * bandwidth, bandwidth, cap, threshold, setup, resume
        )
        assert_agree(simulate_live(inputs), closed_form(inputs))

    def test_zero_dirty_rate_agrees(self) -> None:
        inputs = LiveMigrationInputs(4096, 0, 128, resume_seconds=0.1)
        assert simulate_live(inputs) == closed_form(inputs)


class TestSimulateLiveCapped:
    """For λ >= 1 a pass cannot dirty more than all of memory, unlike the bare formula."""

    def test_every_round_copies_all_memory(self) -> None:
        inputs = LiveMigrationInputs(2048, 250, 100, max_passes=10, resume_seconds=0.2)
        est = simulate_live(inputs)
        assert est.passes == 10
        assert est.bytes_sent == 11 * 2048 * MIB
        assert est.total_seconds == pytest.approx(11 * 20.48 + 0.2)
        assert est.downtime_seconds == pytest.approx(20.48 + 0.2)

    def test_ratio_one_equals_formula(self) -> None:
        inputs = LiveMigrationInputs(1024, 100, 100, max_passes=5)
        assert_agree(simulate_live(inputs), closed_form(inputs), rel=1e-12)

    def test_ratio_above_one_is_far_below_formula(self) -> None:
        inputs = LiveMigrationInputs(1024, 200, 100, max_passes=5)
        sim, formula = simulate_live(inputs), closed_form(inputs)
        assert sim.passes == formula.passes == 5
        assert sim.bytes_sent == 6 * 1024 * MIB < formula.bytes_sent
        assert sim.downtime_seconds == pytest.approx(formula.downtime_seconds / 32)


class TestQuickMigration:
    """Quick migration is all blackout: save, fail over, restore."""

    def test_save_failover_restore(self) -> None:
        est = quick_migration(4096, storage_mib_s=200, failover_seconds=2.0)
        assert est == MigrationEstimate(42.96, 42.96, 0, 2 * 4096 * MIB)

    def test_downtime_grows_with_memory_and_dwarfs_live(self) -> None:
        small, big = quick_migration(1024, 200), quick_migration(8192, 200)
        assert big.downtime_seconds > small.downtime_seconds
        live = closed_form(LiveMigrationInputs(1024, 5, GBE))
        assert small.downtime_seconds > 1000 * live.downtime_seconds

    def test_rejects_zero_storage_rate(self) -> None:
        with pytest.raises(ValueError, match="storage_mib_s"):
            quick_migration(1024, 0)


def concurrent(inputs: LiveMigrationInputs, start: float = 0.0) -> ConcurrentMigration:
    return ConcurrentMigration(
        memory_mib=inputs.memory_mib,
        dirty_mib_s=inputs.dirty_mib_s,
        start_seconds=start,
        max_passes=inputs.max_passes,
        threshold_kib=inputs.threshold_kib,
        setup_seconds=inputs.setup_seconds,
        resume_seconds=inputs.resume_seconds,
    )


class TestSimulateConcurrent:
    """Migrations on one link share it fairly; sharing raises λ, so serial beats parallel."""

    @pytest.mark.parametrize(
        "inputs",
        [
            LiveMigrationInputs(4096, 10 / MB_PER_MIB, 117.5 / MB_PER_MIB),
            LiveMigrationInputs(8192, 30, GBE, setup_seconds=1.0, resume_seconds=0.05),
            LiveMigrationInputs(16384, 400, TEN_GBE, max_passes=5),
            LiveMigrationInputs(2048, 250, 100, resume_seconds=0.2),
            LiveMigrationInputs(4096, 0, 128, resume_seconds=0.1),
        ],
    )
    @pytest.mark.parametrize("start", [0.0, 37.5])
    def test_single_migration_equals_simulate_live(
        self, inputs: LiveMigrationInputs, start: float
    ) -> None:
        [est] = simulate_concurrent([concurrent(inputs, start)], inputs.bandwidth_mib_s)
        assert_agree(est, simulate_live(inputs), rel=1e-9)

    def test_two_together_each_take_longer_than_alone(self) -> None:
        alone = simulate_live(LiveMigrationInputs(4096, 20, 112))
        both = simulate_concurrent([ConcurrentMigration(4096, 20, 0.0)] * 2, 112)
        for est in both:
            assert est.total_seconds > alone.total_seconds
            assert est.bytes_sent > alone.bytes_sent  # higher λ: more re-copying
            assert est.passes >= alone.passes

    def test_serial_finishes_no_later_than_parallel(self) -> None:
        first = simulate_live(LiveMigrationInputs(4096, 20, 112))
        serial = simulate_concurrent(
            [
                ConcurrentMigration(4096, 20, 0.0),
                ConcurrentMigration(4096, 20, first.total_seconds),
            ],
            112,
        )
        serial_done = first.total_seconds + serial[1].total_seconds
        parallel = simulate_concurrent([ConcurrentMigration(4096, 20, 0.0)] * 2, 112)
        parallel_done = max(est.total_seconds for est in parallel)
        assert serial_done <= parallel_done
        assert_agree(serial[1], first, rel=1e-9)  # the link was free again for the second

    def test_total_is_measured_from_each_migrations_own_start(self) -> None:
        # Far apart so they never overlap: each equals its solo run regardless of start time.
        solo = simulate_live(LiveMigrationInputs(1024, 10, 100))
        ests = simulate_concurrent(
            [ConcurrentMigration(1024, 10, 500.0), ConcurrentMigration(1024, 10, 0.0)], 100
        )
        for est in ests:
            assert_agree(est, solo, rel=1e-9)

    def test_link_bounds_the_makespan(self) -> None:
        migrations = [
            ConcurrentMigration(4096, 20, 0.0),
            ConcurrentMigration(2048, 5, 3.0, setup_seconds=1.0),
            ConcurrentMigration(8192, 40, 10.0, max_passes=5, resume_seconds=0.1),
        ]
        ests = simulate_concurrent(migrations, 112)
        makespan = max(
            m.start_seconds + e.total_seconds for m, e in zip(migrations, ests, strict=True)
        )
        assert makespan >= sum(e.bytes_sent for e in ests) / MIB / 112
        for m, est in zip(migrations, ests, strict=True):
            assert m.memory_mib * MIB <= est.bytes_sent
            assert 0 < est.downtime_seconds < est.total_seconds

    def test_overlap_slows_the_earlier_migration(self) -> None:
        solo = simulate_live(LiveMigrationInputs(4096, 20, 112))
        [early, _late] = simulate_concurrent(
            [ConcurrentMigration(4096, 20, 0.0), ConcurrentMigration(4096, 20, 10.0)], 112
        )
        assert early.total_seconds > solo.total_seconds

    def test_empty_and_invalid(self) -> None:
        assert simulate_concurrent([], 100) == []
        with pytest.raises(ValueError, match="bandwidth_mib_s"):
            simulate_concurrent([ConcurrentMigration(1024, 10, 0.0)], 0)
        with pytest.raises(ValueError, match="start_seconds"):
            ConcurrentMigration(1024, 10, math.inf)
