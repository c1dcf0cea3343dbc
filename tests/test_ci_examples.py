"""docs/ci: the example pipelines and the pre-commit hook are valid YAML, and every
``reconciler ...`` command in them parses with the command line as it is."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from reconciler.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
CI = ROOT / "docs" / "ci"
GITHUB = CI / "github-actions.yml"
GITLAB = CI / "gitlab-ci.yml"
HOOKS = ROOT / ".pre-commit-hooks.yaml"
PRE_COMMIT_EXAMPLE = CI / "pre-commit-config.example.yaml"
SHELL_OPERATORS = {";", "&&", "||", "|", "(", ")", ">", ">>", "<", "&", "$"}
COMMAND_STARTS = SHELL_OPERATORS | {"then", "do", "else", "!", "if", "while", "until"}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def github() -> dict[Any, Any]:
    document: dict[Any, Any] = load(GITHUB)
    return document


def gitlab() -> dict[str, Any]:
    document: dict[str, Any] = load(GITLAB)
    return document


def shell_scripts() -> Iterator[tuple[str, str]]:
    """(where, script) for every shell script in the pipelines and the README's sh blocks."""
    for name, job in github()["jobs"].items():
        for i, step in enumerate(job["steps"]):
            if "run" in step:
                yield f"github {name} step {i}", step["run"]
    for name, job in gitlab().items():
        if isinstance(job, dict):
            for key in ("before_script", "script"):
                for line in job.get(key, []):
                    yield f"gitlab {name} {key}", line
    readme = (CI / "README.md").read_text()
    for block in re.findall(r"```sh\n(.*?)```", readme, flags=re.S):
        yield "docs/ci/README.md", block


def commands(script: str) -> Iterator[list[str]]:
    """Each ``reconciler`` command in a shell script, as argv, up to the next shell operator."""
    for line in script.replace("\\\n", " ").splitlines():
        if "reconciler" not in line or line.lstrip().startswith("#"):
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
        for i, token in enumerate(tokens):
            if token == "reconciler" and (i == 0 or tokens[i - 1] in COMMAND_STARTS):
                argv = []
                for arg in tokens[i + 1 :]:
                    if arg in SHELL_OPERATORS:
                        break
                    argv.append(arg)
                yield argv


def all_commands() -> list[tuple[str, list[str]]]:
    found = [(where, argv) for where, script in shell_scripts() for argv in commands(script)]
    hook = load(HOOKS)[0]
    entry = shlex.split(hook["entry"])
    assert entry[0] == "reconciler"
    found.append(("pre-commit hook", [*entry[1:], *hook["args"]]))
    return found


def parse(argv: list[str]) -> click.Command:
    """Parse argv as the reconciler command line would, without running anything: unknown
    commands or options, bad choices and missing arguments raise click errors."""
    group: click.Group = cli
    ctx: click.Context | None = None
    name = "reconciler"
    while True:
        at = next((i for i, arg in enumerate(argv) if arg in group.commands), None)
        if at is None:
            raise click.UsageError(f"no subcommand of {name} in {argv}")
        ctx = group.make_context(name, argv[: at + 1], parent=ctx)
        name, argv = argv[at], argv[at + 1 :]
        command = group.commands[name]
        if not isinstance(command, click.Group):
            command.make_context(name, argv, parent=ctx)
            return command
        group = command


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder holding the files the commands name (``apply --plan`` needs one)."""
    monkeypatch.chdir(tmp_path)
    for where in ("plan.json", "reviewed/plan.json"):
        (tmp_path / where).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / where).write_text("{}")
    return tmp_path


class TestYaml:
    """Every example is valid YAML of the expected shape."""

    @pytest.mark.parametrize("path", [GITHUB, GITLAB, HOOKS, PRE_COMMIT_EXAMPLE])
    def test_parses(self, path: Path) -> None:
        assert load(path)

    def test_github_runs_on_pull_requests_and_pushes_to_main(self) -> None:
        document = github()
        triggers = document.get("on", document.get(True))  # YAML 1.1 reads `on` as true
        assert triggers["pull_request"]["branches"] == ["main"]
        assert triggers["push"]["branches"] == ["main"]
        assert set(document["jobs"]) == {"plan", "apply"}
        assert "pull-requests" in document["jobs"]["plan"]["permissions"]

    def test_github_plan_uploads_the_plan_and_comments(self) -> None:
        steps = github()["jobs"]["plan"]["steps"]
        uses = [s.get("uses", "").split("@")[0] for s in steps]
        assert "actions/upload-artifact" in uses
        assert "actions/github-script" in uses
        (script,) = [s["with"]["script"] for s in steps if "github-script" in s.get("uses", "")]
        assert "<!-- reconciler-plan -->" in script
        assert "createComment" in script and "updateComment" in script

    def test_gitlab_has_the_three_stages(self) -> None:
        document = gitlab()
        assert document["stages"] == ["validate", "plan", "apply"]
        for job in ("validate", "plan", "apply"):
            assert document[job]["stage"] == job
        assert document["plan"]["artifacts"]["paths"] == ["plan.json", "plan.md"]
        notes = [line for line in document["plan"]["script"] if "/notes" in line]
        assert len(notes) == 1 and "$RECONCILER_GITLAB_TOKEN" in notes[0]

    def test_hook_validates_the_manifest_folder(self) -> None:
        (hook,) = load(HOOKS)
        assert hook["id"] == "reconciler-validate"
        assert hook["entry"] == "reconciler validate"
        assert hook["language"] == "python"
        assert hook["pass_filenames"] is False

    @pytest.mark.parametrize(
        ("path", "runs"),
        [
            ("manifests/demo/vms.yaml", True),
            ("estate/cluster.yml", True),
            ("README.md", False),
            (".gitlab-ci.yml", False),
            (".github/workflows/reconciler.yml", False),
            (".pre-commit-config.yaml", False),
        ],
    )
    def test_hook_runs_for_yaml_but_not_dotfiles(self, path: str, runs: bool) -> None:
        (hook,) = load(HOOKS)
        matched = bool(re.search(hook["files"], path)) and not re.search(hook["exclude"], path)
        assert matched is runs

    def test_example_config_uses_the_hook(self) -> None:
        (entry,) = load(PRE_COMMIT_EXAMPLE)["repos"]
        (hook,) = entry["hooks"]
        assert hook["id"] == "reconciler-validate"
        assert re.search(hook["files"], "manifests/vms.yaml")


class TestCommands:
    """Every reconciler command the examples run exists, with options that exist."""

    def test_finds_the_commands_the_flow_needs(self) -> None:
        found = [" ".join(argv) for _, argv in all_commands()]
        applies = [w.split()[0] for w, argv in all_commands() if argv[:2] == ["apply", "--plan"]]
        assert "validate $MANIFESTS" in found
        assert any(
            "plan --git . --base origin/$BASE_REF --head HEAD" in c and "--format markdown" in c
            for c in found
        )
        assert any("--base $CI_MERGE_REQUEST_DIFF_BASE_SHA" in c for c in found)
        assert "apply --plan reviewed/plan.json --auto-approve" in found
        assert {"github", "gitlab"} <= set(applies)

    def test_every_command_parses(self, in_tmp: Path) -> None:
        checked = []
        for where, argv in all_commands():
            try:
                checked.append(parse(argv).name)
            except click.ClickException as exc:
                pytest.fail(f"{where}: reconciler {' '.join(argv)}: {exc.format_message()}")
        assert {"validate", "plan", "apply"} <= set(checked)

    @pytest.mark.parametrize(
        "argv",
        [
            ["plan", "--bogus", "manifests"],
            ["plan", "--format", "html", "manifests"],
            ["apply", "--plan", "missing.json"],
            ["plann", "manifests"],
            ["--state-dir"],
        ],
    )
    def test_a_wrong_command_does_not_parse(self, in_tmp: Path, argv: list[str]) -> None:
        with pytest.raises(click.ClickException):
            parse(argv)


def github_step(job: str, name: str) -> str:
    (script,) = [s["run"] for s in github()["jobs"][job]["steps"] if s.get("name") == name]
    assert isinstance(script, str)
    return script


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


RECONCILER = shutil.which("reconciler", path=str(Path(sys.executable).parent)) or shutil.which(
    "reconciler"
)


@pytest.mark.skipif(RECONCILER is None or shutil.which("git") is None, reason="needs git")
class TestGithubStepsRun:
    """The GitHub plan, check and apply steps, run as written on a simulated estate."""

    def test_plan_then_check_then_apply(self, tmp_path: Path) -> None:
        upstream = tmp_path / "upstream"
        upstream.mkdir()
        git(upstream, "init", "-q", "-b", "main")
        shutil.copytree(ROOT / "manifests" / "demo", upstream / "estate")
        git(upstream, "add", "-A")
        git(upstream, "commit", "-q", "-m", "base")
        git(upstream, "checkout", "-q", "-b", "pr")
        vms = upstream / "estate" / "vms.yaml"
        dc01 = "  name: DC01\n  labels:\n    role: dc\n"
        vms.write_text(vms.read_text().replace(dc01, dc01 + "    owner: infra\n"))
        git(upstream, "commit", "-q", "-am", "pull request: DC01 gets an owner label")
        clone = tmp_path / "clone"
        git(tmp_path, "clone", "-q", "--branch", "pr", str(upstream), str(clone))
        state = tmp_path / "state"
        world = ROOT / "manifests" / "worlds" / "demo.yaml"
        init = CliRunner().invoke(cli, ["--state-dir", str(state), "sim", "init", str(world)])
        assert init.exit_code == 0, init.output
        env = {
            **os.environ,
            "PATH": f"{Path(str(RECONCILER)).parent}{os.pathsep}{os.environ['PATH']}",
            "MANIFESTS": "estate",
            "RECONCILER_STATE_DIR": str(state),
            "BASE_REF": "main",
            "GITHUB_OUTPUT": str(tmp_path / "output"),
            "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
        }

        def step(job: str, name: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", github_step(job, name)],
                cwd=clone,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )

        planned = step("plan", "Plan")
        assert planned.returncode == 0, planned.stderr
        assert (tmp_path / "output").read_text() == "exitcode=2\n"
        comment = (clone / "plan.md").read_text()
        assert comment.startswith("<!-- reconciler-plan -->")
        assert "- **Changed** (1): VirtualMachine/DC01" in comment
        assert (tmp_path / "summary").read_text() == comment
        (clone / "reviewed").mkdir()
        (clone / "plan.json").rename(clone / "reviewed" / "plan.json")
        checked = step("apply", "Check that main plans exactly what was reviewed")
        assert checked.returncode == 0, checked.stderr
        applied = step("apply", "Apply the reviewed plan")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert "succeeded: 13 done" in " ".join(applied.stdout.split())
        stale = step("apply", "Check that main plans exactly what was reviewed")
        assert stale.returncode == 1
        assert "make and review a new plan" in stale.stderr
