"""The text plan's values, spelt as a manifest spells them (stated by hand)."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.cli.render import describe, plan_lines
from reconciler.engine.plan import Plan
from reconciler.model.actions import Action


def set_vm(before: Any, after: Any) -> Action:
    return Action("set_vm:VM1", "set_vm", "VirtualMachine/VM1", "c1", {"vm": "VM1"},
                  changes={"spec.x": (before, after)})  # fmt: skip


@pytest.mark.parametrize(
    ("before", "after", "text"),
    [
        (False, True, "spec.x: false -> true"),
        (None, "hv01", "spec.x: (none) -> hv01"),
        ([1, 2], [1, 2, 3], "spec.x: [1, 2] -> [1, 2, 3]"),
        ({"mode": "live", "on": True}, {"mode": "quick", "on": None},
         "spec.x: {mode: live, on: true} -> {mode: quick, on: null}"),
        (["a", False], [], "spec.x: [a, false] -> []"),
        (2048, 4096, "spec.x: 2048 -> 4096"),
    ],
)  # fmt: skip
def test_manifest_spelling(before: Any, after: Any, text: str) -> None:
    assert describe(set_vm(before, after)) == f"VirtualMachine/VM1  {text}"


def test_clusters_interleaved_get_a_heading_each_time_so_numbers_ascend() -> None:
    def act(n: int, cluster: str) -> Action:
        return Action(f"validate_cluster:{n}", "validate_cluster", f"Cluster/{cluster}", cluster)

    plan = Plan(
        actions=(act(1, "a"), act(2, "b"), act(3, "a")),
        violations=(),
        fingerprint="sha256:" + "0" * 64,
        prior_state={},
    )
    lines = [line for line in plan_lines(plan, colour=False)[1:] if line]
    assert [line.split()[0] for line in lines] == [
        "Cluster",
        "1.",
        "Cluster",
        "2.",
        "Cluster",
        "3.",
    ]
    assert [line for line in lines if line.startswith("Cluster")] == [
        "Cluster a",
        "Cluster b",
        "Cluster a",
    ]
