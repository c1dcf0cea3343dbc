"""The hyperv provider reads the peer's world back as the simulator holds it (in-process PSRP).

Oracle: the simulator's own store (``SimProvider.observe``), not the provider's code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hyperv_inproc import InProcSessions
from hyperv_world import connections_for, make_world, observable
from psrpcore.types import PSInt, PSUInt64

from reconciler.providers.base import ProviderError, Scope
from reconciler.providers.hyperv.provider import HyperVProvider
from reconciler.providers.sim.provider import SimProvider
from reconciler.providers.sim.winrm.cmdlets import HyperVPeer


@dataclass
class Cmd:
    name: str
    parameters: list[tuple[str | None, Any]] = field(default_factory=list)
    is_script: bool = False


def provider_for(state: Path) -> tuple[HyperVProvider, InProcSessions]:
    world = SimProvider(state).observe()
    sessions = InProcSessions(HyperVPeer(state))
    return HyperVProvider(state, connections_for(world), sessions=sessions), sessions


def test_observe_reads_back_the_world(tmp_path: Path) -> None:
    make_world(tmp_path, clusters=2, nodes=3, vms=3, drift=0.2)
    hv, _ = provider_for(tmp_path)
    seen = hv.observe()
    truth = SimProvider(tmp_path).observe()
    assert observable(seen) == observable(truth)
    assert hv.warnings == []


def test_round_trips_grow_with_nodes_not_vms(tmp_path: Path) -> None:
    counts = {}
    for vms in (2, 8):
        state = tmp_path / f"v{vms}"
        make_world(state, nodes=3, vms=vms)
        hv, sessions = provider_for(state)
        hv.observe()
        counts[vms] = sessions.round_trips()
    assert counts[2] == counts[8]  # four times the VMs, the same number of pipelines
    state = tmp_path / "more-nodes"
    make_world(state, nodes=5, vms=2)
    hv, sessions = provider_for(state)
    hv.observe()
    assert sessions.round_trips() > counts[2]


def test_targeted_observe_reads_only_the_vm(tmp_path: Path) -> None:
    gen = make_world(tmp_path, nodes=3, vms=4)
    hv, sessions = provider_for(tmp_path)
    full = hv.observe()
    full_trips = sessions.round_trips()
    vm = sorted(gen.world.vms)[0]
    before = sessions.round_trips()
    part = hv.observe(Scope("c001", frozenset({f"VirtualMachine/{vm}"})))
    assert set(part.vms) == {vm} and not part.nodes and not part.clusters
    assert part.vms[vm] == full.vms[vm]
    assert sessions.round_trips() - before < full_trips / 4


def test_a_2008r2_world_is_refused_naming_the_platform(tmp_path: Path) -> None:
    make_world(tmp_path, nodes=2, vms=1, platform="2008r2")
    hv, _ = provider_for(tmp_path)
    with pytest.raises(ProviderError) as err:
        hv.observe()
    assert "Windows Server 2008 R2" in str(err.value)
    assert "\n" not in str(err.value)


class TestThePeerIsStrict:
    @pytest.fixture
    def peer(self, tmp_path: Path) -> HyperVPeer:
        make_world(tmp_path, nodes=2, vms=2)
        return HyperVPeer(tmp_path)

    def test_get_vm_of_a_missing_vm(self, peer: HyperVPeer) -> None:
        result = peer.run("c001-n01", [Cmd("Get-VM", [("Name", "nope")])])
        assert result.outputs == [] and result.terminating is None
        (err,) = result.errors
        assert err.category == "ObjectNotFound"
        assert err.fq_error_id == "InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM"

    def test_an_unknown_parameter(self, peer: HyperVPeer) -> None:
        result = peer.run("c001-n01", [Cmd("Get-VM", [("Nmae", "x")])])
        assert result.terminating is not None
        assert result.terminating.fq_error_id.startswith("NamedParameterNotFound,")

    def test_int32_where_uint64_is_expected(self, peer: HyperVPeer) -> None:
        path = "C:\\ClusterStorage\\c001-csv1\\c001-vm0001\\x.vhdx"
        bad = peer.run("c001-n01", [Cmd("New-VHD", [("Path", path), ("SizeBytes", PSInt(5))])])
        assert bad.terminating is not None
        assert bad.terminating.fq_error_id.startswith("ParameterArgumentTransformationError,")
        good = peer.run(
            "c001-n01",
            [
                Cmd(
                    "New-VHD",
                    [("Path", path), ("SizeBytes", PSUInt64(2**31 * 4)), ("Dynamic", None)],
                )
            ],
        )
        assert good.terminating is None and good.outputs[0]["Size"] == 2**33

    def test_script_text_is_refused(self, peer: HyperVPeer) -> None:
        result = peer.run("c001-n01", [Cmd("Get-VM | Remove-VM", is_script=True)])
        assert result.terminating is not None
        assert result.terminating.category == "PermissionDenied"

    def test_a_2008r2_host_has_no_hyperv_module(self, tmp_path: Path) -> None:
        make_world(tmp_path, nodes=2, vms=1, platform="2008r2")
        peer = HyperVPeer(tmp_path)
        result = peer.run("c001-n01", [Cmd("Get-VM")])
        assert result.terminating is not None
        assert result.terminating.fq_error_id == "CommandNotFoundException"
        assert peer.run("c001-n01", [Cmd("Get-ClusterNode")]).terminating is None


@pytest.mark.parametrize(
    "ref",
    [
        "Cluster/c001",
        "Node/c001-n02",
        "ClusterSharedVolume/c001-csv1",
        "VirtualMachine/c001-vm0002",
    ],
)
def test_a_targeted_read_matches_the_full_read(tmp_path: Path, ref: str) -> None:
    make_world(tmp_path, nodes=3, vms=3, drift=0.3, seed=2)
    hv, _ = provider_for(tmp_path)
    full = hv.observe()
    kind, _, name = ref.partition("/")
    part = hv.observe(Scope("c001", frozenset({ref})))
    assert set(part.table(kind)) == {name}
    assert part.table(kind)[name] == full.table(kind)[name]
