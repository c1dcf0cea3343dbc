"""Observed health is reported even when no action follows, counted in the metrics, and a plan
that would move VMs onto a node that is down is blocked."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from click.testing import CliRunner
from prometheus_client import generate_latest

from reconciler.cli.main import cli
from reconciler.engine.health import condition_counts, moves_onto_unhealthy, observed_conditions
from reconciler.engine.planner import make_plan
from reconciler.manifest.load import load_paths, require
from reconciler.model.actions import Action
from reconciler.model.records import Estate
from reconciler.runtime.metrics import LoopMetrics
from reconciler.runtime.ticks import TickReport

NO_CHANGES = Path(__file__).parent / "golden" / "no_changes"
WORLD = Path(__file__).resolve().parents[1] / "manifests" / "worlds" / "demo.yaml"


def converged() -> tuple[Estate, Estate]:
    desired = require(load_paths([str(NO_CHANGES / "desired")]))
    observed = require(load_paths([str(NO_CHANGES / "observed.yaml")], world=True))
    return desired, observed


def with_node_down(observed: Estate, name: str) -> Estate:
    node = observed.nodes[name]
    return observed.with_record(replace(node, status=replace(node.status, state="down")))


class TestConditions:
    """Each unhealthy fact is a condition with type, status, target and reason."""

    def test_a_converged_estate_has_none(self) -> None:
        desired, observed = converged()
        assert observed_conditions(observed, desired) == []
        assert not [n for n in make_plan(desired, observed).notes if n.startswith("condition")]

    def test_a_node_down_is_in_the_plan_notes(self) -> None:
        desired, observed = converged()
        plan = make_plan(desired, with_node_down(observed, "hv3"))
        assert "condition NodeDown=True Node/hv3: hv3 is down" in plan.notes

    def test_a_saved_vm_and_a_missing_switch(self) -> None:
        desired, observed = converged()
        web = observed.vms["WEB01"]
        hv2 = observed.nodes["hv2"]
        observed = observed.with_record(replace(web, power_state="saved"))
        observed = observed.with_record(replace(hv2, status=replace(hv2.status, switches={})))
        found = {(c.type, c.target) for c in observed_conditions(observed, desired)}
        assert found == {("VmSaved", "VirtualMachine/WEB01"), ("SwitchMissing", "Node/hv2")}


class TestNoMovesOntoUnhealthyNodes:
    """A move whose destination is down is a blocked item."""

    def test_a_move_onto_a_down_node_blocks(self) -> None:
        _, observed = converged()
        observed = with_node_down(observed, "hv3")
        params = {"vm": "WEB01", "source": "hv1", "destination": "hv3", "method": "live"}
        move = Action("migrate_vm:WEB01", "migrate_vm", "VirtualMachine/WEB01", "lab", params)
        [v] = moves_onto_unhealthy([move], observed)
        assert (v.rule, v.severity, v.action) == ("unhealthy_destination", "block", move.id)

    def test_a_vm_pinned_to_a_down_node_is_not_moved_there(self) -> None:
        desired, observed = converged()
        observed = with_node_down(observed, "hv3")
        web = desired.vms["WEB01"]
        plan = make_plan(desired.with_record(replace(web, node="hv3")), observed)
        assert plan.blocked
        blocks = {(v.rule, v.action) for v in plan.violations if v.severity == "block"}
        assert ("unhealthy_destination", "migrate_vm:WEB01") in blocks


class TestMetricsCountThem:
    """reconciler_conditions{type} counts what the last tick observed."""

    def test_gauge_by_type(self) -> None:
        metrics = LoopMetrics()
        notes = (
            "condition NodeDown=True Node/hv3: hv3 is down",
            "condition NodeDown=True Node/hv4: hv4 is down",
            "condition VmSaved=True VirtualMachine/WEB01: WEB01 is saved on hv1",
            "rolling update r1: quorum allows 1 node(s) out at once",
        )
        assert condition_counts(notes) == {"NodeDown": 2, "VmSaved": 1}
        metrics.tick_done(TickReport(mode="once", started_at=0.0, ended_at=1.0, notes=notes))
        text = generate_latest(metrics.registry).decode()
        assert 'reconciler_conditions{type="NodeDown"} 2.0' in text
        assert 'reconciler_conditions{type="VmSaved"} 1.0' in text
        assert 'reconciler_conditions{type="SwitchMissing"} 0.0' in text


class TestObserveShowsThem:
    """observe prints conditions as YAML comments (JSON: on stderr), so output stays manifests."""

    def test_after_a_node_crash(self, tmp_path: Path) -> None:
        runner = CliRunner()
        state = ["--state-dir", str(tmp_path)]
        assert runner.invoke(cli, [*state, "sim", "init", str(WORLD)]).exit_code == 0
        assert runner.invoke(cli, [*state, "sim", "fault", "node-crash", "hv02"]).exit_code == 0
        result = runner.invoke(cli, [*state, "observe"])
        assert result.exit_code == 0, result.output
        assert "# condition NodeDown=True Node/hv02: hv02 is down" in result.output
        result = runner.invoke(cli, [*state, "observe", "--format", "json"])
        assert result.exit_code == 0
        assert isinstance(json.loads(result.stdout), list)
        assert "condition NodeDown=True Node/hv02" in result.stderr
