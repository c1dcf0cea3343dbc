"""The first hour with an installed reconciler: --version, schema, demo, shell completion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler import __version__
from reconciler.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "schemas"


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env, prog_name="reconciler")
    return result.exit_code, result.output


def test_version_lists_the_providers() -> None:
    code, out = run("--version")
    assert code == 0
    assert out.splitlines() == [
        f"reconciler {__version__}",
        f"provider hyperv {__version__} (reconciler)",
        f"provider sim {__version__} (reconciler)",
    ]


@pytest.mark.parametrize(
    ("kind", "file"),
    [
        ("Cluster", "cluster.schema.json"),
        ("node", "node.schema.json"),
        ("VIRTUALMACHINE", "virtualmachine.schema.json"),
        ("ClusterSharedVolume", "clustersharedvolume.schema.json"),
        ("VirtualSwitch", "virtualswitch.schema.json"),
        ("manifest", "manifest.schema.json"),
        ("plan", "plan.schema.json"),
    ],
)
def test_schema_kind_prints_that_file(kind: str, file: str) -> None:
    code, out = run("schema", kind)
    assert code == 0
    assert out == (SCHEMAS / file).read_text()


def test_schema_without_kind_lists_them() -> None:
    code, out = run("schema")
    assert code == 0
    assert "VirtualMachine       virtualmachine.schema.json" in out
    assert "plan                 plan.schema.json" in out


def test_schema_out_writes_every_file_and_the_modeline(tmp_path: Path) -> None:
    code, out = run("schema", "--out", str(tmp_path / "s"))
    assert code == 0, out
    written = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert written == sorted(p.name for p in SCHEMAS.glob("*.schema.json"))
    for name in written:
        assert json.loads((tmp_path / "s" / name).read_text()) == json.loads(
            (SCHEMAS / name).read_text()
        )
    modeline = f"# yaml-language-server: $schema={(tmp_path / 's').resolve()}/manifest.schema.json"
    assert modeline in out.splitlines()


def test_schema_manifest_never_goes_without_the_kinds_it_refers_to(tmp_path: Path) -> None:
    code, _ = run("schema", "manifest", "--out", str(tmp_path))
    assert code == 0
    assert len(list(tmp_path.iterdir())) == 7
    code, _ = run("schema", "Node", "--out", str(tmp_path / "one"))
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["node.schema.json"]


def test_schema_unknown_kind_is_a_usage_error() -> None:
    code, out = run("schema", "Clustr")
    assert code == 2  # click's own runner: main() maps usage errors to 1
    assert "'Clustr' is not one of" in out


def test_demo_writes_the_quick_start_estate(tmp_path: Path) -> None:
    target = tmp_path / "m"
    code, out = run("demo", str(target))
    assert code == 0, out
    for source in (ROOT / "manifests").rglob("*.yaml"):
        relative = source.relative_to(ROOT / "manifests")
        assert (target / relative).read_bytes() == source.read_bytes(), relative
    assert f"reconciler sim init {target}/worlds/demo.yaml" in out


def test_demo_refuses_to_overwrite(tmp_path: Path) -> None:
    assert run("demo", str(tmp_path))[0] == 0
    (tmp_path / "demo" / "vms.yaml").write_text("# mine\n")
    code, out = run("demo", str(tmp_path))
    assert code == 1
    assert "--force" in out
    assert (tmp_path / "demo" / "vms.yaml").read_text() == "# mine\n"
    assert run("demo", "--force", str(tmp_path))[0] == 0
    assert (tmp_path / "demo" / "vms.yaml").read_text() != "# mine\n"


@pytest.mark.parametrize(
    ("words", "cword", "expected"),
    [
        ("reconciler schem", "1", ["plain,schema"]),
        ("reconciler schema Virtual", "2", ["plain,virtualmachine", "plain,virtualswitch"]),
        ("reconciler plan --form", "2", ["plain,--format"]),
        ("reconciler validate ma", "2", ["file,ma"]),
    ],
)
def test_shell_completion(words: str, cword: str, expected: list[str]) -> None:
    env = {"_RECONCILER_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": cword}
    code, out = run(env=env)
    assert code == 0
    assert out.split() == expected


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_the_readme_names(shell: str) -> None:
    code, out = run(env={"_RECONCILER_COMPLETE": f"{shell}_source"})
    assert code == 0
    assert "_RECONCILER_COMPLETE" in out
    readme = (ROOT / "README.md").read_text()
    assert f"_RECONCILER_COMPLETE={shell}_source reconciler" in readme
