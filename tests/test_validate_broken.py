"""``reconciler validate`` on broken manifests: every rule, its exact message, all errors at once.

Each ``tests/broken/CASE.yaml`` is validated together with the valid estate in
``tests/broken/_base/``; ``CASE.expected`` holds the exact lines the command prints.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconciler.cli.main import cli
from reconciler.manifest.load import load_paths, load_text

REPO = Path(__file__).resolve().parents[1]
BROKEN = REPO / "tests" / "broken"
BASE = "tests/broken/_base"
CASES = sorted(p.stem for p in BROKEN.glob("*.yaml"))


@pytest.fixture(autouse=True)
def _at_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Paths in the expected output are relative to the repository root."""
    monkeypatch.chdir(REPO)


def validate(*args: str) -> Result:
    return CliRunner().invoke(cli, ["validate", *args])


def case_path(case: str) -> str:
    return f"tests/broken/{case}.yaml"


class TestBrokenCases:
    """Each broken manifest prints exactly its expected error lines and exits 1."""

    @pytest.mark.parametrize("case", CASES)
    def test_prints_expected_errors(self, case: str) -> None:
        expected = (BROKEN / f"{case}.expected").read_text(encoding="utf-8").splitlines()
        result = validate(BASE, case_path(case))
        assert result.stdout.splitlines() == expected
        assert result.exit_code == 1

    def test_every_case_has_an_expected_file_and_back(self) -> None:
        expected = sorted(p.stem for p in BROKEN.glob("*.expected"))
        assert expected == CASES
        assert len(CASES) >= 50

    def test_the_base_estate_is_valid_on_its_own(self) -> None:
        result = validate(BASE)
        assert result.exit_code == 0, result.stdout
        assert "7 objects in 5 file(s) are valid" in result.stdout


class TestAllErrorsReported:
    """A file with several independent mistakes reports every one of them in one run."""

    def test_many_errors_one_file(self) -> None:
        result = load_paths([BASE, case_path("many_errors_one_file")])
        problems = result.problems()
        assert result.estate is None
        assert {(e.target, e.field) for e in problems} == {
            ("VirtualMachine/WEB01", "spec.vcpu"),
            ("VirtualMachine/WEB01", "spec.power_state"),
            ("VirtualMachine/WEB02", "spec.nics[0].vlan"),
            ("VirtualMachine/WEB02", "spec.disks[0].format"),
            ("ClusterSharedVolume/CSV02", "spec.size_gib"),
        }

    def test_schema_errors_in_several_documents_are_all_reported(self) -> None:
        result = load_paths([BASE, case_path("field_out_of_range")])
        fields = [(e.target, e.field) for e in result.problems()]
        assert fields == [
            ("VirtualMachine/WEB01", "spec.vcpus"),
            ("VirtualMachine/WEB01", "spec.nics[0].vlan"),
            ("VirtualMachine/WEB02", "spec.memory_mib"),
            ("VirtualMachine/WEB02", "spec.vcpus"),
        ]

    def test_errors_across_files_are_all_reported(self) -> None:
        result = validate(BASE, case_path("field_enum"), case_path("volume_larger_than_lun"))
        files = {line.split(":", 1)[0] for line in result.stdout.splitlines()}
        assert files == {case_path("field_enum"), case_path("volume_larger_than_lun")}
        assert result.exit_code == 1


class TestJsonOutput:
    """``--format json`` is machine-readable: valid flag and each error's parts as fields."""

    def test_errors_as_json(self) -> None:
        result = validate("--format", "json", BASE, case_path("many_errors_one_file"))
        assert result.exit_code == 1
        report = json.loads(result.stdout)
        assert report["valid"] is False
        assert len(report["errors"]) == 5
        first = report["errors"][0]
        assert set(first) >= {"file", "line", "column", "object", "field", "message", "allowed"}
        assert first == {
            "file": case_path("many_errors_one_file"),
            "line": 9,
            "column": 3,
            "object": "VirtualMachine/WEB01",
            "field": "spec.vcpu",
            "message": "unknown field 'vcpu'; did you mean 'vcpus'?",
            "allowed": first["allowed"],
            "severity": "error",
        }
        assert first["allowed"].startswith("allowed: allow_downtime, ")

    def test_json_lines_match_text_lines(self) -> None:
        text = validate(BASE, case_path("vm_nic_vlan_not_on_trunk")).stdout.splitlines()
        report = json.loads(
            validate("--format", "json", BASE, case_path("vm_nic_vlan_not_on_trunk")).stdout
        )
        rebuilt = [
            f"{e['file']}:{e['line']}:{e['column']}: {e['object']}: {e['field']}: "
            f"{e['message']} ({e['allowed']})"
            for e in report["errors"]
        ]
        assert rebuilt == text

    def test_valid_estate_as_json(self) -> None:
        result = validate("--format", "json", "manifests/demo")
        assert result.exit_code == 0
        report = json.loads(result.stdout)
        assert report["valid"] is True
        assert report["errors"] == []
        assert set(report["objects"]) == {
            "Cluster",
            "Node",
            "VirtualSwitch",
            "ClusterSharedVolume",
            "VirtualMachine",
        }


class TestDemo:
    """The demo estate validates clean."""

    def test_demo_is_valid(self) -> None:
        result = validate("manifests/demo")
        assert result.exit_code == 0, result.stdout
        assert re.fullmatch(r"\d+ objects in \d+ file\(s\) are valid", result.stdout.strip())


class TestRulesOutsideTheCaseFiles:
    """Rules whose inputs do not fit a small case file: paths, huge estates, warnings."""

    def test_missing_path_is_an_error(self) -> None:
        result = validate("tests/broken/no-such-file.yaml")
        assert result.stdout.splitlines() == [
            "tests/broken/no-such-file.yaml:0:0: -: -: no such file or folder "
            "(a manifest file or a folder of .yaml files)"
        ]
        assert result.exit_code == 1

    def test_folder_without_manifests_is_an_error(self, tmp_path: Path) -> None:
        result = validate(str(tmp_path))
        assert "no manifests found" in result.stdout
        assert result.exit_code == 1

    def test_more_vms_than_the_platform_allows(self) -> None:
        docs = [
            "apiVersion: reconciler/v1\nkind: Cluster\nmetadata: {name: old}\n"
            "spec: {platform: '2008r2', nodes: [old01], quorum: {mode: node_majority}}",
            "apiVersion: reconciler/v1\nkind: Node\nmetadata: {name: old01}\nspec: {cluster: old, "
            "hardware: {model: m, cpu: c, memory_mib: 1048576, firmware: f, driver_set: d, "
            "patch_level: p}}",
        ]
        docs += [
            "apiVersion: reconciler/v1\nkind: VirtualMachine\n"
            f"metadata: {{name: vm{i:04}}}\n"
            "spec: {cluster: old, generation: 1, memory_mib: 32, vcpus: 1}"
            for i in range(1001)
        ]
        result = load_text("\n---\n".join(docs), "big.yaml")
        assert [str(e) for e in result.problems()] == [
            "big.yaml:4:28: Cluster/old: spec.nodes: 1001 VMs is more than platform 2008r2 "
            "allows in one cluster (at most 1000 VMs)"
        ]

    def test_recommended_quorum_without_witness_on_even_count_warns(self) -> None:
        text = (BROKEN / "quorum_witness_mode_without_witness.yaml").read_text(encoding="utf-8")
        text = text.replace("mode: node_and_disk_majority", "mode: recommended")
        result = load_text(text, "even.yaml")
        assert result.ok
        assert [str(e) for e in result.errors] == [
            "even.yaml:9:3: Cluster/lab: spec.quorum: warning: recommended quorum for 2 nodes "
            "is node_and_disk_majority, which needs a witness, and none is given "
            "(witness.disk, witness.file_share or witness.cloud_account)"
        ]
