"""Issue 15's demo contract through the hyperv provider, on the modern path.

The demo world is Windows Server 2008 R2 (the WMI v1 path); here the same world and manifests
run as Windows Server 2016, served by the PSRP peer on 127.0.0.1 from the state directory, and
the CLI talks to it through RECONCILER_PROVIDER=hyperv / RECONCILER_CONNECTIONS as a user
would. From the converged demo: an added VirtualMachine document plans create_vm, a node out
of the cluster's nodes list (and its document) plans evict_node; apply converges and the next
plan has no changes through hyperv and through sim on the same state directory. Then a VM
document removed: no remove_vm without prune; with prune it is removed, its files kept.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from test_lifecycle_demo import APP05, DEMO, WORLD, drop_document

from reconciler.cli.main import cli
from reconciler.providers.sim.provider import SimProvider
from reconciler.providers.sim.winrm.cmdlets import HyperVPeer
from reconciler.providers.sim.winrm.transport import WinRMServer

USER, PASSWORD = "demo-admin", "Dem0-15h-pw!"


class Demo:
    def __init__(self, base: Path) -> None:
        self.state, self.cli_state, self.manifests = base / "state", base / "cli", base / "m"
        self.connections = base / "connections.yaml"
        self.env = {
            "RECONCILER_PROVIDER": "hyperv",
            "RECONCILER_CONNECTIONS": str(self.connections),
            "RECONCILER_HYPERV_USER": USER,
            "RECONCILER_HYPERV_PASSWORD": PASSWORD,
        }

    def hyperv(self, *args: str) -> tuple[int, str]:
        result = CliRunner().invoke(
            cli, ["--state-dir", str(self.cli_state), *args], env=self.env, catch_exceptions=False
        )
        return result.exit_code, result.output

    def sim(self, *args: str) -> tuple[int, str]:
        result = CliRunner().invoke(
            cli,
            ["--state-dir", str(self.state), "--provider", "sim", *args],
            env={"RECONCILER_PROVIDER": "sim"},
            catch_exceptions=False,
        )
        return result.exit_code, result.output

    def plan_types(self) -> list[str]:
        code, out = self.hyperv("plan", "--json", str(self.manifests))
        assert code == 0, out
        return [a["type"] for a in json.loads(out)["actions"]]

    def converges(self) -> None:
        code, out = self.hyperv("apply", "--auto-approve", str(self.manifests))
        assert code == 0, out
        assert "succeeded" in out, out
        self.converges_after()

    def converges_after(self) -> None:
        code, out = self.hyperv("plan", "--detailed-exitcode", str(self.manifests))
        assert code == 0 and "No changes" in out, out
        code, out = self.sim("plan", "--detailed-exitcode", str(self.manifests))
        assert code == 0 and "No changes" in out, out


def as_2016(text: str) -> str:
    assert 'platform: "2008r2"' in text
    return text.replace('platform: "2008r2"', 'platform: "2016"')


def served_demo(base: Path) -> tuple[Demo, HyperVPeer, WinRMServer]:
    """The demo as 2016, converged (by the simulator: the join of hv05 needs a test live
    migration the modern path does not run), served by the peer."""
    shutil.copytree(DEMO, base / "m")
    cluster = base / "m" / "cluster.yaml"
    cluster.write_text(as_2016(cluster.read_text()))
    world = base / "world.yaml"
    world.write_text(as_2016(WORLD.read_text()))
    d = Demo(base)
    assert d.sim("sim", "init", str(world))[0] == 0
    code, out = d.sim("apply", "--auto-approve", str(d.manifests))
    assert code == 0, out
    sim = SimProvider(d.state)
    nodes = sorted(sim.observe().nodes)
    sim.close()
    peer = HyperVPeer(d.state)
    server = WinRMServer(peer, nodes, username=USER, password=PASSWORD, port=0)
    server.start()
    d.connections.write_text(
        yaml.safe_dump(
            {
                "defaults": {"auth": "basic", "encryption": "never"},
                "clusters": {"prod": {"nodes": {n: {"url": server.url(n)} for n in nodes}}},
            }
        )
    )
    return d, peer, server


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    d, peer, server = served_demo(tmp_path_factory.mktemp("hyperv-demo"))
    try:
        code, out = d.hyperv("plan", "--detailed-exitcode", str(d.manifests))
        assert code == 0, out  # the hyperv provider reads the converged demo as it is
        yield d
    finally:
        server.close()
        peer.close()


class TestHyperVDemoLifecycle:
    def test_1_create_and_evict_converge_through_hyperv(self, demo: Demo) -> None:
        with (demo.manifests / "vms.yaml").open("a") as f:
            f.write(APP05)
        cluster = demo.manifests / "cluster.yaml"
        cluster.write_text(
            cluster.read_text().replace(
                "nodes: [hv01, hv02, hv03, hv04, hv05]", "nodes: [hv01, hv02, hv03, hv05]"
            )
        )
        drop_document(demo.manifests / "nodes.yaml", "Node", "hv04")
        planned = demo.plan_types()
        assert "create_vm" in planned and "evict_node" in planned, planned
        assert planned.index("drain_node") < planned.index("evict_node")
        demo.converges()
        sim = SimProvider(demo.state)
        world = sim.observe()
        sim.close()
        assert world.clusters["prod"].nodes == ("hv01", "hv02", "hv03", "hv05")
        app05 = world.vms["APP05"]
        assert (app05.power_state, app05.memory_mib, app05.vcpus) == ("running", 4096, 2)
        assert (app05.highly_available, app05.nics[0].vlan) == (True, 30)
        assert [(d.name, d.controller, d.size_gib) for d in app05.disks] == [("os", "ide", 40)]

    def test_2_a_vm_document_removed_without_prune_plans_no_removal(self, demo: Demo) -> None:
        drop_document(demo.manifests / "vms.yaml", "VirtualMachine", "WSUS01")
        assert "remove_vm" not in demo.plan_types()
        code, out = demo.hyperv("plan", "--detailed-exitcode", str(demo.manifests))
        assert code == 0 and "VirtualMachine/WSUS01" in out, out

    def test_3_with_prune_hyperv_removes_it_and_keeps_its_files(self, demo: Demo) -> None:
        with (demo.manifests / "cluster.yaml").open("a") as f:
            f.write("  prune:\n    enabled: true\n")
        assert demo.plan_types() == ["remove_vm"]
        demo.converges()
        sim = SimProvider(demo.state)
        world = sim.observe()
        sim.close()
        assert "WSUS01" not in world.vms
        assert sorted(world.volumes["CSV01"].status.files) == [
            "WSUS01/content.vhd",
            "WSUS01/os.vhd",
        ]


def test_a_create_vm_cut_short_after_the_role_is_finished_by_the_next_apply(
    tmp_path: Path,
) -> None:
    """The client dies (SIGKILL) right after the host made APP05 a clustered role."""
    d, peer, server = served_demo(tmp_path)
    client: list[subprocess.Popen[str]] = []

    def kill_client(writes: int) -> None:
        vm = peer.world().vms.get("APP05")
        if client and vm is not None and vm.highly_available:
            peer.after_write = None
            client[0].send_signal(signal.SIGKILL)
            client[0].wait()

    try:
        with (d.manifests / "vms.yaml").open("a") as f:
            f.write(APP05)
        peer.after_write = kill_client
        client.append(
            subprocess.Popen(
                [sys.executable, "-m", "reconciler", "--state-dir", str(d.cli_state), "apply",
                 "--auto-approve", str(d.manifests)],
                env={**os.environ, **d.env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True,
            )
        )  # fmt: skip
        out, err = client[0].communicate(timeout=300)
        assert client[0].returncode == -signal.SIGKILL, out + err
        half = peer.world().vms["APP05"]
        assert (half.highly_available, half.vcpus, half.disks, half.nics) == (True, 1, (), ())
        code, out = d.hyperv("apply", "--auto-approve", str(d.manifests))
        assert code == 0, out
        assert "interrupted" in out and "create_vm:APP05 had started" in out, out
        d.converges_after()
        vm = peer.world().vms["APP05"]
        assert (vm.vcpus, vm.power_state, [n.vlan for n in vm.nics]) == (2, "running", [30])
        assert sum(1 for name in peer.world().vms if name == "APP05") == 1
    finally:
        server.close()
        peer.close()
