"""The 2008 R2 path of the hyperv provider: WMI v1 reads, constant scripts, jobs (in-process PSRP).

Oracles: the simulator's own store for what is read back, hand-written expectations for the
peer's answers, and ``platforms.yaml`` (the planner's table) for what 2008 R2 can do.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hyperv_inproc import InProcSessions
from hyperv_world import connections_for, make_world, observable
from psrpcore.types import PSInt, PSUInt64
from tests_cmd import Cmd

from reconciler.model.actions import Action
from reconciler.model.platforms import platform
from reconciler.providers.hyperv.provider import HyperVProvider
from reconciler.providers.hyperv.wmi1 import act as wmi1_act
from reconciler.providers.hyperv.wmi1 import scripts
from reconciler.providers.sim.provider import SimProvider
from reconciler.providers.sim.winrm.cmdlets import HyperVPeer


def provider_for(state: Path) -> tuple[HyperVProvider, InProcSessions, HyperVPeer]:
    world = SimProvider(state).observe()
    peer = HyperVPeer(state)
    sessions = InProcSessions(peer)
    return HyperVProvider(state, connections_for(world), sessions=sessions), sessions, peer


def test_a_2008r2_world_reads_back_through_wmi(tmp_path: Path) -> None:
    make_world(tmp_path, clusters=1, nodes=3, vms=4, drift=0.2, platform="2008r2")
    hv, _, peer = provider_for(tmp_path)
    seen = hv.observe()
    truth = SimProvider(tmp_path).observe()
    # offloads and the live-migration network included (stated: the world has both)
    assert observable(seen) == observable(truth)
    assert any(n.offloads.vmq for node in truth.nodes.values() for n in node.nics)
    assert any(n.offloads.jumbo_frames for node in truth.nodes.values() for n in node.nics)
    assert all(c.live_migration.network for c in truth.clusters.values())
    names = {name for r in peer.received for name, _ in r.commands}
    assert "Get-VM" not in names and "Get-WmiObject" in names


def test_round_trips_grow_with_nodes_not_vms(tmp_path: Path) -> None:
    counts = {}
    for vms in (2, 8):
        state = tmp_path / f"v{vms}"
        make_world(state, nodes=3, vms=vms, platform="2008r2")
        hv, sessions, _ = provider_for(state)
        hv.observe()
        counts[vms] = sessions.round_trips()
    assert counts[2] == counts[8]


class TestThe2008R2Peer:
    @pytest.fixture
    def peer(self, tmp_path: Path) -> HyperVPeer:
        make_world(tmp_path, nodes=2, vms=2, platform="2008r2")
        return HyperVPeer(tmp_path)

    def test_get_vm_is_not_a_command(self, peer: HyperVPeer) -> None:
        result = peer.run("c001-n01", [Cmd("Get-VM")])
        assert result.terminating is not None
        assert result.terminating.fq_error_id == "CommandNotFoundException"

    def test_vms_are_msvm_computersystem_objects(self, peer: HyperVPeer) -> None:
        result = peer.run(
            "c001-n01",
            [
                Cmd(
                    "Get-WmiObject",
                    [
                        ("Namespace", "root\\virtualization"),
                        ("Class", "Msvm_ComputerSystem"),
                        ("Filter", "Caption='Virtual Machine'"),
                    ],
                )
            ],
        )
        assert result.terminating is None
        names = sorted(str(o["ElementName"]) for o in result.outputs)
        on_node = sorted(v.name for v in SimProvider(peer.state_dir).observe().vms_on("c001-n01"))
        assert names == on_node
        assert all(type(o["EnabledState"]).__name__ == "PSUInt16" for o in result.outputs)

    def test_a_filter_built_from_a_value_is_not_answered(self, peer: HyperVPeer) -> None:
        result = peer.run(
            "c001-n01",
            [
                Cmd(
                    "Get-WmiObject",
                    [
                        ("Namespace", "root\\virtualization"),
                        ("Class", "Msvm_ComputerSystem"),
                        ("Filter", "ElementName='x' OR 1=1"),
                    ],
                )
            ],
        )
        assert result.terminating is not None

    def test_unknown_script_text_is_refused(self, peer: HyperVPeer) -> None:
        result = peer.run("c001-n01", [Cmd("Remove-VM -Force *", [], is_script=True)])
        assert result.terminating is not None
        assert result.terminating.category == "PermissionDenied"

    def test_a_uint64_parameter_refuses_an_int32(self, peer: HyperVPeer) -> None:
        result = peer.run(
            "c001-n01",
            [
                Cmd(
                    scripts.NEW_VHD,
                    [("Path", "C:\\ClusterStorage\\x\\y\\z.vhd"), ("SizeBytes", PSInt(1))],
                    is_script=True,
                )
            ],
        )
        assert result.terminating is not None
        assert "ParameterArgumentTransformationError" in result.terminating.fq_error_id

    def test_validate_pattern_keeps_names_out_of_diskraid(self, peer: HyperVPeer) -> None:
        evil = "CSV01\nselect lun name=*\ndelete lun"
        result = peer.run(
            "c001-n01",
            [
                Cmd(
                    scripts.EXTEND_LUN,
                    [("Lun", evil), ("SizeBytes", PSUInt64(2**40))],
                    is_script=True,
                )
            ],
        )
        assert result.terminating is not None
        assert result.terminating.fq_error_id == "ParameterArgumentValidationError"


def _action(kind: str, target: str, cluster: str, **params: object) -> Action:
    return Action(f"{kind}:x", kind, target, cluster, dict(params))  # type: ignore[arg-type]


def test_a_failed_wmi_job_is_an_error_quoting_the_method_and_code(tmp_path: Path) -> None:
    make_world(tmp_path, nodes=2, vms=2, platform="2008r2")
    hv, _, _ = provider_for(tmp_path)
    estate = hv.observe()
    vm = next(iter(estate.vms.values()))
    disk = vm.disks[0]  # its file exists already: CreateDynamicVirtualHardDisk fails
    d = {
        "name": disk.name,
        "controller": "scsi",
        "controller_number": 0,
        "slot": 9,
        "type": "dynamic",
        "format": "vhd",
        "size_gib": 10,
        "volume": disk.volume,
        "parent": None,
    }
    outcome = hv.apply(
        _action("add_disk", f"VirtualMachine/{vm.name}", vm.cluster, vm=vm.name, disk=d)
    )
    assert outcome.status == "precondition_failed"
    assert outcome.message.startswith("CreateDynamicVirtualHardDisk failed: ")
    assert "returned 32768" in outcome.message and "exists" in outcome.message


# What 2008 R2 cannot do, stated by hand, must be what the planner's table says ...
TABLE_2008R2 = {
    "vhdx": False,
    "online_vhd_resize": False,
    "generation2": False,
    "cloud_witness": False,
}


def test_the_planner_table_says_what_we_state() -> None:
    p = platform("2008r2")
    assert {k: getattr(p, k) for k in TABLE_2008R2} == TABLE_2008R2


def test_the_provider_agrees_with_the_planner_table(tmp_path: Path) -> None:
    """... and the provider refuses exactly what the table rules out on 2008 R2."""
    make_world(tmp_path, nodes=2, vms=2, platform="2008r2")
    hv, _, _ = provider_for(tmp_path)
    estate = hv.observe()
    caps = hv.capabilities()
    p = platform("2008r2")
    # online VHD resize: extend_vhd is offered, and a running VM's disk is refused as the
    # planner's rule refuses it (the planner stops the VM first there)
    assert caps.refusal("extend_vhd", "2008r2") is None
    running = next(v for v in estate.vms.values() if v.power_state == "running")
    grow = _action(
        "extend_vhd",
        f"VirtualMachine/{running.name}",
        running.cluster,
        vm=running.name,
        disk=running.disks[0].name,
        size_gib=running.disks[0].size_gib + 1,
    )
    out = hv.apply(grow)
    assert (out.status == "done") == p.online_vhd_resize
    assert out.status == "precondition_failed" and "must be off" in out.message
    assert SimProvider(tmp_path).observe().vms[running.name].disks[0].size_gib == (
        running.disks[0].size_gib
    )
    # VHDX: add_disk of a .vhdx is refused
    vm = next(iter(estate.vms.values()))
    d = {
        "name": "new",
        "controller": "scsi",
        "controller_number": 0,
        "slot": 9,
        "type": "dynamic",
        "format": "vhdx",
        "size_gib": 10,
        "volume": vm.disks[0].volume,
        "parent": None,
    }
    out = hv.apply(_action("add_disk", f"VirtualMachine/{vm.name}", vm.cluster, vm=vm.name, disk=d))
    assert (out.status == "done") == p.vhdx
    # the cloud witness: refused
    out = hv.apply(
        _action(
            "update_quorum", f"Cluster/{vm.cluster}", vm.cluster, mode="cloud_witness", witness={}
        )
    )
    assert (out.status == "done") == p.cloud_witness
    # and the provider's 2008 R2 facts come from that table, not from a copy
    assert wmi1_act.PLATFORM is p


def test_every_script_the_2008r2_path_sends_is_a_shipped_constant() -> None:
    """Statically: each script call in wmi1/ names a constant of ``scripts`` (never a string
    built there); the constants are the package's .ps1 files, each a param() block."""
    import ast

    root = Path(wmi1_act.__file__).parent
    calls = 0
    for path in root.glob("*.py"):
        text = path.read_text()
        assert "add_script" not in text, path
        tree = ast.parse(text)
        passthrough = {  # act.run hands its (constant) argument on: checked at its callers
            id(n)
            for f in ast.walk(tree)
            if isinstance(f, ast.FunctionDef) and f.name == "run"
            for n in ast.walk(f)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or id(node) in passthrough:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            position = {"run": 2, "script": 1}.get(name)
            if position is None or len(node.args) <= position:
                continue
            text_arg = node.args[position]
            calls += 1
            assert (
                isinstance(text_arg, ast.Attribute)
                and isinstance(text_arg.value, ast.Name)
                and text_arg.value.id == "scripts"
            ), (path, node.lineno)
    assert calls >= 8
    shipped = {p.stem: p.read_text() for p in (root / "ps1").glob("*.ps1")}
    assert shipped == scripts.ALL
    assert all(t.startswith("[CmdletBinding()] param(") for t in shipped.values())


def test_what_the_peer_received_as_scripts_were_the_constants(tmp_path: Path) -> None:
    make_world(tmp_path, nodes=2, vms=3, drift=0.3, seed=3, platform="2008r2")
    hv, _, peer = provider_for(tmp_path)
    estate = hv.observe()
    vm = next(iter(estate.vms.values()))
    d = {
        "name": "extra",
        "controller": "scsi",
        "controller_number": 0,
        "slot": 7,
        "type": "dynamic",
        "format": "vhd",
        "size_gib": 10,
        "volume": vm.disks[0].volume,
        "parent": None,
    }
    out = hv.apply(_action("add_disk", f"VirtualMachine/{vm.name}", vm.cluster, vm=vm.name, disk=d))
    assert out.status == "done", out.message
    sent = [name for r in peer.received for name, _ in r.commands if name.startswith("[")]
    assert sent and set(sent) <= set(scripts.ALL.values())
    after = SimProvider(tmp_path).observe().vms[vm.name]
    assert after.disk("extra") is not None and after.disk("extra").size_gib == 10  # type: ignore[union-attr]


# --- cluster roles the 2008 R2 way (no -Drain, no -Failback) ------------------------------------
# World of seed 7, 3 nodes x 3 VMs (stated by hand from the generator): c001-n02 runs vm0002,
# vm0006, vm0008, vm0009 (all live-migratable); c001-n03 runs vm0005, whose policy is "never".


def test_a_drain_pauses_moves_each_running_role_and_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    make_world(tmp_path, nodes=3, vms=3, seed=7, platform="2008r2")
    hv, _, peer = provider_for(tmp_path)
    hv.observe()
    out = hv.apply(_action("drain_node", "Node/c001-n02", "c001", node="c001-n02"))
    assert out.status == "done", out.message
    world = SimProvider(tmp_path).observe()
    assert world.nodes["c001-n02"].maintenance
    assert [v.name for v in world.vms_on("c001-n02") if v.power_state == "running"] == []
    # each to the node with the most free memory then (n01 and n03 start level: 32 GiB used,
    # n01 first by name): vm0002 (16 GiB) to n01, then vm0006, vm0008, vm0009 to n03
    assert {v.name for v in world.vms_on("c001-n01")} == {
        "c001-vm0001",
        "c001-vm0007",
        "c001-vm0002",
    }
    assert {"c001-vm0006", "c001-vm0008", "c001-vm0009"} <= {
        v.name for v in world.vms_on("c001-n03")
    }
    sent = [c for r in peer.received for c, _ in r.commands]
    assert "Suspend-ClusterNode" in sent and sent.count("Move-ClusterVirtualMachineRole") == 4
    out = hv.apply(_action("resume_node", "Node/c001-n02", "c001", node="c001-n02"))
    assert out.status == "done", out.message
    assert not SimProvider(tmp_path).observe().nodes["c001-n02"].maintenance


def test_a_drain_that_cannot_move_a_role_says_which_and_why(tmp_path: Path) -> None:
    make_world(tmp_path, nodes=3, vms=3, seed=7, platform="2008r2")
    hv, _, _ = provider_for(tmp_path)
    hv.observe()
    out = hv.apply(_action("drain_node", "Node/c001-n03", "c001", node="c001-n03"))
    assert out.status == "precondition_failed"
    assert "c001-vm0005" in out.message and "never" in out.message
    world = SimProvider(tmp_path).observe()
    # paused, as an administrator would find it; vm0005 still runs there, nothing was lost
    assert world.nodes["c001-n03"].maintenance
    assert world.vms["c001-vm0005"].node == "c001-n03"
    assert world.vms["c001-vm0005"].power_state == "running"


def test_a_vm_that_is_not_clustered_stops_and_starts_through_wmi(tmp_path: Path) -> None:
    make_world(tmp_path, nodes=2, vms=2, seed=7, platform="2008r2")
    sim = SimProvider(tmp_path)
    before = sim.store.load()
    vm = sorted(before.vms.values(), key=lambda v: v.name)[0]
    sim.change_behind_back(before, before.with_record(replace(vm, highly_available=False)), "t")
    sim.close()
    hv, _, peer = provider_for(tmp_path)
    assert not hv.observe().vms[vm.name].highly_available
    target = f"VirtualMachine/{vm.name}"
    out = hv.apply(_action("stop_vm", target, vm.cluster, vm=vm.name))
    assert out.status == "done", out.message
    assert SimProvider(tmp_path).observe().vms[vm.name].power_state == "off"
    hv.observe()
    out = hv.apply(_action("start_vm", target, vm.cluster, vm=vm.name))
    assert out.status == "done", out.message
    assert SimProvider(tmp_path).observe().vms[vm.name].power_state == "running"
    sent = [c for r in peer.received for c, _ in r.commands]
    assert sent.count(scripts.SET_VM_STATE) == 2
    assert not {"Stop-ClusterGroup", "Start-ClusterGroup"} & set(sent)


def test_the_plan_names_the_path_each_cluster_is_driven_by(tmp_path: Path) -> None:
    import json

    import jsonschema

    from reconciler.cli.render import plan_lines
    from reconciler.engine.plan import plan_from_json
    from reconciler.runtime.workflow import plan_paths

    make_world(tmp_path / "w", nodes=2, vms=2, drift=0.3, seed=3, platform="2008r2",
               out=tmp_path / "gen")  # fmt: skip
    hv, _, _ = provider_for(tmp_path / "w")
    desired = [str(tmp_path / "gen" / "desired")]
    plan = plan_paths(desired, hv).plan
    wmi1 = "Windows Server 2008 R2 via WMI v1 (root\\virtualization) and FailoverClusters 2008 R2"
    assert plan.provider_paths == (("c001", wmi1),)
    doc = plan.to_json()
    assert doc["provider_paths"] == {"c001": wmi1}
    schema = json.loads((Path(__file__).parents[1] / "schemas" / "plan.schema.json").read_text())
    jsonschema.validate(doc, schema)
    assert plan_from_json(doc).to_json() == doc  # a saved plan keeps it, and its digest
    assert f"driven as: Cluster/c001: {wmi1}" in plan_lines(plan, colour=False)
    # the simulator names no path: its plans keep the bytes they always had
    sim_plan = plan_paths(desired, SimProvider(tmp_path / "w")).plan
    assert sim_plan.provider_paths == () and "provider_paths" not in sim_plan.to_json()


def test_the_demo_reads_back_whole_a_racked_node_included(tmp_path: Path) -> None:
    """The demo world (2008 R2) through the WMI v1 path equals the world, hv05 included: a node
    still to join has no cluster network interfaces, so its adapters' networks come from their
    host addresses (Win32_NetworkAdapterConfiguration) and the cluster networks' subnets, and
    the address-less VM adapter is on the one network without a subnet."""
    from reconciler.manifest.load import load_paths

    root = Path(__file__).resolve().parents[1]
    loaded = load_paths([str(root / "manifests" / "worlds" / "demo.yaml")], world=True)
    assert loaded.estate is not None
    sim = SimProvider(tmp_path)
    sim.init_world(loaded.estate, "demo")
    sim.close()
    hv, _, _ = provider_for(tmp_path)
    seen = hv.observe()
    truth = SimProvider(tmp_path).observe()
    assert "hv05" not in truth.clusters["prod"].nodes  # racked, not joined
    networks = {n.name: n.network for n in seen.nodes["hv05"].nics}
    assert networks == {
        "NIC1": "Management",
        "NIC2": "Heartbeat",
        "NIC3": "LiveMigration",
        "NIC4": "VM",
    }
    assert seen.clusters["prod"].live_migration.network == "LiveMigration"
    assert observable(seen) == observable(truth)


@pytest.mark.parametrize(
    ("addresses", "expected"),
    [
        (["192.168.10.15"], "Management"),
        (["fe80::1", "10.10.2.20"], "LiveMigration"),  # IPv6 link-local ignored
        ([], "VM"),  # no host address: the one network without a subnet
        (["172.16.0.5"], None),  # in no cluster subnet: not guessed
    ],
)
def test_a_joining_nodes_adapter_is_on_the_network_of_its_address(
    addresses: list[str], expected: str | None
) -> None:
    from reconciler.model.records import ClusterNetwork
    from reconciler.providers.hyperv.model_map import netifs_by_address

    nets = [
        ClusterNetwork("Management", ("management",), subnet="192.168.10.0/24"),
        ClusterNetwork("LiveMigration", ("live_migration",), subnet="10.10.2.0/24"),
        ClusterNetwork("VM", ("vm",)),
    ]
    got = netifs_by_address("hv05", [{"Name": "NIC1", "IPAddress": addresses}], nets)
    assert got == ([{"Node": "hv05", "Adapter": "NIC1", "Network": expected}] if expected else [])


def test_rebinding_a_switch_that_running_vms_use_is_refused_by_the_rule(tmp_path: Path) -> None:
    make_world(tmp_path, nodes=2, vms=2, seed=7, platform="2008r2")
    hv, _, _ = provider_for(tmp_path)
    estate = hv.observe()
    node = estate.nodes["c001-n01"]
    switch, cfg = sorted(node.status.switches.items())[0]
    other = next(n.name for n in node.nics if n.name != cfg.uplink_nic)
    config = {
        "type": "external",
        "uplink_nic": other,
        "management_os": cfg.management_os,
        "allowed_vlans": ",".join(str(v) for v in sorted(cfg.allowed_vlans)),
        "native_vlan": cfg.native_vlan,
    }
    out = hv.apply(
        _action("match_vswitch", "Node/c001-n01", "c001", node="c001-n01", switch=switch,
                config=config)
    )  # fmt: skip
    assert out.status == "precondition_failed"
    assert out.message.startswith("TeardownSwitch failed: TeardownSwitch returned 32768: ")
    assert "would cut off running VMs" in out.message
    after = SimProvider(tmp_path).observe().nodes["c001-n01"].status.switches[switch]
    assert after == cfg  # nothing changed


def _demo_world(state: Path) -> Path:
    from reconciler.manifest.load import load_paths

    root = Path(__file__).resolve().parents[1]
    loaded = load_paths([str(root / "manifests" / "worlds" / "demo.yaml")], world=True)
    assert loaded.estate is not None
    sim = SimProvider(state)
    sim.init_world(loaded.estate, "demo")
    sim.close()
    return root / "manifests" / "demo"


def _converge(hv: HyperVProvider, manifests: Path) -> list[str]:
    """Plan, apply each step in order through the provider, plan again: the types applied."""
    from reconciler.providers.base import scope_of
    from reconciler.runtime.workflow import plan_paths

    plan = plan_paths([str(manifests)], hv).plan
    assert not plan.blocked, [v.message for v in plan.violations]
    for action in plan.actions:
        out = hv.apply(action)
        assert out.status == "done", (action.id, out.message)
        hv.observe(scope_of(action))
    again = plan_paths([str(manifests)], hv).plan
    assert again.empty and not again.violations, [a.id for a in again.actions]
    return [a.type for a in plan.actions]


def test_the_demo_converges_on_2008r2_then_a_node_drains_and_resumes(tmp_path: Path) -> None:
    """The demo (a 2008 R2 cluster) through the WMI v1 path: its plan applies and converges;
    then hv01 is put in maintenance (its VMs moved off, the node paused), and resumed."""
    import shutil

    demo = _demo_world(tmp_path / "w")
    hv, _, _ = provider_for(tmp_path / "w")
    assert "add_node" in _converge(hv, demo)
    maint = tmp_path / "maint"
    shutil.copytree(demo, maint)
    nodes = maint / "nodes.yaml"
    head = "  name: hv01\n  labels:\n    chassis: c7000-1\nspec:\n  cluster: prod\n"
    text = nodes.read_text()
    assert head in text
    nodes.write_text(text.replace(head, head + "  maintenance: true\n", 1))
    types = _converge(hv, maint)
    assert types[-1] == "drain_node" and set(types[:-1]) == {"migrate_vm"}
    world = SimProvider(tmp_path / "w").observe()
    assert world.nodes["hv01"].maintenance and not world.vms_on("hv01")
    nodes.write_text(text.replace(head, head + "  maintenance: false\n", 1))
    assert _converge(hv, maint) == ["resume_node"]
