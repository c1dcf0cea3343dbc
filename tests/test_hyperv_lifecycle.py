"""The lifecycle actions through the hyperv provider (modern path) over the real PSRP peer.

A Windows Server 2016 world (generation 2, network adapter hot add) served on 127.0.0.1:
each action's pipelines as the peer received them are golden files (tests/golden_hyperv/
lifecycle_*.json, regenerate with RECONCILER_REGEN_GOLDEN=1 and review the diff); what each
did to the world is stated by hand; and what the provider reads back after it equals the
world (so apply then plan shows no changes).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hyperv_world import connections_for, make_world, observable
from test_hyperv_golden import pipelines

from reconciler.model.actions import DISRUPTION, Action
from reconciler.model.records import Estate, VirtualMachine
from reconciler.providers.base import scope_of
from reconciler.providers.hyperv.provider import HyperVProvider
from reconciler.providers.hyperv.wire import i16, i64
from reconciler.providers.sim.provider import SimProvider
from reconciler.providers.sim.winrm.cmdlets import HyperVPeer
from reconciler.providers.sim.winrm.transport import WinRMServer

GOLDEN = Path(__file__).with_name("golden_hyperv")
SWITCH = "c001-vswitch"  # the generated VM switch, trunk 10,20,30-49 native 1


@pytest.fixture
def rig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[HyperVPeer, HyperVProvider]]:
    gen = make_world(tmp_path, clusters=1, nodes=3, vms=2, drift=0.0, seed=7, platform="2016")
    peer = HyperVPeer(tmp_path)
    server = WinRMServer(peer, sorted(gen.world.nodes), username="u", password="life-pw", port=0)
    server.start()
    monkeypatch.setenv("RECONCILER_HYPERV_USER", "u")
    monkeypatch.setenv("RECONCILER_HYPERV_PASSWORD", "life-pw")
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
    return Action(f"{type_}:life", type_, target, "c001", params, disruption=DISRUPTION[type_])  # type: ignore[arg-type]


def world(peer: HyperVPeer) -> Estate:
    sim = SimProvider(peer.state_dir)
    try:
        return sim.observe()
    finally:
        sim.close()


def only(vm: VirtualMachine) -> Estate:
    return observable(Estate({}, {}, {}, {}, {vm.name: vm}))


NEW_VM = {
    "vm": "APP09",
    "node": "c001-n02",
    "generation": 2,
    "memory_mib": 2048,
    "vcpus": 2,
    "highly_available": True,
    "migration_policy": "live",
    "anti_affinity_group": None,
    "anti_affinity_mode": "soft",
    "allow_downtime": False,
    "nics": [
        {"name": "nic1", "switch": SWITCH, "vlan": 30},
        {"name": "nic2", "switch": SWITCH, "vlan": None, "trunk": "10,20", "native_vlan": 1,
         "mac": "00155D0A0B0C"},
    ],
    "disks": [
        {"name": "os", "controller": "scsi", "controller_number": 0, "slot": 0,
         "type": "dynamic", "format": "vhdx", "size_gib": 40, "volume": "c001-csv1",
         "allow_delete": False, "boot": True, "parent": None},
        {"name": "data", "controller": "scsi", "controller_number": 0, "slot": 1,
         "type": "fixed", "format": "vhdx", "size_gib": 10, "volume": "c001-csv2",
         "allow_delete": False, "boot": False, "parent": None},
    ],
}  # fmt: skip
VMR = "VirtualMachine/APP09"

# (golden name, action, the VM's fields afterwards as the world holds them, stated by hand)
STEPS: list[tuple[str, Action, dict[str, Any]]] = [
    ("create_vm", act("create_vm", VMR, **NEW_VM),
     {"node": "c001-n02", "power_state": "off", "memory_mib": 2048, "vcpus": 2,
      "highly_available": True,
      "nics": [("nic1", SWITCH, 30, (), None, None),
               ("nic2", SWITCH, None, (10, 20), 1, "00155D0A0B0C")],
      "disks": [("os", "scsi", 0, 0, "dynamic", 40, "c001-csv1"),
                ("data", "scsi", 0, 1, "fixed", 10, "c001-csv2")]}),
    ("start_vm", act("start_vm", VMR, vm="APP09"), {"power_state": "running"}),
    ("add_vm_nic", act("add_vm_nic", VMR, vm="APP09",
                       nic={"name": "nic3", "switch": SWITCH, "vlan": 40}),
     {"nics": [("nic1", SWITCH, 30, (), None, None),
               ("nic2", SWITCH, None, (10, 20), 1, "00155D0A0B0C"),
               ("nic3", SWITCH, 40, (), None, None)]}),
    ("set_vm_nic", act("set_vm_nic", VMR, vm="APP09",
                       nic={"name": "nic3", "switch": SWITCH, "vlan": None,
                            "trunk": "30-32", "native_vlan": 1}),
     {"nics": [("nic1", SWITCH, 30, (), None, None),
               ("nic2", SWITCH, None, (10, 20), 1, "00155D0A0B0C"),
               ("nic3", SWITCH, None, (30, 31, 32), 1, None)]}),
    ("remove_vm_nic", act("remove_vm_nic", VMR, vm="APP09", nic="nic3"),
     {"nics": [("nic1", SWITCH, 30, (), None, None),
               ("nic2", SWITCH, None, (10, 20), 1, "00155D0A0B0C")]}),
    ("move_disk", act("move_disk", VMR, vm="APP09", disk="data", controller="scsi",
                      controller_number=0, slot=5),
     {"disks": [("os", "scsi", 0, 0, "dynamic", 40, "c001-csv1"),
                ("data", "scsi", 0, 5, "fixed", 10, "c001-csv2")]}),
    ("set_preferred_owners", act("set_preferred_owners", VMR, vm="APP09",
                                 owners=["c001-n02", "c001-n01"]),
     {"preferred_owners": frozenset({"c001-n01", "c001-n02"}), "node": "c001-n02"}),
    ("stop_vm", act("stop_vm", VMR, vm="APP09"), {"power_state": "off"}),
    ("set_vm_nic_mac", act("set_vm_nic", VMR, vm="APP09",
                           nic={"name": "nic1", "switch": SWITCH, "vlan": 30,
                                "mac": "00155D0A0B0D"}),
     {"nics": [("nic1", SWITCH, 30, (), None, "00155D0A0B0D"),
               ("nic2", SWITCH, None, (10, 20), 1, "00155D0A0B0C")]}),
    ("set_automatic_actions", act("set_automatic_actions", VMR, vm="APP09", start="start",
                                  stop="shut_down"),
     {"automatic_start_action": "start", "automatic_stop_action": "shut_down"}),
]  # fmt: skip


def fields(vm: VirtualMachine, names: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        if name == "nics":
            out[name] = [
                (n.name, n.switch, n.vlan, tuple(sorted(n.trunk)), n.native_vlan, n.mac)
                for n in vm.nics
            ]
        elif name == "disks":
            out[name] = [
                (d.name, d.controller, d.controller_number, d.slot, d.type, d.size_gib, d.volume)
                for d in vm.disks
            ]
        else:
            out[name] = getattr(vm, name)
    return out


def check_golden(name: str, got: dict[str, Any]) -> None:
    path = GOLDEN / f"lifecycle_{name}.json"
    if os.environ.get("RECONCILER_REGEN_GOLDEN") == "1":
        path.write_text(json.dumps(got, indent=2) + "\n")
    assert json.loads(path.read_text()) == got, f"{path.name} differs"


def test_each_lifecycle_action_golden_effect_and_read_back(
    rig: tuple[HyperVPeer, HyperVProvider],
) -> None:
    peer, provider = rig
    for name, action, expected in STEPS:
        start = len(peer.received)
        outcome = provider.apply(action)
        assert outcome.status == "done", (name, outcome.message)
        check_golden(name, {"action": action.type, "pipelines": pipelines(peer, start)})
        truth = world(peer).vms["APP09"]
        assert fields(truth, expected) == expected, name
        seen = provider.observe(scope_of(action)).vms["APP09"]
        assert only(seen) == only(truth), name  # what the action set is read back


def test_remove_vm_deletes_exactly_the_listed_files_under_delete_disks(
    rig: tuple[HyperVPeer, HyperVProvider],
) -> None:
    peer, provider = rig
    before = world(peer)
    vm = before.vms["c001-vm0005"]  # running on c001-n02, os on csv2, db on csv2
    assert (vm.node, vm.power_state) == ("c001-n02", "running")
    start = len(peer.received)
    outcome = provider.apply(
        act("remove_vm", "VirtualMachine/c001-vm0005", vm=vm.name, node=vm.node,
            delete_disks=True, files=["c001-vm0005/os.vhdx", "c001-vm0005/db.vhdx"])
    )  # fmt: skip
    assert outcome.status == "done", outcome.message
    got = pipelines(peer, start)
    check_golden("remove_vm", {"action": "remove_vm", "pipelines": got})
    removed = [p for r in got for s in r["pipeline"] if s["cmdlet"] == "Remove-Item"
               for p in s["parameters"]]  # fmt: skip
    assert removed == [
        ["LiteralPath", {"S": "C:\\ClusterStorage\\c001-csv2\\c001-vm0005\\os.vhdx"}],
        ["LiteralPath", {"S": "C:\\ClusterStorage\\c001-csv2\\c001-vm0005\\db.vhdx"}],
    ]
    after = world(peer)
    assert "c001-vm0005" not in after.vms
    assert dict(after.volumes["c001-csv2"].status.files) == {}
    removal = act("remove_vm", "VirtualMachine/c001-vm0005", vm="c001-vm0005")
    assert "c001-vm0005" not in provider.observe(scope_of(removal)).vms


def test_remove_vm_without_delete_disks_keeps_every_file(
    rig: tuple[HyperVPeer, HyperVProvider],
) -> None:
    peer, provider = rig
    vm = world(peer).vms["c001-vm0005"]
    start = len(peer.received)
    outcome = provider.apply(
        act("remove_vm", "VirtualMachine/c001-vm0005", vm=vm.name, node=vm.node,
            delete_disks=False, files=["c001-vm0005/os.vhdx", "c001-vm0005/db.vhdx"])
    )  # fmt: skip
    assert outcome.status == "done", outcome.message
    cmdlets = [s["cmdlet"] for r in pipelines(peer, start) for s in r["pipeline"]]
    assert "Remove-Item" not in cmdlets
    assert cmdlets.count("Remove-VM") == 1
    files = world(peer).volumes["c001-csv2"].status.files
    assert sorted(files) == ["c001-vm0005/db.vhdx", "c001-vm0005/os.vhdx"]


def test_evict_node_after_its_drain(rig: tuple[HyperVPeer, HyperVProvider]) -> None:
    peer, provider = rig
    for vm, to in (("c001-vm0003", "c001-n01"), ("c001-vm0006", "c001-n02")):
        move = act("migrate_vm", f"VirtualMachine/{vm}", vm=vm, destination=to, method="live")
        assert provider.apply(move).status == "done"
        provider.observe(scope_of(move))
    drain = act("drain_node", "Node/c001-n03", node="c001-n03")
    assert provider.apply(drain).status == "done"
    provider.observe(scope_of(drain))
    start = len(peer.received)
    evict = act("evict_node", "Node/c001-n03", node="c001-n03")
    outcome = provider.apply(evict)
    assert outcome.status == "done", outcome.message
    check_golden("evict_node", {"action": "evict_node", "pipelines": pipelines(peer, start)})
    assert world(peer).clusters["c001"].nodes == ("c001-n01", "c001-n02")
    assert provider.observe(scope_of(evict)).clusters["c001"].nodes == ("c001-n01", "c001-n02")
    # Again: the node is gone, nothing is sent but the read.
    start = len(peer.received)
    assert provider.apply(evict).status == "done"
    assert [s["cmdlet"] for r in pipelines(peer, start) for s in r["pipeline"]] == [
        "Get-ClusterNode"
    ]


def test_a_half_made_vm_is_finished_not_made_twice(
    rig: tuple[HyperVPeer, HyperVProvider],
) -> None:
    """A run cut short after New-VM and one stray adapter: the same create_vm again."""
    peer, provider = rig
    provider.observe()
    new = {"Name": "APP09", "Generation": i16(2), "MemoryStartupBytes": i64(2048 * 2**20),
           "NoVHD": None}  # fmt: skip
    provider._call("c001-n02", "New-VM", new)
    provider._call(
        "c001-n02", "Add-VMNetworkAdapter",
        {"VMName": "APP09", "Name": "Network Adapter", "SwitchName": SWITCH},
    )  # fmt: skip
    start = len(peer.received)
    outcome = provider.apply(STEPS[0][1])
    assert outcome.status == "done", outcome.message
    cmdlets = [s["cmdlet"] for r in pipelines(peer, start) for s in r["pipeline"]]
    assert "New-VM" not in cmdlets
    assert cmdlets.count("Remove-VMNetworkAdapter") == 1  # the stray "Network Adapter"
    truth = world(peer).vms["APP09"]
    assert fields(truth, STEPS[0][2]) == STEPS[0][2]
    assert sum(1 for v in world(peer).vms if v == "APP09") == 1
    # And a third time: everything is there, nothing is added (the setters repeat).
    before, start = world(peer), len(peer.received)
    assert provider.apply(STEPS[0][1]).status == "done"
    assert world(peer) == before
    cmdlets = {s["cmdlet"] for r in pipelines(peer, start) for s in r["pipeline"]}
    assert not cmdlets & {"New-VM", "New-VHD", "Add-VMHardDiskDrive", "Add-VMNetworkAdapter",
                          "Add-ClusterVirtualMachineRole", "Remove-VMNetworkAdapter"}  # fmt: skip


def test_what_the_provider_cannot_build_is_refused_before_anything_is_made(
    rig: tuple[HyperVPeer, HyperVProvider],
) -> None:
    peer, provider = rig
    disks = [{**NEW_VM["disks"][0], "file": "old/os.vhdx"}]  # type: ignore[dict-item]
    start = len(peer.received)
    outcome = provider.apply(act("create_vm", VMR, **{**NEW_VM, "disks": disks}))
    assert outcome.status == "permanent_error"
    assert "existing file old/os.vhdx is not built" in outcome.message
    assert peer.received[start:] == []
    outcome = provider.apply(act("create_vm", VMR, **{**NEW_VM, "anti_affinity_group": "sql"}))
    assert outcome.status == "permanent_error"
    assert "AntiAffinityClassNames" in outcome.message
    assert peer.received[start:] == []
    assert "APP09" not in world(peer).vms


def test_validate_cluster_runs_test_cluster_over_the_members(
    rig: tuple[HyperVPeer, HyperVProvider],
) -> None:
    peer, provider = rig
    sim = SimProvider(peer.state_dir)
    before = sim.store.load()
    cluster = before.clusters["c001"]
    pending = replace(
        cluster, status=replace(cluster.status, pending_nodes=frozenset({"c001-n03"}))
    )
    sim.change_behind_back(before, before.with_record(pending), "c001-n03 joined, not validated")
    sim.close()
    validate = act("validate_cluster", "Cluster/c001", cluster="c001")
    assert provider.observe(scope_of(validate)).clusters["c001"].status.pending_nodes == {
        "c001-n03"
    }
    start = len(peer.received)
    outcome = provider.apply(validate)
    assert outcome.status == "done", outcome.message
    check_golden(
        "validate_cluster", {"action": "validate_cluster", "pipelines": pipelines(peer, start)}
    )
    assert world(peer).clusters["c001"].status.pending_nodes == frozenset()
    assert provider.observe(scope_of(validate)).clusters["c001"].status.pending_nodes == frozenset()


def test_a_failed_validation_is_the_cmdlets_error(rig: tuple[HyperVPeer, HyperVProvider]) -> None:
    peer, provider = rig
    sim = SimProvider(peer.state_dir)
    before = sim.store.load()
    n03 = before.nodes["c001-n03"]
    down = replace(n03, status=replace(n03.status, state="down"))
    sim.change_behind_back(before, before.with_record(down), "c001-n03 lost power")
    sim.close()
    outcome = provider.apply(act("validate_cluster", "Cluster/c001", cluster="c001"))
    assert outcome.status == "precondition_failed"
    assert outcome.message.startswith("Test-Cluster failed: ")
    assert "cluster validation failed: c001-n03 is down" in outcome.message


LIFECYCLE = ["create_vm", "remove_vm", "evict_node", "add_vm_nic", "remove_vm_nic",
             "set_vm_nic", "move_disk", "set_preferred_owners", "set_automatic_actions",
             "validate_cluster", "set_vm_memory", "set_scsi_controllers"]  # fmt: skip
STILL_NOT = {
    "present_storage": "storage array",
    "patch_node": "rolling-update hook",
    "test_live_migration": "not built",
    "verify_node": "not built",
    "convert_disk": "not built",
}


def test_capabilities_offer_the_lifecycle_on_the_modern_path_only(
    rig: tuple[HyperVPeer, HyperVProvider],
) -> None:
    caps = rig[1].capabilities()
    for kind in LIFECYCLE:
        assert caps.refusal(kind, "2016") is None, kind
        assert caps.refusal(kind, "2012r2") is None, kind
    for kind in ("create_vm", "remove_vm", "evict_node", "set_vm_nic"):
        assert "2008 R2" in (caps.refusal(kind, "2008r2") or ""), kind
    for kind, why in STILL_NOT.items():
        assert why in (caps.refusal(kind, "2016") or ""), kind


def test_set_vm_nic_onto_another_switch_goes_through_untagged(
    rig: tuple[HyperVPeer, HyperVProvider],
) -> None:
    """Switch and VLAN both change: neither switch need carry the other's VLAN."""
    peer, provider = rig
    internal = {"type": "internal", "uplink_nic": None, "management_os": True,
                "allowed_vlans": "5", "native_vlan": 1}  # fmt: skip
    for node in ("c001-n01", "c001-n02", "c001-n03"):
        made = act("match_vswitch", f"Node/{node}", node=node, switch="lab", config=internal)
        assert provider.apply(made).status == "done"
        provider.observe(scope_of(made))
    vm = world(peer).vms["c001-vm0002"]  # running on c001-n02, nic1 on the VM switch, VLAN 10
    assert [(n.name, n.switch, n.vlan) for n in vm.nics] == [("nic1", SWITCH, 10)]
    move = act("set_vm_nic", "VirtualMachine/c001-vm0002", vm=vm.name,
               nic={"name": "nic1", "switch": "lab", "vlan": 5})  # fmt: skip
    start = len(peer.received)
    outcome = provider.apply(move)
    assert outcome.status == "done", outcome.message
    check_golden("set_vm_nic_switch", {"action": "set_vm_nic", "pipelines": pipelines(peer, start)})
    truth = world(peer).vms["c001-vm0002"]
    assert [(n.name, n.switch, n.vlan) for n in truth.nics] == [("nic1", "lab", 5)]
    assert only(provider.observe(scope_of(move)).vms["c001-vm0002"]) == only(truth)
