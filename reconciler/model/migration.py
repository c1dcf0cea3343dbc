"""The physics of moving a VM: live-migration pre-copy, quick migration, and a shared link.

Pure arithmetic in simulated seconds (no I/O, no clock); docs/domain.md section 8 gives the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, auto
from functools import lru_cache

MIB = 1024 * 1024

# Float rounding can put ``M * λ**k`` a hair above the threshold when mathematically it is exactly
# on it (think 1 GiB, λ = 0.5, 256 KiB). Both the closed form and the simulators therefore stop at
# ``remainder <= threshold * (1 + _REL_TOL)`` so that they agree on the pass count at a boundary.
_REL_TOL = 1e-9


def _require_non_negative(**values: float) -> None:
    for name, value in values.items():
        # ``not >=`` also rejects NaN.
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class LiveMigrationInputs:
    """One live migration: sizes in MiB, rates in MiB/s, times in seconds."""

    memory_mib: float
    dirty_mib_s: float  # rate the running VM dirties memory
    bandwidth_mib_s: float  # live-migration link bandwidth available to this migration
    max_passes: int = 10  # 10 on 2008r2, 5 later
    threshold_kib: float = 256  # stop when the dirty remainder is at most this
    setup_seconds: float = 0.0
    resume_seconds: float = 0.0

    def __post_init__(self) -> None:
        _require_non_negative(
            memory_mib=self.memory_mib,
            dirty_mib_s=self.dirty_mib_s,
            max_passes=self.max_passes,
            threshold_kib=self.threshold_kib,
            setup_seconds=self.setup_seconds,
            resume_seconds=self.resume_seconds,
        )
        if not self.bandwidth_mib_s > 0:
            raise ValueError(f"bandwidth_mib_s must be > 0, got {self.bandwidth_mib_s!r}")

    @property
    def dirty_ratio(self) -> float:
        """λ = D / B: the fraction of each pass that is dirty again when the pass ends."""
        return self.dirty_mib_s / self.bandwidth_mib_s


@dataclass(frozen=True, slots=True)
class MigrationEstimate:
    """What a move costs: its duration, the VM's blackout, the pre-copy rounds and the traffic."""

    total_seconds: float
    downtime_seconds: float  # blackout: final stop-and-copy + resume
    passes: int  # n in the closed form: copy rounds after the first full copy
    bytes_sent: int  # bytes (not MiB)


@dataclass(frozen=True, slots=True)
class ConcurrentMigration:
    """A live migration that shares a link with others, starting at ``start_seconds``."""

    memory_mib: float
    dirty_mib_s: float
    start_seconds: float
    max_passes: int = 10
    threshold_kib: float = 256
    setup_seconds: float = 0.0
    resume_seconds: float = 0.0

    def __post_init__(self) -> None:
        _require_non_negative(
            memory_mib=self.memory_mib,
            dirty_mib_s=self.dirty_mib_s,
            max_passes=self.max_passes,
            threshold_kib=self.threshold_kib,
            setup_seconds=self.setup_seconds,
            resume_seconds=self.resume_seconds,
        )
        if not math.isfinite(self.start_seconds):
            raise ValueError(f"start_seconds must be finite, got {self.start_seconds!r}")


def mbps_to_mib_s(bandwidth_mbps: float, efficiency: float = 0.94) -> float:
    """Link speed in Mbit/s to usable MiB/s (1000 Mbps at 94% is 117.5 MB/s, ~112.06 MiB/s)."""
    return bandwidth_mbps * efficiency * 1_000_000 / 8 / MIB


def _threshold_mib(threshold_kib: float) -> float:
    return threshold_kib / 1024


def _small_enough(remainder_mib: float, threshold_kib: float) -> bool:
    return remainder_mib <= _threshold_mib(threshold_kib) * (1 + _REL_TOL)


def _to_bytes(mib: float) -> int:
    return round(mib * MIB)


def closed_form(inputs: LiveMigrationInputs) -> MigrationEstimate:
    """The closed-form pre-copy model (Liu et al. 2011, Akoush et al. 2010).

    ``n = min(n_max, ceil(ln(V_th/M) / ln λ))``, ``bytes = M (1 - λ^(n+1)) / (1 - λ)``,
    ``time = T_setup + bytes/B + T_resume``, ``down = M λ^n / B + T_resume``.

    Edge cases: memory already at or below the threshold (or ``n_max = 0``) gives ``n = 0`` and
    the whole memory is copied in the blackout; ``D = 0`` gives one live pass, ``n = 0`` and an
    empty stop-and-copy; ``λ >= 1`` (or a zero threshold) never converges so ``n = n_max``. For
    ``λ > 1`` the formula lets the remainder grow past ``M``, which :func:`simulate_live` does not
    (see there); if that growth overflows a float, ``ValueError`` says so.
    """
    m = inputs.memory_mib
    b = inputs.bandwidth_mib_s
    lam = inputs.dirty_ratio
    target = _threshold_mib(inputs.threshold_kib) * (1 + _REL_TOL) / m if m > 0 else math.inf
    if target >= 1 or inputs.max_passes == 0:
        n = 0  # pause at once: everything is copied in the blackout
    elif lam == 0:
        n = 1  # pass 0 copies everything and nothing is dirtied: the final round is empty
    elif lam >= 1 or target == 0:
        n = inputs.max_passes
    else:
        n = min(inputs.max_passes, max(0, math.ceil(math.log(target) / math.log(lam))))
    try:
        remainder = m * lam**n
        if n == 0:
            sent = m
        elif math.isclose(lam, 1.0, rel_tol=0, abs_tol=1e-12):
            sent = m * (n + 1)  # the geometric sum degenerates: every pass copies all of M
        else:
            sent = m * (1 - lam ** (n + 1)) / (1 - lam)
        if not math.isfinite(sent):
            raise OverflowError(sent)
        sent_bytes = _to_bytes(sent)
    except OverflowError as exc:
        raise ValueError(f"closed form overflows for λ={lam!r}, n={n}; use simulate_live") from exc
    return MigrationEstimate(
        total_seconds=inputs.setup_seconds + sent / b + inputs.resume_seconds,
        downtime_seconds=remainder / b + inputs.resume_seconds,
        passes=_rounds_after_first(n, remainder),
        bytes_sent=sent_bytes,
    )


def _rounds_after_first(live_passes: int, final_remainder_mib: float) -> int:
    # n counts copy rounds after the first full one, the stop-and-copy included; an empty final
    # round (nothing dirty: D = 0, or a remainder that underflowed) is not a round.
    return live_passes if final_remainder_mib > 0 else max(0, live_passes - 1)


@lru_cache(maxsize=4096)  # frozen numbers in, frozen numbers out: a plan asks the same often
def simulate_live(inputs: LiveMigrationInputs) -> MigrationEstimate:
    """Live migration iterated pass by pass.

    Pass 0 copies all of M at B; while a pass runs for ``t`` seconds the VM dirties ``D t``, capped
    at M (a page is only dirty once). The next pass copies what was dirtied. Pre-copy stops when
    the remainder is at most the threshold or after ``max_passes`` live passes; the VM then pauses,
    the remainder is copied (blackout) and it resumes.

    For ``λ < 1`` the cap never binds and this agrees with :func:`closed_form`. For ``λ >= 1``
    every pass re-dirties all of memory, so each of the ``n_max + 1`` rounds copies exactly M and
    the blackout is ``M/B + T_resume``: equal to the formula at ``λ == 1``, far below it for
    ``λ > 1`` (where the uncapped formula has the remainder grow as ``M λ^n``).
    """
    m = inputs.memory_mib
    b = inputs.bandwidth_mib_s
    remainder = m
    live_passes = 0
    sent = 0.0
    while not _small_enough(remainder, inputs.threshold_kib) and live_passes < inputs.max_passes:
        pass_seconds = remainder / b
        sent += remainder
        remainder = min(m, inputs.dirty_mib_s * pass_seconds)
        live_passes += 1
    sent += remainder
    return MigrationEstimate(
        total_seconds=inputs.setup_seconds + sent / b + inputs.resume_seconds,
        downtime_seconds=remainder / b + inputs.resume_seconds,
        passes=_rounds_after_first(live_passes, remainder),
        bytes_sent=_to_bytes(sent),
    )


def quick_migration(
    memory_mib: float, storage_mib_s: float, failover_seconds: float = 2.0
) -> MigrationEstimate:
    """Quick migration: save memory to disk, fail the role over, restore. All of it is blackout."""
    _require_non_negative(memory_mib=memory_mib, failover_seconds=failover_seconds)
    if not storage_mib_s > 0:
        raise ValueError(f"storage_mib_s must be > 0, got {storage_mib_s!r}")
    save_or_restore = memory_mib / storage_mib_s
    blackout = save_or_restore + failover_seconds + save_or_restore
    return MigrationEstimate(
        total_seconds=blackout,
        downtime_seconds=blackout,
        passes=0,
        bytes_sent=_to_bytes(2 * memory_mib),  # written once, read once
    )


class _Phase(Enum):
    WAITING = auto()
    SETUP = auto()
    COPY = auto()
    RESUME = auto()
    DONE = auto()


@dataclass(slots=True)
class _Run:
    """Mutable state of one migration inside :func:`simulate_concurrent`."""

    spec: ConcurrentMigration
    phase: _Phase = _Phase.WAITING
    phase_end: float = 0.0  # absolute time the WAITING, SETUP or RESUME phase ends
    remaining_mib: float = 0.0  # still to copy in the current round
    dirtied_mib: float = 0.0  # dirtied so far during the current live pass
    live: bool = True  # False while in the final stop-and-copy (VM paused, nothing dirtied)
    live_passes: int = 0
    final_remainder_mib: float = 0.0
    sent_mib: float = 0.0
    blackout_start: float = 0.0
    finish: float = 0.0

    def begin_round(self, size_mib: float, now: float) -> None:
        spec = self.spec
        self.sent_mib += size_mib
        self.remaining_mib = size_mib
        self.dirtied_mib = 0.0
        if _small_enough(size_mib, spec.threshold_kib) or self.live_passes >= spec.max_passes:
            self.live = False
            self.final_remainder_mib = size_mib
            self.blackout_start = now
        else:
            self.live = True

    def step(self, now: float) -> None:
        """The current phase has just ended at ``now``: move to the next."""
        spec = self.spec
        if self.phase is _Phase.WAITING:
            self.phase = _Phase.SETUP
            self.phase_end = now + spec.setup_seconds
        elif self.phase is _Phase.SETUP:
            self.phase = _Phase.COPY
            self.begin_round(spec.memory_mib, now)
        elif self.phase is _Phase.COPY and self.live:
            self.live_passes += 1
            self.begin_round(self.dirtied_mib, now)
        elif self.phase is _Phase.COPY:
            self.phase = _Phase.RESUME
            self.phase_end = now + spec.resume_seconds
        elif self.phase is _Phase.RESUME:
            self.phase = _Phase.DONE
            self.finish = now

    def estimate(self) -> MigrationEstimate:
        return MigrationEstimate(
            total_seconds=self.finish - self.spec.start_seconds,
            downtime_seconds=self.finish - self.blackout_start,
            passes=_rounds_after_first(self.live_passes, self.final_remainder_mib),
            bytes_sent=_to_bytes(self.sent_mib),
        )


def simulate_concurrent(
    migrations: Sequence[ConcurrentMigration],
    bandwidth_mib_s: float,
    stream_cap_mib_s: float = math.inf,
) -> list[MigrationEstimate]:
    """Live migrations sharing one link fairly, simulated from event to event.

    While k migrations are copying (pre-copy or stop-and-copy) each gets ``B / k``; slower passes
    dirty more, so sharing raises every migration's effective λ (docs/domain.md section 8:
    serial beats parallel on one link). Setup and resume use no bandwidth. Events are a
    migration starting, its setup ending, a round ending and its resume ending. Each estimate's
    ``total_seconds`` is measured from that migration's own ``start_seconds``; results follow
    the input order.

    ``stream_cap_mib_s``: the most one migration's stream carries, however idle the link (a
    single stream on older hosts does not fill 10 GbE); each gets ``min(cap, B / k)``.
    """
    if not bandwidth_mib_s > 0:
        raise ValueError(f"bandwidth_mib_s must be > 0, got {bandwidth_mib_s!r}")
    if not stream_cap_mib_s > 0:
        raise ValueError(f"stream_cap_mib_s must be > 0, got {stream_cap_mib_s!r}")
    runs = [_Run(spec=spec, phase_end=spec.start_seconds) for spec in migrations]
    if not runs:
        return []
    now = min(run.phase_end for run in runs)
    # Every iteration ends at least one phase and each migration has finitely many phases.
    while any(run.phase is not _Phase.DONE for run in runs):
        copying = [run for run in runs if run.phase is _Phase.COPY]
        share = min(stream_cap_mib_s, bandwidth_mib_s / len(copying)) if copying else 0.0
        pending: list[tuple[float, _Run]] = []
        for run in runs:
            if run.phase is _Phase.COPY:
                pending.append((run.remaining_mib / share, run))
            elif run.phase is not _Phase.DONE:
                pending.append((max(0.0, run.phase_end - now), run))
        dt = min(wait for wait, _ in pending)
        for run in copying:
            run.remaining_mib = max(0.0, run.remaining_mib - share * dt)
            if run.live:
                run.dirtied_mib = min(
                    run.spec.memory_mib, run.dirtied_mib + run.spec.dirty_mib_s * dt
                )
        now += dt
        # Events closer together than float noise are handled as one instant.
        slack = 1e-12 * max(1.0, dt)
        for wait, run in pending:
            if wait <= dt + slack:
                if run.phase is _Phase.COPY:
                    run.remaining_mib = 0.0
                run.step(now)
    return [run.estimate() for run in runs]
