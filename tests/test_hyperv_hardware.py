"""A VM's memory model and SCSI controllers through the hyperv provider (modern path).

The same rig and oracles as test_hyperv_lifecycle: a Windows Server 2016 world served by the
PSRP peer on 127.0.0.1; each action's pipelines are golden files (tests/golden_hyperv/
lifecycle_*.json, regenerate with RECONCILER_REGEN_GOLDEN=1 and review the diff); the world's
fields afterwards are stated by hand; what the provider reads back equals the world. Then the
manifests: dynamic memory and a second SCSI controller declared, plan, apply, and the next
plan has no changes through hyperv and through sim.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hyperv_inproc import InProcSessions
from hyperv_world import connections_for, make_world, observable
from psrpcore.types import PSInt, PSInt64
from test_hyperv_golden import pipelines
from test_hyperv_lifecycle import NEW_VM, VMR, act, check_golden, fields, only, world
from test_hyperv_lifecycle import rig as rig  # the fixture, shared
from test_hyperv_observe import Cmd

from reconciler.cli.main import cli
from reconciler.model.records import DynamicMemory
from reconciler.providers.base import scope_of
from reconciler.providers.hyperv.provider import HyperVProvider
from reconciler.providers.sim.provider import SimProvider
from reconciler.providers.sim.winrm.cmdlets import HyperVPeer
from reconciler.providers.sim.winrm.transport import WinRMServer

Rig = tuple[HyperVPeer, HyperVProvider]
GIB_MIB = 1024
OS, DATA = NEW_VM["disks"]  # type: ignore[misc]
DYNAMIC_VM = {
    **NEW_VM,
    "dynamic_memory": {"minimum_mib": 1024, "maximum_mib": 4096, "buffer_pct": 20},
    "disks": [OS, {**DATA, "controller_number": 1, "slot": 0}],  # type: ignore[dict-item]
}

# (golden name or None, action, the VM's fields afterwards as the world holds them, by hand)
STEPS: list[tuple[str | None, Any, dict[str, Any]]] = [
    ("create_vm_dynamic", act("create_vm", VMR, **DYNAMIC_VM),
     {"power_state": "off", "memory_mib": 2048,
      "dynamic_memory": DynamicMemory(True, 1024, 4096, 20), "scsi_controllers": 2,
      "disks": [("os", "scsi", 0, 0, "dynamic", 40, "c001-csv1"),
                ("data", "scsi", 1, 0, "fixed", 10, "c001-csv2")]}),
    ("set_vm_memory_off", act("set_vm_memory", VMR, vm="APP09", memory_mib=4096,
                              dynamic={"minimum_mib": 2048, "maximum_mib": 8192,
                                       "buffer_pct": 25}),
     {"memory_mib": 4096, "dynamic_memory": DynamicMemory(True, 2048, 8192, 25)}),
    ("set_scsi_controllers_add", act("set_scsi_controllers", VMR, vm="APP09", count=4),
     {"scsi_controllers": 4}),
    ("set_scsi_controllers_remove", act("set_scsi_controllers", VMR, vm="APP09", count=2),
     {"scsi_controllers": 2}),
    (None, act("start_vm", VMR, vm="APP09"), {"power_state": "running"}),
    # Running, on 2016: the minimum may go down, the maximum up, the buffer change.
    ("set_vm_memory_running", act("set_vm_memory", VMR, vm="APP09", memory_mib=4096,
                                  dynamic={"minimum_mib": 1024, "maximum_mib": 16384,
                                           "buffer_pct": 30}),
     {"memory_mib": 4096, "dynamic_memory": DynamicMemory(True, 1024, 16384, 30),
      "power_state": "running"}),
    (None, act("stop_vm", VMR, vm="APP09"), {"power_state": "off"}),
    ("set_vm_memory_static", act("set_vm_memory", VMR, vm="APP09", memory_mib=2048,
                                 dynamic=None),
     {"memory_mib": 2048, "dynamic_memory": None}),
]  # fmt: skip


def sent(peer: HyperVPeer, start: int, cmdlet: str) -> list[list[str]]:
    """The parameter names of each ``cmdlet`` the peer received since ``start``."""
    return [
        [p[0] for p in stage["parameters"]]
        for r in pipelines(peer, start)
        for stage in r["pipeline"]
        if stage["cmdlet"] == cmdlet
    ]


def test_memory_and_controllers_golden_effect_and_read_back(rig: Rig) -> None:
    peer, provider = rig
    for name, action, expected in STEPS:
        start = len(peer.received)
        outcome = provider.apply(action)
        assert outcome.status == "done", (name or action.type, outcome.message)
        if name is not None:
            check_golden(name, {"action": action.type, "pipelines": pipelines(peer, start)})
        truth = world(peer).vms["APP09"]
        assert fields(truth, expected) == expected, name or action.type
        seen = provider.observe(scope_of(action)).vms["APP09"]
        assert only(seen) == only(truth), name or action.type
        assert seen.memory_model() == truth.memory_model(), name  # the buffer too
        assert seen.scsi_count() == truth.scsi_count(), name


def test_create_vm_adds_the_controller_before_the_disk_on_it(rig: Rig) -> None:
    peer, provider = rig
    start = len(peer.received)
    assert provider.apply(STEPS[0][1]).status == "done"
    order = [s["cmdlet"] for r in pipelines(peer, start) for s in r["pipeline"]]
    assert order.count("Add-VMScsiController") == 1  # New-VM gives generation 2 one
    assert order.index("Add-VMScsiController") < order.index("Add-VMHardDiskDrive")
    # The memory call carries the bounds, each with the cmdlet's own wire type.
    memory = [s for r in pipelines(peer, start) for s in r["pipeline"]
              if s["cmdlet"] == "Set-VMMemory"]  # fmt: skip
    assert [p for p in memory[0]["parameters"]] == [
        ["VMName", {"S": "APP09"}],
        ["DynamicMemoryEnabled", {"B": True}],
        ["StartupBytes", {"I64": 2048 * 2**20}],
        ["MinimumBytes", {"I64": 1024 * 2**20}],
        ["MaximumBytes", {"I64": 4096 * 2**20}],
        ["Buffer", {"I32": 20}],
    ]


def test_a_running_vm_is_sent_only_its_bounds(rig: Rig) -> None:
    """Startup memory and the on/off switch need the VM off: never sent while they hold."""
    peer, provider = rig
    for _, action, _ in STEPS[:5]:
        assert provider.apply(action).status == "done"
        provider.observe(scope_of(action))
    start = len(peer.received)
    assert provider.apply(STEPS[5][1]).status == "done"
    assert sent(peer, start, "Set-VMMemory") == [
        ["VMName", "MinimumBytes", "MaximumBytes", "Buffer"]
    ]


def test_what_needs_the_vm_off_is_refused_by_the_rule_while_it_runs(rig: Rig) -> None:
    peer, provider = rig
    vm = world(peer).vms["c001-vm0002"]  # running on c001-n02, os and data on controller 0
    assert (vm.power_state, vm.memory_model(), vm.scsi_count()) == ("running", None, 1)
    before = world(peer)
    bounds = {"minimum_mib": 2048, "maximum_mib": 32768, "buffer_pct": 20}
    turn_on = act(
        "set_vm_memory", "VirtualMachine/c001-vm0002", vm=vm.name, memory_mib=vm.memory_mib,
        dynamic=bounds,
    )  # fmt: skip
    outcome = provider.apply(turn_on)
    assert outcome.status == "precondition_failed"
    assert "dynamic memory is turned on or off only while the VM is off" in outcome.message
    more = act("set_scsi_controllers", "VirtualMachine/c001-vm0002", vm=vm.name, count=2)
    outcome = provider.apply(more)
    assert outcome.status == "precondition_failed"
    assert "must be off to add or remove a SCSI controller" in outcome.message
    assert world(peer) == before


def test_a_controller_a_disk_is_on_is_not_removed(rig: Rig) -> None:
    peer, provider = rig
    for _, action, _ in STEPS[:1]:
        assert provider.apply(action).status == "done"
        provider.observe(scope_of(action))
    before = world(peer)
    outcome = provider.apply(act("set_scsi_controllers", VMR, vm="APP09", count=1))
    assert outcome.status == "precondition_failed"
    assert "disks data are on SCSI controller(s) 1: move them first" in outcome.message
    assert world(peer) == before


def test_the_same_count_again_sends_no_change(rig: Rig) -> None:
    peer, provider = rig
    vm = world(peer).vms["c001-vm0002"]
    start = len(peer.received)
    same = act("set_scsi_controllers", "VirtualMachine/c001-vm0002", vm=vm.name, count=1)
    assert provider.apply(same).status == "done"
    cmdlets = [s["cmdlet"] for r in pipelines(peer, start) for s in r["pipeline"]]
    assert cmdlets == ["Get-VMScsiController", "Update-ClusterVirtualMachineConfiguration"]


# --- from the manifests ----------------------------------------------------------------------


@pytest.fixture
def cli_rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    state, out = tmp_path / "state", tmp_path / "gen"
    gen = make_world(state, clusters=1, nodes=3, vms=2, drift=0.0, seed=7, platform="2016", out=out)
    peer = HyperVPeer(state)
    server = WinRMServer(peer, sorted(gen.world.nodes), username="u", password="hw-pw", port=0)
    server.start()
    connections = tmp_path / "connections.yaml"
    nodes = {n: {"url": server.url(n)} for n in sorted(gen.world.nodes)}
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
        "RECONCILER_HYPERV_PASSWORD": "hw-pw",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        yield {"state": state, "cli": tmp_path / "cli", "desired": out / "desired", "env": env}
    finally:
        server.close()
        peer.close()


def _run(rig: dict[str, Any], *args: str, provider: str = "hyperv") -> tuple[int, str]:
    state = rig["cli"] if provider == "hyperv" else rig["state"]
    env = rig["env"] if provider == "hyperv" else {"RECONCILER_PROVIDER": "sim"}
    result = CliRunner().invoke(
        cli, ["--state-dir", str(state), "--provider", provider, *args], env=env
    )
    return result.exit_code, result.output


def test_declared_memory_and_controllers_plan_apply_then_no_changes(
    cli_rig: dict[str, Any],
) -> None:
    path = cli_rig["desired"] / "c001.yaml"
    docs = list(yaml.safe_load_all(path.read_text()))
    vm = next(d for d in docs if d["kind"] == "VirtualMachine" and d["metadata"]["name"] ==
              "c001-vm0004")  # fmt: skip
    spec = vm["spec"]
    assert [(d["name"], d["controller_number"], d["slot"]) for d in spec["disks"]] == [
        ("os", 0, 0),
        ("data", 0, 1),
    ]
    spec["allow_downtime"] = True
    spec["dynamic_memory"] = {"minimum_mib": 4096, "maximum_mib": 32768, "buffer_pct": 25}
    spec["scsi_controllers"] = 2
    spec["disks"][1].update(controller_number=1, slot=0)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    code, out = _run(cli_rig, "plan", "--json", str(cli_rig["desired"]))
    assert code == 0, out
    planned = [(a["type"], a["target"]) for a in json.loads(out)["actions"]]
    target = "VirtualMachine/c001-vm0004"
    assert sorted(t for t, where in planned if where == target) == [
        "move_disk",
        "set_scsi_controllers",
        "set_vm_memory",
        "start_vm",
        "stop_vm",
    ]
    code, out = _run(cli_rig, "apply", "--auto-approve", str(cli_rig["desired"]))
    assert code == 0 and "succeeded" in out, out
    code, out = _run(cli_rig, "plan", "--detailed-exitcode", str(cli_rig["desired"]))
    assert code == 0 and "No changes" in out, out
    code, out = _run(
        cli_rig, "plan", "--detailed-exitcode", str(cli_rig["desired"]), provider="sim"
    )
    assert code == 0 and "No changes" in out, out
    truth = world_of(cli_rig["state"]).vms["c001-vm0004"]
    assert truth.memory_model() == DynamicMemory(True, 4096, 32768, 25)
    assert (truth.scsi_count(), truth.power_state) == (2, "running")
    assert [(d.name, d.controller_number, d.slot) for d in truth.disks] == [
        ("os", 0, 0),
        ("data", 1, 0),
    ]


def world_of(state: Path) -> Any:
    sim = SimProvider(state)
    try:
        return sim.observe()
    finally:
        sim.close()


# --- the peer is strict, and observe reads memory only where it is dynamic -----------------------


def _behind_back(state: Path, vm_name: str, **changes: Any) -> None:
    sim = SimProvider(state)
    try:
        before = sim.store.load()
        changed = replace(before.vms[vm_name], **changes)
        sim.change_behind_back(before, before.with_record(changed), f"{vm_name} changed")
    finally:
        sim.close()


class TestThePeerAppliesTheRulesStrictly:
    @pytest.fixture
    def peer(self, tmp_path: Path) -> Iterator[HyperVPeer]:
        make_world(tmp_path, nodes=2, vms=2, platform="2016")
        _behind_back(tmp_path, "c001-vm0001", power_state="off")  # on c001-n01
        peer = HyperVPeer(tmp_path)
        yield peer
        peer.close()

    def run(self, peer: HyperVPeer, name: str, *params: tuple[str, Any]) -> Any:
        return peer.run("c001-n01", [Cmd(name, [*params, ("ErrorAction", "Stop")])])

    def test_dynamic_memory_on_needs_its_bounds(self, peer: HyperVPeer) -> None:
        got = self.run(peer, "Set-VMMemory", ("VMName", "c001-vm0001"),
                       ("DynamicMemoryEnabled", True))  # fmt: skip
        assert got.terminating is not None
        assert "-MinimumBytes and -MaximumBytes" in got.terminating.message

    def test_bytes_go_as_int64_and_the_buffer_within_its_range(self, peer: HyperVPeer) -> None:
        base = [("VMName", "c001-vm0001"), ("DynamicMemoryEnabled", True),
                ("MinimumBytes", PSInt64(2**30)), ("MaximumBytes", PSInt64(2**34))]  # fmt: skip
        got = self.run(peer, "Set-VMMemory", *base[:2], ("MinimumBytes", PSInt(512)))
        assert got.terminating is not None
        assert got.terminating.fq_error_id.startswith("ParameterArgumentTransformationError,")
        got = self.run(peer, "Set-VMMemory", *base, ("Buffer", PSInt(2001)))
        assert got.terminating is not None
        assert got.terminating.fq_error_id.startswith("ParameterArgumentValidationError,")
        assert self.run(peer, "Set-VMMemory", *base, ("Buffer", PSInt(30))).terminating is None
        (memory,) = self.run(peer, "Get-VMMemory", ("VMName", ["c001-vm0001"])).outputs
        assert (memory["DynamicMemoryEnabled"], memory["Minimum"], memory["Maximum"]) == (
            True,
            2**30,
            2**34,
        )
        assert memory["Buffer"] == 30

    def test_only_the_highest_controller_goes(self, peer: HyperVPeer) -> None:
        vm = ("VMName", "c001-vm0001")
        assert self.run(peer, "Add-VMScsiController", vm).terminating is None
        assert self.run(peer, "Add-VMScsiController", vm).terminating is None
        numbers = [
            c["ControllerNumber"]
            for c in self.run(peer, "Get-VMScsiController", ("VMName", ["c001-vm0001"])).outputs
        ]
        assert numbers == [0, 1, 2]  # fmt: skip
        got = self.run(peer, "Remove-VMScsiController", vm, ("ControllerNumber", PSInt(1)))
        assert got.terminating is not None and "highest-numbered" in got.terminating.message
        got = self.run(peer, "Remove-VMScsiController", vm, ("ControllerNumber", PSInt(7)))
        assert got.terminating is not None and got.terminating.category == "ObjectNotFound"
        got = self.run(peer, "Remove-VMScsiController", vm, ("ControllerNumber", PSInt(2)))
        assert got.terminating is None
        assert SimProvider(peer.state_dir).observe().vms["c001-vm0001"].scsi_controllers == 2


def test_get_vm_memory_is_asked_only_for_dynamic_vms(tmp_path: Path) -> None:
    make_world(tmp_path, nodes=3, vms=2, platform="2016")
    world = SimProvider(tmp_path).observe()
    sessions = InProcSessions(HyperVPeer(tmp_path))
    hv = HyperVProvider(tmp_path, connections_for(world), sessions=sessions)
    hv.observe()
    static_trips = sessions.round_trips()
    vm = world.vms["c001-vm0002"]  # on c001-n02
    _behind_back(tmp_path, vm.name, dynamic_memory=DynamicMemory(True, 4096, 32768, 15))
    seen = hv.observe()
    assert sessions.round_trips() - static_trips == static_trips + 1  # one node asks once more
    assert seen.vms[vm.name].memory_model() == DynamicMemory(True, 4096, 32768, 15)
    assert [v.name for v in seen.vms.values() if v.memory_model() is not None] == [vm.name]
    assert observable(seen) == observable(SimProvider(tmp_path).observe())
