"""World rule of set_vm_memory (dynamic memory) on the lab world, case by case.

VM A in ``lab_world()`` runs on n1 with 2048 MiB of static memory. What needs the VM off is
written out by hand from Microsoft's Dynamic Memory documentation: on 2012 R2 and later a
running VM's minimum may be lowered, its maximum raised and its buffer changed; turning
dynamic memory on or off, or a new startup memory, needs it off; on 2008 R2 SP1 every change
needs it off and the minimum is the startup memory.
"""

from __future__ import annotations

from typing import Any

import pytest
from sim_strategies import act, lab_world
from test_sim_rules import accepted, refused, stopped, with_vm

from reconciler.model.capacity import used_memory_mib
from reconciler.model.records import DynamicMemory, Estate


def memory(vm: str = "A", memory_mib: int = 2048, dynamic: Any = None) -> Any:
    return act("set_vm_memory", vm=vm, memory_mib=memory_mib, dynamic=dynamic)


def bounds(minimum: int, maximum: int, buffer: int = 20) -> dict[str, int]:
    return {"minimum_mib": minimum, "maximum_mib": maximum, "buffer_pct": buffer}


def dynamic_a(world: Estate, minimum: int = 1024, maximum: int = 4096) -> Estate:
    return with_vm(world, "A", dynamic_memory=DynamicMemory(True, minimum, maximum, 20))


class TestTurningDynamicMemoryOnAndOff:
    def test_on_with_the_vm_off(self) -> None:
        after = accepted(stopped(lab_world(), "A"), memory(dynamic=bounds(1024, 4096)))
        assert after.vms["A"].dynamic_memory == DynamicMemory(True, 1024, 4096, 20)
        assert after.vms["A"].memory_mib == 2048

    def test_on_while_running_is_refused(self) -> None:
        refused(
            lab_world(),
            memory(dynamic=bounds(1024, 4096)),
            "A must be off: dynamic memory is turned on or off only while the VM is off",
        )

    def test_off_while_running_is_refused_and_off_when_stopped(self) -> None:
        world = dynamic_a(lab_world())
        refused(world, memory(dynamic=None), "turned on or off only while the VM is off")
        after = accepted(stopped(world, "A"), memory(dynamic=None))
        assert after.vms["A"].memory_model() is None


class TestChangingTheBoundsOfARunningVm:
    """Current bounds 1024-4096 MiB, startup 2048, running on n1."""

    @pytest.mark.parametrize(
        ("platform", "new", "why"),
        [
            ("2012r2", bounds(512, 4096), None),  # minimum lowered
            ("2012r2", bounds(1024, 8192), None),  # maximum raised
            ("2019", bounds(512, 8192, 50), None),  # both, and the buffer
            ("2012r2", bounds(1536, 4096), "minimum memory may only be lowered"),
            ("2012r2", bounds(1024, 3072), "maximum memory may only be raised"),
            ("2008r2", bounds(2048, 8192), "platform 2008r2 changes dynamic memory only while"),
        ],
    )
    def test_online_only_within_what_hyper_v_allows(
        self, platform: Any, new: dict[str, int], why: str | None
    ) -> None:
        minimum = 2048 if platform == "2008r2" else 1024
        world = dynamic_a(lab_world(platform), minimum=minimum)
        if why is None:
            after = accepted(world, memory(dynamic=new))
            assert after.vms["A"].power_state == "running"
            assert after.vms["A"].dynamic_memory == DynamicMemory(
                True, new["minimum_mib"], new["maximum_mib"], new["buffer_pct"]
            )
        else:
            refused(world, memory(dynamic=new), why)
            accepted(stopped(world, "A"), memory(dynamic=new))  # with the VM off it is fine

    def test_a_runtime_change_spends_no_host_memory(self) -> None:
        # Capacity counts the startup memory: 2048 + 32 + 8 - 1 on n1, before and after.
        world = dynamic_a(lab_world())
        after = accepted(world, memory(dynamic=bounds(512, 8192)))
        assert used_memory_mib(after, "n1") == used_memory_mib(world, "n1")


class TestStartupMemoryAndRange:
    @pytest.mark.parametrize(
        ("memory_mib", "new", "why"),
        [
            (2048, bounds(4096, 8192), "startup memory 2048 MiB is outside 4096-8192 MiB"),
            (8192, bounds(1024, 4096), "startup memory 8192 MiB is outside 1024-4096 MiB"),
            (2048, bounds(1024, 2 * 1048576), "maximum 2097152 MiB is more than a VM has"),
        ],
    )
    def test_the_startup_memory_lies_within_the_range(
        self, memory_mib: int, new: dict[str, int], why: str
    ) -> None:
        refused(stopped(lab_world(), "A"), memory(memory_mib=memory_mib, dynamic=new), why)

    def test_startup_and_range_move_together_in_one_step(self) -> None:
        # 2048 in 1024-4096 -> 16384 in 12288-32768: no order of two steps would be valid.
        world = stopped(dynamic_a(lab_world()), "A")
        after = accepted(world, memory(memory_mib=16384, dynamic=bounds(12288, 32768)))
        assert (after.vms["A"].memory_mib, after.vms["A"].dynamic_memory) == (
            16384,
            DynamicMemory(True, 12288, 32768, 20),
        )

    def test_a_new_startup_memory_needs_the_vm_off(self) -> None:
        refused(
            dynamic_a(lab_world()),
            memory(memory_mib=3072, dynamic=bounds(1024, 4096)),
            "the startup memory changes only while the VM is off",
        )

    def test_set_vm_keeps_the_startup_memory_within_the_range(self) -> None:
        world = stopped(dynamic_a(lab_world()), "A")
        refused(world, act("set_vm", vm="A", memory_mib=8192), "outside A's dynamic memory range")
        assert accepted(world, act("set_vm", vm="A", memory_mib=3072)).vms["A"].memory_mib == 3072

    def test_2008r2_has_no_minimum_below_the_startup_memory(self) -> None:
        refused(
            stopped(lab_world("2008r2"), "A"),
            memory(dynamic=bounds(1024, 4096)),
            "platform 2008r2 has no minimum below the startup memory",
        )
