"""World rules of a VM's network adapters, on the lab world (see sim_strategies).

lab_world() is 2012 R2 with generation-1 VMs: no hot add. Its switch ``vs`` carries VLANs
10 and 20 (native 1) on n1 and n2. A runs on n1 with nic1 on VLAN 10.
"""

from __future__ import annotations

from dataclasses import replace

from sim_strategies import act, lab_world
from test_sim_rules import accepted, refused, stopped, with_vm

from reconciler.model.actions import Action
from reconciler.model.records import Estate, VmNic
from reconciler.model.rules import apply_rules

NIC2 = {"name": "nic2", "switch": "vs", "vlan": 20}


def gen2_on(platform: str) -> Estate:
    """A as a generation-2 VM on ``platform`` (its disks are not what this is about)."""
    return with_vm(lab_world(platform), "A", generation=2)


class TestAddingAndRemovingAdapters:
    """Hot add and remove only on generation 2 from 2016; otherwise the VM must be off."""

    def test_generation_1_must_be_off(self) -> None:
        refused(lab_world(), act("add_vm_nic", vm="A", nic=NIC2), "A must be off to add")
        refused(lab_world(), act("remove_vm_nic", vm="A", nic="nic1"), "A must be off to remove")
        after = accepted(stopped(lab_world(), "A"), act("add_vm_nic", vm="A", nic=NIC2))
        assert after.vms["A"].nics[-1] == VmNic("nic2", "vs", 20)

    def test_generation_2_on_2012r2_must_be_off_too(self) -> None:
        refused(gen2_on("2012r2"), act("add_vm_nic", vm="A", nic=NIC2), "hot add needs")

    def test_generation_2_on_2016_adds_and_removes_while_running(self) -> None:
        added = accepted(gen2_on("2016"), act("add_vm_nic", vm="A", nic=NIC2))
        assert [n.name for n in added.vms["A"].nics] == ["nic1", "nic2"]
        removed = accepted(added, act("remove_vm_nic", vm="A", nic="nic1"))
        assert [n.name for n in removed.vms["A"].nics] == ["nic2"]

    def test_an_adapter_on_a_vlan_its_host_lacks_is_refused_while_running(self) -> None:
        nic = {"name": "nic2", "switch": "vs", "vlan": 30}
        refused(gen2_on("2016"), act("add_vm_nic", vm="A", nic=nic), "does not carry VLAN 30")

    def test_at_most_eight_adapters(self) -> None:
        world = stopped(lab_world(), "A")
        nics = tuple(VmNic(f"n{i}", "vs", 10) for i in range(8))
        world = world.with_record(replace(world.vms["A"], nics=nics))
        refused(world, act("add_vm_nic", vm="A", nic=NIC2), "at most 8 network adapters")


class TestChangingAnAdapter:
    """Switch and VLANs change online; the MAC address only while the VM is off."""

    def test_vlan_changes_while_running(self) -> None:
        nic = {"name": "nic1", "switch": "vs", "vlan": 20}
        assert accepted(lab_world(), act("set_vm_nic", vm="A", nic=nic)).vms["A"].nics[0].vlan == 20

    def test_to_a_trunk_its_host_carries(self) -> None:
        nic = {"name": "nic1", "switch": "vs", "vlan": None, "trunk": "10,20", "native_vlan": 1}
        after = accepted(lab_world(), act("set_vm_nic", vm="A", nic=nic))
        assert after.vms["A"].nics[0].trunk == frozenset({10, 20})
        wide = dict(nic, trunk="10,20,30")
        refused(lab_world(), act("set_vm_nic", vm="A", nic=wide), "VLAN(s) 30 of nic1's trunk")

    def test_a_switch_its_host_lacks_is_refused_while_running(self) -> None:
        nic = {"name": "nic1", "switch": "other", "vlan": 10}
        refused(lab_world(), act("set_vm_nic", vm="A", nic=nic), "n1 has no switch other")
        # Off, it is not connected anywhere: the start checks the host.
        accepted(stopped(lab_world(), "A"), act("set_vm_nic", vm="A", nic=nic))

    def test_mac_needs_the_vm_off(self) -> None:
        nic = {"name": "nic1", "switch": "vs", "vlan": 10, "mac": "00155D0A0102"}
        refused(lab_world(), act("set_vm_nic", vm="A", nic=nic), "off to change the MAC")
        after = accepted(stopped(lab_world(), "A"), act("set_vm_nic", vm="A", nic=nic))
        assert after.vms["A"].nics[0].mac == "00155D0A0102"

    def test_an_unknown_adapter_is_refused(self) -> None:
        refused(lab_world(), act("set_vm_nic", vm="A", nic=NIC2), "A has no adapter nic2")


class TestTrunkGuards:
    """A host trunk change never cuts off a VLAN a running VM's trunk adapter uses."""

    def test_dropping_a_vlan_a_trunk_adapter_uses_is_refused(self) -> None:
        nic = VmNic("nic1", "vs", None, frozenset({10, 20}), 1)
        world = lab_world().with_record(replace(lab_world().vms["A"], nics=(nic,)))
        trunk = act("set_vlan_trunk", node="n1", switch="vs", allowed_vlans="10", native_vlan=1)
        refused(world, trunk, "VLAN 20 is in use by A on n1")


class TestMovingADisk:
    """move_disk: SCSI data disks hot-plug while the VM runs; IDE and the boot disk need it off.

    A has os on IDE 0:0 (its boot disk) and data on SCSI 0:0.
    """

    def move(self, disk: str, controller: str, number: int, slot: int) -> Action:
        return act(
            "move_disk",
            vm="A",
            disk=disk,
            controller=controller,
            controller_number=number,
            slot=slot,
        )

    def test_a_scsi_data_disk_moves_while_running(self) -> None:
        after = accepted(lab_world(), self.move("data", "scsi", 2, 7))
        data = after.vms["A"].disk("data")
        assert data is not None
        assert (data.controller, data.controller_number, data.slot) == ("scsi", 2, 7)

    def test_to_ide_or_the_boot_disk_needs_it_off(self) -> None:
        to_ide = self.move("data", "ide", 1, 0)
        refused(lab_world(), to_ide, "A must be off to move data: IDE devices")
        accepted(stopped(lab_world(), "A"), to_ide)
        boot = self.move("os", "ide", 1, 1)
        refused(lab_world(), boot, "IDE devices")

    def test_onto_a_taken_slot_or_beyond_the_limits_is_refused(self) -> None:
        world = stopped(lab_world(), "A")
        refused(world, self.move("data", "ide", 0, 0), "IDE 0:0 holds os")
        refused(world, self.move("data", "scsi", 4, 0), "SCSI 4:0 is beyond 4 x 64")


class TestVmSettings:
    """Preferred owners are a set of members and never move the VM; the stop action needs off."""

    def test_owners_never_move_the_vm(self) -> None:
        after = accepted(lab_world(), act("set_preferred_owners", vm="A", owners=["n2"]))
        assert after.vms["A"].preferred_owners == frozenset({"n2"})
        assert after.vms["A"].node == "n1"

    def test_owners_compare_as_a_set(self) -> None:
        world = accepted(lab_world(), act("set_preferred_owners", vm="A", owners=["n2", "n1"]))
        assert apply_rules(world, act("set_preferred_owners", vm="A", owners=["n1", "n2"])).done

    def test_owners_must_be_members(self) -> None:
        refused(lab_world(), act("set_preferred_owners", vm="A", owners=["n3"]), "n3 not a member")

    def test_start_action_online_stop_action_only_off(self) -> None:
        accepted(lab_world(), act("set_automatic_actions", vm="A", start="nothing"))
        stop = act("set_automatic_actions", vm="A", stop="save")
        refused(lab_world(), stop, "A must be off to change its automatic stop action")
        assert accepted(stopped(lab_world(), "A"), stop).vms["A"].automatic_stop_action == "save"
