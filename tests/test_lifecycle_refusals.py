"""The hyperv provider refuses the lifecycle actions it does not perform yet, by name and with
its reason, so a plan for a real estate is blocked before anything runs (a cluster the plan
forms is refused too, though the world does not have it yet)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.engine.planner import make_plan
from reconciler.manifest.load import load_paths, require
from reconciler.providers.base import Capabilities
from reconciler.providers.hyperv import act
from reconciler.providers.hyperv.provider import MODERN_ACTIONS, SUPPORTED_PLATFORMS

GOLDEN = Path(__file__).parent / "golden"
NEW = ("create_cluster",)
CAPS = Capabilities(
    name="hyperv",
    simulated=False,
    actions=frozenset(MODERN_ACTIONS),
    platforms=SUPPORTED_PLATFORMS,
    reasons=dict(act.NOT_DONE),
)


@pytest.mark.parametrize("kind", NEW)
def test_each_is_refused_with_its_reason(kind: str) -> None:
    why = CAPS.refusal(kind, "2019")
    assert why is not None and why.startswith(f"the hyperv provider cannot {kind}: ")
    assert "not built in the hyperv provider yet" in why


@pytest.mark.parametrize(
    ("case", "kind"),
    [("create_cluster", "create_cluster")],
)
def test_a_plan_that_needs_one_is_blocked_by_name(case: str, kind: str) -> None:
    desired = require(load_paths([str(GOLDEN / case / "desired")]))
    observed = require(load_paths([str(GOLDEN / case / "observed.yaml")], world=True))
    plan = make_plan(desired, observed, refuse=CAPS.refusal)
    blocked = [v for v in plan.violations if v.rule == "unsupported" and v.action]
    assert f"{kind}:" in " ".join(v.action or "" for v in blocked)
    assert plan.blocked


@pytest.mark.parametrize("kind", ["create_csv", "rename_csv", "remove_csv"])
def test_the_csv_life_is_offered_on_the_modern_path(kind: str) -> None:
    assert CAPS.refusal(kind, "2019") is None


def test_a_csv_create_plan_is_not_blocked_by_the_provider() -> None:
    desired = require(load_paths([str(GOLDEN / "csv_create" / "desired")]))
    observed = require(load_paths([str(GOLDEN / "csv_create" / "observed.yaml")], world=True))
    plan = make_plan(desired, observed, refuse=CAPS.refusal)
    assert "create_csv" in [a.type for a in plan.actions]
    assert not [v for v in plan.violations if v.rule == "unsupported" and v.action]


def test_an_embedded_team_is_refused_before_any_cmdlet_runs() -> None:
    from reconciler.model.actions import Action
    from reconciler.model.records import Estate

    calls: list[str] = []
    runner = act.Runner(lambda node, cmdlet, params: calls.append(cmdlet) or [], Estate(), None)  # type: ignore[arg-type]
    action = Action(
        id="match_vswitch:n1/vs",
        type="match_vswitch",
        target="Node/n1",
        cluster="lab",
        params={
            "node": "n1",
            "switch": "vs",
            "config": {"type": "external", "uplink_nic": None, "embedded_team": ["NIC1", "NIC2"]},
        },
    )
    with pytest.raises(ValueError, match="Switch Embedded Teaming"):
        act.match_vswitch(runner, action)
    assert calls == []
