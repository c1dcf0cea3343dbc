"""The plan replay checks each step on what the step changed, and refuses what it always did.

Hand-stated cases for the checks made incremental (anti-affinity per group and node, the
failover reserve per node, invariants on the touched nodes only), then a comparison with the
whole-estate scans, step by step, over random plans.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from reconciler.engine.safety import (
    AffinityTracker,
    ReserveTracker,
    hard_affinity_breaches,
    replay,
    reserve_shortfall,
)
from reconciler.model.actions import Action
from reconciler.model.capacity import free_memory_mib, used_memory_mib
from reconciler.model.records import (
    KINDS,
    Cluster,
    ClusterSharedVolume,
    Disk,
    Estate,
    Hardware,
    MemoryPolicy,
    Node,
    NodeStatus,
    Quorum,
    SwitchConfig,
    VirtualMachine,
    VirtualSwitch,
    VmNic,
    Witness,
)
from reconciler.model.rules import apply_rules, touched_between

SWITCH = SwitchConfig("external", "NIC1", False, frozenset({10, 20}), 1)


def estate(nodes: int, usable_mib: int, vms: list[VirtualMachine]) -> Estate:
    """One 2019 cluster; no overhead and a 1 GiB parent reserve, so costs are the memory."""
    names = tuple(f"n{i}" for i in range(1, nodes + 1))
    cluster = Cluster(
        "c1",
        "2019",
        names,
        Quorum("node_and_disk_majority", Witness(disk="W")) if nodes % 2 == 0 else Quorum(),
        memory=MemoryPolicy(parent_reserve_mib=1024, vm_overhead_mib=0),
    )
    status = NodeStatus(switches={"vs": SWITCH}, luns=frozenset({"csv1"}))
    hardware = Hardware("m", "cpu", usable_mib + 1024, "fw", "drv", "p1")
    return Estate(
        clusters={"c1": cluster},
        nodes={n: Node(n, "c1", hardware, status=status) for n in names},
        switches={"vs": VirtualSwitch("vs", "c1", SWITCH)},
        volumes={"csv1": ClusterSharedVolume("csv1", "c1", 4096, 4096)},
        vms={vm.name: vm for vm in vms},
    )


def vm(name: str, node: str, mib: int, group: str | None = None, **kw: object) -> VirtualMachine:
    return VirtualMachine(
        name,
        "c1",
        mib,
        2,
        node=node,
        anti_affinity_group=group,
        anti_affinity_mode="hard" if group else "soft",
        nics=(VmNic("nic", "vs", 10),),
        disks=(Disk("os", "scsi", 0, 0, "dynamic", "vhdx", 40, "csv1"),),
        **kw,  # type: ignore[arg-type]
    )


def move(name: str, source: str, destination: str) -> Action:
    return Action(
        f"migrate_vm:{name}:{destination}",
        "migrate_vm",
        f"VirtualMachine/{name}",
        "c1",
        {"vm": name, "source": source, "destination": destination, "method": "live"},
    )


def start(name: str) -> Action:
    return Action(f"start_vm:{name}", "start_vm", f"VirtualMachine/{name}", "c1", {"vm": name})


def found(world: Estate, actions: list[Action]) -> list[tuple[str, str | None, str]]:
    _, violations = replay(world, world, actions)
    return [(v.rule, v.action, v.message) for v in violations]


class TestAntiAffinity:
    def test_breach_on_the_touched_node_is_reported_by_the_step_that_makes_it(self) -> None:
        world = estate(
            4,
            16384,
            [
                vm("a1", "n1", 1024, "g"),
                vm("a2", "n2", 1024, "g"),
                vm("b1", "n3", 1024, "h"),  # b1 and b2 share n3 before the plan: not the
                vm("b2", "n3", 1024, "h"),  # plan's doing, never reported
            ],
        )
        steps = [
            move("a2", "n2", "n1"),  # a1 and a2 on n1
            move("a2", "n1", "n4"),  # apart again
            move("a1", "n1", "n4"),  # together on n4: a new breach, by this step
            move("b2", "n3", "n2"),  # b's breach ends; nothing to report
        ]
        assert found(world, steps) == [
            ("anti_affinity", "migrate_vm:a2:n1", "a1 and a2 (group g) share n1"),
            ("anti_affinity", "migrate_vm:a1:n4", "a1 and a2 (group g) share n4"),
        ]

    def test_a_breach_that_lasts_is_reported_once_and_a_third_member_adds_one(self) -> None:
        world = estate(
            4,
            16384,
            [vm("a1", "n1", 1024, "g"), vm("a2", "n2", 1024, "g"), vm("a3", "n3", 1024, "g")],
        )
        steps = [
            move("a2", "n2", "n1"),
            move("a3", "n3", "n4"),  # elsewhere: the breach on n1 lasts, not reported again
            move("a3", "n4", "n1"),  # the third member: paired with the first by name
        ]
        assert found(world, steps) == [
            ("anti_affinity", "migrate_vm:a2:n1", "a1 and a2 (group g) share n1"),
            ("anti_affinity", "migrate_vm:a3:n1", "a1 and a3 (group g) share n1"),
        ]

    def test_soft_groups_and_stopped_members_are_not_breaches(self) -> None:
        world = estate(
            4,
            16384,
            [
                vm("a1", "n1", 1024, "g"),
                vm("a2", "n2", 1024, "g", power_state="off"),
                replace(vm("s1", "n1", 1024, "s"), anti_affinity_mode="soft"),
                replace(vm("s2", "n2", 1024, "s"), anti_affinity_mode="soft"),
            ],
        )
        steps = [
            Action("m:a2", "migrate_vm", "VirtualMachine/a2", "c1",
                   {"vm": "a2", "source": "n2", "destination": "n1", "method": "offline"}),
            move("s2", "n2", "n1"),
        ]  # fmt: skip
        assert found(world, steps) == []


class TestCapacityMidPlan:
    def test_a_move_onto_a_full_node_is_refused_at_that_step_and_later_ones_still_run(
        self,
    ) -> None:
        world = estate(3, 10240, [vm("v1", "n1", 6144), vm("v2", "n2", 6144), vm("v3", "n3", 2048)])
        steps = [
            move("v3", "n3", "n1"),  # n1: 8192 of 10240
            move("v2", "n2", "n1"),  # needs 6144, n1 has 2048 free: refused
            move("v2", "n2", "n3"),  # n3 is empty: fine
        ]
        out = found(world, steps)
        assert (
            "precondition",
            "migrate_vm:v2:n1",
            "n1 has 2048 MiB free, v2 needs 6144 MiB",
        ) in out
        assert all(a != "migrate_vm:v2:n3" for _, a, _ in out)

    def test_the_step_that_spends_the_failover_reserve_is_named_with_the_vm_that_cannot_restart(
        self,
    ) -> None:
        # Two nodes of 10240 MiB: n2's VMs must fit on n1 if n2 fails, and n1's on n2.
        world = estate(
            2,
            10240,
            [vm("v1", "n1", 4096), vm("v2", "n2", 4096), vm("v3", "n2", 4096, power_state="off")],
        )
        steps = [move("v1", "n1", "n2"), move("v1", "n2", "n1"), start("v3")]
        # After the first move n2 runs 8192 and n1 is empty: fine. Starting v3 puts 8192 on
        # n2 (2048 free) beside n1's 4096: n1 is checked first, and its v1 fits nowhere.
        assert found(world, steps) == [
            (
                "failover_reserve",
                "start_vm:v3",
                "if n1 failed, v1 (4096 MiB) could not restart: the cluster lacks one node's "
                "worth of free memory (N+1)",
            )
        ]

    def test_slack_too_small_to_prove_but_first_fit_places_everyone(self) -> None:
        # n1 fails: 4096 + 4096 into n2 (4096 free) and n3 (4096 free): fits exactly, though
        # free - load (0) is below (others x largest) = 8192, so the exact test must run.
        world = estate(
            3,
            8192,
            [
                vm("v1", "n1", 4096),
                vm("v2", "n1", 4096),
                vm("v3", "n2", 2048),
                vm("v4", "n3", 4096),
                vm("v5", "n2", 2048),
            ],
        )
        assert reserve_shortfall(world, "c1") is None
        tracker = ReserveTracker("c1")
        assert tracker.shortfall(world) is None
        moved = apply_rules(world, move("v5", "n2", "n3")).estate  # n3 full: n1 cannot fail
        tracker.step(touched_between(world, moved))
        expected = (
            "if n1 failed, v2 (4096 MiB) could not restart: the cluster lacks one node's "
            "worth of free memory (N+1)"
        )
        assert reserve_shortfall(moved, "c1") == expected
        assert tracker.shortfall(moved) == expected


class TestTouched:
    def test_a_move_touches_its_two_nodes_the_vm_and_its_volume_only(self) -> None:
        world = estate(4, 16384, [vm("v1", "n1", 1024), vm("v2", "n1", 1024), vm("v3", "n2", 1)])
        after = apply_rules(world, move("v1", "n1", "n2")).estate
        touched = touched_between(world, after)
        assert touched.nodes == {"n1", "n2"}
        assert touched.volumes == {"csv1"}
        assert touched.vms == {"v1"} and touched.changed_vms == {"v1"}
        assert after.changes_since(world) == {("VirtualMachine", "v1")}

    def test_a_host_change_touches_every_vm_on_it(self) -> None:
        world = estate(4, 16384, [vm("v1", "n1", 1024), vm("v2", "n1", 1024), vm("v3", "n2", 1)])
        node = world.nodes["n1"]
        after = world.with_record(replace(node, status=replace(node.status, luns=frozenset())))
        touched = touched_between(world, after)
        assert touched.nodes == {"n1"} and touched.vms == {"v1", "v2"}
        assert touched.changed_vms == frozenset()

    def test_states_not_derived_step_by_step_are_compared_whole(self) -> None:
        world = estate(4, 16384, [vm("v1", "n1", 1024), vm("v2", "n2", 1024)])
        rebuilt = Estate.from_tables(
            {
                "Cluster": world.clusters,
                "Node": world.nodes,
                "VirtualSwitch": world.switches,
                "ClusterSharedVolume": world.volumes,
                "VirtualMachine": {**world.vms, "v2": replace(world.vms["v2"], node="n3")},
            }
        )
        assert rebuilt.changes_since(world) is None
        touched = touched_between(world, rebuilt)
        assert touched.nodes == {"n2", "n3"} and touched.changed_vms == {"v2"}


@pytest.mark.parametrize("seed", range(6))
def test_trackers_agree_with_the_whole_estate_scans_step_by_step(seed: int) -> None:
    rng = random.Random(seed)
    vms = [
        vm(
            f"v{i:02d}",
            f"n{rng.randint(1, 5)}",
            rng.choice((1024, 2048, 4096)),
            rng.choice((None, "g", "h")),
            highly_available=rng.random() < 0.8,
        )
        for i in range(30)
    ]
    state = estate(5, 16384, vms)
    reserve, affinity = ReserveTracker("c1"), AffinityTracker(state, "c1")
    assert reserve.shortfall(state) == reserve_shortfall(state, "c1")
    for _ in range(80):
        roll = rng.random()
        if roll < 0.1:
            # Stopped or started behind the plan's back: its host's memory changes.
            vm_ = state.vms[rng.choice(sorted(state.vms))]
            power = "off" if vm_.power_state == "running" else "running"
            before, state = state, state.with_record(replace(vm_, power_state=power))
        elif roll < 0.25:
            # A host change (paused or resumed by hand): its VMs stay, the reserve changes.
            node = state.nodes[rng.choice(sorted(state.nodes))]
            before, state = (
                state,
                state.with_record(replace(node, maintenance=not node.maintenance)),
            )
        else:
            name = rng.choice(sorted(state.vms))
            here = state.vms[name]
            there = rng.choice([n for n in sorted(state.nodes) if n != here.node])
            result = apply_rules(state, move(name, here.node or "", there))
            if result.failures or result.done:
                continue
            before, state = state, result.estate
        touched = touched_between(before, state)
        reserve.step(touched)
        assert reserve.shortfall(state) == reserve_shortfall(state, "c1")
        wanted = [
            b
            for b in hard_affinity_breaches(state, "c1")
            if b not in set(hard_affinity_breaches(before, "c1"))
        ]
        assert affinity.new_breaches(before, state, touched) == wanted
        # Memory used and free, carried from state to state, as summed afresh.
        fresh = Estate.from_tables({k: state.table(k) for k in KINDS})
        for n in sorted(state.nodes):
            assert used_memory_mib(state, n) == used_memory_mib(fresh, n)
            assert free_memory_mib(state, n) == free_memory_mib(fresh, n)
