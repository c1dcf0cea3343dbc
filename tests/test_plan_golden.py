"""Golden plans: one folder per case, desired manifests and a world in, the exact plan out.

    tests/golden/<case>/desired/*.yaml   the desired state (manifests)
    tests/golden/<case>/observed.yaml    the observed state (a world file: manifests + status)
    tests/golden/<case>/expected.json    Plan.dumps() of make_plan(desired, observed, ["desired"])

The observed.yaml header says what the case is about and what the plan must do. To rewrite
every expected.json from the current planner, run

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_plan_golden.py

and read each diff before keeping it: a golden file that freezes a bug is worse than none.
``TestCaseBehaviour`` states the point of each case apart from the bytes, so a rewrite that
changes what a case shows still fails.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from reconciler import __version__
from reconciler.engine.plan import Plan
from reconciler.engine.planner import make_plan
from reconciler.engine.safety import replay
from reconciler.manifest.load import load_paths, require
from reconciler.model.actions import ACTION_TYPES

GOLDEN = Path(__file__).parent / "golden"
SCHEMA = Path(__file__).parents[1] / "schemas" / "plan.schema.json"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "observed.yaml").is_file())


@cache
def plan_of(case: str) -> Plan:
    folder = GOLDEN / case
    desired = require(load_paths([str(folder / "desired")]))
    observed = require(load_paths([str(folder / "observed.yaml")], world=True))
    return make_plan(desired, observed, manifests=["desired"])


def actions(case: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = plan_of(case).to_json()["actions"]
    return result


def types(case: str) -> list[str]:
    return [a["type"] for a in actions(case)]


def rules(case: str) -> set[tuple[str, str]]:
    return {(v.rule, v.severity) for v in plan_of(case).violations}


def by_id(case: str) -> dict[str, dict[str, Any]]:
    return {a["id"]: a for a in actions(case)}


class TestGoldenFiles:
    """Each case plans to exactly the bytes in its expected.json, and that plan is schema-valid."""

    def test_every_case_is_complete(self) -> None:
        assert len(CASES) >= 20
        for case in CASES:
            assert (GOLDEN / case / "desired").is_dir(), case
            assert (GOLDEN / case / "expected.json").is_file() or UPDATE, case

    def test_no_golden_file_names_the_program_version(self) -> None:
        # A release must not rewrite every golden file: the plan carries no program version.
        version = __version__
        assert version and version != "0+unknown", "run the tests from an installed tree"
        for expected in GOLDEN.glob("*/expected.json"):
            text = expected.read_text()
            assert "generated_by" not in text, expected
            assert f"reconciler {version}" not in text, expected
            assert f'"{version}"' not in text, expected

    @pytest.mark.parametrize("case", CASES)
    def test_plan_matches_expected(self, case: str) -> None:
        expected = GOLDEN / case / "expected.json"
        got = plan_of(case).dumps()
        if UPDATE:
            expected.write_text(got)
        assert got == expected.read_text(), f"plan for {case} changed (UPDATE_GOLDEN=1 rewrites)"

    @pytest.mark.parametrize("case", CASES)
    def test_expected_is_valid_against_plan_schema(self, case: str) -> None:
        validator = Draft202012Validator(json.loads(SCHEMA.read_text()))
        document = json.loads((GOLDEN / case / "expected.json").read_text())
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
        assert errors == []


class TestCaseBehaviour:
    """What each case is there to show, checked on the plan itself."""

    def test_demo_has_the_thirteen_actions_in_order(self) -> None:
        assert [a["id"] for a in actions("demo")] == [
            "set_vlan_trunk:hv03/vSwitch-VM",
            "begin_monitoring_maintenance:prod",
            "match_vswitch:hv05/vSwitch-VM",
            "present_storage:hv05",
            "add_node:hv05",
            "update_quorum:prod",
            "test_live_migration:hv05/TEST01",
            "validate_cluster:prod",
            "end_monitoring_maintenance:prod",
            "extend_lun:CSV02",
            "extend_volume:CSV02",
            "migrate_vm:SQL02",
            "add_disk:FS01",
        ]
        assert plan_of("demo").violations == ()

    def test_no_changes_is_empty(self) -> None:
        plan = plan_of("no_changes")
        assert plan.empty and not plan.violations and not plan.notes
        assert plan.to_json()["changed_objects"] == []

    @pytest.mark.parametrize(
        ("case", "target"),
        [
            ("shrink_volume", "ClusterSharedVolume/CSV1"),
            ("shrink_disk", "VirtualMachine/APP01"),
        ],
    )
    def test_shrinking_is_blocked_and_plans_nothing(self, case: str, target: str) -> None:
        plan = plan_of(case)
        assert plan.blocked and plan.empty
        assert [(v.rule, v.target, v.severity) for v in plan.violations] == [
            ("no_shrink", target, "block")
        ]

    def test_over_capacity_pin_says_how_much_memory_is_missing(self) -> None:
        plan = plan_of("over_capacity_pin")
        assert plan.blocked
        (violation,) = plan.violations
        assert violation.action == "migrate_vm:APP01"
        assert "hv3 has 1906 MiB free, APP01 needs 4151 MiB" in violation.message

    def test_never_policy_without_downtime_is_blocked(self) -> None:
        plan = plan_of("never_live_migrate")
        assert plan.blocked
        assert ("never_live_migrate", "block") in rules("never_live_migrate")
        assert all(v.action == "migrate_vm:EXCH01" for v in plan.violations)

    def test_never_policy_with_downtime_moves_offline(self) -> None:
        """Shut down, moved while off, started there: never saved (no quick migration)."""
        plan = plan_of("never_with_downtime")
        stop, move, start = actions("never_with_downtime")
        assert [stop["type"], move["type"], start["type"]] == ["stop_vm", "migrate_vm", "start_vm"]
        assert (stop["disruption"], move["method"], move["destination"]) == (
            "downtime",
            "offline",
            "hv3",
        )
        assert move["estimate_bytes"] == 0, "nothing is saved to disk or copied"
        assert stop["id"] in move["depends_on"] and move["id"] in start["depends_on"]
        assert not plan.violations

    def test_offline_policy_without_downtime_is_blocked(self) -> None:
        (move,) = actions("offline_policy_no_downtime")
        assert move["method"] == "quick"
        assert rules("offline_policy_no_downtime") == {("downtime_not_allowed", "block")}

    def test_change_needing_downtime_is_blocked_when_not_allowed(self) -> None:
        assert ("downtime_not_allowed", "block") in rules("needs_downtime")
        assert "stop_vm" not in types("needs_downtime")

    @pytest.mark.parametrize(
        ("case", "middle"),
        [
            ("needs_downtime_allowed", "set_vm"),
            ("ide_disk_add_running", "add_disk"),
            ("resize_2008r2_needs_off", "extend_vhd"),
        ],
    )
    def test_offline_change_is_stop_change_start(self, case: str, middle: str) -> None:
        steps = actions(case)
        assert [a["type"] for a in steps] == ["stop_vm", middle, "start_vm"]
        assert [a["depends_on"] for a in steps] == [[], [steps[0]["id"]], [steps[1]["id"]]]
        assert not plan_of(case).violations

    def test_baseline_mismatch_blocks_the_join(self) -> None:
        plan = plan_of("add_node_baseline_mismatch")
        assert ("baseline", "block") in rules("add_node_baseline_mismatch")
        assert plan.blocked
        assert not {"update_quorum", "test_live_migration", "validate_cluster"} & set(
            types("add_node_baseline_mismatch")
        )

    def test_two_joins_come_before_one_quorum_update(self) -> None:
        order = [a["id"] for a in actions("join_two_nodes")]
        steps = by_id("join_two_nodes")
        quorum = steps["update_quorum:lab"]
        assert types("join_two_nodes").count("update_quorum") == 1
        assert order.index("add_node:hv4") < order.index("update_quorum:lab")
        assert {"add_node:hv3", "add_node:hv4"} <= set(quorum["depends_on"])
        assert quorum["params"]["mode"] == "node_and_file_share_majority"
        for node in ("hv3", "hv4"):
            assert "update_quorum:lab" in steps[f"test_live_migration:{node}/TEST01"]["depends_on"]
        validate = steps["validate_cluster:lab"]["depends_on"]
        assert {"test_live_migration:hv3/TEST01", "test_live_migration:hv4/TEST01"} <= set(validate)
        assert order[0] == "begin_monitoring_maintenance:lab"
        assert order[-1] == "end_monitoring_maintenance:lab"
        assert not plan_of("join_two_nodes").violations

    def test_drain_moves_vms_one_at_a_time_then_drains(self) -> None:
        steps = actions("drain_node")
        moves = [a for a in steps if a["type"] == "migrate_vm"]
        assert [m["vm"] for m in moves] == ["DB01", "WEB03", "APP02"]
        assert all(m["source"] == "hv3" and m["destination"] != "hv3" for m in moves)
        for before, after in itertools.pairwise(moves):
            assert before["id"] in after["depends_on"]
        drain = steps[-1]
        assert drain["type"] == "drain_node"
        assert set(drain["depends_on"]) == {m["id"] for m in moves}
        assert not plan_of("drain_node").violations

    def test_resume_node_resumes_only(self) -> None:
        assert types("resume_node") == ["resume_node"]

    def test_trunk_fix_keeps_the_vm_in_place(self) -> None:
        (fix,) = actions("vlan_trunk_fix")
        assert (fix["type"], fix["target"]) == ("set_vlan_trunk", "Node/hv2")
        assert fix["params"]["allowed_vlans"] == "10,20,30"

    def test_online_resize_on_2019_needs_no_stop(self) -> None:
        (grow,) = actions("online_resize_2019")
        assert (grow["type"], grow["disruption"]) == ("extend_vhd", "online")
        assert "partition" in grow["reason"]

    def test_removed_disk_is_detached_and_its_file_kept(self) -> None:
        (detach,) = actions("detach_disk_keeps_file")
        assert detach["type"] == "detach_disk"
        assert detach["params"]["delete_file"] is False

    @pytest.mark.parametrize(("case", "severity"), [("warn", "warn"), ("block", "block")])
    def test_failover_reserve_follows_reserve_policy(self, case: str, severity: str) -> None:
        plan = plan_of(f"failover_reserve_{case}")
        assert types(f"failover_reserve_{case}") == ["stop_vm", "set_vm", "start_vm"]
        assert [(v.rule, v.severity, v.action) for v in plan.violations] == [
            ("failover_reserve", severity, "start_vm:APP01")
        ]
        assert plan.blocked is (severity == "block")

    def test_pinned_move_waits_for_its_hard_peer_to_leave(self) -> None:
        first, second = actions("pinned_move_waits_for_peer")
        assert (first["vm"], second["vm"]) == ("SQL02", "SQL01")
        assert first["id"] in second["depends_on"]
        assert not plan_of("pinned_move_waits_for_peer").violations


class TestLifecycleCaseBehaviour:
    """What the create, evict and removal cases show, checked on the plan itself."""

    def test_new_vms_are_placed_built_and_started_as_declared(self) -> None:
        steps = by_id("create_vm")
        # The pinned NEW02 first: an unpinned VM placed before it could take what the pin needs.
        assert list(steps) == ["create_vm:NEW02", "create_vm:NEW01", "start_vm:NEW01"]
        # No web VM on hv3 and the most free memory there: where a migration would go.
        assert steps["create_vm:NEW01"]["params"]["node"] == "hv3"
        assert steps["start_vm:NEW01"]["depends_on"] == ["create_vm:NEW01"]
        new02 = steps["create_vm:NEW02"]["params"]
        assert (new02["node"], new02["disks"][0]["file"]) == ("hv2", "OLD01/os.vhd")
        assert "start_vm:NEW02" not in steps, "power_state: off"
        assert {a["disruption"] for a in actions("create_vm")} == {"online"}
        # 60 s of configuration plus the 40 GiB fixed disk written at 200 MiB/s.
        assert steps["create_vm:NEW01"]["estimate_seconds"] == 60.0 + 40 * 1024 / 200
        assert not plan_of("create_vm").violations

    def test_a_new_vm_that_fits_nowhere_is_not_created(self) -> None:
        plan = plan_of("create_vm_no_room")
        assert plan.empty
        assert [(v.rule, v.target) for v in plan.violations] == [
            ("no_placement", "VirtualMachine/BIG01")
        ]

    def test_eviction_is_the_mirror_of_add_node(self) -> None:
        assert [a["id"] for a in actions("evict_node")] == [
            "begin_monitoring_maintenance:lab",
            "migrate_vm:DB01",
            "drain_node:hv3",
            "evict_node:hv3",
            "update_quorum:lab",
            "end_monitoring_maintenance:lab",
        ]
        steps = by_id("evict_node")
        assert (steps["migrate_vm:DB01"]["source"], steps["migrate_vm:DB01"]["method"]) == (
            "hv3",
            "live",
        )
        assert {"drain_node:hv3", "migrate_vm:DB01"} <= set(steps["evict_node:hv3"]["depends_on"])
        assert steps["update_quorum:lab"]["params"]["mode"] == "node_majority"
        assert steps["update_quorum:lab"]["depends_on"] == ["evict_node:hv3"]
        assert not plan_of("evict_node").violations

    def test_a_down_node_is_evicted_without_a_drain(self) -> None:
        assert types("evict_node_down") == [
            "begin_monitoring_maintenance",
            "evict_node",
            "update_quorum",
            "end_monitoring_maintenance",
        ]
        assert not plan_of("evict_node_down").violations

    def test_eviction_that_breaks_n_plus_1_is_refused_whatever_the_reserve_policy(self) -> None:
        plan = plan_of("evict_node_reserve")
        assert plan.blocked
        blocking = [(v.rule, v.action) for v in plan.violations if v.severity == "block"]
        assert blocking == [("failover_reserve", "evict_node:hv3")]

    def test_eviction_whose_vms_fit_nowhere_plans_nothing_for_the_node(self) -> None:
        plan = plan_of("evict_node_no_room")
        assert plan.empty and plan.blocked
        (refusal,) = [v for v in plan.violations if v.rule == "evict_node"]
        assert refusal.target == "Node/hv3" and "DB02" in refusal.message

    def test_eviction_that_loses_quorum_is_refused(self) -> None:
        plan = plan_of("evict_node_quorum")
        (refusal,) = [v for v in plan.violations if v.rule == "precondition"]
        assert (refusal.severity, refusal.action) == ("block", "evict_node:hv3")
        assert "would lose quorum" in refusal.message
        assert "update_quorum" not in types("evict_node_quorum")

    def test_unmanaged_vm_is_reported_and_left_alone(self) -> None:
        plan = plan_of("unmanaged_vm")
        assert plan.empty and not plan.violations
        assert plan.unmanaged == ("VirtualMachine/OLD01",)
        assert plan.to_json()["unmanaged"] == ["VirtualMachine/OLD01"]

    @pytest.mark.parametrize(
        ("case", "delete"), [("prune_remove_vm", False), ("prune_delete_disks", True)]
    )
    def test_prune_removes_last_and_deletes_files_only_when_told(
        self, case: str, delete: bool
    ) -> None:
        assert types(case) == ["migrate_vm", "remove_vm"]
        removal = actions(case)[-1]
        assert (removal["target"], removal["disruption"]) == ("VirtualMachine/OLD01", "destructive")
        assert removal["params"]["delete_disks"] is delete
        assert removal["params"]["files"] == ["OLD01/os.vhd"]
        assert plan_of(case).unmanaged == ()
        assert not plan_of(case).violations


class TestAdapterCaseBehaviour:
    """VM network adapters: online where Hyper-V allows it, else stop, change, start."""

    def test_generation_1_adds_with_the_vm_off_and_changes_a_vlan_online(self) -> None:
        case = "vm_adapters_offline_2008r2"
        assert [a["id"] for a in actions(case)] == [
            "set_vm_nic:WEB01",
            "stop_vm:APP01",
            "add_vm_nic:APP01",
            "start_vm:APP01",
        ]
        steps = by_id(case)
        assert steps["set_vm_nic:WEB01"]["params"]["nic"] == {
            "name": "nic1",
            "switch": "vSwitch-VM",
            "vlan": 10,
        }
        assert steps["add_vm_nic:APP01"]["depends_on"] == ["stop_vm:APP01"]
        assert not plan_of(case).violations

    def test_an_adapter_that_needs_downtime_is_blocked_without_it(self) -> None:
        assert ("downtime_not_allowed", "block") in rules("vm_adapters_blocked_2008r2")
        assert "stop_vm" not in types("vm_adapters_blocked_2008r2")

    def test_generation_2_on_2019_hot_adds_and_sets_a_mac_with_the_vm_off(self) -> None:
        case = "vm_adapters_hot_2019"
        steps = by_id(case)
        assert steps["add_vm_nic:WEB01"]["depends_on"] == []
        assert steps["set_vm_nic:WEB02"]["params"]["nic"]["trunk"] == "10,20"
        assert steps["set_vm_nic:TEST01"]["params"]["nic"]["mac"] == "00155D0A0102"
        assert steps["set_vm_nic:TEST01"]["depends_on"] == ["stop_vm:TEST01"]
        assert "stop_vm:WEB01" not in steps and "stop_vm:WEB02" not in steps
        assert not plan_of(case).violations


class TestDiskMoveCaseBehaviour:
    """Disks move between controllers and slots: SCSI online, IDE and boot disks with the VM off."""

    def test_scsi_data_disks_move_online(self) -> None:
        case = "disk_move_scsi_online_2019"
        moves = actions(case)
        assert [(a["id"], a["disruption"]) for a in moves] == [
            ("move_disk:APP01", "online"),
            ("move_disk:DB01", "online"),
        ]
        assert moves[1]["params"] == {
            "vm": "DB01",
            "disk": "data",
            "controller": "scsi",
            "controller_number": 2,
            "slot": 5,
        }
        assert not plan_of(case).violations

    def test_ide_moves_stop_the_vm_or_are_blocked_without_downtime(self) -> None:
        case = "disk_move_ide_needs_off"
        assert [a["id"] for a in actions(case)][:3] == [
            "stop_vm:APP01",
            "move_disk:APP01",
            "start_vm:APP01",
        ]
        assert ("downtime_not_allowed", "VirtualMachine/DB01") in {
            (v.rule, v.target) for v in plan_of(case).violations
        }
        assert "stop_vm:DB01" not in by_id(case)


class TestStorageMoveCaseBehaviour:
    """A disk declared on another volume moves there: online from 2012, the VM off on 2008 R2."""

    def test_moves_online_on_2019_and_the_replay_refuses_a_full_destination(self) -> None:
        case = "storage_move_2019"
        steps = by_id(case)
        assert list(steps) == ["move_vm_storage:APP01", "move_vm_storage:DB01"]
        app = steps["move_vm_storage:APP01"]
        assert app["disruption"] == "online"
        assert app["params"] == {"vm": "APP01", "disk": "data", "volume": "CSV2"}
        assert app["changes"] == {"disks.data.volume": {"before": "CSV1", "after": "CSV2"}}
        # 30 s setup, then the 40 GiB file at 100 MiB/s (half the SAN's 200: read and write).
        assert app["estimate_seconds"] == 30 + 40 * 1024 / 100
        # CSV2 is 200 GiB; after APP01's 40 GiB, DB01's fixed 200 GiB file does not fit.
        assert [(v.rule, v.target, v.message) for v in plan_of(case).violations] == [
            (
                "precondition",
                "VirtualMachine/DB01",
                "CSV2 has 160.0 GiB free, data's file needs 200.0 GiB",
            )
        ]

    def test_2008r2_moves_with_the_vm_off_or_is_blocked_without_downtime(self) -> None:
        case = "storage_move_2008r2"
        assert [a["id"] for a in actions(case)][:3] == [
            "stop_vm:APP01",
            "move_vm_storage:APP01",
            "start_vm:APP01",
        ]
        assert ("downtime_not_allowed", "VirtualMachine/DB01") in {
            (v.rule, v.target) for v in plan_of(case).violations
        }
        assert "stop_vm:DB01" not in by_id(case)


class TestVmSettingsCaseBehaviour:
    """Preferred owners (a set, never a move) and automatic actions."""

    def test_owners_are_set_without_moving_and_the_stop_action_waits_for_off(self) -> None:
        case = "vm_settings"
        steps = by_id(case)
        assert steps["set_preferred_owners:WEB01"]["params"] == {
            "vm": "WEB01",
            "owners": ["hv2", "hv3"],
        }
        assert "migrate_vm" not in types(case), "setting owners never moves the VM"
        assert steps["set_automatic_actions:TEST01"]["params"] == {"vm": "TEST01", "start": "start"}
        assert steps["set_automatic_actions:TEST01"]["depends_on"] == []
        assert steps["set_automatic_actions:APP01"]["depends_on"] == ["stop_vm:APP01"]
        assert steps["start_vm:APP01"]["depends_on"] == ["set_automatic_actions:APP01"]
        assert not plan_of(case).violations


def _patched_order(case: str) -> list[str]:
    return [a["params"]["node"] for a in actions(case) if a["type"] == "patch_node"]


def _moves(case: str) -> list[dict[str, Any]]:
    return [a for a in actions(case) if a["type"] == "migrate_vm"]


def _destination_patched_first(case: str, already: set[str] | None = None) -> list[bool]:
    """For each move in order: was its destination patched (in this plan or before) by then?"""
    patched = set(already or ())
    out: list[bool] = []
    for a in actions(case):
        if a["type"] == "patch_node":
            patched.add(a["params"]["node"])
        elif a["type"] == "migrate_vm":
            out.append(a["destination"] in patched)
    return out


class TestRollingCaseBehaviour:
    """What the rolling-update and balance cases show, checked on the plan itself."""

    def test_spare_node_goes_first_and_every_vm_moves_once_to_a_patched_node(self) -> None:
        case = "rolling_update_spare"
        assert _patched_order(case) == ["hv4", "hv3", "hv1", "hv2"]
        moved = [m["vm"] for m in _moves(case)]
        assert sorted(moved) == sorted(set(moved)) and len(moved) == 9, "each VM once"
        assert all(_destination_patched_first(case))
        web04 = next(m for m in _moves(case) if m["vm"] == "WEB04")
        assert (web04["source"], web04["destination"]) == ("hv1", "hv3")
        order = [a["id"] for a in actions(case)]
        assert order[0] == "begin_monitoring_maintenance:lab"
        assert order[-2:] == ["complete_rolling_update:lab", "end_monitoring_maintenance:lab"]
        assert not plan_of(case).violations and not plan_of(case).notes

    def test_no_spare_least_loaded_first_and_only_its_vms_move_twice(self) -> None:
        case = "rolling_update_no_spare"
        assert _patched_order(case)[0] == "hv1"
        counts = collections.Counter(m["vm"] for m in _moves(case))
        every = ("TEST01", "WEB01", "WEB02", "APP01", "DB01", "WEB03", "APP02", "APP03", "DB02")
        assert counts == {vm: 2 if vm in ("TEST01", "WEB01") else 1 for vm in every}
        first_two = _moves(case)[:2]
        assert {m["source"] for m in first_two} == {"hv1"}
        # Nothing is patched when hv1 drains; after that every move lands on a patched node.
        assert _destination_patched_first(case) == [False, False] + [True] * (len(_moves(case)) - 2)
        assert rules(case) == {("failover_reserve", "warn")}
        assert not plan_of(case).blocked

    def test_done_cycle_plans_nothing(self) -> None:
        plan = plan_of("rolling_update_done")
        assert plan.empty and not plan.violations and not plan.notes

    def test_resume_finishes_the_paused_node_then_continues(self) -> None:
        case = "rolling_update_resume"
        order = [a["id"] for a in actions(case)]
        assert order[:2] == ["verify_node:hv2", "resume_node:hv2"]
        assert "begin_monitoring_maintenance" not in types(case), (
            "monitoring is still in maintenance mode"
        )
        assert _patched_order(case) == ["hv3", "hv4"]
        assert not [
            a
            for a in actions(case)
            if a["type"] == "drain_node"
            and a["target"]
            in (
                "Node/hv1",
                "Node/hv2",
            )
        ]
        assert all(_destination_patched_first(case, {"hv1", "hv2"}))
        # hv3 is paused only once hv2 is back, so no two nodes are ever out together.
        steps = by_id(case)
        assert "resume_node:hv2" in steps["migrate_vm:APP02"]["depends_on"]
        assert "resume_node:hv2" in steps["drain_node:hv3"]["depends_on"]
        complete = steps["complete_rolling_update:lab"]
        assert complete["params"]["nodes"] == ["hv1", "hv2", "hv3", "hv4"]
        assert order[-1] == "end_monitoring_maintenance:lab"
        assert not plan_of(case).violations

    def test_balance_after_join_moves_after_validation_and_leaves_the_pin(self) -> None:
        case = "balance_after_join"
        moves = _moves(case)
        assert [(m["vm"], m["source"], m["destination"]) for m in moves] == [
            ("APP01", "hv1", "hv4"),
            ("APP02", "hv2", "hv4"),
        ]
        for move in moves:
            assert "validate_cluster:lab" in move["depends_on"]
            assert move["reason"].startswith("balance:")
        assert moves[0]["id"] in moves[1]["depends_on"]
        assert "SQL01" not in {m["vm"] for m in moves}
        assert not plan_of(case).violations and not plan_of(case).notes


def _demo_document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((GOLDEN / "demo" / "expected.json").read_text())
    return document


def _errors(document: dict[str, Any]) -> list[str]:
    validator = Draft202012Validator(json.loads(SCHEMA.read_text()))
    return [e.message for e in validator.iter_errors(document)]


def _undescribed(node: Any, path: str = "") -> list[str]:
    """Paths of properties in the schema that have no description."""
    out: list[str] = []
    if isinstance(node, dict):
        for name, sub in (node.get("properties") or {}).items():
            if isinstance(sub, dict) and "description" not in sub and "$ref" not in sub:
                out.append(f"{path}/{name}")
        for key, sub in node.items():
            if key != "if":  # conditions name a field only to test it
                out.extend(_undescribed(sub, f"{path}/{key}"))
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            out.extend(_undescribed(sub, f"{path}/{i}"))
    return out


class TestPlanSchema:
    """schemas/plan.schema.json describes the plan exactly: it rejects what the plan never is."""

    def test_is_a_valid_2020_12_schema_with_every_field_described(self) -> None:
        schema = json.loads(SCHEMA.read_text())
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert _undescribed(schema) == []

    def test_action_types_are_the_model_s(self) -> None:
        schema = json.loads(SCHEMA.read_text())
        assert schema["$defs"]["action"]["properties"]["type"]["enum"] == list(ACTION_TYPES)
        by_type = schema["$defs"]["summary"]["properties"]["by_type"]["propertyNames"]["enum"]
        assert by_type == list(ACTION_TYPES), "summary.by_type must name every action type"

    @pytest.mark.parametrize(
        ("where", "change"),
        [
            ("top", lambda d: d.update(extra=1)),
            ("top", lambda d: d.pop("summary")),
            ("top", lambda d: d.update(fingerprint="md5:00")),
            ("top", lambda d: d.update(format_version=2)),
            ("summary", lambda s: s.update(blocked="no")),
            ("summary", lambda s: s["by_disruption"].update(outage=1)),
            ("set_vlan_trunk", lambda a: a.update(type="reboot_node")),
            ("set_vlan_trunk", lambda a: a.update(disruption="brief")),
            ("set_vlan_trunk", lambda a: a.update(method="live")),
            ("set_vlan_trunk", lambda a: a["params"].pop("allowed_vlans")),
            ("set_vlan_trunk", lambda a: a["changes"][next(iter(a["changes"]))].pop("after")),
            ("set_vlan_trunk", lambda a: a.update(estimate_seconds=-1)),
            ("migrate_vm", lambda a: a.pop("vm")),
            ("migrate_vm", lambda a: a.update(method="teleport")),
            ("migrate_vm", lambda a: a.pop("memory_mib")),
            ("add_disk", lambda a: a["params"]["disk"].pop("controller")),
        ],
    )
    def test_rejects_a_broken_plan(self, where: str, change: Any) -> None:
        document = _demo_document()
        assert _errors(document) == []
        if where == "top":
            change(document)
        elif where == "summary":
            change(document["summary"])
        else:
            change(next(a for a in document["actions"] if a["type"] == where))
        assert _errors(document) != []

    @pytest.mark.parametrize(
        "change",
        [
            lambda v: v.update(severity="error"),
            lambda v: v.pop("fix"),
            lambda v: v.update(target="hv4"),
        ],
    )
    def test_rejects_a_broken_violation(self, change: Any) -> None:
        document: dict[str, Any] = json.loads(
            (GOLDEN / "failover_reserve_warn" / "expected.json").read_text()
        )
        assert _errors(document) == []
        change(document["violations"][0])
        assert _errors(document) != []


class TestDynamicMemoryCaseBehaviour:
    """Dynamic memory on 2019: online where Hyper-V allows it, off where it does not."""

    def test_online_widening_stop_for_turning_on_and_a_block_without_downtime(self) -> None:
        case = "dynamic_memory_2019"
        steps = by_id(case)
        assert steps["set_vm_memory:WEB01"]["params"] == {
            "vm": "WEB01",
            "memory_mib": 2048,
            "dynamic": {"minimum_mib": 512, "maximum_mib": 8192, "buffer_pct": 20},
        }
        assert steps["set_vm_memory:WEB01"]["depends_on"] == []
        assert "stop_vm:WEB01" not in steps, "widening the range needs no stop"
        assert steps["set_vm_memory:APP01"]["depends_on"] == ["stop_vm:APP01"]
        assert steps["start_vm:APP01"]["depends_on"] == ["set_vm_memory:APP01"]
        assert steps["set_vm_memory:APP01"]["changes"]["dynamic_memory"]["before"] == "static"
        assert not any(a["params"].get("vm") in ("DB01", "TEST01") for a in actions(case))
        assert ("downtime_not_allowed", "block") in rules(case)
        blocked = {v.target for v in plan_of(case).violations}
        assert blocked == {"VirtualMachine/WEB02"}


class TestCsvCaseBehaviour:
    """CSVs created from a presented LUN, renamed on their LUN, removed under prune."""

    def test_created_from_the_lun_before_the_vm_with_a_disk_on_it(self) -> None:
        case = "csv_create"
        steps = by_id(case)
        assert steps["create_csv:CSV2"]["params"] == {
            "volume": "CSV2",
            "lun": "LUN-20",
            "size_gib": 500,
            "file_system": "NTFS",
        }
        assert steps["create_csv:CSV2"]["disruption"] == "none"
        assert "create_csv:CSV2" in steps["create_vm:NEW01"]["depends_on"]
        assert types(case).index("create_csv") < types(case).index("create_vm")
        assert not plan_of(case).violations

    def test_renamed_in_place_and_the_undeclared_one_removed_last(self) -> None:
        case = "csv_rename_prune"
        steps = by_id(case)
        assert steps["rename_csv:CSV2"]["params"] == {
            "volume": "CSV2",
            "name": "Archive",
            "lun": "LUN-2",
            "vms": ["ARCH01"],
        }
        assert steps["rename_csv:CSV2"]["target"] == "ClusterSharedVolume/CSV2"
        assert types(case) == ["rename_csv", "remove_csv"], "no VM moves, no VM is removed"
        assert steps["remove_csv:CSV-OLD"]["disruption"] == "destructive"
        assert steps["remove_csv:CSV-OLD"]["params"] == {"volume": "CSV-OLD", "lun": "LUN-9"}
        assert not plan_of(case).violations


class TestCreateClusterCaseBehaviour:
    """An estate from zero: a cluster formed from standalone hosts, then its quorum, CSV, VMs."""

    def test_formed_then_quorum_storage_and_vms_in_order_and_it_converges(self) -> None:
        case = "create_cluster"
        steps = by_id(case)
        form = steps["create_cluster:lab"]
        assert form["params"]["nodes"] == ["hv1", "hv2"]
        assert form["params"]["addresses"] == ["192.168.10.40"]
        assert form["params"]["no_storage"] is True
        assert steps["update_quorum:lab"]["depends_on"] == ["create_cluster:lab"]
        assert steps["update_quorum:lab"]["params"]["witness"] == {
            "file_share": "\\\\fs01\\lab-witness"
        }
        assert steps["create_csv:CSV1"]["depends_on"] == ["create_cluster:lab"]
        assert steps["create_vm:WEB01"]["depends_on"] == ["create_csv:CSV1"]
        assert types(case)[0] == "create_cluster"
        assert not plan_of(case).violations
        # Run by the world's rules, the next plan has nothing to do.
        folder = GOLDEN / case
        desired = require(load_paths([str(folder / "desired")]))
        observed = require(load_paths([str(folder / "observed.yaml")], world=True))
        after, problems = replay(observed, desired, list(plan_of(case).actions))
        assert problems == []
        assert make_plan(desired, after).actions == ()


class TestDiskSlotSwapCaseBehaviour:
    def test_a_swap_goes_through_a_free_slot_one_move_after_another(self) -> None:
        case = "disk_slot_swap_2019"
        moves = [
            (a["params"]["disk"], a["params"]["controller_number"], a["params"]["slot"])
            for a in actions(case)
        ]
        assert moves == [("data", 0, 3), ("log", 0, 1), ("data", 0, 2)]
        steps = by_id(case)
        assert steps["move_disk:APP01#2"]["depends_on"] == ["move_disk:APP01"]
        assert steps["move_disk:APP01#3"]["depends_on"] == ["move_disk:APP01#2"]
        assert {a["disruption"] for a in actions(case)} == {"online"}
        assert not plan_of(case).violations


class TestScsiControllersCaseBehaviour:
    def test_the_controller_is_added_with_the_vm_off_before_the_disk_moves_onto_it(self) -> None:
        case = "disk_scsi_controllers_2019"
        assert [a["id"] for a in actions(case)] == [
            "stop_vm:APP01",
            "set_scsi_controllers:APP01",
            "move_disk:APP01",
            "start_vm:APP01",
        ]
        steps = by_id(case)
        assert steps["set_scsi_controllers:APP01"]["params"] == {"vm": "APP01", "count": 2}
        assert "set_scsi_controllers:APP01" in steps["move_disk:APP01"]["depends_on"]
        assert not any(a["params"].get("vm") == "DB01" for a in actions(case))
        assert not plan_of(case).violations


class TestSwitchTeamCaseBehaviour:
    """A team change recreates the switch one node at a time, each node drained first."""

    def test_one_node_at_a_time_drained_recreated_resumed(self) -> None:
        case = "switch_team_2019"
        steps = by_id(case)
        order = [a["id"] for a in actions(case) if a["type"] != "migrate_vm"]
        assert order == [
            step
            for n in ("hv1", "hv2", "hv3")
            for step in (f"drain_node:{n}", f"match_vswitch:{n}/vSwitch-VM", f"resume_node:{n}")
        ]
        assert steps["match_vswitch:hv2/vSwitch-VM"]["depends_on"] == [
            "drain_node:hv2",
            "resume_node:hv1",
        ]
        config = steps["match_vswitch:hv1/vSwitch-VM"]["params"]["config"]
        assert config["embedded_team"] == ["NIC4", "NIC5"] and config["uplink_nic"] is None
        # Every node is empty of running VMs when its switch is recreated.
        for node in ("hv1", "hv2", "hv3"):
            drain = [a["id"] for a in actions(case)].index(f"drain_node:{node}")
            assert all(
                a["params"]["source"] != node or i < drain
                for i, a in enumerate(actions(case))
                if a["type"] == "migrate_vm"
            )
        assert "stop_vm" not in types(case)
        assert not plan_of(case).violations
