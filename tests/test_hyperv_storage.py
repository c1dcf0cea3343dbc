"""A CSV's life through the hyperv provider (modern path) over the real PSRP peer.

A Windows Server 2016 world whose three members are presented one more LUN (``LUN-APP``,
200 GiB): create_csv makes it a CSV, rename_csv renames it, remove_csv gives the LUN back.
Each action's pipelines as the peer received them are golden files (tests/golden_hyperv/
storage_*.json, regenerate with RECONCILER_REGEN_GOLDEN=1 and review the diff); what each
did to the world is stated by hand; and what the provider reads back equals the world.
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
from reconciler.model.records import Estate, frozen_map
from reconciler.providers.base import scope_of
from reconciler.providers.hyperv import scripts
from reconciler.providers.hyperv.provider import HyperVProvider
from reconciler.providers.hyperv.wire import i32
from reconciler.providers.sim.provider import SimProvider
from reconciler.providers.sim.winrm.cmdlets import HyperVPeer
from reconciler.providers.sim.winrm.transport import WinRMServer

GOLDEN = Path(__file__).with_name("golden_hyperv")
MEMBERS = ("c001-n01", "c001-n02", "c001-n03")
LUN = "LUN-APP"
FREE = {LUN: 200}


def world(peer: HyperVPeer) -> Estate:
    sim = SimProvider(peer.state_dir)
    try:
        return sim.observe()
    finally:
        sim.close()


@pytest.fixture
def rig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[HyperVPeer, HyperVProvider]]:
    gen = make_world(tmp_path, clusters=1, nodes=3, vms=2, drift=0.0, seed=7, platform="2016")
    sim = SimProvider(tmp_path)
    before = sim.store.load()
    after = before
    for name in MEMBERS:
        node = before.nodes[name]
        after = after.with_record(
            replace(node, status=replace(node.status, free_luns=frozen_map(FREE)))
        )
    sim.change_behind_back(before, after, "the array presents LUN-APP to every member")
    sim.close()
    peer = HyperVPeer(tmp_path)
    server = WinRMServer(peer, sorted(gen.world.nodes), username="u", password="csv-pw", port=0)
    server.start()
    monkeypatch.setenv("RECONCILER_HYPERV_USER", "u")
    monkeypatch.setenv("RECONCILER_HYPERV_PASSWORD", "csv-pw")
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
    return Action(f"{type_}:csv", type_, target, "c001", params, disruption=DISRUPTION[type_])  # type: ignore[arg-type]


CREATE = act("create_csv", "ClusterSharedVolume/c001-app", volume="c001-app", lun=LUN,
             size_gib=200, file_system="NTFS")  # fmt: skip
RENAME = act("rename_csv", "ClusterSharedVolume/c001-app", volume="c001-app", name="c001-web",
             lun=LUN, vms=[])  # fmt: skip
REMOVE = act("remove_csv", "ClusterSharedVolume/c001-web", volume="c001-web", lun=LUN)


def check_golden(name: str, got: dict[str, Any]) -> None:
    path = GOLDEN / f"storage_{name}.json"
    if os.environ.get("RECONCILER_REGEN_GOLDEN") == "1":
        path.write_text(json.dumps(got, indent=2) + "\n")
    assert json.loads(path.read_text()) == got, f"{path.name} differs"


def cmdlets(peer: HyperVPeer, start: int) -> list[str]:
    """The cmdlets received since ``start``; the constant script by its marker's name."""
    out = []
    for r in pipelines(peer, start):
        for stage in r["pipeline"]:
            name = stage["cmdlet"]
            out.append("script:Rename-ClusterResource" if name.startswith("[") else name)
    return out


def mount_of(provider: HyperVProvider, volume: str) -> str:
    csv = provider._call("c001-n01", "Get-ClusterSharedVolume", {"Name": [volume]})
    return str(csv[0]["SharedVolumeInfo"][0]["FriendlyVolumeName"])


def read_back_matches(provider: HyperVProvider, peer: HyperVPeer, action: Action) -> None:
    seen, truth = observable(provider.observe(scope_of(action))), observable(world(peer))
    assert seen.volumes == truth.volumes
    for name in MEMBERS:
        assert seen.nodes[name].status == truth.nodes[name].status, name


def test_observe_reads_the_presented_luns(rig: tuple[HyperVPeer, HyperVProvider]) -> None:
    peer, provider = rig
    seen = provider.observe()
    for name in MEMBERS:
        assert dict(seen.nodes[name].status.free_luns) == FREE, name
    assert observable(seen) == observable(world(peer))


def test_create_rename_remove_golden_effect_and_read_back(
    rig: tuple[HyperVPeer, HyperVProvider],
) -> None:
    peer, provider = rig
    start = len(peer.received)
    outcome = provider.apply(CREATE)
    assert outcome.status == "done", outcome.message
    check_golden("create_csv", {"action": "create_csv", "pipelines": pipelines(peer, start)})
    volume = world(peer).volumes["c001-app"]
    assert (volume.lun, volume.size_gib, volume.lun_size_gib) == (LUN, 200, 200)
    assert volume.status.coordinator == "c001-n01"
    for name in MEMBERS:
        status = world(peer).nodes[name].status
        assert dict(status.free_luns) == {} and "c001-app" in status.luns, name
    assert mount_of(provider, "c001-app") == "C:\\ClusterStorage\\c001-app"
    read_back_matches(provider, peer, CREATE)

    start = len(peer.received)
    outcome = provider.apply(RENAME)
    assert outcome.status == "done", outcome.message
    check_golden("rename_csv", {"action": "rename_csv", "pipelines": pipelines(peer, start)})
    after = world(peer)
    assert "c001-app" not in after.volumes
    assert (after.volumes["c001-web"].lun, after.volumes["c001-web"].size_gib) == (LUN, 200)
    assert mount_of(provider, "c001-web") == "C:\\ClusterStorage\\c001-web"
    read_back_matches(provider, peer, RENAME)

    start = len(peer.received)
    outcome = provider.apply(REMOVE)
    assert outcome.status == "done", outcome.message
    check_golden("remove_csv", {"action": "remove_csv", "pipelines": pipelines(peer, start)})
    after = world(peer)
    assert "c001-web" not in after.volumes
    for name in MEMBERS:
        status = after.nodes[name].status
        assert dict(status.free_luns) == FREE and "c001-web" not in status.luns, name
    read_back_matches(provider, peer, REMOVE)
    # Again: nothing left to remove, only the reads go out.
    start = len(peer.received)
    assert provider.apply(REMOVE).status == "done"
    assert cmdlets(peer, start) == ["Get-ClusterSharedVolume", "Get-ClusterResource"]


def test_the_new_csv_is_formatted_once_and_named_by_script_parameters(
    rig: tuple[HyperVPeer, HyperVProvider],
) -> None:
    peer, provider = rig
    start = len(peer.received)
    assert provider.apply(CREATE).status == "done"
    got = pipelines(peer, start)
    assert cmdlets(peer, start).count("Format-Volume") == 1
    renames = [s for r in got for s in r["pipeline"] if s["cmdlet"].startswith("[")]
    assert [s["cmdlet"] for s in renames] == [scripts.RENAME_CLUSTER_RESOURCE]
    assert renames[0]["parameters"] == [
        ["Name", {"S": "Cluster Disk 1"}],
        ["NewName", {"S": "c001-app"}],
    ]
    new_partition = [s for r in got for s in r["pipeline"] if s["cmdlet"] == "New-Partition"]
    assert new_partition[0]["parameters"][1] == ["UseMaximumSize", {"Switch": True}]


def test_a_create_cut_short_in_available_storage_is_finished_not_made_twice(
    rig: tuple[HyperVPeer, HyperVProvider],
) -> None:
    """Formatted and added to the cluster, then the connection dropped: plan and apply again."""
    peer, provider = rig
    disk = i32(100)  # the free LUN's disk on c001-n01 (after the CSVs' disks)
    provider._call("c001-n01", "Initialize-Disk", {"Number": disk, "PartitionStyle": "GPT"})
    provider._call("c001-n01", "New-Partition", {"DiskNumber": disk, "UseMaximumSize": None})
    provider._call(
        "c001-n01", "Get-Partition", {"DiskNumber": disk, "PartitionNumber": i32(2)},
        then=[("Format-Volume", {"FileSystem": "NTFS", "NewFileSystemLabel": "x"})],
    )  # fmt: skip
    added = provider._call(
        "c001-n01", "Get-Disk", {"Number": disk},
        then=[("Get-ClusterAvailableDisk", {}), ("Add-ClusterDisk", {})],
    )  # fmt: skip
    assert [a["Name"] for a in added] == ["Cluster Disk 1"]
    # The disk in Available Storage is still the LUN the model calls free.
    seen = provider.observe()
    assert all(dict(seen.nodes[n].status.free_luns) == FREE for n in MEMBERS)
    assert observable(seen) == observable(world(peer))
    start = len(peer.received)
    outcome = provider.apply(CREATE)
    assert outcome.status == "done", outcome.message
    sent = cmdlets(peer, start)
    assert not {"Initialize-Disk", "New-Partition", "Format-Volume", "Add-ClusterDisk"} & set(sent)
    assert sent.count("script:Rename-ClusterResource") == 1
    assert sent.count("Add-ClusterSharedVolume") == 1
    assert world(peer).volumes["c001-app"].lun == LUN
    # And a third time: the CSV is there and mounted by its name; only reads go out.
    before, start = world(peer), len(peer.received)
    assert provider.apply(CREATE).status == "done"
    assert world(peer) == before
    assert cmdlets(peer, start) == ["Get-ClusterSharedVolume", "Get-ClusterSharedVolume"]


def test_a_volume_with_vm_files_is_neither_renamed_nor_removed(
    rig: tuple[HyperVPeer, HyperVProvider],
) -> None:
    peer, provider = rig
    users = sorted(v.name for v in world(peer).vms.values() if "c001-csv1" in v.volumes())
    assert users
    start = len(peer.received)
    rename = act("rename_csv", "ClusterSharedVolume/c001-csv1", volume="c001-csv1",
                 name="c001-gold", lun=None, vms=[])  # fmt: skip
    outcome = provider.apply(rename)
    assert outcome.status == "permanent_error"
    assert f"{', '.join(users)} have files on c001-csv1" in outcome.message
    remove = act("remove_csv", "ClusterSharedVolume/c001-csv1", volume="c001-csv1", lun=None)
    outcome = provider.apply(remove)
    assert outcome.status == "permanent_error"
    assert "have disks on c001-csv1" in outcome.message
    assert peer.received[start:] == []
    assert "c001-csv1" in world(peer).volumes


def test_a_lun_no_member_sees_is_refused_before_anything_is_written(
    rig: tuple[HyperVPeer, HyperVProvider],
) -> None:
    peer, provider = rig
    start = len(peer.received)
    outcome = provider.apply(replace(CREATE, params={**CREATE.params, "lun": "LUN-NOPE"}))
    assert outcome.status == "precondition_failed"
    assert "sees no disk with UniqueId LUN-NOPE" in outcome.message
    assert set(cmdlets(peer, start)) == {"Get-ClusterSharedVolume", "Get-ClusterResource",
                                         "Get-Disk"}  # fmt: skip


def test_plan_apply_plan_converges_through_the_provider(
    rig: tuple[HyperVPeer, HyperVProvider],
) -> None:
    """The planner's create_csv, then rename_csv, applied by the provider: no changes after.

    (The observed estate as desired also plans the quorum the manifests would leave at
    recommended; that converges too, and is not this test's subject.)"""
    from reconciler.engine.planner import make_plan
    from reconciler.model.records import ClusterSharedVolume

    peer, provider = rig
    caps = provider.capabilities()

    def converge(desired: Estate) -> list[str]:
        plan = make_plan(desired, provider.observe(), refuse=caps.refusal)
        assert not plan.blocked, [v.message for v in plan.violations]
        for action in plan.actions:
            outcome = provider.apply(action)
            assert outcome.status == "done", (action.id, outcome.message)
        after = make_plan(desired, provider.observe(), refuse=caps.refusal)
        assert after.actions == (), [a.id for a in after.actions]
        return [a.type for a in plan.actions if a.type.endswith("_csv")]

    base = provider.observe()
    app = ClusterSharedVolume("c001-app", "c001", 200, 200, lun=LUN)
    assert converge(base.with_record(app)) == ["create_csv"]
    web = replace(app, name="c001-web")
    renamed = provider.observe().without("ClusterSharedVolume", "c001-app").with_record(web)
    assert converge(renamed) == ["rename_csv"]
    assert world(peer).volumes["c001-web"].lun == LUN


def test_the_csv_life_is_offered_on_the_modern_path_only(
    rig: tuple[HyperVPeer, HyperVProvider],
) -> None:
    caps = rig[1].capabilities()
    for kind in ("create_csv", "rename_csv", "remove_csv"):
        assert caps.refusal(kind, "2016") is None, kind
        assert caps.refusal(kind, "2012r2") is None, kind
        assert "FailoverClusters and Storage modules" in (caps.refusal(kind, "2008r2") or "")
