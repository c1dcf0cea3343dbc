"""move_vm_storage: a disk's file moves to another CSV of its cluster (Move-VMStorage).

The lab world (tests/sim_strategies.py): VM A runs on n1 with ``os`` (fixed 20 GiB, IDE) and
``data`` (dynamic 10 GiB, so 5 GiB used) on the 100 GiB CSV V1; ``with_volume`` adds V2.
"""

from __future__ import annotations

from dataclasses import replace

from sim_strategies import act, lab_world, with_volume

from reconciler.model.physics import action_seconds
from reconciler.model.records import Estate, frozen_map
from reconciler.model.rules import apply_rules, volume_free_gib

MOVE_DATA = act("move_vm_storage", vm="A", disk="data", volume="V2")


def _refusal(world: Estate, *fragments: str) -> None:
    result = apply_rules(world, MOVE_DATA)
    assert not result.done
    assert result.estate is world
    text = "; ".join(result.failures)
    for fragment in fragments:
        assert fragment in text, text


class TestMovingADisksFile:
    """The file leaves its volume whole and takes its space on the other one."""

    def test_a_running_vm_s_disk_moves_online_from_2012(self) -> None:
        world = with_volume(lab_world("2012r2"), "V2", 50)
        result = apply_rules(world, MOVE_DATA)
        assert result.failures == ()
        after = result.estate
        vm = after.vms["A"]
        assert vm.power_state == "running"
        data = vm.disk("data")
        assert data is not None and data.volume == "V2"
        os_disk = vm.disk("os")
        assert os_disk is not None and os_disk.volume == "V1"  # only the named disk moves
        # V1 had os (20) + data (5) + B's os (20) + TEST's os (dynamic 20: 10) = 55 used.
        assert volume_free_gib(world, "V1") == 45
        assert volume_free_gib(after, "V1") == 50
        assert volume_free_gib(after, "V2") == 45

    def test_a_second_apply_is_done(self) -> None:
        once = apply_rules(with_volume(lab_world()), MOVE_DATA).estate
        again = apply_rules(once, MOVE_DATA)
        assert again.done and again.estate == once

    def test_the_destination_needs_the_file_s_size_free(self) -> None:
        world = with_volume(lab_world(), "V2", 4)  # data uses 5 GiB
        _refusal(world, "V2 has 4.0 GiB free, data's file needs 5.0 GiB")

    def test_2008r2_refuses_a_running_vm_and_moves_an_off_one(self) -> None:
        world = with_volume(lab_world("2008r2"))
        _refusal(world, "A must be off to move data", "no live storage migration")
        off = apply_rules(world, act("stop_vm", vm="A")).estate
        moved = apply_rules(off, MOVE_DATA)
        assert moved.failures == ()
        data = moved.estate.vms["A"].disk("data")
        assert data is not None and data.volume == "V2"

    def test_the_vm_s_node_must_see_the_destination(self) -> None:
        world = with_volume(lab_world(), "V2", 100, "n2")  # A runs on n1
        _refusal(world, "n1, where A runs, does not see the LUN of V2")

    def test_a_file_of_that_name_on_the_destination_is_refused(self) -> None:
        world = with_volume(lab_world())
        volume = world.volumes["V2"]
        kept = replace(volume.status, files=frozen_map({"A/data.vhdx": 3.0}))
        _refusal(world.with_record(replace(volume, status=kept)), "V2 already holds a file")

    def test_unknown_volumes_and_disks_are_refused(self) -> None:
        world = lab_world()
        _refusal(world, "volume V2 does not exist")
        result = apply_rules(world, act("move_vm_storage", vm="A", disk="nope", volume="V1"))
        assert result.failures == ("A has no disk nope",)


class TestEstimate:
    """A storage move costs a fixed setup plus its file at half the SAN's 200 MiB/s."""

    def test_seconds_follow_the_file_s_size(self) -> None:
        world = lab_world()
        vm = world.vms["A"]
        assert action_seconds(MOVE_DATA, world.clusters["lab"], vm) == 30 + 5 * 1024 / 100
        move_os = act("move_vm_storage", vm="A", disk="os", volume="V2")
        assert action_seconds(move_os, world.clusters["lab"], vm) == 30 + 20 * 1024 / 100
