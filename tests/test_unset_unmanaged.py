"""Unset means unmanaged: a field the manifest leaves out keeps the world's value; where a
default does apply, the plan says "(default)". Each case edits the converged golden by hand."""

from __future__ import annotations

import json
from pathlib import Path

from test_no_silent_differences import case, plan

WEB01_RUNNING = "  vcpus: 2\n  power_state: running\n  anti_affinity_group: web"


def web01_world_off(text: str) -> str:
    # The first VM document of the world is TEST01, then WEB01: edit WEB01's spec and status.
    head, sep, tail = text.partition("  name: WEB01\n")
    return head + sep + tail.replace("power_state: running", 'power_state: "off"', 2)


class TestPowerState:
    """A VM's power state is managed only when the manifest says it."""

    def test_left_out_the_world_stands(self, tmp_path: Path) -> None:
        desired, state = case(
            tmp_path,
            [
                (
                    "desired/vms.yaml",
                    WEB01_RUNNING,
                    WEB01_RUNNING.replace("  power_state: running\n", ""),
                )
            ],
            world=web01_world_off,
        )
        code, out = plan(desired, state)
        assert code == 0, out

    def test_said_it_is_enforced(self, tmp_path: Path) -> None:
        desired, state = case(tmp_path, [], world=web01_world_off)
        code, out = plan(desired, state, "--json")
        assert code == 2, out
        assert [a["id"] for a in json.loads(out)["actions"]] == ["start_vm:WEB01"]


class TestNodePause:
    """A node an operator paused stays paused unless the manifest says maintenance."""

    HV3 = "  name: hv3\nspec:\n  cluster: lab\n"

    def test_left_out_the_pause_stands(self, tmp_path: Path) -> None:
        desired, state = case(
            tmp_path, [("observed.yaml", self.HV3, self.HV3 + "  maintenance: true\n")]
        )
        code, out = plan(desired, state, "--json")
        actions = json.loads(out)["actions"]
        # Not resumed, and nothing moves onto it; what runs there may leave (it is paused).
        assert not [a for a in actions if a["type"] == "resume_node"], out
        assert not [a for a in actions if a["params"].get("destination") == "hv3"], out
        assert code in (0, 2)

    def test_maintenance_false_resumes_it(self, tmp_path: Path) -> None:
        desired, state = case(
            tmp_path,
            [
                ("observed.yaml", self.HV3, self.HV3 + "  maintenance: true\n"),
                ("desired/nodes.yaml", self.HV3, self.HV3 + "  maintenance: false\n"),
            ],
        )
        code, out = plan(desired, state, "--json")
        assert code == 2, out
        assert [a["id"] for a in json.loads(out)["actions"]] == ["resume_node:hv3"]


class TestDefaultsAreMarked:
    """A value that comes from a default, not from the manifest, says "(default)"."""

    def test_management_os_left_out(self, tmp_path: Path) -> None:
        desired, state = case(
            tmp_path,
            [
                ("desired/switches.yaml", "  management_os: false\n", ""),
                ("observed.yaml", "  management_os: false\n", "  management_os: true\n"),
            ],
        )
        code, out = plan(desired, state, "--json")
        assert code == 2, out
        matches = [a for a in json.loads(out)["actions"] if a["type"] == "match_vswitch"]
        assert matches
        for action in matches:
            assert action["changes"] == {
                "switch.vSwitch-VM.management_os": {"before": True, "after": "false (default)"}
            }
        code, out = plan(desired, state)
        assert "management_os: true -> false (default)" in " ".join(out.split())

    def test_management_os_said_is_not_marked(self, tmp_path: Path) -> None:
        desired, state = case(
            tmp_path, [("observed.yaml", "  management_os: false\n", "  management_os: true\n")]
        )
        code, out = plan(desired, state, "--json")
        assert code == 2, out
        [first, *_] = [a for a in json.loads(out)["actions"] if a["type"] == "match_vswitch"]
        assert first["changes"]["switch.vSwitch-VM.management_os"]["after"] is False
