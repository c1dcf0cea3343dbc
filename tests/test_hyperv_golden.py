"""Golden pipelines: per action type, the cmdlets and typed arguments the peer received.

The expected pipelines are reviewed data files in tests/golden_hyperv/ (regenerate with
RECONCILER_REGEN_GOLDEN=1 and review the diff). The peer runs the real WS-Management
transport on 127.0.0.1, port 0. Also here: the injection test, the no-script scan, the layout
rule and the JEA file check.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hyperv_world import connections_for, make_world

from reconciler.model.actions import DISRUPTION, Action
from reconciler.providers.base import scope_of
from reconciler.providers.hyperv import scripts as hyperv_scripts
from reconciler.providers.hyperv.provider import HyperVProvider
from reconciler.providers.sim.provider import SimProvider
from reconciler.providers.sim.winrm.cmdlets import HyperVPeer
from reconciler.providers.sim.winrm.transport import WinRMServer

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).with_name("golden_hyperv")
HYPERV = ROOT / "reconciler" / "providers" / "hyperv"
INJECTION = "'; Remove-VM -Force *; '"


@pytest.fixture
def rig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[HyperVPeer, HyperVProvider]]:
    gen = make_world(tmp_path, clusters=1, nodes=3, vms=2, drift=0.0, seed=7)
    peer = HyperVPeer(tmp_path)
    server = WinRMServer(peer, sorted(gen.world.nodes), username="u", password="golden-pw", port=0)
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
        for stage in doc["pipeline"]:  # ErrorAction Stop is on every cmdlet; checked below
            assert ["ErrorAction", {"S": "Stop"}] in stage["parameters"], stage
            stage["parameters"] = [p for p in stage["parameters"] if p[0] != "ErrorAction"]
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
        "format": "vhdx",
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
        ("set_vlan_trunk", act("set_vlan_trunk", "Node/c001-n01", node="c001-n01", switch=switch,
                               allowed_vlans=trunk, native_vlan=cfg.native_vlan)),
        ("match_vswitch", act("match_vswitch", "Node/c001-n02", node="c001-n02",
                              switch="golden-int", config={"type": "internal", "uplink_nic": None,
                              "management_os": True, "allowed_vlans": "", "native_vlan": None})),
        ("update_quorum", act("update_quorum", "Cluster/c001", mode="node_majority", witness={})),
        ("migrate_vm", act("migrate_vm", vmr, vm=first.name, destination="c001-n02",
                           method="live")),
        ("add_disk", act("add_disk", vmr, vm=first.name, disk=disk)),
        ("extend_vhd", act("extend_vhd", vmr, vm=first.name, disk="golden", size_gib=20)),
        ("extend_lun", act("extend_lun", "ClusterSharedVolume/c001-csv1", volume="c001-csv1",
                           lun_size_gib=csv.lun_size_gib + 256)),
        ("extend_volume", act("extend_volume", "ClusterSharedVolume/c001-csv1", volume="c001-csv1",
                              size_gib=csv.size_gib + 256)),
        ("stop_vm", act("stop_vm", vmr, vm=first.name)),
        ("set_vm", act("set_vm", vmr, vm=first.name, memory_mib=first.memory_mib + 1024, vcpus=4)),
        ("start_vm", act("start_vm", vmr, vm=first.name)),
        ("detach_disk", act("detach_disk", vmr, vm=first.name, disk="golden", delete_file=True)),
        ("end_monitoring_maintenance", act("end_monitoring_maintenance", "Cluster/c001")),
    ]  # fmt: skip


def test_golden_pipelines_per_action_type(rig: tuple[HyperVPeer, HyperVProvider]) -> None:
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
        provider.observe(scope_of(action))  # the next step sees this one's effect


def test_an_injection_arrives_as_one_string(rig: tuple[HyperVPeer, HyperVProvider]) -> None:
    peer, provider = rig
    world = SimProvider(peer.state_dir).observe()
    vm = sorted(world.vms_on("c001-n01"), key=lambda v: v.name)[0]
    disk = {"name": f"d{INJECTION}", "controller": "scsi", "controller_number": 0, "slot": 8,
            "type": "dynamic", "format": "vhdx", "size_gib": 1, "volume": "c001-csv1",
            "allow_delete": False, "boot": False, "parent": None}  # fmt: skip
    start = len(peer.received)
    provider.apply(act("add_disk", f"VirtualMachine/{vm.name}", vm=vm.name, disk=disk))
    provider.apply(act("set_vlan_trunk", "Node/c001-n01", node="c001-n01", switch=INJECTION,
                       allowed_vlans="10", native_vlan=1))  # fmt: skip
    received = pipelines(peer, start)
    cmdlets = [stage["cmdlet"] for r in received for stage in r["pipeline"]]
    assert "Remove-VM" not in cmdlets
    values = [p[1] for r in received for stage in r["pipeline"] for p in stage["parameters"]]
    path = f"C:\\ClusterStorage\\c001-csv1\\{vm.name}\\d{INJECTION}.vhdx"
    assert {"S": path} in values  # New-VHD -Path and Add-VMHardDiskDrive -Path: one string
    assert {"S": INJECTION} in values  # -VMNetworkAdapterName
    after = SimProvider(peer.state_dir).observe()
    assert set(after.vms) == set(world.vms)


def test_no_powershell_text_is_built_in_the_provider() -> None:
    for path in HYPERV.glob("*.py"):
        text = path.read_text()
        assert "add_script" not in text or path.name == "session.py", path
        # provider.py/observe.py pass the 2008 R2 path's constant scripts through (wmi1/).
        allowed = ("provider.py", "observe.py", "act_storage.py", "act_cluster.py")
        assert ".script(" not in text or path.name in allowed, path
    # The modern path's actions run its constant scripts only: module constants, by name
    # (tests/test_hyperv_cluster_settings.py lists each call).
    session = (HYPERV / "session.py").read_text()
    # The one add_script in the plumbing takes a module constant, never a formatted string.
    for line in session.splitlines():
        if "add_script(" in line:
            assert 'f"' not in line and "format(" not in line and "%" not in line, line


def test_the_hyperv_provider_never_imports_the_simulator() -> None:
    for path in HYPERV.rglob("*.py"):
        for line in path.read_text().splitlines():
            if re.match(r"\s*(from|import)\s+reconciler\.providers\.sim", line):
                pytest.fail(f"{path.name}: {line.strip()}")


def test_the_jea_role_lists_exactly_the_cmdlets_used() -> None:
    used: set[str] = set()
    for path in HYPERV.glob("*.py"):
        used |= set(re.findall(r'"([A-Z][a-z]+-[A-Z][A-Za-z]+)"', path.read_text()))
    used -= {"Hyper-V", "Failover-Clustering", "Stop"}  # feature names, not cmdlets
    used -= set(hyperv_scripts.ALL)  # the constant scripts' names (ps1/), not cmdlets
    psrc = (HYPERV / "jea" / "Reconciler.psrc").read_text()
    listed = set(re.findall(r"'[A-Za-z.-]+\\([A-Z][a-z]+-[A-Za-z]+)'", psrc))
    assert listed == used
