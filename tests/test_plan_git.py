"""``plan --git REPO --base REF --head REF``: manifests read from commits of a repository made
here, planned against a simulated world, with the manifest objects the change touches."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from reconciler.cli.main import cli, main
from reconciler.engine.review import changed_objects
from reconciler.manifest.load import load_paths, require

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "manifests" / "demo"
WORLD = ROOT / "manifests" / "worlds" / "demo.yaml"
SCHEMA = json.loads((ROOT / "schemas" / "plan.schema.json").read_text())
PLAN_KEYS = {
    "format_version",
    "fingerprint",
    "manifests",
    "prior_state",
    "actions",
    "summary",
    "violations",
    "notes",
    "changed_objects",
    "manifests_digest",
    "digest",
}

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

DC02 = """  name: DC02
  labels:
    role: dc
spec:
  cluster: prod
  generation: 1
  memory_mib: 2048
  vcpus: 2
  power_state: running
"""
FS01_DATA2 = (
    "    - {name: data2, controller: scsi, controller_number: 0, slot: 1, type: dynamic, "
    "format: vhd, size_gib: 200, volume: CSV02}\n"
)
FS01_DATA3 = (
    "    - {name: data3, controller: scsi, controller_number: 0, slot: 2, type: dynamic, "
    "format: vhd, size_gib: 100, volume: CSV02}\n"
)
BROKEN_VM = (
    "apiVersion: reconciler/v1\n"
    "kind: VirtualMachine\n"
    "metadata: {name: BAD01}\n"
    "spec: {cluster: prod, memory_mib: 2048, vcpu: 2}\n"
)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@dataclass(frozen=True)
class Repo:
    path: Path
    base: str  # the demo manifests
    head: str  # DC02 with more memory (and downtime allowed), FS01 with a third data disk
    broken_head: str  # head plus an invalid VM
    fixed: str  # broken_head with the invalid VM removed again


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    path = tmp_path_factory.mktemp("repo")
    git(path, "init", "-q", "-b", "main")
    shutil.copytree(DEMO, path / "estate")
    (path / "README.md").write_text("manifests\n")
    base = commit(path, "base: the demo estate")
    vms = path / "estate" / "vms.yaml"
    text = vms.read_text()
    assert DC02 in text and FS01_DATA2 in text
    text = text.replace(
        DC02,
        DC02.replace("memory_mib: 2048", "memory_mib: 4096") + "  allow_downtime: true\n",
    )
    vms.write_text(text.replace(FS01_DATA2, FS01_DATA2 + FS01_DATA3))
    head = commit(path, "head: DC02 4 GiB, FS01 data3")
    (path / "estate" / "bad.yaml").write_text(BROKEN_VM)
    broken = commit(path, "an invalid VM")
    (path / "estate" / "bad.yaml").unlink()
    fixed = commit(path, "the invalid VM removed")
    # The working copy no longer holds the head's manifests: another branch, from base,
    # with an uncommitted edit on top. Plans must come from the commits, not from here.
    git(path, "checkout", "-q", "-b", "other", base)
    vms.write_text(vms.read_text().replace(DC02, DC02.replace("2048", "8192")))
    return Repo(path, base, head, broken, fixed)


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo world that the tests here only plan against."""
    state = tmp_path_factory.mktemp("world")
    result = CliRunner().invoke(cli, ["--state-dir", str(state), "sim", "init", str(WORLD)])
    assert result.exit_code == 0, result.output
    return state


def run(state: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--state-dir", str(state), "plan", *args])
    return result.exit_code, result.output


def plan_json(state: Path, repo: Repo, *args: str) -> dict[str, Any]:
    code, out = run(state, "--git", str(repo.path), *args, "--json")
    assert code == 0, out
    document: dict[str, Any] = json.loads(out)
    return document


def action_ids(document: dict[str, Any]) -> list[str]:
    return [a["id"] for a in document["actions"]]


class TestChangedObjects:
    """The objects a change touches: added, removed and changed, by Kind/name, compared whole."""

    def test_lists_added_removed_and_changed(self) -> None:
        base = require(load_paths([str(DEMO)]))
        fs01 = base.vms["FS01"]
        head = (
            base.without("VirtualMachine", "DC01")
            .with_record(replace(fs01, memory_mib=fs01.memory_mib * 2))
            .with_record(replace(fs01, name="FS02"))
        )
        changed = changed_objects(base, head)
        assert changed.added == ("VirtualMachine/FS02",)
        assert changed.removed == ("VirtualMachine/DC01",)
        assert changed.changed == ("VirtualMachine/FS01",)

    def test_same_estate_changes_nothing(self) -> None:
        base = require(load_paths([str(DEMO)]))
        assert changed_objects(base, base).empty


class TestGitPlan:
    """The head commit is planned; the JSON says which commits and which objects changed."""

    def test_json_names_commits_and_changed_objects(self, state: Path, repo: Repo) -> None:
        document = plan_json(state, repo, "--base", repo.base, "--head", repo.head, "estate")
        assert document["git"] == {
            "repo": str(repo.path),
            "base": repo.base,
            "head": repo.head,
            "base_commit": repo.base,
            "head_commit": repo.head,
            "changed": {
                "added": [],
                "removed": [],
                "changed": ["VirtualMachine/DC02", "VirtualMachine/FS01"],
            },
        }

    def test_json_keeps_every_plan_key_and_the_schema(self, state: Path, repo: Repo) -> None:
        document = plan_json(state, repo, "--base", repo.base, "--head", repo.head, "estate")
        assert set(document) == PLAN_KEYS | {"git"}
        errors = [e.message for e in Draft202012Validator(SCHEMA).iter_errors(document)]
        assert errors == []

    def test_reads_the_commit_not_the_working_copy(self, state: Path, repo: Repo) -> None:
        document = plan_json(state, repo, "--head", repo.head, "estate")
        (set_vm,) = [a for a in document["actions"] if a["type"] == "set_vm"]
        assert set_vm["changes"]["memory_mib"] == {"before": 2048, "after": 4096}
        assert "add_disk:FS01#2" in action_ids(document)  # data3, only in the head commit
        code, out = run(state, "--json", str(repo.path / "estate"))  # the working copy
        assert code == 0, out
        working = json.loads(out)
        (working_set_vm,) = [a for a in working["actions"] if a["type"] == "set_vm"]
        assert working_set_vm["changes"]["memory_mib"]["after"] == 8192
        assert "add_disk:FS01#2" not in action_ids(working)

    def test_head_defaults_to_head(self, state: Path, repo: Repo) -> None:
        document = plan_json(state, repo, "estate")
        assert document["git"]["head"] == "HEAD"
        assert document["git"]["head_commit"] == repo.base  # the branch checked out

    def test_without_base_there_is_no_changed_list(self, state: Path, repo: Repo) -> None:
        document = plan_json(state, repo, "--head", repo.head, "estate")
        assert document["git"]["base"] is None
        assert document["git"]["base_commit"] is None
        assert document["git"]["changed"] is None

    def test_no_paths_reads_the_whole_repository(self, state: Path, repo: Repo) -> None:
        document = plan_json(state, repo, "--head", repo.head)
        assert document["manifests"] == ["."]
        assert "add_disk:FS01#2" in action_ids(document)

    def test_base_without_manifests_adds_every_object(self, state: Path, repo: Repo) -> None:
        empty = git(repo.path, "commit-tree", "-m", "empty", git(repo.path, "mktree"))
        document = plan_json(state, repo, "--base", empty, "--head", repo.head, "estate")
        assert len(document["git"]["changed"]["added"]) == 29  # every demo object
        assert document["git"]["changed"]["changed"] == []

    def test_out_file_with_git_key_is_applied(self, repo: Repo, tmp_path: Path) -> None:
        state = tmp_path / "state"
        runner = CliRunner()
        assert (
            runner.invoke(cli, ["--state-dir", str(state), "sim", "init", str(WORLD)]).exit_code
            == 0
        )
        saved = tmp_path / "plan.json"
        code, _ = run(
            state, "--git", str(repo.path), "--head", repo.head, "estate", "--out", str(saved)
        )
        assert code == 0
        assert json.loads(saved.read_text())["git"]["head_commit"] == repo.head
        result = runner.invoke(
            cli, ["--state-dir", str(state), "apply", "--plan", str(saved), "--auto-approve"]
        )
        assert result.exit_code == 0, result.output
        document = plan_json(state, repo, "--head", repo.head, "estate")
        assert document["actions"] == []


class TestGitOutput:
    """Text and markdown say where the manifests came from and what the change touches."""

    def test_text_lists_changed_objects_first(self, state: Path, repo: Repo) -> None:
        code, out = run(
            state, "--git", str(repo.path), "--base", repo.base, "--head", repo.head, "estate"
        )
        assert code == 0
        lines = out.splitlines()
        assert lines[0] == (
            f"Manifests at {repo.head[:10]} ({repo.head}) in {repo.path}, "
            f"compared with {repo.base[:10]} ({repo.base}):"
        )
        assert lines[1:3] == ["  ~ VirtualMachine/DC02", "  ~ VirtualMachine/FS01"]
        assert lines[4].startswith("Plan: 17 action(s)")

    def test_markdown_has_the_changed_section_near_the_top(self, state: Path, repo: Repo) -> None:
        code, out = run(
            state,
            "--git",
            str(repo.path),
            "--base",
            repo.base,
            "--head",
            repo.head,
            "estate",
            "--format",
            "markdown",
        )
        assert code == 0
        assert f"Manifests at `{repo.head[:12]}`" in out
        section = out.index("### Manifest objects this change touches")
        assert section < out.index("```mermaid") < out.index("<details>")
        assert "- **Changed** (2): VirtualMachine/DC02, VirtualMachine/FS01" in out

    def test_detailed_exitcode_is_unchanged(self, state: Path, repo: Repo) -> None:
        code, _ = run(
            state, "--git", str(repo.path), "--head", repo.head, "estate", "--detailed-exitcode"
        )
        assert code == 2


class TestGitErrors:
    """Manifest errors name file@commit:line and exit 1; so do bad refs and bad usage."""

    def errors(self, capsys: pytest.CaptureFixture[str], state: Path, *args: str) -> str:
        with pytest.raises(SystemExit) as exit_info:
            main(["--state-dir", str(state), "plan", *args])
        assert exit_info.value.code == 1
        return capsys.readouterr().err

    def test_error_at_head_names_file_at_commit(
        self, capsys: pytest.CaptureFixture[str], state: Path, repo: Repo
    ) -> None:
        err = self.errors(
            capsys, state, "--git", str(repo.path), "--head", repo.broken_head, "estate"
        )
        assert (
            f"estate/bad.yaml@{repo.broken_head[:10]}:4:41: VirtualMachine/BAD01: spec.vcpu" in err
        )
        assert "nothing was changed" in err

    def test_error_at_base_is_reported_too(
        self, capsys: pytest.CaptureFixture[str], state: Path, repo: Repo
    ) -> None:
        err = self.errors(
            capsys,
            state,
            "--git",
            str(repo.path),
            "--base",
            repo.broken_head,
            "--head",
            repo.fixed,
            "estate",
        )
        assert re.search(rf"estate/bad\.yaml@{repo.broken_head[:10]}:4:\d+: ", err)

    def test_unknown_ref_is_an_error(
        self, capsys: pytest.CaptureFixture[str], state: Path, repo: Repo
    ) -> None:
        err = self.errors(
            capsys, state, "--git", str(repo.path), "--head", "no-such-branch", "estate"
        )
        assert "ref no-such-branch: fatal" in " ".join(err.split())

    def test_missing_path_is_an_error(
        self, capsys: pytest.CaptureFixture[str], state: Path, repo: Repo
    ) -> None:
        err = self.errors(capsys, state, "--git", str(repo.path), "--head", repo.head, "nowhere")
        assert "no manifests under nowhere" in err

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--base", "main", "estate"], "--base and --head need --git REPO"),
            (["--head", "main", "estate"], "--base and --head need --git REPO"),
            ([], "give manifest PATHS, or --git REPO"),
        ],
    )
    def test_usage_errors(
        self, capsys: pytest.CaptureFixture[str], state: Path, args: list[str], message: str
    ) -> None:
        assert message in self.errors(capsys, state, *args)
