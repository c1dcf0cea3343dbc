"""World rules of a CSV's life: create_csv, rename_csv, remove_csv, on the lab world.

``lab_world()`` (sim_strategies) has members n1 and n2 seeing V1 (100 GiB, coordinated by n1),
and spare n3 (not ready); ``with_free_lun`` presents LUN7 (200 GiB) to both members. VM A
(os + data) and B (os) and TEST (os) all have their disks on V1.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from sim_strategies import act, lab_world, with_free_lun
from test_sim_rules import accepted, refused, stopped

from reconciler.model.records import Estate, Quorum, Witness
from reconciler.model.rules import invariants

CREATE = act("create_csv", volume="V2", lun="LUN7", size_gib=150, file_system="NTFS")


def created() -> Estate:
    return accepted(with_free_lun(lab_world()), CREATE)


class TestCreatingACsv:
    def test_the_presented_lun_becomes_a_volume_every_member_sees(self) -> None:
        after = created()
        volume = after.volumes["V2"]
        assert (volume.lun, volume.lun_size_gib, volume.size_gib) == ("LUN7", 200, 150)
        assert volume.status.coordinator == "n1"
        for name in ("n1", "n2"):
            assert after.nodes[name].status.luns == {"V1", "V2"}
            assert "LUN7" not in after.nodes[name].status.free_luns
        assert invariants(after) == []

    @pytest.mark.parametrize(
        ("world", "action", "why"),
        [
            pytest.param(
                lab_world(), CREATE, "LUN LUN7 is not presented (free) to n1, n2", id="no-lun"
            ),
            pytest.param(
                with_free_lun(lab_world(), "LUN7", 200, "n1"),
                CREATE,
                "LUN LUN7 is not presented (free) to n2",
                id="one-member-blind",
            ),
            pytest.param(
                with_free_lun(lab_world()),
                act("create_csv", volume="V2", lun="LUN7", size_gib=300),
                "LUN LUN7 is 200 GiB: no 300 GiB volume fits",
                id="too-big",
            ),
            pytest.param(
                with_free_lun(lab_world()),
                act("create_csv", volume="V1", lun="LUN7", size_gib=100),
                "a volume named V1 exists already",
                id="name-taken",
            ),
        ],
    )
    def test_refused_with_the_reason(self, world: Estate, action: object, why: str) -> None:
        refused(world, action, why)  # type: ignore[arg-type]


class TestRenamingACsv:
    def test_renames_the_volume_its_hosts_and_the_disks_of_off_vms(self) -> None:
        world = stopped(lab_world(), "A", "B", "TEST")
        after = accepted(world, act("rename_csv", volume="V1", name="Gold", lun=None))
        assert "V1" not in after.volumes and after.volumes["Gold"].size_gib == 100
        assert after.nodes["n1"].status.luns == {"Gold"}
        assert {d.volume for d in after.vms["A"].disks} == {"Gold"}
        assert invariants(after) == []

    def test_refused_while_a_vm_on_it_runs(self) -> None:
        refused(
            stopped(lab_world(), "A"),
            act("rename_csv", volume="V1", name="Gold", lun=None),
            "B, TEST run from V1: their disk files are open",
        )

    def test_a_volume_on_the_new_name_is_never_overwritten(self) -> None:
        world = stopped(created(), "A", "B", "TEST")
        refused(world, act("rename_csv", volume="V1", name="V2", lun=None), "V2 exists already")


class TestRemovingACsv:
    def test_its_lun_is_given_back_with_the_data_on_it(self) -> None:
        after = accepted(created(), act("remove_csv", volume="V2", lun="LUN7"))
        assert "V2" not in after.volumes
        for name in ("n1", "n2"):
            assert after.nodes[name].status.luns == {"V1"}
            assert after.nodes[name].status.free_luns == {"LUN7": 200}

    def test_refused_while_any_vm_has_a_disk_on_it_running_or_not(self) -> None:
        refused(
            stopped(lab_world(), "A", "B", "TEST"),
            act("remove_csv", volume="V1", lun=None),
            "A, B, TEST have disks on V1",
        )

    def test_refused_for_the_quorum_witness(self) -> None:
        world = created()
        cluster = world.clusters["lab"]
        world = world.with_record(
            replace(cluster, quorum=Quorum("node_and_disk_majority", Witness(disk="V2")))
        )
        refused(world, act("remove_csv", volume="V2", lun="LUN7"), "V2 is the quorum witness")
