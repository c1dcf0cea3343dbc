"""Cluster-wide settings through the hyperv provider (modern path) over the real PSRP peer:
a cluster network's name and role (the shipped Set-ClusterNetwork.ps1), the cluster name's
IP Address resources.

A Windows Server 2016 world (c001: Management 10.0.4.0/24, Heartbeat 10.0.5.0/24,
LiveMigration 10.0.6.0/24, VM without a subnet; no cluster address yet). Each action's
pipelines are golden files (tests/golden_hyperv/cluster_*.json, regenerate with
RECONCILER_REGEN_GOLDEN=1 and review the diff); what it did to the world is stated by hand;
and what the provider reads back after it equals the world.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hyperv_world import connections_for, make_world, observable
from test_hyperv_golden import pipelines
from test_hyperv_lifecycle import GOLDEN, world

from reconciler.cli.main import cli
from reconciler.model.actions import DISRUPTION, Action
from reconciler.model.compare import cluster_role
from reconciler.model.records import Cluster, Estate
from reconciler.providers.base import scope_of
from reconciler.providers.hyperv.provider import HyperVProvider
from reconciler.providers.hyperv.scripts import ALL, SET_CLUSTER_NETWORK
from reconciler.providers.sim.generate import generate_estate, write_generated
from reconciler.providers.sim.provider import SimProvider
from reconciler.providers.sim.winrm.cmdlets import HyperVPeer
from reconciler.providers.sim.winrm.transport import WinRMServer


@pytest.fixture
def rig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[HyperVPeer, HyperVProvider]]:
    gen = make_world(tmp_path, clusters=1, nodes=3, vms=2, drift=0.0, seed=7, platform="2016")
    peer = HyperVPeer(tmp_path)
    server = WinRMServer(peer, sorted(gen.world.nodes), username="u", password="net-pw", port=0)
    server.start()
    monkeypatch.setenv("RECONCILER_HYPERV_USER", "u")
    monkeypatch.setenv("RECONCILER_HYPERV_PASSWORD", "net-pw")
    url = f"http://127.0.0.1:{server.port}/{{node}}/wsman"
    provider = HyperVProvider(tmp_path / "cli", connections_for(gen.world, url))
    try:
        provider.observe()
        yield peer, provider
    finally:
        provider.close()
        server.close()
        peer.close()


def act(type_: str, **params: Any) -> Action:
    return Action(
        f"{type_}:cluster",
        type_,  # type: ignore[arg-type]
        "Cluster/c001",
        "c001",
        params,
        disruption=DISRUPTION[type_],  # type: ignore[index]
    )


def check_golden(name: str, got: dict[str, Any]) -> None:
    path = GOLDEN / f"cluster_{name}.json"
    if os.environ.get("RECONCILER_REGEN_GOLDEN") == "1":
        path.write_text(json.dumps(got, indent=2) + "\n")
    assert json.loads(path.read_text()) == got, f"{path.name} differs"


def nets(cluster: Cluster) -> list[tuple[str, str, str | None]]:
    return [(n.name, cluster_role(n.roles), n.subnet) for n in cluster.networks]


def seen(cluster: Cluster) -> Cluster:
    return observable(Estate({cluster.name: cluster}, {}, {}, {}, {})).clusters[cluster.name]


def cmdlets(peer: HyperVPeer, start: int) -> list[str]:
    return [
        "script" if s["cmdlet"] == SET_CLUSTER_NETWORK else s["cmdlet"]
        for r in pipelines(peer, start)
        for s in r["pipeline"]
    ]


BEFORE = [
    ("Management", "cluster_and_client", "10.0.4.0/24"),
    ("Heartbeat", "cluster", "10.0.5.0/24"),
    ("LiveMigration", "cluster", "10.0.6.0/24"),
    ("VM", "none", None),
]


class TestSetClusterNetwork:
    """Name and Role by assignment in the shipped script; values only as its parameters."""

    def test_rename_and_role_golden_effect_and_read_back(
        self, rig: tuple[HyperVPeer, HyperVProvider]
    ) -> None:
        peer, provider = rig
        assert nets(world(peer).clusters["c001"]) == BEFORE
        steps = [
            ("network_rename", act("set_cluster_network", network="VM", subnet=None,
                                   name="Guests", roles=["vm"], role="none"),
             [BEFORE[0], BEFORE[1], BEFORE[2], ("Guests", "none", None)]),
            ("network_role", act("set_cluster_network", network="Heartbeat",
                                 subnet="10.0.5.0/24", name="Heartbeat", roles=["vm"],
                                 role="none"),
             [BEFORE[0], ("Heartbeat", "none", "10.0.5.0/24"), BEFORE[2],
              ("Guests", "none", None)]),
        ]  # fmt: skip
        for name, action, expected in steps:
            start = len(peer.received)
            outcome = provider.apply(action)
            assert outcome.status == "done", (name, outcome.message)
            check_golden(name, {"action": action.type, "pipelines": pipelines(peer, start)})
            truth = world(peer).clusters["c001"]
            assert nets(truth) == expected, name
            back = provider.observe(scope_of(action)).clusters["c001"]
            assert seen(back) == seen(truth), name
        # The hosts' NICs follow the rename (the rule's effect, read in full again).
        vm_nics = {n.network for n in world(peer).nodes["c001-n01"].nics} - {None}
        assert "Guests" in vm_nics and "VM" not in vm_nics

    def test_the_role_shown_is_the_one_windows_stores_for_all_the_network_carries(
        self, rig: tuple[HyperVPeer, HyperVProvider]
    ) -> None:
        """A network carrying heartbeat and management is ClusterAndClient, whatever the
        order of its roles: a change to Cluster is seen as one and made."""
        peer, provider = rig
        sim = SimProvider(peer.state_dir)
        before = sim.store.load()
        cluster = before.clusters["c001"]
        both = tuple(
            replace(n, roles=("heartbeat", "management")) if n.name == "Heartbeat" else n
            for n in cluster.networks
        )
        sim.change_behind_back(
            before, before.with_record(replace(cluster, networks=both)), "heartbeat + client"
        )
        sim.close()
        provider.observe()
        action = act("set_cluster_network", network="Heartbeat", subnet="10.0.5.0/24",
                     name="Heartbeat", roles=["heartbeat"], role="cluster")  # fmt: skip
        start = len(peer.received)
        assert provider.apply(action).status == "done"
        assert cmdlets(peer, start) == ["Get-ClusterNetwork", "script"]
        assert nets(world(peer).clusters["c001"])[1] == ("Heartbeat", "cluster", "10.0.5.0/24")

    def test_a_name_with_a_quote_is_one_parameter_value(
        self, rig: tuple[HyperVPeer, HyperVProvider]
    ) -> None:
        peer, provider = rig
        odd = "x'; Remove-ClusterNetwork *; '"
        action = act("set_cluster_network", network="VM", subnet=None, name=odd, roles=["vm"])
        start = len(peer.received)
        assert provider.apply(action).status == "done"
        (script,) = [
            s for r in pipelines(peer, start) for s in r["pipeline"]
            if s["cmdlet"] == SET_CLUSTER_NETWORK
        ]  # fmt: skip
        assert ["NewName", {"S": odd}] in script["parameters"]
        assert odd not in script["cmdlet"]  # the script text is the shipped constant
        assert nets(world(peer).clusters["c001"])[3] == (odd, "none", None)

    def test_as_desired_already_sends_no_script(
        self, rig: tuple[HyperVPeer, HyperVProvider]
    ) -> None:
        peer, provider = rig
        action = act("set_cluster_network", network="VM", subnet=None, name="VM", roles=["vm"])
        start = len(peer.received)
        assert provider.apply(action).status == "done"
        assert cmdlets(peer, start) == ["Get-ClusterNetwork"]

    def test_the_peer_refuses_script_text_it_did_not_ship(
        self, rig: tuple[HyperVPeer, HyperVProvider]
    ) -> None:
        _peer, provider = rig
        with pytest.raises(Exception, match="script text is refused"):
            provider._script("c001-n01", "[CmdletBinding()] param()\nGet-ClusterNetwork", {})


class TestSetClusterAddresses:
    """IP Address resources of the core group: new ones first, then the old ones removed."""

    def test_add_then_replace_golden_effect_and_read_back(
        self, rig: tuple[HyperVPeer, HyperVProvider]
    ) -> None:
        peer, provider = rig
        assert world(peer).clusters["c001"].addresses == ()
        steps = [
            ("addresses_first", ["10.0.4.10"], ("10.0.4.10",)),
            ("addresses_replace", ["10.0.5.10", "10.0.4.11"], ("10.0.4.11", "10.0.5.10")),
        ]
        for name, addresses, expected in steps:
            action = act("set_cluster_addresses", addresses=addresses)
            start = len(peer.received)
            outcome = provider.apply(action)
            assert outcome.status == "done", (name, outcome.message)
            check_golden(name, {"action": action.type, "pipelines": pipelines(peer, start)})
            assert world(peer).clusters["c001"].addresses == expected, name
            back = provider.observe(scope_of(action)).clusters["c001"]
            assert back.addresses == expected, name
        assert provider.observe().clusters["c001"].addresses == ("10.0.4.11", "10.0.5.10")
        # Again: as desired, only the reads go out.
        start = len(peer.received)
        again = act("set_cluster_addresses", addresses=["10.0.4.11", "10.0.5.10"])
        assert provider.apply(again).status == "done"
        assert cmdlets(peer, start) == ["Get-ClusterResource", "Get-ClusterResource",
                                        "Get-ClusterParameter"]  # fmt: skip

    def test_a_cut_short_add_is_finished_not_made_twice(
        self, rig: tuple[HyperVPeer, HyperVProvider]
    ) -> None:
        peer, provider = rig
        provider._call(
            "c001-n01",
            "Add-ClusterResource",
            {
                "Name": "IP Address 10.0.4.10",
                "ResourceType": "IP Address",
                "Group": "Cluster Group",
            },
        )
        start = len(peer.received)
        outcome = provider.apply(act("set_cluster_addresses", addresses=["10.0.4.10"]))
        assert outcome.status == "done", outcome.message
        sent = cmdlets(peer, start)
        assert "Add-ClusterResource" not in sent
        assert sent.count("Start-ClusterResource") == 1
        assert world(peer).clusters["c001"].addresses == ("10.0.4.10",)

    def test_an_address_in_no_cluster_subnet_is_refused_before_anything_is_sent(
        self, rig: tuple[HyperVPeer, HyperVProvider]
    ) -> None:
        peer, provider = rig
        start = len(peer.received)
        outcome = provider.apply(act("set_cluster_addresses", addresses=["192.168.7.10"]))
        assert outcome.status == "permanent_error"
        assert "192.168.7.10 is in no cluster network's subnet" in outcome.message
        assert peer.received[start:] == []

    def test_the_peer_keeps_the_rule_the_last_address_stays(
        self, rig: tuple[HyperVPeer, HyperVProvider]
    ) -> None:
        peer, provider = rig
        assert provider.apply(act("set_cluster_addresses", addresses=["10.0.4.10"])).status == (
            "done"
        )
        with pytest.raises(Exception, match="needs at least one address"):
            provider._call(
                "c001-n01",
                "Remove-ClusterResource",
                {"Name": "IP Address 10.0.4.10", "Force": None},
            )
        assert world(peer).clusters["c001"].addresses == ("10.0.4.10",)


def test_capabilities_offer_the_cluster_settings_on_the_modern_path_only(
    rig: tuple[HyperVPeer, HyperVProvider],
) -> None:
    caps = rig[1].capabilities()
    for kind in ("set_cluster_network", "set_cluster_addresses"):
        assert caps.refusal(kind, "2016") is None, kind
        assert caps.refusal(kind, "2012r2") is None, kind
        assert "2008 R2" in (caps.refusal(kind, "2008r2") or ""), kind


def test_manifests_renaming_a_network_and_adding_an_address_apply_then_plan_no_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole loop through the CLI: plan, apply (each step verified by reading it back),
    plan again: no changes."""
    state = tmp_path / "world"
    gen = make_world(state, clusters=1, nodes=3, vms=2, platform="2019", out=tmp_path / "gen")
    manifest = tmp_path / "gen" / "desired" / "c001.yaml"
    text = manifest.read_text()
    text = text.replace("name: Heartbeat", "name: Cluster-HB")
    text = text.replace("network: Heartbeat", "network: Cluster-HB")
    text = text.replace("  platform: '2019'\n", "  platform: '2019'\n  addresses:\n  - 10.0.4.10\n")
    manifest.write_text(text)
    peer = HyperVPeer(state)
    server = WinRMServer(peer, sorted(gen.world.nodes), username="u", password="e2e-pw", port=0)
    server.start()
    connections = tmp_path / "connections.yaml"
    nodes = {n.name: {"url": server.url(n.name)} for n in gen.world.nodes_of("c001")}
    connections.write_text(
        yaml.safe_dump(
            {
                "defaults": {"auth": "basic", "encryption": "never"},
                "clusters": {"c001": {"nodes": nodes}},
            }
        )
    )
    env = {
        "RECONCILER_PROVIDER": "hyperv",
        "RECONCILER_CONNECTIONS": str(connections),
        "RECONCILER_HYPERV_USER": "u",
        "RECONCILER_HYPERV_PASSWORD": "e2e-pw",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    def cli_run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(
            cli, ["--state-dir", str(tmp_path / "cli"), *args], env=env, catch_exceptions=False
        )
        return result.exit_code, result.output

    try:
        code, out = cli_run("plan", "--json", str(manifest.parent))
        assert code == 0, out
        types = sorted(a["type"] for a in json.loads(out)["actions"])
        # (and update_quorum: the generated 3-node world's witness disk, on the simulator too)
        assert {"set_cluster_addresses", "set_cluster_network"} <= set(types), out
        code, out = cli_run("apply", "--auto-approve", str(manifest.parent))
        assert code == 0, out
        truth = world(peer).clusters["c001"]
        assert truth.addresses == ("10.0.4.10",)
        assert [n.name for n in truth.networks][:2] == ["Management", "Cluster-HB"]
        code, out = cli_run("plan", "--detailed-exitcode", str(manifest.parent))
        assert code == 0, out
    finally:
        server.close()
        peer.close()


class TestHostsStillToFormACluster:
    """Hosts in no cluster are observed as they stand (no Cluster record), and the plan that
    forms them shows create_cluster blocked with this provider's reason, not a failed read."""

    def test_observe_then_plan(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        state = tmp_path / "world"
        gen = generate_estate(2, 3, 2, 0.0, 7, "2016", standalone=1)
        write_generated(gen, tmp_path / "gen")
        sim = SimProvider(state)
        sim.init_world(gen.world, "generated")
        sim.close()
        assert "c002" not in gen.world.clusters and "c002-n01" in gen.world.nodes
        peer = HyperVPeer(state, standalone_platform="2016")
        server = WinRMServer(peer, sorted(gen.world.nodes), username="u", password="f-pw", port=0)
        server.start()
        url = f"http://127.0.0.1:{server.port}/{{node}}/wsman"
        monkeypatch.setenv("RECONCILER_HYPERV_USER", "u")
        monkeypatch.setenv("RECONCILER_HYPERV_PASSWORD", "f-pw")
        provider = HyperVProvider(tmp_path / "cli", connections_for(gen.desired, url))
        try:
            seen_estate = provider.observe()
            assert sorted(seen_estate.clusters) == ["c001"]
            truth = world(peer)
            for name in ("c002-n01", "c002-n02", "c002-n03"):
                host, real = seen_estate.nodes[name], truth.nodes[name]
                assert host.cluster == "c002" and real.cluster == "c002"
                assert host.hardware == real.hardware
                assert host.status.switches == real.status.switches
                assert (host.status.state, host.status.roles_installed) == ("up", True)
                assert host.maintenance is False
            assert sorted(s.name for s in seen_estate.switches_of("c002")) == ["c002-vswitch"]
            caps = provider.capabilities()
            assert "New-Cluster" in (caps.refusal("create_cluster", "2016") or "")
            connections = tmp_path / "connections.yaml"
            nodes = {n: {"url": url.format(node=n)} for n in sorted(gen.desired.nodes)}
            by_cluster = {
                c: {"nodes": {n: v for n, v in nodes.items() if n.startswith(c)}}
                for c in gen.desired.clusters
            }
            connections.write_text(
                yaml.safe_dump(
                    {
                        "defaults": {"auth": "basic", "encryption": "never"},
                        "clusters": by_cluster,
                    }
                )
            )
            env = {"RECONCILER_PROVIDER": "hyperv", "RECONCILER_CONNECTIONS": str(connections)}
            result = CliRunner().invoke(
                cli,
                ["--state-dir", str(tmp_path / "cli2"), "plan", "--json",
                 str(tmp_path / "gen" / "desired")],
                env=env,
                catch_exceptions=False,
            )  # fmt: skip
            plan = json.loads(result.output)
            formed = [a for a in plan["actions"] if a["type"] == "create_cluster"]
            assert [a["target"] for a in formed] == ["Cluster/c002"]
            (why,) = [v for v in plan["violations"] if v["action"] == "create_cluster:c002"]
            assert why["rule"] == "unsupported"
            assert "New-Cluster" in why["message"]
            assert "standalone" not in why["message"]  # observed now: only the forming is left
        finally:
            provider.close()
            server.close()
            peer.close()

    def test_a_host_in_no_cluster_does_not_guess_its_release(self, tmp_path: Path) -> None:
        gen = generate_estate(1, 2, 1, 0.0, 7, "2016", standalone=1)
        sim = SimProvider(tmp_path)
        sim.init_world(gen.world, "generated")
        sim.close()
        peer = HyperVPeer(tmp_path)  # no standalone_platform
        try:
            result = peer.run("c001-n01", [_Cmd("Get-CimInstance", "Win32_OperatingSystem")])
        finally:
            peer.close()
        assert result.terminating is not None
        assert "in no cluster" in result.terminating.message


@dataclass
class _Cmd:
    """A received command as the transport hands it to the peer."""

    name: str
    value: str
    is_script: bool = False

    @property
    def parameters(self) -> list[tuple[str | None, Any]]:
        return [("ClassName", self.value)]


def test_the_modern_path_runs_only_the_shipped_scripts() -> None:
    """Each of the modern path's script calls (``r.script``) passes a constant of
    ``scripts``, never built text."""
    root = Path(__file__).resolve().parents[1] / "reconciler" / "providers" / "hyperv"
    calls = []
    for path in sorted(root.glob("act*.py")):
        text = path.read_text()
        for found in re.finditer(r"r\.script\(\s*\w+,\s*([^,]+),", text):
            calls.append((path.name, found.group(1).strip()))
    assert calls == [
        ("act_cluster.py", "SET_CLUSTER_NETWORK"),
        ("act_storage.py", "scripts.RENAME_CLUSTER_RESOURCE"),
    ]
    for script in ALL.values():
        assert script.startswith("[CmdletBinding()] param(")
