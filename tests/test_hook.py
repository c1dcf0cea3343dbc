"""The rolling-update hook runs: an argv list without a shell, the node, cluster and cycle in
its environment, a time limit, its output kept (bounded) in the journal and shown by show-run.

A failing hook leaves its node drained and unpatched and stops the cycle; a later apply
carries on from there. On the simulator the hook is a real process too.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli.main import cli
from reconciler.model.actions import Action
from reconciler.model.records import Estate
from reconciler.providers.hook import OUTPUT_LIMIT_BYTES, run_hook
from reconciler.providers.sim.provider import SimProvider
from reconciler.runtime.clock import ManualClock
from reconciler.runtime.journal import Journal

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "manifests" / "demo"
WORLD = ROOT / "manifests" / "worlds" / "demo.yaml"
NODES = ["hv01", "hv02", "hv03", "hv04", "hv05"]  # the demo cluster prod, hv05 joined
CYCLE = "2010-07"


def run(state: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--state-dir", str(state), *args], catch_exceptions=False)
    return result.exit_code, result.output


def rolling(folder: Path, command: Sequence[str], timeout_seconds: int | None = None) -> Path:
    """The demo manifests with every node at 2010-07 and a rolling update running ``command``."""
    shutil.copytree(DEMO, folder)
    nodes = folder / "nodes.yaml"
    nodes.write_text(nodes.read_text().replace('patch_level: "2010-06"', 'patch_level: "2010-07"'))
    hook = f"    hook:\n      command: {json.dumps(list(command))}\n"
    if timeout_seconds is not None:
        hook += f"      timeout_seconds: {timeout_seconds}\n"
    cluster = folder / "cluster.yaml"  # its spec is the file's last block
    cluster.write_text(
        cluster.read_text() + f'  rolling_update:\n    id: "{CYCLE}"\n    nodes: all\n' + hook
    )
    return folder


def observe(state: Path) -> Estate:
    provider = SimProvider(state_dir=state)
    try:
        return provider.observe()
    finally:
        provider.close()


@pytest.fixture(scope="module")
def converged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("converged") / "state"
    assert run(state, "sim", "init", str(WORLD))[0] == 0
    code, out = run(state, "apply", "--auto-approve", str(DEMO))
    assert code == 0, out
    return state


@pytest.fixture
def state(converged: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(converged, tmp_path / "state"))


class TestTheHookRuns:
    """apply runs the hook once per node, with the node, cluster and cycle in its environment."""

    def test_contract_every_node_listed_exactly_once(self, state: Path, tmp_path: Path) -> None:
        listing = tmp_path / "patched.txt"
        manifests = rolling(tmp_path / "m", ["sh", "-c", f"echo $RECONCILER_NODE >> {listing}"])
        code, out = run(state, "apply", "--auto-approve", str(manifests))
        assert code == 0, out
        assert sorted(listing.read_text().split()) == NODES
        assert {observe(state).nodes[n].hardware.patch_level for n in NODES} == {CYCLE}

    def test_cluster_and_cycle_are_in_its_environment(self, state: Path, tmp_path: Path) -> None:
        seen = tmp_path / "seen.txt"
        script = (
            f"echo $RECONCILER_NODE $RECONCILER_CLUSTER $RECONCILER_ROLLING_ID >> {seen}; "
            f"echo ${{RECONCILER_PLAN_KEY:-no-key}} >> {seen}"
        )
        manifests = rolling(tmp_path / "m", ["sh", "-c", script])
        runner = CliRunner(env={"RECONCILER_PLAN_KEY": "do-not-leak"})
        result = runner.invoke(
            cli, ["--state-dir", str(state), "apply", "--auto-approve", str(manifests)]
        )
        assert result.exit_code == 0, result.output
        lines = seen.read_text().splitlines()
        assert sorted(lines[0::2]) == [f"{n} prod {CYCLE}" for n in NODES]
        assert set(lines[1::2]) == {"no-key"}, "the plan signing key is withheld from hooks"

    def test_arguments_never_reach_a_shell(self, tmp_path: Path) -> None:
        marker = tmp_path / "pwned"
        got = run_hook(
            [sys.executable, "-c", "import sys; print(sys.argv[1])", f"$(touch {marker}); x"],
            node="hv01",
            cluster="prod",
            rolling_id=CYCLE,
            timeout_seconds=30,
        )
        assert got.ok
        assert got.stdout == f"$(touch {marker}); x\n"
        assert not marker.exists()

    def test_show_run_shows_what_the_hook_printed(self, state: Path, tmp_path: Path) -> None:
        manifests = rolling(tmp_path / "m", ["sh", "-c", 'echo "patching $RECONCILER_NODE"'])
        assert run(state, "apply", "--auto-approve", str(manifests))[0] == 0
        code, out = run(state, "history", "--json")
        run_id = json.loads(out)[0]["id"]
        code, out = run(state, "show-run", run_id)
        assert code == 0
        for node in NODES:
            assert f"hook of patch_node:{node}: sh -c" in out
            assert f"    patching {node}" in out
        code, out = run(state, "show-run", run_id, "--json")
        details = {a["action_id"]: a["details"] for a in json.loads(out)["actions"] if a["details"]}
        assert details["patch_node:hv01"]["hook"]["stdout"] == "patching hv01\n"
        assert details["patch_node:hv01"]["hook"]["exit_code"] == 0


class TestAFailingHook:
    """A non-zero exit leaves the node drained and unpatched, stops the cycle, and a later
    apply (with the cause fixed) carries on from there."""

    FAIL_ON_HV01 = 'if [ "$RECONCILER_NODE" = hv01 ]; then echo "no disk space" >&2; exit 3; fi'

    def test_stops_then_carries_on(self, state: Path, tmp_path: Path) -> None:
        listing = tmp_path / "patched.txt"
        record = f"echo $RECONCILER_NODE >> {listing}"
        failing = rolling(tmp_path / "failing", ["sh", "-c", f"{self.FAIL_ON_HV01}; {record}"])
        code, out = run(state, "apply", "--auto-approve", str(failing))
        assert code == 1, out
        assert "patch_node:hv01: the hook exited with status 3: hv01 stays drained" in out
        world = observe(state)
        assert world.nodes["hv01"].maintenance, "left drained"
        assert world.nodes["hv01"].hardware.patch_level == "2010-06", "not patched"
        patched_first = listing.read_text().split()
        assert "hv01" not in patched_first
        # The cycle stopped: no node after hv01 was drained.
        assert [n for n in NODES if world.nodes[n].maintenance] == ["hv01"]

        code, out = run(state, "history", "--json")
        run_id = json.loads(out)[0]["id"]
        code, out = run(state, "show-run", run_id)
        assert "hook of patch_node:hv01" in out and "exit status 3" in out
        assert "no disk space" in out

        fixed = rolling(tmp_path / "fixed", ["sh", "-c", record])
        code, out = run(state, "apply", "--auto-approve", str(fixed))
        assert code == 0, out
        world = observe(state)
        assert {world.nodes[n].hardware.patch_level for n in NODES} == {CYCLE}
        assert not any(world.nodes[n].maintenance for n in NODES)
        assert world.clusters["prod"].status.rolling_update_done == CYCLE
        patched = listing.read_text().split()
        assert sorted(patched) == NODES, "each node patched once, hv01 after the fix"

    def test_a_hook_that_cannot_start_is_a_clear_failure(self, state: Path, tmp_path: Path) -> None:
        manifests = rolling(tmp_path / "m", [str(tmp_path / "no-such-hook")])
        code, out = run(state, "apply", "--auto-approve", str(manifests))
        assert code == 1
        assert "the hook could not start" in out and "no-such-hook" in out


def _patch(node: str, command: Sequence[str], timeout_seconds: float) -> Action:
    return Action(
        f"patch_node:{node}",
        "patch_node",
        f"Node/{node}",
        "prod",
        {
            "node": node,
            "cycle": CYCLE,
            "patch_level": CYCLE,
            "command": list(command),
            "timeout_seconds": timeout_seconds,
        },
    )


class TestTimeLimitAndOutput:
    """A hook past its time limit is killed with its children; its output is kept bounded."""

    def test_a_hook_past_its_limit_is_killed(self, tmp_path: Path) -> None:
        started = time.monotonic()
        got = run_hook(
            ["sh", "-c", "echo started; sleep 30 & wait"],
            node="hv01",
            cluster="prod",
            rolling_id=CYCLE,
            timeout_seconds=0.3,
        )
        assert time.monotonic() - started < 10, "the hook and its child were killed"
        assert got.timed_out and got.exit_code is None and not got.ok
        assert got.stdout == "started\n"
        assert got.describe(0.3) == "the hook did not finish within 0.3 s and was killed"

    def test_on_the_simulator_a_timed_out_hook_patches_nothing(
        self, state: Path, tmp_path: Path
    ) -> None:
        sim = SimProvider(state_dir=state)
        try:
            # Drain hv05 (it runs nothing) so that the patch may run.
            drain = Action("drain_node:hv05", "drain_node", "Node/hv05", "prod", {"node": "hv05"})
            assert sim.apply(drain).status == "done"
            outcome = sim.apply(_patch("hv05", ["sleep", "30"], 0.3))
            assert outcome.status == "permanent_error"
            assert "did not finish within 0.3 s" in outcome.message
            assert outcome.details["hook"]["timed_out"] is True
            node = sim.observe().nodes["hv05"]
            assert node.hardware.patch_level == "2010-06" and node.maintenance
            # The same hook that exits 0 patches it.
            assert sim.apply(_patch("hv05", ["true"], 30)).status == "done"
            assert sim.observe().nodes["hv05"].hardware.patch_level == CYCLE
        finally:
            sim.close()

    def test_output_is_kept_up_to_the_limit(self) -> None:
        got = run_hook(
            [
                sys.executable,
                "-c",
                "import sys; sys.stdout.write('x' * 200000); print('e', file=sys.stderr)",
            ],
            node="hv01",
            cluster="prod",
            rolling_id=CYCLE,
            timeout_seconds=30,
        )
        assert got.ok
        assert len(got.stdout) == OUTPUT_LIMIT_BYTES == 16384
        assert got.stdout_bytes == 200000
        details = got.as_details()
        assert details["stdout_truncated"] is True and details["stderr_truncated"] is False
        assert details["stderr"] == "e\n"


def test_journal_rows_stay_small(state: Path, tmp_path: Path) -> None:
    """A chatty hook does not bloat the journal: its rows hold the bounded capture only."""
    chatty = [sys.executable, "-c", "print('y' * 1000000)"]
    manifests = rolling(tmp_path / "m", chatty)
    assert run(state, "apply", "--auto-approve", str(manifests))[0] == 0
    journal = Journal(state, ManualClock().now)
    try:
        (latest, _) = journal.runs()[:2]
        sizes = [len(json.dumps(a.details)) for a in journal.actions(latest.id)]
    finally:
        journal.close()
    assert max(sizes) < 2 * OUTPUT_LIMIT_BYTES
