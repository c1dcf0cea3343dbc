"""One apply path, and imports that run one way (checked on the source, module by module)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "reconciler"


def imported(module: str) -> set[str]:
    """Every module and ``module.name`` a source file imports, at any depth."""
    tree = ast.parse((PACKAGE / module).read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


class TestOneApplyPath:
    """The CLI and the scheduled loop both apply through runtime/apply.py's apply_plan."""

    @pytest.mark.parametrize("module", ["cli/apply_commands.py", "runtime/reconcile.py"])
    def test_applies_through_apply_plan(self, module: str) -> None:
        names = imported(module)
        assert "reconciler.runtime.apply.apply_plan" in names
        assert "reconciler.runtime.executor.Executor" not in names

    def test_the_cli_neither_plans_nor_checks_saved_plans_itself(self) -> None:
        names = imported("cli/apply_commands.py")
        forbidden = {
            "reconciler.engine.planner",
            "reconciler.engine.planner.make_plan",
            "reconciler.engine.plan.stale_objects",
            "reconciler.engine.plan.plan_from_json",
            "reconciler.runtime.workflow.load_desired",
        }
        assert names & forbidden == set()


class TestTickTypes:
    """metrics and reconcile share the tick types through a module of their own."""

    def test_metrics_does_not_import_reconcile(self) -> None:
        assert not any(
            n.startswith("reconciler.runtime.reconcile") for n in imported("runtime/metrics.py")
        )

    def test_reconcile_does_not_import_metrics(self) -> None:
        assert not any(
            n.startswith("reconciler.runtime.metrics") for n in imported("runtime/reconcile.py")
        )

    def test_both_take_the_tick_report_from_ticks(self) -> None:
        for module in ("runtime/metrics.py", "runtime/reconcile.py"):
            assert "reconciler.runtime.ticks.TickReport" in imported(module), module
