"""Manifest discovery: a folder's world files and other people's YAML are not desired state."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reconciler.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = "name: ci\non: [push]\njobs:\n  test:\n    runs-on: ubuntu-latest\n"
COMPOSE = "services:\n  web:\n    image: nginx\n"
NO_API_VERSION = "kind: Cluster\nmetadata: {name: other}\nspec: {platform: '2019'}\n"


def validate(*paths: str | Path) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(cli, ["validate", "--format", "json", *map(str, paths)])
    report: dict[str, Any] = json.loads(result.output)
    return result.exit_code, report


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A manifests repository as people keep them: the estate, a world, CI files, tooling."""
    shutil.copytree(ROOT / "manifests", tmp_path / "manifests")
    (tmp_path / "ci").mkdir()
    (tmp_path / "ci" / "pipeline.yml").write_text(WORKFLOW)
    (tmp_path / "manifests" / "compose.yaml").write_text(COMPOSE)
    return tmp_path


def test_world_files_and_foreign_yaml_are_left_out_of_a_folder(repo: Path) -> None:
    code, report = validate(repo)
    assert code == 0, report
    assert report["files"] == [str(repo / "manifests" / "demo" / f"{k}.yaml") for k in
                               ("cluster", "nodes", "switches", "vms", "volumes")]  # fmt: skip
    assert report["objects"]["VirtualMachine"] == 20
    (warning,) = report["warnings"]
    assert warning["file"] == str(repo / "manifests" / "worlds" / "demo.yaml")
    assert warning["message"].startswith("skipped: a world file")
    assert "reconciler sim init FILE" in warning["allowed"]


def test_a_world_file_named_on_the_command_line_is_refused_with_a_hint() -> None:
    code, report = validate(ROOT / "manifests" / "worlds" / "demo.yaml")
    assert code == 1
    (error,) = report["errors"]  # one, not one "status is observed-only" per document
    assert (error["line"], error["column"]) == (1, 1)
    assert error["message"] == "a world file (observed state, with status), not desired manifests"
    assert error["allowed"].startswith("reconciler sim init FILE reads it")


def test_a_folder_holding_only_a_world_says_there_are_no_manifests() -> None:
    code, report = validate(ROOT / "manifests" / "worlds")
    assert code == 1
    assert [e["message"] for e in report["errors"]] == ["no manifests found"]
    assert len(report["warnings"]) == 1


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        # Ours without an apiVersion: still ours (kind), so reported.
        ("forgot.yaml", NO_API_VERSION, "missing apiVersion"),
        # Cannot tell whose it is: a file with its own error is always reported.
        ("broken.yaml", "kind: [Cluster\n", "YAML syntax error"),
        # Manifests written as list items: ours, and wrong, so reported (not skipped as foreign).
        (
            "listed.yaml",
            "- apiVersion: reconciler/v1\n- kind: VirtualMachine\n",
            "a manifest must be a mapping, got list",
        ),
    ],
)
def test_a_broken_manifest_in_a_folder_is_never_skipped(
    repo: Path, name: str, text: str, message: str
) -> None:
    (repo / "manifests" / "demo" / name).write_text(text)
    code, report = validate(repo / "manifests")
    assert code == 1
    assert any(message in e["message"] and e["file"].endswith(name) for e in report["errors"])


def test_a_desired_manifest_with_status_is_not_mistaken_for_a_world() -> None:
    broken = ROOT / "tests" / "broken"
    code, report = validate(broken / "_base", broken / "status_in_desired.yaml")
    assert code == 1
    assert [e["message"] for e in report["errors"]] == [
        "status is observed-only: it belongs in world files"
    ]


def test_foreign_yaml_named_on_the_command_line_is_checked(repo: Path) -> None:
    code, report = validate(repo / "ci" / "pipeline.yml")
    assert code == 1
    # A workflow's `on:` key is YAML 1.1's boolean true: the first thing wrong, at its line.
    first = report["errors"][0]
    assert (first["line"], first["message"]) == (
        2,
        "the key on reads as the boolean true, not as a field name",
    )


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_pull_request_plan_of_the_manifests_folder(repo: Path, tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=repo,
            check=True,
            capture_output=True,
        )

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-q", "-m", "estate")
    state = tmp_path / "state"
    runner = CliRunner()
    world = str(repo / "manifests" / "worlds" / "demo.yaml")
    assert runner.invoke(cli, ["--state-dir", str(state), "sim", "init", world]).exit_code == 0
    args = ["--state-dir", str(state), "plan", "--git", str(repo), "--base", "main"]
    result = runner.invoke(cli, [*args, "--json", "manifests"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["git"]["changed"] == {"added": [], "removed": [], "changed": []}
    assert document["summary"]["actions"] > 0
