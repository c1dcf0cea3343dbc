"""Tests for reconciler.providers.sim.generate: valid, realistic, deterministic, drifted estates."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.manifest.dump import to_documents, to_yaml
from reconciler.manifest.load import LoadResult, load_paths
from reconciler.model.capacity import usable_memory_mib, used_memory_mib, vm_cost_mib
from reconciler.model.records import Estate, VirtualMachine, VmStatus
from reconciler.model.rules import invariants, volume_used_gib
from reconciler.providers.sim.generate import (
    GeneratedEstate,
    documents_yaml,
    generate_estate,
    write_generated,
)

SIZE = (2, 4, 5)  # clusters, nodes per cluster, VMs per node


def _written(tmp: Path, gen: GeneratedEstate) -> dict[str, bytes]:
    return {p.relative_to(tmp).as_posix(): p.read_bytes() for p in write_generated(gen, tmp)}


def _load(out: Path) -> tuple[LoadResult, LoadResult]:
    return (
        load_paths([str(out / "desired")]),
        load_paths([str(out / "world.yaml")], world=True),
    )


@pytest.fixture(scope="module")
def gen() -> GeneratedEstate:
    return generate_estate(*SIZE, drift=0.1, seed=11)


@pytest.fixture(scope="module")
def loaded(gen: GeneratedEstate, tmp_path_factory: pytest.TempPathFactory) -> tuple[Estate, Estate]:
    out = tmp_path_factory.mktemp("gen")
    write_generated(gen, out)
    desired, world = _load(out)
    assert desired.estate is not None
    assert world.estate is not None
    return desired.estate, world.estate


def _unobserved(vm: VirtualMachine) -> VirtualMachine:
    """A VM without the facts only a world has: placement, dirty rate, file sizes."""
    disks = tuple(replace(d, file_size_gib=None) for d in vm.disks)
    return replace(vm, node=None, disks=disks, status=VmStatus())


class TestValidity:
    """The written files load cleanly and the world breaks no invariant."""

    @pytest.mark.parametrize("platform", ["2019", "2008r2"])
    def test_desired_and_world_load_without_errors(self, tmp_path: Path, platform: str) -> None:
        write_generated(generate_estate(*SIZE, drift=0.2, seed=3, platform=platform), tmp_path)
        desired, world = _load(tmp_path)
        assert desired.errors == []
        assert desired.ok
        assert world.errors == []
        assert world.ok

    def test_one_desired_file_per_cluster_and_one_world(self, tmp_path: Path) -> None:
        names = sorted(_written(tmp_path, generate_estate(3, 2, 2)))
        assert names == [
            "desired/c001.yaml",
            "desired/c002.yaml",
            "desired/c003.yaml",
            "world.yaml",
        ]

    @pytest.mark.parametrize(("platform", "drift"), [("2019", 0.0), ("2019", 0.3), ("2008r2", 0.3)])
    def test_world_holds_every_invariant(self, platform: str, drift: float) -> None:
        gen = generate_estate(3, 4, 6, drift=drift, seed=5, platform=platform)
        assert invariants(gen.world) == []

    def test_2008r2_uses_generation_1_ide_boot_and_vhd(self) -> None:
        gen = generate_estate(1, 3, 4, platform="2008r2")
        for vm in gen.desired.vms.values():
            assert vm.generation == 1
            assert vm.disks[0].controller == "ide"
            assert {d.format for d in vm.disks} == {"vhd"}

    def test_2019_uses_generation_2_vhdx_on_scsi(self, gen: GeneratedEstate) -> None:
        for vm in gen.desired.vms.values():
            assert vm.generation == 2
            assert {(d.controller, d.format) for d in vm.disks} == {("scsi", "vhdx")}

    @pytest.mark.parametrize(
        "args", [(0, 2, 2), (1, 1, 2), (1, 2, 0), (1, 17, 2, 0.0, 0, "2008r2"), (1, 2, 2, 1.5)]
    )
    def test_impossible_sizes_are_refused(self, args: tuple[object, ...]) -> None:
        with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
            generate_estate(*args)  # type: ignore[arg-type]


class TestRealism:
    """Names, hardware, memory, anti-affinity and pins look like a real estate."""

    def test_names_follow_the_cluster_prefix(self, gen: GeneratedEstate) -> None:
        w = gen.world
        assert sorted(w.clusters) == ["c001", "c002"]
        assert sorted(w.nodes)[:2] == ["c001-n01", "c001-n02"]
        assert sorted(w.switches) == ["c001-vswitch", "c002-vswitch"]
        assert "c001-csv1" in w.volumes
        assert "c002-vm0020" in w.vms
        assert len(w.vms) == 2 * 4 * 5

    def test_nodes_of_a_cluster_are_identical(self, gen: GeneratedEstate) -> None:
        for name in gen.desired.clusters:
            nodes = gen.desired.nodes_of(name)
            assert len({(n.hardware, n.nics) for n in nodes}) == 1
            assert [nic.speed_mbps for nic in nodes[0].nics] == [1000, 1000, 10000, 10000]

    def test_cluster_settings(self, gen: GeneratedEstate) -> None:
        for cluster in gen.desired.clusters.values():
            assert cluster.quorum.mode == "recommended"
            assert cluster.quorum.witness.kind == "disk"
            assert cluster.placement.failover_reserve_nodes == 1
            roles = [r for n in cluster.networks for r in n.roles]
            assert roles == ["management", "heartbeat", "live_migration", "vm"]
            assert 2 <= len(gen.desired.volumes_of(cluster.name)) <= 4
            test_vm = gen.desired.vms[cluster.test_vm or ""]
            assert test_vm.cluster == cluster.name
            assert test_vm.memory_mib == min(
                vm.memory_mib for vm in gen.desired.vms.values() if vm.cluster == cluster.name
            )

    def test_memory_use_is_in_band_with_n_plus_one(self) -> None:
        gen = generate_estate(3, 8, 10, seed=2)
        w = gen.world
        for name, cluster in w.clusters.items():
            nodes = w.nodes_of(name)
            usable = usable_memory_mib(nodes[0], cluster)
            used = sum(used_memory_mib(w, n.name) for n in nodes)
            assert 0.60 <= used / (usable * len(nodes)) <= 0.80
            assert used <= usable * (len(nodes) - 1)  # one node's VMs restart elsewhere
            assert {vm.memory_mib for vm in w.vms.values()} <= {2048, 4096, 8192, 12288, 16384}

    def test_vms_are_spread_and_anti_affinity_holds(self, gen: GeneratedEstate) -> None:
        w = gen.world
        assert {vm.node for vm in w.vms.values()} == set(w.nodes)
        groups: dict[str, list[VirtualMachine]] = defaultdict(list)
        for vm in w.vms.values():
            if vm.anti_affinity_group:
                groups[f"{vm.cluster}/{vm.anti_affinity_group}"].append(vm)
        assert {vm.anti_affinity_mode for g in groups.values() for vm in g} == {"hard", "soft"}
        for members in groups.values():
            assert len({vm.node for vm in members}) == len(members)

    def test_dirty_rates_vary_between_1_and_50(self) -> None:
        rates = [vm.status.dirty_rate_mib_s for vm in generate_estate(2, 8, 10).world.vms.values()]
        assert min(rates) >= 1.0
        assert max(rates) <= 50.0
        assert max(rates) - min(rates) > 10

    def test_few_pins_and_never_migrate_vms_are_pinned(self, gen: GeneratedEstate) -> None:
        vms = gen.desired.vms.values()
        pinned = [vm.name for vm in vms if vm.node]
        never = [vm.name for vm in vms if vm.migration_policy == "never"]
        assert never
        assert set(never) <= set(pinned)
        assert len(pinned) < len(gen.desired.vms) / 4


class TestDeterminism:
    """A seed fixes every byte; another seed gives another estate."""

    def test_same_seed_same_bytes(self, tmp_path: Path) -> None:
        a = _written(tmp_path / "a", generate_estate(*SIZE, drift=0.2, seed=7))
        b = _written(tmp_path / "b", generate_estate(*SIZE, drift=0.2, seed=7))
        assert a == b

    def test_other_seed_other_bytes(self, tmp_path: Path) -> None:
        a = _written(tmp_path / "a", generate_estate(*SIZE, drift=0.2, seed=7))
        b = _written(tmp_path / "b", generate_estate(*SIZE, drift=0.2, seed=8))
        assert a.keys() == b.keys()
        assert a["world.yaml"] != b["world.yaml"]
        assert a["desired/c001.yaml"] != b["desired/c001.yaml"]


class TestDrift:
    """Drift touches about the requested fraction, in ways the planner can fix online."""

    def test_no_drift_world_is_desired_plus_status(self) -> None:
        gen = generate_estate(*SIZE, drift=0.0, seed=4)
        assert gen.drifted == ()
        d, w = gen.desired, gen.world
        assert d.clusters == w.clusters
        assert d.switches == w.switches
        for name, vm in d.vms.items():
            assert _unobserved(w.vms[name]) == _unobserved(vm)
            assert vm.node in (None, w.vms[name].node)  # pins are where the VMs run
        for name, volume in d.volumes.items():
            assert (w.volumes[name].lun_size_gib, w.volumes[name].size_gib) == (
                volume.lun_size_gib,
                volume.size_gib,
            )
        for node in w.nodes.values():
            own = {s: d.switches[s].config for s in node.status.switches}
            assert dict(node.status.switches) == own
            assert node.status.luns == {v.name for v in d.volumes_of(node.cluster)}

    @pytest.mark.parametrize("drift", [0.05, 0.1, 0.25])
    def test_about_the_requested_fraction(self, drift: float) -> None:
        gen = generate_estate(4, 4, 10, drift=drift, seed=9)
        objects = len(gen.world.vms) + len(gen.world.switches) + len(gen.world.volumes)
        assert len(set(gen.drifted)) == len(gen.drifted)
        assert abs(len(gen.drifted) / objects - drift) <= 0.03

    def test_every_drifted_object_differs_and_nothing_else(self) -> None:
        gen = generate_estate(3, 4, 10, drift=0.2, seed=1)
        d, w = gen.desired, gen.world
        differs = set()
        for name, vm in d.vms.items():
            seen = w.vms[name]
            moved = vm.node is not None and vm.node != seen.node
            if moved or [x.name for x in vm.disks] != [x.name for x in seen.disks]:
                differs.add(f"VirtualMachine/{name}")
        for name, volume in d.volumes.items():
            if volume.size_gib != w.volumes[name].size_gib:
                differs.add(f"ClusterSharedVolume/{name}")
        for node in w.nodes.values():
            for switch, cfg in node.status.switches.items():
                if cfg != d.switches[switch].config:
                    differs.add(f"VirtualSwitch/{switch}")
        assert differs == set(gen.drifted)
        assert Counter(x.split("/")[0] for x in differs).keys() == {
            "VirtualMachine",
            "ClusterSharedVolume",
            "VirtualSwitch",
        }

    def test_drift_is_fixable_online(self) -> None:
        gen = generate_estate(3, 4, 10, drift=0.2, seed=1)
        d, w = gen.desired, gen.world
        for item in gen.drifted:
            kind, name = item.split("/")
            if kind == "VirtualMachine":
                want, seen = d.vms[name], w.vms[name]
                missing = [x for x in want.disks if seen.disk(x.name) is None]
                if missing:  # hot-added on SCSI
                    assert [x.controller for x in missing] == ["scsi"]
                else:  # live-migrated back to its pin, where there is room for it
                    assert want.node is not None
                    assert seen.migration_policy == "live"
                    cluster = w.clusters[seen.cluster]
                    host = w.nodes[want.node]
                    free = usable_memory_mib(host, cluster) - used_memory_mib(w, host.name)
                    assert free >= vm_cost_mib(seen, cluster, host)
            elif kind == "ClusterSharedVolume":
                assert w.volumes[name].size_gib < d.volumes[name].size_gib
                missing_disks = sum(
                    x.size_gib
                    for vm in d.vms.values()
                    for x in vm.disks
                    if x.volume == name and w.vms[vm.name].disk(x.name) is None
                )
                assert w.volumes[name].size_gib >= volume_used_gib(w, name) + missing_disks
            else:
                for node in w.nodes_of(d.switches[name].cluster):
                    dropped = d.switches[name].config.allowed_vlans - (
                        node.status.switches[name].allowed_vlans
                    )
                    used = {n.vlan for vm in w.vms_on(node.name) for n in vm.nics}
                    assert not dropped & used


class TestRoundTrip:
    """Files loaded back give the generated records, placement and sizes included."""

    def test_world_loads_back_equal(
        self, gen: GeneratedEstate, loaded: tuple[Estate, Estate]
    ) -> None:
        world = loaded[1]
        for kind in ("Cluster", "Node", "VirtualSwitch", "ClusterSharedVolume", "VirtualMachine"):
            assert dict(world.table(kind)) == dict(gen.world.table(kind)), kind
        assert {n: vm.node for n, vm in world.vms.items()} == {
            n: vm.node for n, vm in gen.world.vms.items()
        }

    def test_desired_loads_back_equal(
        self, gen: GeneratedEstate, loaded: tuple[Estate, Estate]
    ) -> None:
        desired = loaded[0]
        for kind in ("Cluster", "Node", "VirtualSwitch", "ClusterSharedVolume", "VirtualMachine"):
            assert dict(desired.table(kind)) == dict(gen.desired.table(kind)), kind


class TestYamlWriter:
    """The fast writer gives the dump module's own bytes."""

    @pytest.mark.parametrize("platform", ["2019", "2008r2"])
    def test_same_text_as_to_yaml(self, platform: str) -> None:
        gen = generate_estate(2, 3, 4, drift=0.3, seed=6, platform=platform)
        assert documents_yaml(to_documents(gen.desired)) == to_yaml(gen.desired)
        assert documents_yaml(to_documents(gen.world, status=True)) == to_yaml(gen.world, True)

    def test_odd_values_match_pyyaml(self) -> None:
        docs: list[dict[str, Any]] = [
            {
                "plain": "Cluster Disk 1",
                "quoted": ["2019", "yes", "null", "a: b", "x #y", "", " lead", "-x", "0x1F"],
                "share": "\\\\server\\share",
                "numbers": [0, -5, 1.5, 1e16, 2.5e-07, True, False, None],
                "empty": {"list": [], "map": {}},
                "nested": [{"a": [{"b": 1}], "c": {"d": "e"}}, "f"],
                "2019": "a key that needs quotes",
                "unicode": "café",
            },
            # Each of these is handed to PyYAML whole.
            {"long": "a rather long sentence that PyYAML would fold at eighty columns " * 2},
            {"multi": "two\nlines"},
            {"k": [[1, 2], [3]]},
            {"x" * 130: 1},
            {"inf": float("inf")},
        ]
        expected = yaml.dump_all(
            docs,
            Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper),
            sort_keys=False,
            default_flow_style=False,
            explicit_start=True,
        )
        assert documents_yaml(docs) == expected
