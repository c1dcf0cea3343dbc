"""Golden pipelines of the 2008 R2 (WMI v1) path: per action type, what the peer received.

Over the real WS-Management transport, the peer a PSRP 2.1 host. A script appears by the name
of the shipped constant it is (checked to be one of them), with its typed arguments. Files in
tests/golden_hyperv_wmi1/ are reviewed data (regenerate with RECONCILER_REGEN_GOLDEN=1 and
review the diff).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hyperv_world import connections_for, make_world

from reconciler.model.actions import DISRUPTION, Action
from reconciler.providers.base import scope_of
from reconciler.providers.hyperv.provider import HyperVProvider
from reconciler.providers.hyperv.wmi1 import scripts
from reconciler.providers.sim.generate import generate_estate
from reconciler.providers.sim.provider import SimProvider
from reconciler.providers.sim.winrm.cmdlets import HyperVPeer
from reconciler.providers.sim.winrm.transport import WinRMServer

GOLDEN = Path(__file__).with_name("golden_hyperv_wmi1")
SCRIPT_NAMES = {text: name for name, text in scripts.ALL.items()}


@pytest.fixture
def rig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[HyperVPeer, HyperVProvider]]:
    gen = make_world(tmp_path, clusters=1, nodes=3, vms=3, drift=0.0, seed=7, platform="2008r2")
    peer = HyperVPeer(tmp_path)
    server = WinRMServer(
        peer,
        sorted(gen.world.nodes),
        username="u",
        password="golden-pw",
        port=0,
        protocol_version="2.1",
    )
    server.start()
    monkeypatch.setenv("RECONCILER_HYPERV_USER", "u")
    monkeypatch.setenv("RECONCILER_HYPERV_PASSWORD", "golden-pw")
    url = f"http://127.0.0.1:{server.port}/{{node}}/wsman"
    provider = HyperVProvider(tmp_path / "cli", connections_for(gen.world, url))
    try:
        provider.observe()
        yield peer, provider
    finally:
        provider.close()
        server.close()
        peer.close()


def act(type_: str, target: str, **params: Any) -> Action:
    return Action(f"{type_}:golden", type_, target, "c001", params, disruption=DISRUPTION[type_])  # type: ignore[arg-type]


def pipelines(peer: HyperVPeer, start: int) -> list[dict[str, Any]]:
    out = []
    for received in peer.received[start:]:
        doc = received.as_json()
        for stage in doc["pipeline"]:
            assert ["ErrorAction", {"S": "Stop"}] in stage["parameters"], stage
            stage["parameters"] = [p for p in stage["parameters"] if p[0] != "ErrorAction"]
            if stage["cmdlet"].startswith("[CmdletBinding()]"):
                assert stage["cmdlet"] in SCRIPT_NAMES, "a script that is not a shipped constant"
                stage["cmdlet"] = f"script:{SCRIPT_NAMES[stage['cmdlet']]}"
        out.append(doc)
    return out


def steps(world: Any) -> list[tuple[str, Action]]:
    first = sorted(world.vms_on("c001-n01"), key=lambda v: v.name)[0]
    switch = sorted(world.nodes["c001-n01"].status.switches)[0]
    cfg = world.nodes["c001-n01"].status.switches[switch]
    trunk = ",".join(str(v) for v in sorted(cfg.allowed_vlans | {60}))
    disk = {
        "name": "golden",
        "controller": "scsi",
        "controller_number": 0,
        "slot": 9,
        "type": "dynamic",
        "format": "vhd",
        "size_gib": 10,
        "volume": "c001-csv1",
        "allow_delete": True,
        "boot": False,
        "parent": None,
    }
    csv = world.volumes["c001-csv1"]
    vmr = f"VirtualMachine/{first.name}"
    return [
        ("begin_monitoring_maintenance", act("begin_monitoring_maintenance", "Cluster/c001")),
        ("validate_cluster", act("validate_cluster", "Cluster/c001", cluster="c001")),
        ("set_vlan_trunk", act("set_vlan_trunk", "Node/c001-n01", node="c001-n01", switch=switch,
                               allowed_vlans=trunk, native_vlan=cfg.native_vlan)),
        ("match_vswitch", act("match_vswitch", "Node/c001-n02", node="c001-n02",
                              switch="golden-int", config={"type": "internal", "uplink_nic": None,
                              "management_os": True, "allowed_vlans": "", "native_vlan": None})),
        ("update_quorum", act("update_quorum", "Cluster/c001", mode="node_majority", witness={})),
        ("migrate_vm", act("migrate_vm", vmr, vm=first.name, destination="c001-n02",
                           method="live")),
        ("add_disk", act("add_disk", vmr, vm=first.name, disk=disk)),
        ("extend_lun", act("extend_lun", "ClusterSharedVolume/c001-csv1", volume="c001-csv1",
                           lun_size_gib=csv.lun_size_gib + 256)),
        ("extend_volume", act("extend_volume", "ClusterSharedVolume/c001-csv1", volume="c001-csv1",
                              size_gib=csv.size_gib + 256)),
        ("end_monitoring_maintenance", act("end_monitoring_maintenance", "Cluster/c001")),
        # Built later on this path (the 2008 R2 way): quick migration is Move-ClusterGroup ...
        ("migrate_vm_quick", act("migrate_vm", vmr, vm=first.name, destination="c001-n03",
                                 method="quick")),
        # ... a drain pauses the node, then moves each running role one by one, and checks
        # that nothing runs there (n02: four running VMs, all allowed to live-migrate)
        ("drain_node", act("drain_node", "Node/c001-n02", node="c001-n02")),
        ("resume_node", act("resume_node", "Node/c001-n02", node="c001-n02")),
        ("stop_vm", act("stop_vm", vmr, vm=first.name)),
        ("extend_vhd", act("extend_vhd", vmr, vm=first.name, disk=first.disks[0].name,
                           size_gib=first.disks[0].size_gib + 10)),
        ("detach_disk", act("detach_disk", vmr, vm=first.name, disk="golden", delete_file=True)),
        ("start_vm", act("start_vm", vmr, vm=first.name)),
    ]  # fmt: skip


def test_golden_pipelines_per_action_type_on_2008r2(
    rig: tuple[HyperVPeer, HyperVProvider],
) -> None:
    peer, provider = rig
    world = SimProvider(peer.state_dir).observe()
    regen = os.environ.get("RECONCILER_REGEN_GOLDEN") == "1"
    for n, (name, action) in enumerate(steps(world), start=1):
        start = len(peer.received)
        outcome = provider.apply(action)
        assert outcome.status == "done", (name, outcome.message)
        got = {"action": name, "pipelines": pipelines(peer, start)}
        path = GOLDEN / f"{n:02d}_{name}.json"
        if regen:
            GOLDEN.mkdir(exist_ok=True)
            path.write_text(json.dumps(got, indent=2) + "\n")
        assert json.loads(path.read_text()) == got, f"{path.name} differs"
        provider.observe(scope_of(action))
    # the provider never asked a 2008 R2 host for the Hyper-V module
    assert not any(c == "Get-VM" for r in peer.received for c, _ in r.commands)


@pytest.fixture
def join_rig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[HyperVPeer, HyperVProvider]]:
    """A 2008 R2 cluster of three members and c001-n04 racked for it, not joined: no VMs and
    no LUNs there yet (as the demo's hv05)."""
    gen = generate_estate(1, 4, 2, 0.0, 7, "2008r2")
    world = gen.world
    for vm in world.vms_on("c001-n04"):
        world = world.without("VirtualMachine", vm.name)
    spare = world.nodes["c001-n04"]
    world = world.with_record(replace(spare, status=replace(spare.status, luns=frozenset())))
    cluster = world.clusters["c001"]
    world = world.with_record(
        replace(cluster, nodes=tuple(n for n in cluster.nodes if n != "c001-n04"))
    )
    sim = SimProvider(tmp_path)
    sim.init_world(world, "golden join")
    sim.close()
    peer = HyperVPeer(tmp_path)
    server = WinRMServer(
        peer, sorted(world.nodes), username="u", password="golden-pw", port=0,
        protocol_version="2.1",
    )  # fmt: skip
    server.start()
    monkeypatch.setenv("RECONCILER_HYPERV_USER", "u")
    monkeypatch.setenv("RECONCILER_HYPERV_PASSWORD", "golden-pw")
    url = f"http://127.0.0.1:{server.port}/{{node}}/wsman"
    provider = HyperVProvider(tmp_path / "cli", connections_for(world, url))
    try:
        provider.observe()
        yield peer, provider
    finally:
        provider.close()
        server.close()
        peer.close()


def test_golden_pipelines_of_a_join_on_2008r2(join_rig: tuple[HyperVPeer, HyperVProvider]) -> None:
    """The add-node procedure's own action types: LUNs unmasked, joined, test-migrated."""
    peer, provider = join_rig
    world = SimProvider(peer.state_dir).observe()
    test_vm = sorted(world.vms_on("c001-n01"), key=lambda v: v.name)[0].name
    volumes = sorted(world.volumes)
    switch = sorted(world.nodes["c001-n04"].status.switches)[0]
    cfg = world.nodes["c001-n04"].status.switches[switch]
    rebound = {  # the same switch, its host sharing turned around: bound again
        "type": cfg.type, "uplink_nic": cfg.uplink_nic, "management_os": not cfg.management_os,
        "allowed_vlans": ",".join(str(v) for v in sorted(cfg.allowed_vlans)),
        "native_vlan": cfg.native_vlan,
    }  # fmt: skip
    steps = [
        ("present_storage", act("present_storage", "Node/c001-n04", node="c001-n04",
                                volumes=volumes)),
        ("add_node", act("add_node", "Node/c001-n04", node="c001-n04")),
        ("test_live_migration", act("test_live_migration", "Node/c001-n04", node="c001-n04",
                                    vm=test_vm)),
        # joined and empty: its switch bound again (changing an existing switch's binding)
        ("match_vswitch_existing", act("match_vswitch", "Node/c001-n04", node="c001-n04",
                                       switch=switch, config=rebound)),
    ]  # fmt: skip
    regen = os.environ.get("RECONCILER_REGEN_GOLDEN") == "1"
    for n, (name, action) in enumerate(steps, start=18):
        start = len(peer.received)
        outcome = provider.apply(action)
        assert outcome.status == "done", (name, outcome.message)
        got = {"action": name, "pipelines": pipelines(peer, start)}
        path = GOLDEN / f"{n:02d}_{name}.json"
        if regen:
            path.write_text(json.dumps(got, indent=2) + "\n")
        assert json.loads(path.read_text()) == got, f"{path.name} differs"
        provider.observe(scope_of(action))
    after = SimProvider(peer.state_dir).observe()
    assert after.nodes["c001-n04"].status.switches[switch] == replace(
        cfg, management_os=not cfg.management_os
    )
    c = after.clusters["c001"]
    assert "c001-n04" in c.nodes and c.status.tested_nodes == {"c001-n04"}
    assert after.nodes["c001-n04"].status.luns == set(volumes)
    assert after.vms[test_vm].node == "c001-n01"  # there and back
