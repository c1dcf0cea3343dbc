"""One contract for every provider: the simulator, and hyperv over the PSRP peer.

For ``hyperv`` the peer (WS-Management + PSRP on 127.0.0.1, port 0) is started inside the
test, backed by the same state directory; the reconciler CLI talks to it through
RECONCILER_PROVIDER / RECONCILER_CONNECTIONS exactly as a user would. Oracles are the
world itself (the simulator's store) and plans stated by their action types.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hyperv_world import make_world

from reconciler.cli.main import cli
from reconciler.model.actions import Action
from reconciler.providers.registry import open_provider
from reconciler.providers.sim.provider import SimProvider
from reconciler.providers.sim.winrm.cmdlets import HyperVPeer
from reconciler.providers.sim.winrm.transport import WinRMServer

ROOT = Path(__file__).resolve().parents[1]
USER = "reconciler-test"
PASSWORD = "Pa55-w0rd-Zq7!contract"  # grepped for in every output


@dataclass
class Setup:
    kind: str
    state: Path  # the world (and, for sim, the journal)
    desired: Path
    env: dict[str, str]
    cli_state: Path  # --state-dir for the CLI run
    peer: HyperVPeer | None = None

    def cli(self, *args: str) -> tuple[int, str]:
        result = CliRunner().invoke(
            cli, ["--state-dir", str(self.cli_state), *args], env=self.env, catch_exceptions=False
        )
        return result.exit_code, result.output

    def process(
        self, *args: str, extra: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "reconciler", "--state-dir", str(self.cli_state), *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, **self.env, **(extra or {})},
            check=False,
            timeout=300,
        )

    def world(self) -> object:
        sim = SimProvider(self.state)
        try:
            return sim.observe()
        finally:
            sim.close()

    def provider(self) -> object:
        options = (
            {"connections": Path(self.env["RECONCILER_CONNECTIONS"])}
            if self.kind == "hyperv"
            else {}
        )
        return open_provider(self.kind, self.cli_state, **options)


@pytest.fixture(params=["sim", "hyperv"])
def setup(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Setup]:
    state = tmp_path / "world"
    gen = make_world(state, clusters=1, nodes=3, vms=4, drift=0.3, seed=2, out=tmp_path / "gen")
    desired = tmp_path / "gen" / "desired"
    if request.param == "sim":
        yield Setup("sim", state, desired, {"RECONCILER_PROVIDER": "sim"}, state)
        return
    peer = HyperVPeer(state)
    server = WinRMServer(peer, sorted(gen.world.nodes), username=USER, password=PASSWORD, port=0)
    server.start()
    connections = tmp_path / "connections.yaml"
    connections.write_text(
        yaml.safe_dump(
            {
                "defaults": {"auth": "basic", "encryption": "never"},
                "clusters": {
                    c: {
                        "nodes": {
                            n.name: {"url": server.url(n.name)} for n in gen.world.nodes_of(c)
                        }
                    }
                    for c in gen.world.clusters
                },
            }
        )
    )
    env = {
        "RECONCILER_PROVIDER": "hyperv",
        "RECONCILER_CONNECTIONS": str(connections),
        "RECONCILER_HYPERV_USER": USER,
        "RECONCILER_HYPERV_PASSWORD": PASSWORD,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        yield Setup("hyperv", state, desired, env, tmp_path / "cli", peer)
    finally:
        server.close()
        peer.close()


def plan_types(setup: Setup) -> list[str]:
    import json

    code, out = setup.cli("plan", "--json", str(setup.desired))
    assert code == 0, out
    return sorted({a["type"] for a in json.loads(out)["actions"]})


def test_observe_plan_apply_observe_again(setup: Setup) -> None:
    # Stated by hand from the generator's drift for this seed.
    assert plan_types(setup) == [
        "add_disk",
        "extend_lun",
        "extend_volume",
        "migrate_vm",
        "update_quorum",
    ]
    code, out = setup.cli("apply", "--auto-approve", str(setup.desired))
    assert code == 0, out
    assert "succeeded" in out
    code, out = setup.cli("plan", "--detailed-exitcode", str(setup.desired))
    assert code == 0, out
    # The simulator sees what the provider changed, on the same world.
    sim_plan = CliRunner().invoke(
        cli,
        [
            "--state-dir",
            str(setup.state),
            "--provider",
            "sim",
            "plan",
            "--detailed-exitcode",
            str(setup.desired),
        ],
        env={"RECONCILER_PROVIDER": "sim"},
    )
    assert sim_plan.exit_code == 0, sim_plan.output


def test_a_second_apply_changes_nothing(setup: Setup) -> None:
    assert setup.cli("apply", "--auto-approve", str(setup.desired))[0] == 0
    before = setup.world()
    code, out = setup.cli("apply", "--auto-approve", str(setup.desired))
    assert code == 0, out
    assert setup.world() == before


def test_a_precondition_failure_changes_nothing(setup: Setup) -> None:
    world = setup.world()
    vm = next(v for v in world.vms.values() if v.power_state == "running")  # type: ignore[attr-defined]
    action = Action(
        "set_vm:x",
        "set_vm",
        f"VirtualMachine/{vm.name}",
        vm.cluster,
        {"vm": vm.name, "memory_mib": vm.memory_mib * 2},
    )
    provider = setup.provider()
    try:
        if setup.kind == "hyperv":
            provider.observe()  # type: ignore[attr-defined]
        outcome = provider.apply(action)  # type: ignore[attr-defined]
    finally:
        provider.close()  # type: ignore[attr-defined]
    assert outcome.status == "precondition_failed"
    assert "must be off" in outcome.message
    assert setup.world() == world


def test_a_transient_fault_is_retried(setup: Setup) -> None:
    sim = SimProvider(setup.state)
    sim.fail_migrations(1)
    sim.close()
    code, out = setup.cli("apply", "--auto-approve", str(setup.desired))
    assert code == 0, out
    assert "succeeded" in out
    migrations = SimProvider(setup.state).store.migrations()
    assert [m.outcome for m in migrations].count("failed") == 1
    assert setup.cli("plan", "--detailed-exitcode", str(setup.desired))[0] == 0


def test_an_interrupted_apply_resumes_sim(tmp_path: Path) -> None:
    """The process applying dies (power loss) after the 3rd action took effect."""
    state = tmp_path / "world"
    make_world(state, clusters=1, nodes=3, vms=4, drift=0.3, seed=2, out=tmp_path / "gen")
    setup = Setup("sim", state, tmp_path / "gen" / "desired", {"RECONCILER_PROVIDER": "sim"}, state)
    assert setup.process("sim", "fault", "crash-after", "3").returncode == 0
    crashed = setup.process("apply", "--auto-approve", str(setup.desired))
    assert crashed.returncode == 137, crashed.stdout + crashed.stderr
    again = setup.process("apply", "--auto-approve", str(setup.desired))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "interrupted" in again.stdout + again.stderr
    assert setup.process("plan", "--detailed-exitcode", str(setup.desired)).returncode == 0


@pytest.mark.parametrize("setup", ["hyperv"], indirect=True)
def test_an_interrupted_apply_resumes_hyperv(setup: Setup) -> None:
    """The client dies (SIGKILL) right after its 3rd change took effect on the host."""
    assert setup.peer is not None
    client: list[subprocess.Popen[str]] = []

    def kill_client(writes: int) -> None:
        if writes == 3 and client:
            client[0].send_signal(signal.SIGKILL)
            client[0].wait()

    setup.peer.after_write = kill_client
    client.append(
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "reconciler",
                "--state-dir",
                str(setup.cli_state),
                "apply",
                "--auto-approve",
                str(setup.desired),
            ],
            cwd=ROOT,
            env={**os.environ, **setup.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    )
    out, err = client[0].communicate(timeout=300)
    assert client[0].returncode == -signal.SIGKILL, out + err
    setup.peer.after_write = None
    again = setup.process("apply", "--auto-approve", str(setup.desired))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "interrupted" in again.stdout + again.stderr
    final = setup.process("plan", "--detailed-exitcode", str(setup.desired))
    assert final.returncode == 0, final.stdout + final.stderr
    for text in (out, err, again.stdout, again.stderr):
        assert PASSWORD not in text


def test_the_password_appears_in_no_output(setup: Setup, tmp_path: Path) -> None:
    outputs = []
    for args in (
        ("plan", "--json", str(setup.desired)),
        ("plan", "--out", str(tmp_path / "plan.json"), str(setup.desired)),
        ("--log-format", "json", "apply", "--auto-approve", str(setup.desired)),
        ("history",),
    ):
        done = setup.process(*args)
        outputs += [done.stdout, done.stderr]
    for text in outputs:
        assert PASSWORD not in text
    for path in [*setup.cli_state.rglob("*"), *setup.state.rglob("*"), tmp_path / "plan.json"]:
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path
