"""No silent differences: what the plan cannot act on blocks (exit 3); what is not a real
difference is none (exit 0). Each case edits the converged ``no_changes`` golden by hand."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from reconciler.cli.main import cli

NO_CHANGES = Path(__file__).parent / "golden" / "no_changes"


def case(
    tmp_path: Path,
    edits: list[tuple[str, str, str]],
    world: Callable[[str], str] | None = None,
) -> tuple[Path, Path]:
    """The converged case with ``(file, old, new)`` text edits (and ``world`` applied to the
    world file's text); returns (desired folder, state dir)."""
    root = tmp_path / "case"
    shutil.copytree(NO_CHANGES, root)
    for name, old, new in edits:
        path = root / name
        text = path.read_text()
        assert old in text, (name, old)
        path.write_text(text.replace(old, new, 1))
    if world is not None:
        observed = root / "observed.yaml"
        observed.write_text(world(observed.read_text()))
    state = tmp_path / "state"
    result = CliRunner().invoke(
        cli, ["--state-dir", str(state), "sim", "init", str(root / "observed.yaml")]
    )
    assert result.exit_code == 0, result.output
    return root / "desired", state


def plan(desired: Path, state: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli,
        ["--state-dir", str(state), "plan", str(desired), "--detailed-exitcode", *extra],
        catch_exceptions=False,
    )
    return result.exit_code, result.output


WEB01_NIC = "    - {name: nic1, switch: vSwitch-VM, vlan: 10}\n  disks:"


class TestConvergedIsQuiet:
    """The untouched case: manifests and world agree on every managed field."""

    def test_exit_0(self, tmp_path: Path) -> None:
        desired, state = case(tmp_path, [])
        code, out = plan(desired, state)
        assert code == 0, out
        assert "No changes" in out


class TestNotARealDifference:
    """The same thing written another way is no difference."""

    def test_adapters_in_another_order(self, tmp_path: Path) -> None:
        nic1 = "    - {name: nic1, switch: vSwitch-VM, vlan: 10}\n"
        nic2 = "    - {name: nic2, switch: vSwitch-VM, vlan: 20}\n"
        two, swapped = nic1 + nic2 + "  disks:", nic2 + nic1 + "  disks:"
        desired, state = case(
            tmp_path, [("desired/vms.yaml", WEB01_NIC, two), ("observed.yaml", WEB01_NIC, swapped)]
        )
        code, out = plan(desired, state)
        assert code == 0, out

    def test_vlan_list_and_range(self, tmp_path: Path) -> None:
        desired, state = case(
            tmp_path,
            [
                ("desired/switches.yaml", 'allowed: "10,20,30"', 'allowed: "10-12,20,30"'),
                ("observed.yaml", 'allowed: "10,20,30"', "allowed: [10, 11, 12, 20, 30]"),
            ],
        )
        code, out = plan(desired, state)
        assert code == 0, out


class TestDifferencesThePlanCannotActOn:
    """Each is a blocked item with its reason: exit 3, in text, JSON and markdown."""

    def test_a_cluster_on_another_platform(self, tmp_path: Path) -> None:
        desired, state = case(
            tmp_path, [("observed.yaml", 'platform: "2008r2"', 'platform: "2012r2"')]
        )
        code, out = plan(desired, state)
        assert code == 3, out
        assert "BLOCKED" in out
        assert "upgrading a cluster is not done by a plan" in out
        code, out = plan(desired, state, "--json")
        assert code == 3
        document = json.loads(out)
        assert document["summary"]["blocked"] is True
        [v] = [v for v in document["violations"] if v["severity"] == "block"]
        assert v["target"] == "Cluster/lab"
        code, out = plan(desired, state, "--format", "markdown")
        assert code == 3
        assert "upgrading a cluster is not done by a plan" in out

    def test_an_adapter_on_another_vlan_is_planned_online(self, tmp_path: Path) -> None:
        # Once blocked as unsupported; now a set_vm_nic while the VM runs (issue 15).
        desired, state = case(
            tmp_path,
            [("observed.yaml", WEB01_NIC, WEB01_NIC.replace("vlan: 10", "vlan: 30"))],
        )
        code, out = plan(desired, state, "--json")
        assert code == 2, out
        document = json.loads(out)
        assert [(a["type"], a["disruption"]) for a in document["actions"]] == [
            ("set_vm_nic", "online")
        ]
        assert document["violations"] == []

    def test_a_node_at_another_patch_level(self, tmp_path: Path) -> None:
        desired, state = case(
            tmp_path, [("observed.yaml", 'patch_level: "2010-06"', 'patch_level: "2010-05"')]
        )
        code, out = plan(desired, state, "--json")
        assert code == 3, out
        blocks = [v for v in json.loads(out)["violations"] if v["severity"] == "block"]
        assert [v["rule"] for v in blocks] == ["baseline"]
        assert "2010-05" in blocks[0]["message"]

    def test_a_difference_no_rule_explains(self, tmp_path: Path) -> None:
        # Firmware is compared but nothing plans a firmware change: the catch-all blocks.
        desired, state = case(tmp_path, [("observed.yaml", "firmware: ", "firmware: X")])
        code, out = plan(desired, state, "--json")
        assert code == 3, out
        blocks = [v for v in json.loads(out)["violations"] if v["severity"] == "block"]
        assert [v["rule"] for v in blocks] == ["unresolved"]
        assert "spec.hardware.firmware" in blocks[0]["message"]


class TestChangeLinesNameEverySubField:
    """A change line says which sub-fields differ; none prints as ``a -> a``."""

    def test_a_trunk_whose_native_vlan_changes(self, tmp_path: Path) -> None:
        desired, state = case(tmp_path, [("observed.yaml", "native_vlan: 1", "native_vlan: 5")])
        code, out = plan(desired, state, "--json")
        assert code == 2, out
        trunks = [a for a in json.loads(out)["actions"] if a["type"] == "set_vlan_trunk"]
        assert len(trunks) == 3  # one per node
        for action in trunks:
            assert action["changes"] == {
                "switch.vSwitch-VM.vlan_trunk.native_vlan": {"before": 5, "after": 1}
            }
        code, out = plan(desired, state)
        assert "native_vlan: 5 -> 1" in " ".join(out.split())
        assert "10,20,30 -> 10,20,30" not in out

    def test_allowed_and_native_together(self, tmp_path: Path) -> None:
        edits = [
            ("observed.yaml", "native_vlan: 1", "native_vlan: 5"),
            ("observed.yaml", 'allowed: "10,20,30"', 'allowed: "10-40"'),
        ]
        desired, state = case(tmp_path, edits)
        code, out = plan(desired, state, "--json")
        assert code == 2, out
        [first, *_] = [a for a in json.loads(out)["actions"] if a["type"] == "set_vlan_trunk"]
        assert first["changes"] == {
            "switch.vSwitch-VM.vlan_trunk.allowed": {"before": "10-40", "after": "10,20,30"},
            "switch.vSwitch-VM.vlan_trunk.native_vlan": {"before": 5, "after": 1},
        }


class TestTheWorldAcceptsWhatWindowsAllows:
    """A quorum Windows allows but we would not recommend is observed, and the plan fixes it."""

    def test_odd_node_count_with_a_disk_witness(self, tmp_path: Path) -> None:
        odd = '    mode: node_and_disk_majority\n    witness: {disk: "Cluster Disk 1"}\n'
        desired, state = case(tmp_path, [("observed.yaml", "    mode: node_majority\n", odd)])
        code, out = plan(desired, state, "--json")
        assert code == 2, out
        [update] = [a for a in json.loads(out)["actions"] if a["type"] == "update_quorum"]
        assert update["changes"]["spec.quorum.mode"] == {
            "before": "node_and_disk_majority",
            "after": "node_majority",
        }
