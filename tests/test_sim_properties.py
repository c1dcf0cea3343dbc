"""Properties of the world rules under random action sequences (Hypothesis).

Whatever the rules accept must not break an invariant that held before the step; whatever they
refuse must leave the world untouched.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sim_strategies import actions, demo_world, lab_world, with_free_lun

from reconciler.model.actions import Action
from reconciler.model.records import Estate
from reconciler.model.rules import Violation, apply_rules, invariants

# Violations keyed by what they are about; the numbers in a message may move without it
# being a new violation, except where the message names the problem itself (a slot, a VLAN).
_KEYED_BY_MESSAGE = {"controller_limits", "connectivity"}

DEMO = demo_world()
LAB = lab_world()
# The lab with one node down: quorum hangs on the witness, so quorum changes are tested at the edge.
LAB_ONE_DOWN = LAB.with_record(
    replace(LAB.nodes["n2"], status=replace(LAB.nodes["n2"].status, state="down"))
)
Run = tuple[str, Estate, list[Action]]
WORLDS = {
    "demo": (DEMO, "prod"),
    "lab": (LAB, "lab"),
    "lab-one-down": (LAB_ONE_DOWN, "lab"),
    "lab-free-lun": (with_free_lun(LAB), "lab"),  # a LUN to create a CSV from
}


def _keys(violations: list[Violation]) -> set[tuple[str, ...]]:
    return {
        (v.rule, v.target, v.message) if v.rule in _KEYED_BY_MESSAGE else (v.rule, v.target)
        for v in violations
    }


@st.composite
def runs(draw: st.DrawFn) -> Run:
    name = draw(st.sampled_from(sorted(WORLDS)))
    estate, cluster = WORLDS[name]
    steps = draw(st.lists(actions(estate, cluster), min_size=1, max_size=15))
    return name, estate, steps


class TestAcceptedActionsKeepInvariants:
    """An accepted action never adds a violation: memory, quorum, slots, volume sizes, VLANs."""

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(runs())
    def test_random_sequences(self, run: Run) -> None:
        _name, estate, steps = run
        for step in steps:
            before = _keys(invariants(estate))
            result = apply_rules(estate, step)
            if result.failures:
                assert result.estate == estate, f"refused {step.id} changed the world"
                continue
            if result.done:
                assert result.estate == estate, f"already-done {step.id} changed the world"
                continue
            new = _keys(invariants(result.estate)) - before
            assert not new, f"{step.type} {dict(step.params)} added {sorted(new)}"
            estate = result.estate


class TestAcceptedActionsAreIdempotent:
    """Applying an accepted action again finds it done and changes nothing."""

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(runs())
    def test_second_apply_is_done(self, run: Run) -> None:
        _name, estate, steps = run
        for step in steps:
            result = apply_rules(estate, step)
            if result.failures or result.done:
                continue
            again = apply_rules(result.estate, step)
            assert again.done, f"{step.type} {dict(step.params)}: {again.failures}"
            assert again.estate == result.estate
            estate = result.estate
