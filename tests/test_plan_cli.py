"""``reconciler plan`` through the CLI, against a simulator world in a temporary state dir."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from reconciler.cli.main import cli, main

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "manifests" / "demo")
WORLD = str(ROOT / "manifests" / "worlds" / "demo.yaml")
GOLDEN = ROOT / "tests" / "golden"
SCHEMA = json.loads((ROOT / "schemas" / "plan.schema.json").read_text())


def run(state: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--state-dir", str(state), *args], catch_exceptions=False)
    return result.exit_code, result.output


def init(state: Path, world: str) -> Path:
    code, out = run(state, "sim", "init", world)
    assert code == 0, out
    return state


def plan_json(state: Path, *args: str) -> dict[str, Any]:
    code, out = run(state, "plan", "--json", *args)
    assert code == 0, out
    document: dict[str, Any] = json.loads(out)
    return document


def flat(text: str) -> str:
    """The output with line wrapping undone: words separated by single spaces."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo world that the tests here only plan against (planning changes nothing)."""
    return init(tmp_path_factory.mktemp("demo"), WORLD)


class TestTextOutput:
    """The text plan: a summary line first, then the steps in execution order."""

    def test_summary_line_comes_first(self, demo: Path) -> None:
        code, out = run(demo, "plan", DEMO)
        assert code == 0
        first = out.splitlines()[0]
        assert first.startswith("Plan: 13 action(s) (5 none, 6 online, 2 live-migration)")
        assert "estimated 15m 46s" in first
        assert first.endswith("safe to apply.")

    def test_steps_in_execution_order_with_their_numbers(self, demo: Path) -> None:
        lines = run(demo, "plan", DEMO)[1].splitlines()
        assert lines[1:3] == ["", "Cluster prod"]
        steps = [line.split()[:3] for line in lines[3:] if line.strip()]
        assert steps == [
            ["1.", "~", "set_vlan_trunk"],
            ["2.", "~", "begin_monitoring_maintenance"],
            ["3.", "~", "match_vswitch"],
            ["4.", "+", "present_storage"],
            ["5.", "+", "add_node"],
            ["6.", "~", "update_quorum"],
            ["7.", "→", "test_live_migration"],
            ["8.", "~", "validate_cluster"],
            ["9.", "~", "end_monitoring_maintenance"],
            ["10.", "~", "extend_lun"],
            ["11.", "~", "extend_volume"],
            ["12.", "→", "migrate_vm"],
            ["13.", "+", "add_disk"],
        ]

    def test_values_in_manifest_spelling(self, tmp_path: Path) -> None:
        for case, change in [
            ("drain_node", "spec.maintenance: false -> true"),
            ("resume_node", "spec.maintenance: true -> false"),
        ]:
            state = init(tmp_path / case, str(GOLDEN / case / "observed.yaml"))
            out = run(state, "plan", str(GOLDEN / case / "desired"))[1]
            assert change in out, out
            assert "True" not in out and "False" not in out

    def test_shows_before_and_after(self, demo: Path) -> None:
        out = flat(run(demo, "plan", DEMO)[1])
        assert "switch.vSwitch-VM.vlan_trunk.allowed: 10,20,30-39 -> 10,20,30-40" in out
        assert "spec.size_gib: 1536 -> 2048" in out
        assert "SQL02 hv01 -> hv02 (live, 12288 MiB)" in out

    def test_shows_disruption_and_duration_per_step(self, demo: Path) -> None:
        out = flat(run(demo, "plan", DEMO)[1])
        assert "1. ~ set_vlan_trunk" in out
        assert "[online, ~10s]" in out
        assert "8. ~ validate_cluster Cluster/prod [none, ~5m 00s]" in out
        assert "[live-migration, ~2m 34s]" in out

    def test_blocked_plan_says_so_first(self, tmp_path: Path) -> None:
        case = GOLDEN / "never_live_migrate"
        init(tmp_path, str(case / "observed.yaml"))
        first = run(tmp_path, "plan", str(case / "desired"))[1].splitlines()[0]
        assert "BLOCKED by 1 safety violation(s)" in first

    def test_blocked_plan_without_actions_does_not_claim_no_changes(self, tmp_path: Path) -> None:
        case = GOLDEN / "shrink_volume"
        init(tmp_path, str(case / "observed.yaml"))
        first = run(tmp_path, "plan", str(case / "desired"))[1].splitlines()[0]
        assert "No changes" not in first
        assert "BLOCKED by 1 safety violation" in first

    def test_blocked_plan_names_the_rule_and_the_fix(self, tmp_path: Path) -> None:
        case = GOLDEN / "shrink_volume"
        init(tmp_path, str(case / "observed.yaml"))
        out = flat(run(tmp_path, "plan", str(case / "desired"))[1])
        assert "BLOCK no_shrink: ClusterSharedVolume/CSV1" in out
        assert "fix: set size_gib >= 1024" in out


class TestJsonOutput:
    """--json, --format json and --out write the same schema-valid, deterministic plan."""

    def test_json_is_valid_against_the_plan_schema(self, demo: Path) -> None:
        document = plan_json(demo, DEMO)
        errors = [e.message for e in Draft202012Validator(SCHEMA).iter_errors(document)]
        assert errors == []
        assert document["summary"]["actions"] == 13

    def test_format_json_is_the_same_as_json(self, demo: Path) -> None:
        assert run(demo, "plan", "--format", "json", DEMO) == run(demo, "plan", "--json", DEMO)

    def test_out_file_holds_the_printed_json(self, demo: Path, tmp_path: Path) -> None:
        saved = tmp_path / "plans" / "demo.json"
        code, out = run(demo, "plan", "--json", "--out", str(saved), DEMO)
        assert code == 0
        assert saved.read_text() == out

    def test_out_file_with_text_output_says_how_to_apply(self, demo: Path, tmp_path: Path) -> None:
        saved = tmp_path / "demo.json"
        code, out = run(demo, "plan", "--out", str(saved), DEMO)
        assert code == 0
        assert f"apply --plan {saved}" in flat(out)
        assert json.loads(saved.read_text())["summary"]["actions"] == 13

    def test_two_runs_print_identical_bytes(self, demo: Path) -> None:
        first = run(demo, "plan", "--json", DEMO)
        second = run(demo, "plan", "--json", DEMO)
        assert first == second


class TestTarget:
    """--target Kind/name keeps the object's actions and the actions they depend on."""

    def test_vm_target_keeps_its_migration_only(self, demo: Path) -> None:
        document = plan_json(demo, "--target", "VirtualMachine/SQL02", DEMO)
        assert [a["id"] for a in document["actions"]] == ["migrate_vm:SQL02"]
        (move,) = document["actions"]
        assert (move["source"], move["destination"], move["method"]) == ("hv01", "hv02", "live")
        assert document["violations"] == []

    def test_volume_target_is_lun_then_volume(self, demo: Path) -> None:
        document = plan_json(demo, "--target", "ClusterSharedVolume/CSV02", DEMO)
        assert [a["id"] for a in document["actions"]] == ["extend_lun:CSV02", "extend_volume:CSV02"]
        assert document["actions"][1]["depends_on"] == ["extend_lun:CSV02"]

    def test_target_brings_in_what_it_depends_on(self, demo: Path) -> None:
        document = plan_json(demo, "--target", "VirtualMachine/FS01", DEMO)
        assert [a["id"] for a in document["actions"]] == [
            "extend_lun:CSV02",
            "extend_volume:CSV02",
            "add_disk:FS01",
        ]

    def test_unknown_target_is_an_error(self, demo: Path) -> None:
        code, _ = run(demo, "plan", "--target", "VirtualMachine/NOPE", DEMO)
        assert code == 1


class TestDetailedExitcode:
    """--detailed-exitcode: 0 no changes, 1 error, 2 changes, 3 blocked by a safety rule."""

    def test_changes_give_2(self, demo: Path) -> None:
        assert run(demo, "plan", "--detailed-exitcode", DEMO)[0] == 2

    def test_no_changes_after_apply_give_0(self, tmp_path: Path) -> None:
        init(tmp_path, WORLD)
        code, out = run(tmp_path, "apply", "--auto-approve", DEMO)
        assert code == 0, out
        code, out = run(tmp_path, "plan", "--detailed-exitcode", DEMO)
        assert code == 0
        assert out.splitlines()[0] == "No changes. The estate matches the manifests."

    @pytest.mark.parametrize(
        ("case", "rule"),
        [
            ("shrink_volume", "no_shrink"),
            ("never_live_migrate", "never_live_migrate"),
            ("needs_downtime", "downtime_not_allowed"),
        ],
    )
    def test_blocked_plan_gives_3(self, tmp_path: Path, case: str, rule: str) -> None:
        init(tmp_path, str(GOLDEN / case / "observed.yaml"))
        code, out = run(tmp_path, "plan", "--detailed-exitcode", str(GOLDEN / case / "desired"))
        assert code == 3
        assert f"BLOCK {rule}: " in out

    def test_warning_only_plan_gives_2(self, tmp_path: Path) -> None:
        case = GOLDEN / "failover_reserve_warn"
        init(tmp_path, str(case / "observed.yaml"))
        code, out = run(tmp_path, "plan", "--detailed-exitcode", str(case / "desired"))
        assert code == 2
        assert "safe to apply, 1 warning(s)" in out.splitlines()[0]

    def test_invalid_manifest_gives_1(
        self, demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        broken = tmp_path / "vm.yaml"
        broken.write_text(
            "apiVersion: reconciler/v1\n"
            "kind: VirtualMachine\n"
            "metadata: {name: BAD01}\n"
            "spec: {cluster: prod, memory_mib: 2048, vcpu: 2}\n"
        )
        with pytest.raises(SystemExit) as exit_info:
            main(["--state-dir", str(demo), "plan", "--detailed-exitcode", str(broken)])
        assert exit_info.value.code == 1
        err = capsys.readouterr().err
        assert str(broken) in err
        assert "nothing was changed" in err
