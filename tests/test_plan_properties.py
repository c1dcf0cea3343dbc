"""Properties of the planner over small generated estates, checked with Hypothesis.

Estates come from the simulator's generator (1-2 clusters of 2-4 nodes, its own drift that
the planner can fix online), plus up to three changes made behind the tool's back
(``make_drift``: VMs moved, stopped or shrunk, VLANs dropped from trunks, disks detached).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from reconciler.engine.plan import Plan, plan_from_json
from reconciler.engine.planner import make_plan
from reconciler.engine.safety import replay
from reconciler.model.quorum import effective_quorum
from reconciler.model.records import Estate
from reconciler.providers.sim.drift import DRIFT_KINDS, DriftError, make_drift
from reconciler.providers.sim.generate import GeneratedEstate, generate_estate

SCHEMA = Path(__file__).parents[1] / "schemas" / "plan.schema.json"
VALIDATOR = Draft202012Validator(json.loads(SCHEMA.read_text()))
PLATFORMS = ("2008r2", "2012r2", "2019", "2022")
ONLINE = {"none", "online", "live-migration"}

examples = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass(frozen=True)
class Case:
    desired: Estate
    observed: Estate


@cache
def generated(
    clusters: int, nodes: int, per_node: int, drift: float, seed: int, platform: str
) -> GeneratedEstate:
    return generate_estate(clusters, nodes, per_node, drift, seed, platform=platform)


def concrete_quorum(world: Estate) -> Estate:
    """A real cluster runs a concrete quorum mode; generated worlds say ``recommended``."""
    for cluster in world.clusters.values():
        quorum = effective_quorum(cluster.quorum, len(cluster.nodes))
        world = world.with_record(replace(cluster, quorum=quorum))
    return world


@st.composite
def estates(draw: st.DrawFn, behind_the_back: bool = True) -> Case:
    gen = generated(
        draw(st.integers(1, 2)),
        draw(st.integers(2, 4)),
        draw(st.integers(1, 3)),
        draw(st.sampled_from((0.0, 0.25, 0.5, 1.0))),
        draw(st.integers(0, 2**16)),
        draw(st.sampled_from(PLATFORMS)),
    )
    world = concrete_quorum(gen.world)
    if behind_the_back:
        changes = st.tuples(st.sampled_from(DRIFT_KINDS), st.integers(0, 2**16))
        for kind, seed in draw(st.lists(changes, max_size=3)):
            with contextlib.suppress(DriftError):  # nothing of that kind to change here
                world, _ = make_drift(world, seed, kind)
    return Case(gen.desired, world)


def plan(case: Case) -> Plan:
    return make_plan(case.desired, case.observed)


def settle(case: Case, planned: Plan) -> Estate:
    """The observed state once the plan has run, by the world's own rules."""
    return replay(case.observed, case.desired, list(planned.actions))[0]


class TestDeterminism:
    """Same inputs, same plan, byte for byte."""

    @examples
    @given(estates())
    def test_planning_twice_gives_the_same_bytes(self, case: Case) -> None:
        assert plan(case).dumps() == plan(case).dumps()

    @examples
    @given(estates())
    def test_plan_json_reads_back_to_the_same_bytes(self, case: Case) -> None:
        text = plan(case).dumps()
        assert plan_from_json(json.loads(text)).dumps() == text


class TestConvergence:
    """After an unblocked plan has run, planning again finds nothing to do."""

    def test_unblocked_plan_leaves_nothing_to_do(self) -> None:
        blocked: list[bool] = []

        @settings(examples, derandomize=True, database=None)
        @given(estates())
        def check(case: Case) -> None:
            first = plan(case)
            blocked.append(first.blocked)
            if first.blocked:
                return
            again = make_plan(case.desired, settle(case, first))
            assert [a.id for a in again.actions] == []
            assert not again.blocked

        check()
        # A blocked case passes without checking anything: most cases must be unblocked.
        unblocked = blocked.count(False)
        assert unblocked >= 20 and unblocked >= 0.6 * len(blocked), (unblocked, len(blocked))

    @examples
    @given(estates(behind_the_back=False))
    def test_generated_drift_is_fixed_online_and_unblocked(self, case: Case) -> None:
        first = plan(case)
        assert not first.blocked, [v.message for v in first.violations]
        assert {a.disruption for a in first.actions} <= ONLINE
        assert make_plan(case.desired, settle(case, first)).empty

    @examples
    @given(estates(behind_the_back=False), st.data())
    def test_an_interrupted_plan_is_finished_by_planning_again(
        self, case: Case, data: st.DataObject
    ) -> None:
        first = plan(case)
        done = data.draw(st.integers(0, len(first.actions)), label="actions applied")
        halfway = replay(case.observed, case.desired, list(first.actions[:done]))[0]
        rest = make_plan(case.desired, halfway)
        assert not rest.blocked
        end = replay(halfway, case.desired, list(rest.actions))[0]
        assert make_plan(case.desired, end).empty


class TestPlanShape:
    """Every plan is schema-valid, uniquely named and ordered so dependencies come first."""

    @examples
    @given(estates())
    def test_every_plan_is_valid_against_the_plan_schema(self, case: Case) -> None:
        document = plan(case).to_json()
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(document)]
        assert errors == []

    @examples
    @given(estates())
    def test_action_ids_are_unique(self, case: Case) -> None:
        ids = [a.id for a in plan(case).actions]
        assert len(ids) == len(set(ids))

    @examples
    @given(estates())
    def test_every_dependency_is_an_earlier_action(self, case: Case) -> None:
        seen: set[str] = set()
        for action in plan(case).actions:
            assert set(action.depends_on) <= seen, action.id
            seen.add(action.id)

    @examples
    @given(estates())
    def test_summary_counts_the_actions(self, case: Case) -> None:
        planned = plan(case)
        summary = planned.summary()
        assert summary["actions"] == len(planned.actions)
        assert sum(summary["by_type"].values()) == len(planned.actions)
        assert sum(summary["by_disruption"].values()) == len(planned.actions)
        assert summary["blocked"] is any(v.severity == "block" for v in planned.violations)

    @examples
    @given(estates(), st.data())
    def test_a_target_keeps_its_actions_and_what_they_need(
        self, case: Case, data: st.DataObject
    ) -> None:
        full = plan(case)
        targets = sorted({a.target for a in full.actions})
        if not targets:
            return
        target = data.draw(st.sampled_from(targets), label="target")
        limited = make_plan(case.desired, case.observed, target=target)
        ids = [a.id for a in limited.actions]
        assert ids == [a.id for a in full.actions if a.id in set(ids)]
        assert {a.id for a in full.actions if a.target == target} <= set(ids)
        for action in limited.actions:
            assert set(action.depends_on) <= set(ids)


class TestResidualShortcut:
    """The residual diff compares again only VMs in the first diff or changed by the replay;
    over any prefix of a plan (which leaves differences behind) it finds exactly what the
    full comparison finds."""

    def test_the_shortcut_finds_what_the_full_diff_finds(self) -> None:
        from reconciler.engine.diff import diff_estates
        from reconciler.engine.residual import unresolved

        left_behind: list[int] = []

        @settings(examples, derandomize=True, database=None)
        @given(estates(), st.data())
        def check(case: Case, data: st.DataObject) -> None:
            first = plan(case)
            done = data.draw(st.integers(0, len(first.actions)), label="actions applied")
            projected = replay(case.observed, case.desired, list(first.actions[:done]))[0]
            diffs = diff_estates(case.desired, case.observed)
            full = unresolved(case.desired, projected, [])
            short = unresolved(case.desired, projected, [], None, (case.observed, diffs))
            assert short == full
            left_behind.append(len(full))

        check()
        # Not vacuous: most drawn prefixes leave something the residual must report.
        assert sum(1 for n in left_behind if n) >= 10, left_behind

    def test_a_vm_the_replay_moved_off_its_pinned_node_is_compared_again(self) -> None:
        from reconciler.engine.diff import diff_estates
        from reconciler.engine.residual import unresolved

        gen = generated(1, 2, 1, 0.0, 3, "2019")
        world = concrete_quorum(gen.world)
        vm = sorted(world.vms.values(), key=lambda v: v.name)[0]
        other = next(n for n in world.clusters[vm.cluster].nodes if n != vm.node)
        desired = gen.desired.with_record(replace(gen.desired.vms[vm.name], node=vm.node))
        diffs = diff_estates(desired, world)
        assert f"VirtualMachine/{vm.name}" not in {d.ref for d in diffs}  # pinned where it is
        # As a drain would leave it, had the plan not brought it back:
        projected = world.with_record(replace(vm, node=other))
        found = unresolved(desired, projected, [], None, (world, diffs))
        assert [v.target for v in found] == [f"VirtualMachine/{vm.name}"]
        assert "spec.node" in found[0].message
