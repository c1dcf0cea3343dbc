"""The lifecycle contract on the demo, end to end through the CLI and the simulator.

From the converged demo: a VirtualMachine document added plans a create_vm; a node taken out
of the cluster's nodes list (with its Node document) plans an evict_node; apply makes both
so and the next plan has no changes. A VM document removed without prune plans no
remove_vm (it is reported as unmanaged); with prune it is removed and its files kept.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli.main import cli
from reconciler.engine.planner import make_plan
from reconciler.manifest.load import load_paths, require
from reconciler.model.rules import invariants
from reconciler.providers.sim.provider import SimProvider
from reconciler.runtime.clock import ManualClock
from reconciler.runtime.journal import Journal

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "manifests" / "demo"
WORLD = ROOT / "manifests" / "worlds" / "demo.yaml"

APP05 = """
---
apiVersion: reconciler/v1
kind: VirtualMachine
metadata:
  name: APP05
spec:
  cluster: prod
  generation: 1
  memory_mib: 4096
  vcpus: 2
  power_state: running
  nics:
    - {name: nic1, switch: vSwitch-VM, vlan: 30}
  disks:
    - name: os
      controller: ide
      controller_number: 0
      slot: 0
      type: fixed
      format: vhd
      size_gib: 40
      volume: CSV01
"""


def run(state: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--state-dir", str(state), *args], catch_exceptions=False)
    return result.exit_code, result.output


def plan_json(state: Path, manifests: Path) -> dict[str, object]:
    code, out = run(state, "plan", "--json", str(manifests))
    assert code == 0, out
    document: dict[str, object] = json.loads(out)
    return document


def types(document: dict[str, object]) -> list[str]:
    return [a["type"] for a in document["actions"]]  # type: ignore[attr-defined, index]


def drop_document(path: Path, kind: str, name: str) -> None:
    parts = path.read_text().split("\n---\n")
    keep = [p for p in parts if not (f"kind: {kind}" in p and f"  name: {name}\n" in p)]
    assert len(keep) == len(parts) - 1
    path.write_text("\n---\n".join(keep))


def applied(state: Path, manifests: Path) -> None:
    code, out = run(state, "apply", "--auto-approve", str(manifests))
    assert code == 0, out
    code, out = run(state, "plan", "--detailed-exitcode", str(manifests))
    assert code == 0, out
    assert "No changes" in out


@pytest.fixture(scope="module")
def converged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The demo world with the demo applied, and a copy of its manifests to edit."""
    base = tmp_path_factory.mktemp("lifecycle")
    state, manifests = base / "state", base / "manifests"
    shutil.copytree(DEMO, manifests)
    code, out = run(state, "sim", "init", str(WORLD))
    assert code == 0, out
    applied(state, manifests)
    return state, manifests


class TestDemoLifecycle:
    """Create, evict and (not) remove on the demo; each step converges to no changes."""

    def test_1_a_new_vm_document_plans_create_vm_and_apply_makes_it(
        self, converged: tuple[Path, Path]
    ) -> None:
        state, manifests = converged
        with (manifests / "vms.yaml").open("a") as f:
            f.write(APP05)
        plan = plan_json(state, manifests)
        assert types(plan) == ["create_vm", "start_vm"]
        applied(state, manifests)
        vm = SimProvider(state_dir=state).observe().vms["APP05"]
        assert (vm.power_state, vm.memory_mib, vm.nics[0].vlan) == ("running", 4096, 30)

    def test_2_a_node_out_of_the_list_plans_evict_node_and_apply_evicts_it(
        self, converged: tuple[Path, Path]
    ) -> None:
        state, manifests = converged
        cluster = manifests / "cluster.yaml"
        cluster.write_text(
            cluster.read_text().replace(
                "nodes: [hv01, hv02, hv03, hv04, hv05]", "nodes: [hv01, hv02, hv03, hv05]"
            )
        )
        drop_document(manifests / "nodes.yaml", "Node", "hv04")
        before = SimProvider(state_dir=state).observe()
        on_hv04 = sorted(vm.name for vm in before.vms_on("hv04"))
        assert on_hv04, "the demo runs VMs on hv04"
        plan = plan_json(state, manifests)
        assert "evict_node" in types(plan)
        assert not plan["summary"]["blocked"]  # type: ignore[index]
        applied(state, manifests)
        world = SimProvider(state_dir=state).observe()
        assert world.clusters["prod"].nodes == ("hv01", "hv02", "hv03", "hv05")
        assert world.vms_on("hv04") == []
        assert all(world.vms[name].power_state == "running" for name in on_hv04)
        # 4 nodes: the recommended quorum uses the witness disk.
        assert world.clusters["prod"].quorum.mode == "node_and_disk_majority"
        # The evicted server is still there, in no manifest: reported, left alone.
        assert "Node/hv04" in plan_json(state, manifests).get("unmanaged", [])  # type: ignore[operator]

    def test_3_a_vm_document_removed_without_prune_plans_no_removal(
        self, converged: tuple[Path, Path]
    ) -> None:
        state, manifests = converged
        drop_document(manifests / "vms.yaml", "VirtualMachine", "WSUS01")
        plan = plan_json(state, manifests)
        assert "remove_vm" not in types(plan)
        assert "VirtualMachine/WSUS01" in plan["unmanaged"]  # type: ignore[operator]
        code, out = run(state, "plan", "--detailed-exitcode", str(manifests))
        assert code == 0 and "VirtualMachine/WSUS01" in out, out

    def test_4_with_prune_it_is_removed_last_and_its_files_kept(
        self, converged: tuple[Path, Path]
    ) -> None:
        state, manifests = converged
        with (manifests / "cluster.yaml").open("a") as f:
            f.write("  prune:\n    enabled: true\n")
        code, out = run(state, "plan", str(manifests))
        assert code == 0, out
        assert "REMOVES 1: VirtualMachine/WSUS01" in out, out
        plan = plan_json(state, manifests)
        assert types(plan) == ["remove_vm"]
        applied(state, manifests)
        world = SimProvider(state_dir=state).observe()
        assert "WSUS01" not in world.vms
        assert sorted(world.volumes["CSV01"].status.files) == [
            "WSUS01/content.vhd",
            "WSUS01/os.vhd",
        ]


def lifecycle_manifests(base: Path) -> Path:
    """The demo manifests with APP05 added and hv04 out of the cluster (and its document)."""
    manifests = base / "manifests"
    shutil.copytree(DEMO, manifests)
    with (manifests / "vms.yaml").open("a") as f:
        f.write(APP05)
    cluster = manifests / "cluster.yaml"
    cluster.write_text(
        cluster.read_text().replace(
            "nodes: [hv01, hv02, hv03, hv04, hv05]", "nodes: [hv01, hv02, hv03, hv05]"
        )
    )
    drop_document(manifests / "nodes.yaml", "Node", "hv04")
    return manifests


class TestLifecycleCrashAndResume:
    """From the demo world, one plan joins hv05, evicts hv04 and creates APP05. The process
    ends right after the drain, the eviction or the creation took effect; the next apply
    says so, converges, and no completed action runs twice."""

    @pytest.mark.parametrize("crash_at", ["drain_node:hv04", "evict_node:hv04", "create_vm:APP05"])
    def test_crash_then_apply_converges(self, tmp_path: Path, crash_at: str) -> None:
        state, manifests = tmp_path / "state", lifecycle_manifests(tmp_path)
        assert run(state, "sim", "init", str(WORLD))[0] == 0
        desired = require(load_paths([str(manifests)]))
        ids = [a.id for a in make_plan(desired, SimProvider(state_dir=state).observe()).actions]
        assert {"evict_node:hv04", "create_vm:APP05", "add_node:hv05"} <= set(ids)
        assert run(state, "sim", "fault", "crash-after", str(ids.index(crash_at) + 1))[0] == 0
        command = ["-m", "reconciler", "--state-dir", str(state), "apply", "--auto-approve"]
        proc = subprocess.run(
            [sys.executable, *command, str(manifests)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        )
        assert proc.returncode == 137, proc.stdout + proc.stderr
        crashed = SimProvider(state_dir=state).observe()
        assert invariants(crashed) == []
        assert crash_at not in [a.id for a in make_plan(desired, crashed).actions]
        journal = Journal(state, ManualClock().now)
        (first,) = journal.runs()
        done_before = {a.action_id for a in journal.actions(first.id) if a.status == "done"}
        journal.close()
        code, out = run(state, "apply", "--auto-approve", str(manifests))
        assert code == 0, out
        assert "was interrupted" in out
        journal = Journal(state, ManualClock().now)
        second, _interrupted = journal.runs()
        redone = {a.action_id for a in journal.actions(second.id) if a.status == "done"}
        journal.close()
        assert not done_before & redone, "a completed action ran again"
        assert crash_at not in redone, "the crashed action ran twice"
        applied(state, manifests)
        world = SimProvider(state_dir=state).observe()
        assert world.clusters["prod"].nodes == ("hv01", "hv02", "hv03", "hv05")
        assert world.vms["APP05"].power_state == "running"
        assert invariants(world) == []
