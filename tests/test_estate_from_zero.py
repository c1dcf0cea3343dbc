"""An estate built from zero through the CLI and the simulator: ``sim generate --standalone``
writes manifests for two clusters and a world where the second is not formed (standalone
hosts, its CSVs' LUNs presented, no VM). One apply forms it, creates its CSVs and its VMs;
the next plan has no changes."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from reconciler.cli.main import cli
from reconciler.manifest.load import load_paths, require


def run(state: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--state-dir", str(state), *args], catch_exceptions=False)
    return result.exit_code, result.output


def test_a_standalone_cluster_is_formed_stored_and_populated(tmp_path: Path) -> None:
    out, state = tmp_path / "gen", tmp_path / "state"
    code, text = run(
        state, "sim", "generate", "--clusters", "2", "--nodes-per-cluster", "3",
        "--vms-per-node", "2", "--standalone", "1", "--out", str(out),
    )  # fmt: skip
    assert code == 0, text
    world = require(load_paths([str(out / "world.yaml")], world=True))
    assert sorted(world.clusters) == ["c001"]
    assert [n.cluster for n in world.nodes_of("c002")] == ["c002"] * 3
    assert not any(vm.cluster == "c002" for vm in world.vms.values())
    assert run(state, "sim", "init", str(out / "world.yaml"))[0] == 0
    code, text = run(state, "plan", str(out / "desired"), "--format", "json")
    plan = json.loads(text)
    c002 = [a["type"] for a in plan["actions"] if a["cluster"] == "c002"]
    assert c002[0] == "create_cluster"
    assert c002.count("create_csv") == 2
    assert c002.count("create_vm") == 6
    code, text = run(state, "apply", str(out / "desired"), "--auto-approve")
    assert code == 0, text
    code, text = run(state, "plan", str(out / "desired"), "--detailed-exitcode")
    assert code == 0, text
    assert "No changes" in text
