"""The world rules (``reconciler.model.rules``), one behaviour at a time, on hand-built estates.

Each test applies an action with ``apply_rules`` and checks what it did, or that it was refused
with a reason that says why; the numbers come from docs/domain.md and the platform profiles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from sim_strategies import (
    NODE_MEMORY_MIB,
    TRUNK,
    act,
    add_disk,
    create,
    data_disk,
    demo_world,
    lab_world,
    match_switch,
    migrate,
    new_vm,
    trunk,
    with_free_lun,
    with_volume,
)

from reconciler.model.actions import ACTION_TYPES, Action
from reconciler.model.capacity import (
    free_memory_mib,
    usable_memory_mib,
    used_memory_mib,
    vm_cost_mib,
    vm_overhead_mib,
)
from reconciler.model.records import Controller, Disk, Estate, Quorum
from reconciler.model.rules import (
    CONVERT_MARGIN,
    RuleResult,
    apply_rules,
    invariants,
    volume_free_gib,
    volume_used_gib,
)
from reconciler.providers.sim.provider import SimProvider


def accepted(estate: Estate, action: Action) -> Estate:
    result = apply_rules(estate, action)
    assert result.failures == (), result.failures
    assert not result.done, f"{action.id} was already done"
    return result.estate


def refused(estate: Estate, action: Action, *fragments: str) -> RuleResult:
    result = apply_rules(estate, action)
    assert result.failures, f"{action.id} was accepted"
    text = "; ".join(result.failures)
    for fragment in fragments:
        assert fragment in text
    assert result.estate == estate, "a refused action changed the world"
    return result


def with_node(estate: Estate, name: str, **changes: object) -> Estate:
    node = estate.nodes[name]
    status_changes = {k: v for k, v in changes.items() if k in ("state", "switches", "luns")}
    node_changes = {k: v for k, v in changes.items() if k not in status_changes}
    status = replace(node.status, **status_changes)  # type: ignore[arg-type]
    return estate.with_record(replace(node, status=status, **node_changes))  # type: ignore[arg-type]


def with_vm(estate: Estate, name: str, **changes: object) -> Estate:
    return estate.with_record(replace(estate.vms[name], **changes))  # type: ignore[arg-type]


def stopped(estate: Estate, *vms: str) -> Estate:
    for vm in vms:
        estate = with_vm(estate, vm, power_state="off")
    return estate


JOIN_N3 = act("add_node", node="n3")


class TestJoiningANode:
    """A node joins only on the cluster's baseline, with every switch identical and the LUNs."""

    def test_a_ready_node_joins_as_pending(self) -> None:
        after = accepted(lab_world(spare_ready=True), JOIN_N3)
        cluster = after.clusters["lab"]
        assert cluster.nodes == ("n1", "n2", "n3")
        assert cluster.status.pending_nodes == {"n3"}

    @pytest.mark.parametrize(
        ("spoil", "why"),
        [
            pytest.param(
                lambda e: with_node(
                    e, "n3", hardware=replace(e.nodes["n3"].hardware, patch_level="2011-12")
                ),
                "hardware, drivers or patches differ from n1",
                id="patch-level",
            ),
            pytest.param(
                lambda e: with_node(
                    e, "n3", hardware=replace(e.nodes["n3"].hardware, firmware="I20")
                ),
                "hardware, drivers or patches differ from n1",
                id="firmware",
            ),
            pytest.param(
                lambda e: with_node(e, "n3", switches={}),
                "has no virtual switch vs",
                id="no-switch",
            ),
            pytest.param(
                lambda e: with_node(
                    e, "n3", switches={"vs": replace(TRUNK, allowed_vlans=frozenset({10}))}
                ),
                "switch vs on n3 differs from n1",
                id="switch-vlans-differ",
            ),
            pytest.param(
                lambda e: with_node(e, "n3", switches={"vs": replace(TRUNK, uplink_nic="NIC1")}),
                "switch vs on n3 differs from n1",
                id="switch-uplink-differs",
            ),
            pytest.param(
                lambda e: with_node(e, "n3", luns=frozenset()),
                "LUNs of V1 are not presented to n3",
                id="no-luns",
            ),
            pytest.param(lambda e: with_node(e, "n3", state="down"), "n3 is down", id="down"),
        ],
    )
    def test_an_unsupported_configuration_is_refused(
        self, spoil: Callable[[Estate], Estate], why: str
    ) -> None:
        refused(
            spoil(lab_world(spare_ready=True)), JOIN_N3, "unsupported cluster configuration", why
        )

    def test_the_switch_must_match_every_member_not_just_one(self) -> None:
        # Demo: hv05 gets hv01's switch and the LUNs, but hv03's trunk still lacks VLAN 40.
        world = demo_world()
        hv01 = world.nodes["hv01"].status
        world = with_node(world, "hv05", switches=hv01.switches, luns=hv01.luns)
        join = act("add_node", "prod", node="hv05")
        refused(
            world, join, "unsupported cluster configuration", "vSwitch-VM on hv05 differs from hv03"
        )
        fixed = accepted(
            world, trunk("hv03", "vSwitch-VM", frozenset({10, 20, *range(30, 41)}), cluster="prod")
        )
        assert "hv05" in accepted(fixed, join).clusters["prod"].nodes

    def test_the_add_node_procedure_prepares_then_joins(self) -> None:
        world = lab_world()
        refused(world, JOIN_N3, "has no virtual switch vs", "LUNs of V1")
        world = accepted(world, match_switch("n3", "vs", TRUNK))
        world = accepted(world, act("present_storage", node="n3", volumes=["V1"]))
        world = accepted(world, JOIN_N3)
        # Not yet a migration target: pending until tested and validated.
        refused(world, migrate("TEST", "n3"), "n3 has joined but is not validated yet")
        world = accepted(world, act("test_live_migration", vm="TEST", node="n3"))
        assert world.vms["TEST"].node == "n1", "the test VM comes back"
        world = accepted(world, act("validate_cluster"))
        assert world.clusters["lab"].status.pending_nodes == frozenset()
        accepted(world, migrate("TEST", "n3"))


class TestQuorum:
    """Quorum votes decide whether a mode may be set; losing quorum stops the cluster."""

    def test_a_mode_that_would_lose_quorum_is_refused(self) -> None:
        # 2 nodes, n2 down: 1 node + disk witness = 2 of 3 votes; Node Majority would be 1 of 2.
        world = with_node(lab_world(), "n2", state="down")
        assert "quorum" not in {v.rule for v in invariants(world)}
        refused(
            world, act("update_quorum", mode="node_majority"), "would lose quorum with 1 node(s) up"
        )

    def test_a_mode_that_keeps_quorum_is_set(self) -> None:
        after = accepted(demo_world(), act("update_quorum", "prod", mode="node_majority"))
        assert after.clusters["prod"].quorum.mode == "node_majority"
        assert after.clusters["prod"].quorum.witness.kind is None

    def test_a_witness_mode_needs_a_witness(self) -> None:
        refused(
            lab_world(),
            act("update_quorum", mode="node_and_file_share_majority"),
            "needs a witness",
        )

    def test_losing_quorum_stops_every_vm(self, tmp_path: Path) -> None:
        sim = SimProvider(state_dir=tmp_path)
        sim.init_world(demo_world(), "demo")
        # 4 nodes + disk witness = 5 votes: two crashes leave 3, a third leaves 2 (lost).
        for node in ("hv01", "hv02"):
            assert not any("lost quorum" in line for line in sim.crash_node(node))
        running = [vm for vm in sim.observe().vms.values() if vm.power_state == "running"]
        assert running, "with quorum, restarted VMs keep running"
        report = sim.crash_node("hv03")
        assert "cluster prod lost quorum: every VM stops" in report
        world = sim.observe()
        assert {vm.power_state for vm in world.vms.values()} == {"off"}
        assert [v.rule for v in invariants(world)] == ["quorum"]
        # The cluster is stopped: nothing starts or moves until quorum is back.
        refused(world, act("start_vm", "prod", vm="WEB05"), "lost quorum")
        refused(world, migrate("WEB05", "hv05", "offline", "prod"), "lost quorum")
        sim.recover_node("hv03")
        assert apply_rules(sim.observe(), act("start_vm", "prod", vm="WEB05")).ok
        sim.close()


class TestAddingAndRemovingDisks:
    """A running VM takes new disks only on SCSI; IDE changes need the VM off."""

    NEW_SCSI = Disk("extra", "scsi", 0, 1, "dynamic", "vhdx", 10, "V1")
    NEW_IDE = Disk("extra", "ide", 1, 0, "dynamic", "vhd", 10, "V1")

    def test_hot_add_on_scsi(self) -> None:
        after = accepted(lab_world(), add_disk("A", self.NEW_SCSI))
        assert after.vms["A"].disk("extra") == self.NEW_SCSI

    def test_ide_add_on_a_running_vm_is_refused(self) -> None:
        refused(lab_world(), add_disk("A", self.NEW_IDE), "can be hot-added only on SCSI")

    def test_ide_add_works_when_off(self) -> None:
        after = accepted(stopped(lab_world(), "A"), add_disk("A", self.NEW_IDE))
        assert after.vms["A"].disk("extra") == self.NEW_IDE

    @pytest.mark.parametrize(
        ("controller", "number", "slot", "why"),
        [
            ("ide", 2, 0, "IDE 2:0 is beyond 2 x 2"),
            ("ide", 1, 2, "IDE 1:2 is beyond 2 x 2"),
            ("scsi", 4, 0, "SCSI 4:0 is beyond 4 x 64"),
            ("scsi", 0, 64, "SCSI 0:64 is beyond 4 x 64"),
            ("scsi", -1, 0, "SCSI -1:0 is beyond 4 x 64"),
            ("ide", 0, -1, "IDE 0:-1 is beyond 2 x 2"),
            ("ide", 0, 0, "IDE 0:0 holds os"),
            ("scsi", 0, 0, "SCSI 0:0 holds data"),
        ],
    )
    def test_slots_outside_the_controller_limits_or_taken_are_refused(
        self, controller: Controller, number: int, slot: int, why: str
    ) -> None:
        disk = replace(self.NEW_SCSI, controller=controller, controller_number=number, slot=slot)
        refused(stopped(lab_world(), "A"), add_disk("A", disk), why)

    def test_the_last_valid_slots_are_accepted(self) -> None:
        world = stopped(lab_world(), "A")
        world = accepted(world, add_disk("A", replace(self.NEW_SCSI, controller_number=3, slot=63)))
        accepted(
            world, add_disk("A", replace(self.NEW_IDE, name="x2", controller_number=1, slot=1))
        )

    def test_a_new_disk_needs_space_on_its_volume(self) -> None:
        # V1 has 45 GiB free; a fixed disk takes its whole size at once.
        big = replace(self.NEW_SCSI, type="fixed", size_gib=46)
        refused(lab_world(), add_disk("A", big), "V1 has too little free space for extra")
        accepted(lab_world(), add_disk("A", replace(big, size_gib=45)))

    def test_ide_removal_needs_the_vm_off(self) -> None:
        detach = act("detach_disk", vm="A", disk="os")
        refused(lab_world(), detach, "an IDE disk can be removed only when off")
        assert accepted(stopped(lab_world(), "A"), detach).vms["A"].disk("os") is None

    def test_scsi_removal_works_while_running(self) -> None:
        after = accepted(lab_world(), act("detach_disk", vm="A", disk="data"))
        assert [d.name for d in after.vms["A"].disks] == ["os"]


class TestDetachKeepsTheFile:
    """Detaching a disk keeps its file (and the space it takes) unless delete_file says so."""

    def test_the_file_keeps_its_space(self) -> None:
        world = lab_world()
        before = volume_used_gib(world, "V1")
        after = accepted(world, act("detach_disk", vm="A", disk="data"))
        assert volume_used_gib(after, "V1") == pytest.approx(before)
        # A 10 GiB dynamic disk, listed as an unused file on its volume.
        assert dict(after.volumes["V1"].status.files) == {"A/data.vhdx": pytest.approx(5.0)}

    def test_delete_file_frees_the_space(self) -> None:
        world = lab_world()
        before = volume_used_gib(world, "V1")
        after = accepted(world, act("detach_disk", vm="A", disk="data", delete_file=True))
        assert volume_used_gib(after, "V1") == pytest.approx(before - 5.0)
        assert after.volumes["V1"].status.other_used_gib == 0.0
        assert dict(after.volumes["V1"].status.files) == {}


class TestResizingDisks:
    """2008 R2 resizes only with the VM off; 2012 R2+ resizes VHDX on SCSI online; never shrinks."""

    def test_2008r2_needs_the_vm_off(self) -> None:
        grow = act("extend_vhd", vm="A", disk="data", size_gib=20)
        world = lab_world("2008r2")
        refused(world, grow, "A must be off to resize data", "platform 2008r2")
        assert accepted(stopped(world, "A"), grow).vms["A"].disk("data").size_gib == 20  # type: ignore[union-attr]

    def test_2012r2_vhdx_on_scsi_resizes_online(self) -> None:
        after = accepted(lab_world("2012r2"), act("extend_vhd", vm="A", disk="data", size_gib=20))
        assert after.vms["A"].disk("data").size_gib == 20  # type: ignore[union-attr]

    @pytest.mark.parametrize(
        ("fmt", "controller"),
        [("vhd", "scsi"), ("vhdx", "ide")],
        ids=["vhd-on-scsi", "vhdx-on-ide"],
    )
    def test_2012r2_other_disks_need_the_vm_off(self, fmt: str, controller: str) -> None:
        world = with_vm(
            lab_world("2012r2"),
            "A",
            disks=(lab_world().vms["A"].disks[0], data_disk(fmt, controller)),
        )
        grow = act("extend_vhd", vm="A", disk="data", size_gib=20)
        refused(world, grow, "A must be off to resize data")
        accepted(stopped(world, "A"), grow)

    def test_a_disk_never_shrinks(self) -> None:
        refused(
            stopped(lab_world(), "A"),
            act("extend_vhd", vm="A", disk="data", size_gib=5),
            "never shrunk",
        )

    def test_format_limits(self) -> None:
        world = stopped(lab_world("2008r2"), "A")
        refused(
            world,
            act("extend_vhd", vm="A", disk="data", size_gib=2041),
            "vhd disks are at most 2040 GiB",
        )

    def test_growth_needs_space_on_the_volume(self) -> None:
        # The fixed 20 GiB os disk grows by all of its growth: 45 GiB free allows +45, not +46.
        world = stopped(lab_world(), "A")
        refused(world, act("extend_vhd", vm="A", disk="os", size_gib=66), "too little free space")
        accepted(world, act("extend_vhd", vm="A", disk="os", size_gib=65))


class TestConvertingDisks:
    """Converting fixed <-> dynamic needs the VM off and the new file's size (+10%) free."""

    def test_a_running_vm_is_refused(self) -> None:
        refused(
            lab_world(),
            act("convert_disk", vm="A", disk="os", type="dynamic"),
            "A must be off to convert os",
        )

    def test_fixed_to_dynamic_when_off(self) -> None:
        after = accepted(
            stopped(lab_world(), "A"), act("convert_disk", vm="A", disk="os", type="dynamic")
        )
        disk = after.vms["A"].disk("os")
        assert disk is not None
        assert disk.type == "dynamic"
        assert disk.file_size_gib == pytest.approx(12.0)  # 60% of 20 GiB
        assert volume_free_gib(after, "V1") == pytest.approx(45.0 + 20.0 - 12.0)

    def test_the_volume_needs_room_for_the_new_file(self) -> None:
        world = stopped(lab_world(), "A")
        convert = act("convert_disk", vm="A", disk="os", type="dynamic")
        need = 12.0 * CONVERT_MARGIN  # 13.2 GiB
        volume = world.volumes["V1"]
        tight = world.with_record(
            replace(volume, status=replace(volume.status, other_used_gib=45.0 - need + 0.1))
        )
        refused(tight, convert, "V1 needs 13.2 GiB free to convert os")
        roomy = world.with_record(
            replace(volume, status=replace(volume.status, other_used_gib=45.0 - need - 0.1))
        )
        accepted(roomy, convert)

    def test_dynamic_to_fixed_needs_the_full_size(self) -> None:
        world = stopped(lab_world(), "TEST")
        after = accepted(world, act("convert_disk", vm="TEST", disk="os", type="fixed"))
        assert after.vms["TEST"].disk("os").used_gib() == 20.0  # type: ignore[union-attr]


class TestClusterSharedVolumes:
    """A CSV grows only after its LUN, through its coordinator, and never shrinks."""

    def test_the_volume_cannot_outgrow_its_lun(self) -> None:
        refused(lab_world(), act("extend_volume", volume="V1", size_gib=150), "grow the LUN first")

    def test_lun_then_volume(self) -> None:
        world = accepted(lab_world(), act("extend_lun", volume="V1", lun_size_gib=200))
        assert world.volumes["V1"].size_gib == 100, "growing the LUN leaves the volume as it was"
        world = accepted(world, act("extend_volume", volume="V1", size_gib=200))
        assert world.volumes["V1"].size_gib == 200
        assert volume_free_gib(world, "V1") == pytest.approx(145.0)

    def test_the_coordinator_must_be_up(self) -> None:
        world = accepted(lab_world(), act("extend_lun", volume="V1", lun_size_gib=200))
        world = with_node(world, "n1", state="down")
        refused(
            world,
            act("extend_volume", volume="V1", size_gib=200),
            "coordinator node n1 of V1 is not up",
        )

    def test_neither_volume_nor_lun_shrinks(self) -> None:
        refused(lab_world(), act("extend_volume", volume="V1", size_gib=99), "never shrinks")
        refused(lab_world(), act("extend_lun", volume="V1", lun_size_gib=99), "never shrinks")

    def test_demo_csv02_grows_through_hv02(self) -> None:
        world = accepted(demo_world(), act("extend_lun", "prod", volume="CSV02", lun_size_gib=2048))
        world = accepted(world, act("extend_volume", "prod", volume="CSV02", size_gib=2048))
        assert world.volumes["CSV02"].size_gib == 2048
        assert invariants(world) == []


class TestMemoryAccounting:
    """A host gives VMs its memory less the parent reserve; each VM costs memory plus overhead."""

    def test_the_numbers(self) -> None:
        world = lab_world()
        cluster = world.clusters["lab"]
        # 2012r2: 2048 MiB reserve; overhead 32 + 8 per GiB above the first, less 1 with SLAT.
        assert usable_memory_mib(world.nodes["n1"], cluster) == NODE_MEMORY_MIB - 2048 == 14336
        assert vm_overhead_mib(2048, cluster) == 32 + 8 - 1
        assert vm_cost_mib(world.vms["A"], cluster) == 2087
        assert vm_cost_mib(world.vms["TEST"], cluster) == 543
        assert used_memory_mib(world, "n1") == 2087 + 543
        assert free_memory_mib(world, "n1") == 14336 - 2630 == 11706

    def test_slat_saving_and_platform_reserve(self) -> None:
        world = lab_world("2022")
        cluster = world.clusters["lab"]
        assert usable_memory_mib(world.nodes["n1"], cluster) == NODE_MEMORY_MIB - 4096
        no_slat = replace(
            world.nodes["n1"], hardware=replace(world.nodes["n1"].hardware, slat=False)
        )
        assert vm_cost_mib(world.vms["A"], cluster, no_slat) == 2088

    @staticmethod
    def _b_with(memory_mib: int) -> Estate:
        return with_vm(lab_world(), "B", memory_mib=memory_mib)

    def test_a_migration_fits_to_the_last_mib(self) -> None:
        # n1 has 11706 MiB free; 11587 MiB costs 11587 + 32 + 8 * 11 - 1 = 11706.
        world = self._b_with(11587)
        assert vm_cost_mib(world.vms["B"], world.clusters["lab"]) == 11706
        after = accepted(world, migrate("B", "n1"))
        assert free_memory_mib(after, "n1") == 0
        assert invariants(after) == []

    def test_a_migration_one_mib_short_is_refused(self) -> None:
        refused(self._b_with(11588), migrate("B", "n1"), "n1 has 11706 MiB free, B needs 11707 MiB")

    def test_quick_migration_counts_memory_too_but_offline_does_not(self) -> None:
        world = self._b_with(11588)
        refused(world, migrate("B", "n1", "quick"), "B needs 11707 MiB")
        accepted(stopped(world, "B"), migrate("B", "n1", "offline"))

    def test_an_off_vm_takes_no_memory_and_starting_it_needs_room(self) -> None:
        world = accepted(stopped(self._b_with(11588), "B"), migrate("B", "n1", "offline"))
        assert used_memory_mib(world, "n1") == 2630
        refused(world, act("start_vm", vm="B"), "n1 has too little free memory (11707 MiB needed)")
        world = accepted(world, act("stop_vm", vm="TEST"))  # frees 543 MiB
        assert accepted(world, act("start_vm", vm="B")).vms["B"].power_state == "running"

    def test_memory_changes_need_the_vm_off(self) -> None:
        refused(lab_world(), act("set_vm", vm="A", memory_mib=4096), "A must be off")
        after = accepted(stopped(lab_world(), "A"), act("set_vm", vm="A", memory_mib=4096))
        assert after.vms["A"].memory_mib == 4096


class TestPlacement:
    """A VM runs only where its switches, VLANs and storage exist, on an up, active member."""

    def test_a_node_without_the_vlan_is_refused(self) -> None:
        # Demo: hv03's trunk lacks VLAN 40, which APP03 uses.
        refused(
            demo_world(),
            migrate("APP03", "hv03", cluster="prod"),
            "hv03's switch vSwitch-VM does not carry VLAN 40",
        )
        accepted(demo_world(), migrate("APP03", "hv04", cluster="prod"))

    def test_a_node_without_the_switch_is_refused(self) -> None:
        world = with_node(lab_world(), "n2", switches={})
        refused(world, migrate("A", "n2"), "n2 has no switch vs")

    def test_a_node_without_the_lun_is_refused(self) -> None:
        world = with_node(lab_world(), "n2", luns=frozenset())
        refused(world, migrate("A", "n2"), "n2 does not see the LUN of V1")

    @pytest.mark.parametrize(
        ("spoil", "why"),
        [
            (lambda e: with_node(e, "n2", state="down"), "n2 is down"),
            (lambda e: with_node(e, "n2", maintenance=True), "n2 is in maintenance"),
        ],
        ids=["down", "maintenance"],
    )
    def test_a_node_out_of_service_is_refused(
        self, spoil: Callable[[Estate], Estate], why: str
    ) -> None:
        refused(spoil(lab_world()), migrate("A", "n2"), why)

    def test_a_non_member_is_refused(self) -> None:
        refused(lab_world(spare_ready=True), migrate("A", "n3"), "n3 is not a member of lab")

    def test_migration_methods_follow_power_state_and_policy(self) -> None:
        world = lab_world()
        refused(world, migrate("A", "n2", "offline"), "offline migration needs it off")
        refused(stopped(world, "A"), migrate("A", "n2", "live"), "only a running VM live-migrates")
        never = with_vm(world, "A", migration_policy="never")
        refused(never, migrate("A", "n2", "live"), "forbids live migration")

    def test_starting_needs_the_vlan_where_the_vm_is(self) -> None:
        world = stopped(lab_world(), "A", "TEST")
        world = accepted(world, trunk("n1", "vs", frozenset({20})))
        refused(world, act("start_vm", vm="A"), "does not carry VLAN 10")


class TestVlanTrunks:
    """A trunk may change, but never to drop a VLAN a running VM on that host uses."""

    def test_removing_a_vlan_in_use_is_refused(self) -> None:
        refused(lab_world(), trunk("n1", "vs", frozenset({20})), "VLAN 10 is in use by A on n1")

    def test_removing_an_unused_vlan_works(self) -> None:
        # n2 runs only B (VLAN 20): VLAN 10 can go there.
        after = accepted(lab_world(), trunk("n2", "vs", frozenset({20})))
        assert after.nodes["n2"].status.switches["vs"].allowed_vlans == {20}
        assert invariants(after) == []

    def test_vlans_of_stopped_vms_may_go(self) -> None:
        accepted(stopped(lab_world(), "A", "TEST"), trunk("n1", "vs", frozenset({20})))

    def test_the_native_vlan_carries_an_untagged_one(self) -> None:
        accepted(lab_world(), trunk("n1", "vs", frozenset({20}), native=10))

    def test_replacing_the_switch_config_cannot_drop_a_vlan_in_use(self) -> None:
        narrower = replace(TRUNK, allowed_vlans=frozenset({20}))
        refused(lab_world(), match_switch("n1", "vs", narrower), "VLAN 10 is in use by A on n1")
        accepted(lab_world(), match_switch("n2", "vs", narrower))

    def test_a_missing_switch_must_be_matched_first(self) -> None:
        refused(lab_world(), trunk("n3", "vs", frozenset({10})), "match the switch first")

    def test_changing_the_uplink_under_running_vms_is_refused(self) -> None:
        refused(
            lab_world(),
            match_switch("n1", "vs", replace(TRUNK, uplink_nic="NIC1")),
            "would cut off running VMs A, TEST",
        )


def with_cluster(estate: Estate, **changes: object) -> Estate:
    cluster = estate.clusters["lab"]
    status_keys = ("rolling_update_done", "rolling_update_in_progress", "updated_nodes")
    status = {k: v for k, v in changes.items() if k in status_keys}
    rest = {k: v for k, v in changes.items() if k not in status_keys}
    return estate.with_record(
        replace(cluster, status=replace(cluster.status, **status), **rest)  # type: ignore[arg-type]
    )


def patch(node: str, cycle: str = "c1", level: str = "2012-02") -> Action:
    return act("patch_node", node=node, cycle=cycle, patch_level=level, command=["hook.ps1"])


def verify(node: str, level: str = "2012-02", test_vm: str | None = "TEST") -> Action:
    return act("verify_node", node=node, patch_level=level, test_vm=test_vm)


def complete(nodes: list[str], cycle: str = "c1") -> Action:
    return act("complete_rolling_update", cycle=cycle, nodes=nodes)


# n2 (running B) emptied and paused: ready to be patched.
N2_DRAINED = (act("stop_vm", vm="B"), act("drain_node", node="n2"))


class TestPatchingANode:
    """patch_node runs the hook on a paused, empty node whose reboot the quorum survives."""

    def test_sets_the_patch_level_and_records_the_node_in_the_cycle(self) -> None:
        after = accepted(_prepared(lab_world(), *N2_DRAINED), patch("n2"))
        assert after.nodes["n2"].hardware.patch_level == "2012-02"
        assert after.nodes["n1"].hardware.patch_level == "2012-01"
        status = after.clusters["lab"].status
        assert status.rolling_update_in_progress == "c1"
        assert status.updated_nodes == {"n2"}
        assert after.nodes["n2"].maintenance, "the node stays paused until resumed"

    def test_nodes_accumulate_within_a_cycle_and_a_new_cycle_starts_afresh(self) -> None:
        world = _prepared(lab_world(), *N2_DRAINED, patch("n2"), act("resume_node", node="n2"))
        world = _prepared(
            world,
            migrate("A", "n2"),
            migrate("TEST", "n2"),
            act("drain_node", node="n1"),
            patch("n1"),
        )
        assert world.clusters["lab"].status.updated_nodes == {"n1", "n2"}
        world = accepted(world, patch("n1", cycle="c2", level="2012-03"))
        status = world.clusters["lab"].status
        assert status.rolling_update_in_progress == "c2"
        assert status.updated_nodes == {"n1"}

    def test_a_node_in_service_is_refused(self) -> None:
        world = _prepared(lab_world(), act("stop_vm", vm="B"))
        refused(world, patch("n2"), "n2 must be drained (paused) before it is patched")

    def test_a_paused_node_still_running_vms_is_refused(self) -> None:
        world = with_node(lab_world(), "n2", maintenance=True)
        refused(world, patch("n2"), "n2 still runs B")

    def test_a_reboot_that_loses_quorum_is_refused(self) -> None:
        # Node Majority with 2 nodes: 1 of 2 votes left while n2 reboots is no majority.
        world = with_cluster(lab_world(), quorum=Quorum("node_majority"))
        world = _prepared(world, *N2_DRAINED)
        refused(world, patch("n2"), "rebooting n2 would lose quorum (1 of 2 nodes left up)")

    def test_with_a_peer_down_the_witness_alone_is_not_enough(self) -> None:
        # Node and disk majority, 2 nodes + witness = 3 votes: n2 rebooting with n1 down
        # leaves the witness's 1 vote; with n1 up, 2 of 3 is a majority.
        world = _prepared(lab_world(), *N2_DRAINED)
        accepted(world, patch("n2"))
        refused(with_node(world, "n1", state="down"), patch("n2"), "would lose quorum (0 of 2")

    def test_a_completed_cycle_is_done(self) -> None:
        world = with_cluster(_prepared(lab_world(), *N2_DRAINED), rolling_update_done="c1")
        result = apply_rules(world, patch("n2"))
        assert result.done and result.estate == world


class TestVerifyingANode:
    """verify_node only checks: a patched node that is up passes, anything else fails."""

    def test_a_patched_node_that_is_up_passes_and_nothing_changes(self) -> None:
        world = _prepared(lab_world(), *N2_DRAINED, patch("n2"))
        result = apply_rules(world, verify("n2"))
        assert result.ok and not result.done
        assert result.estate == world

    def test_a_node_at_the_wrong_patch_level_fails(self) -> None:
        world = _prepared(lab_world(), *N2_DRAINED)
        refused(world, verify("n2"), "verification failed", "n2 is at patch level 2012-01")

    def test_a_node_that_did_not_come_back_fails(self) -> None:
        world = with_node(_prepared(lab_world(), *N2_DRAINED, patch("n2")), "n2", state="down")
        refused(world, verify("n2"), "n2 did not come back up")

    def test_the_test_vm_must_be_able_to_run_there(self) -> None:
        world = _prepared(lab_world(), *N2_DRAINED, patch("n2"))
        world = with_node(world, "n2", switches={})
        refused(world, verify("n2", test_vm=None), "switch vs on n2 differs from n1")
        refused(world, verify("n2"), "n2 has no switch vs")


class TestCompletingACycle:
    """complete_rolling_update records the cycle only when every listed node is patched and back."""

    @staticmethod
    def _n2_patched(resumed: bool = True) -> Estate:
        world = _prepared(lab_world(), *N2_DRAINED, patch("n2"))
        return accepted(world, act("resume_node", node="n2")) if resumed else world

    def test_records_the_cycle_and_clears_the_progress(self) -> None:
        after = accepted(self._n2_patched(), complete(["n2"]))
        status = after.clusters["lab"].status
        assert status.rolling_update_done == "c1"
        assert status.rolling_update_in_progress is None
        assert status.updated_nodes == frozenset()

    def test_an_unpatched_listed_node_is_refused(self) -> None:
        refused(self._n2_patched(), complete(["n1", "n2"]), "not yet patched in cycle c1: n1")

    def test_a_listed_node_still_paused_is_refused(self) -> None:
        refused(self._n2_patched(resumed=False), complete(["n2"]), "still paused: n2")

    def test_nodes_patched_in_another_cycle_do_not_count(self) -> None:
        refused(self._n2_patched(), complete(["n2"], cycle="c2"), "not yet patched in cycle c2: n2")


def _prepared(world: Estate, *steps: Action) -> Estate:
    for step in steps:
        world = accepted(world, step)
    return world


def _standalone() -> Estate:
    """The lab plus host e1, meant for cluster edge (which does not exist yet)."""
    world = lab_world(spare_ready=True)
    return world.with_record(replace(world.nodes["n3"], name="e1", cluster="edge"))


def _lab_with_subnet() -> Estate:
    world = lab_world()
    cluster = world.clusters["lab"]
    networks = (replace(cluster.networks[0], subnet="10.0.0.0/24"),)
    return world.with_record(replace(cluster, networks=networks))


STOP_A = act("stop_vm", vm="A")
STOP_B = act("stop_vm", vm="B")
JOINED = (JOIN_N3,)

# (world factory, steps that set it up, the action applied twice)
ONCE_THEN_DONE: dict[str, tuple[Callable[[], Estate], tuple[Action, ...], Action]] = {
    "begin_monitoring_maintenance": (lab_world, (), act("begin_monitoring_maintenance")),
    "end_monitoring_maintenance": (
        lab_world,
        (act("begin_monitoring_maintenance"),),
        act("end_monitoring_maintenance"),
    ),
    "match_vswitch": (lab_world, (), match_switch("n3", "vs", TRUNK)),
    "set_vlan_trunk": (lab_world, (), trunk("n2", "vs", frozenset({10, 20, 30}))),
    "present_storage": (lab_world, (), act("present_storage", node="n3", volumes=["V1"])),
    "add_node": (lambda: lab_world(spare_ready=True), (), JOIN_N3),
    "update_quorum": (lab_world, (), act("update_quorum", mode="disk_only", witness={"disk": "W"})),
    "test_live_migration": (
        lambda: lab_world(spare_ready=True),
        JOINED,
        act("test_live_migration", vm="TEST", node="n3"),
    ),
    "validate_cluster": (lambda: lab_world(spare_ready=True), JOINED, act("validate_cluster")),
    "drain_node": (lab_world, (STOP_B,), act("drain_node", node="n2")),
    "resume_node": (
        lab_world,
        (STOP_B, act("drain_node", node="n2")),
        act("resume_node", node="n2"),
    ),
    "patch_node": (lab_world, (STOP_B, act("drain_node", node="n2")), patch("n2")),
    "complete_rolling_update": (
        lab_world,
        (STOP_B, act("drain_node", node="n2"), patch("n2"), act("resume_node", node="n2")),
        complete(["n2"]),
    ),
    "migrate_vm": (lab_world, (), migrate("A", "n2")),
    "extend_lun": (lab_world, (), act("extend_lun", volume="V1", lun_size_gib=200)),
    "extend_volume": (
        lab_world,
        (act("extend_lun", volume="V1", lun_size_gib=200),),
        act("extend_volume", volume="V1", size_gib=150),
    ),
    "extend_vhd": (lab_world, (), act("extend_vhd", vm="A", disk="data", size_gib=20)),
    "add_disk": (lab_world, (), add_disk("A", TestAddingAndRemovingDisks.NEW_SCSI)),
    "detach_disk": (lab_world, (), act("detach_disk", vm="A", disk="data")),
    "convert_disk": (lab_world, (STOP_A,), act("convert_disk", vm="A", disk="os", type="dynamic")),
    "set_vm": (lab_world, (STOP_A,), act("set_vm", vm="A", memory_mib=4096, vcpus=4)),
    "stop_vm": (lab_world, (), STOP_A),
    "start_vm": (lab_world, (STOP_A,), act("start_vm", vm="A")),
    "create_vm": (lab_world, (), create(new_vm(), "n2")),
    "remove_vm": (lab_world, (), act("remove_vm", vm="B", delete_disks=False)),
    "evict_node": (
        lab_world,
        (migrate("B", "n1"), act("drain_node", node="n2")),
        act("evict_node", node="n2"),
    ),
    "add_vm_nic": (
        lab_world,
        (STOP_A,),
        act("add_vm_nic", vm="A", nic={"name": "nic2", "switch": "vs", "vlan": 20}),
    ),
    "remove_vm_nic": (lab_world, (STOP_A,), act("remove_vm_nic", vm="A", nic="nic1")),
    "set_vm_nic": (
        lab_world,
        (),
        act("set_vm_nic", vm="A", nic={"name": "nic1", "switch": "vs", "vlan": 20}),
    ),
    "move_disk": (
        lab_world,
        (),
        act("move_disk", vm="A", disk="data", controller="scsi", controller_number=1, slot=5),
    ),
    "set_preferred_owners": (lab_world, (), act("set_preferred_owners", vm="A", owners=["n2"])),
    "set_automatic_actions": (
        lab_world,
        (STOP_A,),
        act("set_automatic_actions", vm="A", start="start", stop="shut_down"),
    ),
    "create_csv": (
        lambda: with_free_lun(lab_world()),
        (),
        act("create_csv", volume="V2", lun="LUN7", size_gib=150),
    ),
    "rename_csv": (
        lab_world,
        (STOP_A, STOP_B, act("stop_vm", vm="TEST")),
        act("rename_csv", volume="V1", name="Gold", lun=None),
    ),
    "remove_csv": (
        lambda: with_free_lun(lab_world()),
        (act("create_csv", volume="V2", lun="LUN7", size_gib=150),),
        act("remove_csv", volume="V2", lun="LUN7"),
    ),
    "create_cluster": (
        _standalone,
        (),
        act(
            "create_cluster",
            "edge",
            platform="2012r2",
            nodes=["e1"],
            addresses=["10.20.0.10"],
            networks=[{"name": "M", "roles": ["management"], "subnet": "10.20.0.0/24"}],
        ),
    ),
    "set_cluster_addresses": (
        _lab_with_subnet,
        (),
        act("set_cluster_addresses", addresses=["10.0.0.5"]),
    ),
    "set_scsi_controllers": (lab_world, (STOP_A,), act("set_scsi_controllers", vm="A", count=3)),
    "move_vm_storage": (
        lambda: with_volume(lab_world()),
        (),
        act("move_vm_storage", vm="A", disk="data", volume="V2"),
    ),
    "set_cluster_network": (
        lab_world,
        (),
        act(
            "set_cluster_network",
            network="LM",
            subnet=None,
            name="Migration",
            roles=["heartbeat", "live_migration"],
            role="cluster",
        ),
    ),
    "set_vm_memory": (
        lab_world,
        (STOP_A,),
        act(
            "set_vm_memory",
            vm="A",
            memory_mib=2048,
            dynamic={"minimum_mib": 1024, "maximum_mib": 4096, "buffer_pct": 20},
        ),
    ),
}


# Pure checks: they change nothing in the world, so there is no "second time" to recognise
# (verify_node passes or fails every time it runs; see TestVerifyingANode).
CHECKS_ONLY = frozenset({"verify_node"})


class TestAlreadyDone:
    """Every action type, applied a second time, is recognised as done and changes nothing."""

    def test_every_action_type_is_covered(self) -> None:
        assert not set(ONCE_THEN_DONE) & CHECKS_ONLY
        assert set(ONCE_THEN_DONE) | CHECKS_ONLY == set(ACTION_TYPES)

    @pytest.mark.parametrize("kind", sorted(ONCE_THEN_DONE))
    def test_second_apply_is_done(self, kind: str) -> None:
        make, steps, action = ONCE_THEN_DONE[kind]
        assert action.type == kind
        world = _prepared(make(), *steps)
        once = accepted(world, action)
        assert once != world
        again = apply_rules(once, action)
        assert again.done
        assert again.failures == ()
        assert again.estate == once


class TestRefusalsChangeNothing:
    """An action whose precondition fails leaves the estate exactly as it was."""

    @pytest.mark.parametrize(
        "action",
        [
            migrate("A", "n3"),
            add_disk("A", TestAddingAndRemovingDisks.NEW_IDE),
            act("detach_disk", vm="A", disk="os"),
            act("extend_volume", volume="V1", size_gib=500),
            act("convert_disk", vm="A", disk="os", type="dynamic"),
            act("set_vm", vm="B", memory_mib=1),
            act("update_quorum", mode="cloud_witness"),
            act("drain_node", node="n1"),
            trunk("n1", "vs", frozenset({30})),
            JOIN_N3,
            act("migrate_vm", vm="A"),  # missing parameters
            act("start_vm", vm="NOPE"),
            Action("x", "reboot_everything", "Cluster/lab", "lab"),  # type: ignore[arg-type]
        ],
        ids=lambda a: a.id,
    )
    def test_refused_estate_is_identical(self, action: Action) -> None:
        world = lab_world()
        result = apply_rules(world, action)
        assert result.failures
        assert not result.done
        assert result.estate == world
        assert result.estate.records() == lab_world().records()


class TestSwitchEmbeddedTeaming:
    """A team change recreates the host switch: refused while a running VM there uses it."""

    TEAMED = replace(TRUNK, uplink_nic=None, team_nics=("NIC1", "NIC2"))

    def test_refused_before_2016(self) -> None:
        world = stopped(lab_world(), "A", "TEST")
        refused(world, match_switch("n1", "vs", self.TEAMED), "needs 2016 or later")

    def test_refused_while_a_running_vm_uses_it_and_made_once_it_is_empty(self) -> None:
        world = lab_world("2016")
        refused(world, match_switch("n1", "vs", self.TEAMED), "would cut off running VMs A, TEST")
        after = accepted(stopped(world, "A", "TEST"), match_switch("n1", "vs", self.TEAMED))
        assert after.nodes["n1"].status.switches["vs"].team_nics == ("NIC1", "NIC2")

    def test_the_team_nics_must_be_on_the_host(self) -> None:
        world = stopped(lab_world("2016"), "A", "TEST")
        lacking = replace(self.TEAMED, team_nics=("NIC1", "NIC9"))
        refused(world, match_switch("n1", "vs", lacking), "n1 has no NIC NIC9 to team in vs")
