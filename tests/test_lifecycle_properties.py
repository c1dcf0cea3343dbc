"""Properties of planning the lifecycle actions over generated estates (Hypothesis).

From a generated desired estate and matching world (no drift behind the back): VMs taken out
of the world (so the plan creates them), a member taken out of the manifests (so the plan
evicts it), VMs taken out of the manifests (left alone, or removed under prune). Whatever
is planned, it is either refused with a reason or, once run by the world's rules, leaves
every invariant holding and nothing more to do.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st
from test_plan_properties import VALIDATOR, Case, estates, examples

from reconciler.engine.plan import Plan
from reconciler.engine.planner import make_plan
from reconciler.engine.safety import replay
from reconciler.model.platforms import platform
from reconciler.model.records import (
    ClusterSharedVolume,
    DynamicMemory,
    Estate,
    Prune,
    VirtualMachine,
    VmNic,
    frozen_map,
)
from reconciler.model.rules import invariants

# Violations that explain why an eviction (or creation) is not carried out.
REFUSALS = {
    "evict_node",
    "no_placement",
    "precondition",
    "failover_reserve",
    "never_live_migrate",
    "downtime_not_allowed",
}


def settle(desired: Estate, observed: Estate, plan: Plan) -> Estate:
    return replay(observed, desired, list(plan.actions))[0]


def assert_converges(desired: Estate, observed: Estate, plan: Plan) -> Estate:
    after = settle(desired, observed, plan)
    assert invariants(after) == []
    again = make_plan(desired, after)
    assert [a.id for a in again.actions] == []
    return after


def without_vms(world: Estate, names: list[str]) -> Estate:
    for name in names:
        world = world.without("VirtualMachine", name)
    return world


def removable(case: Case) -> list[str]:
    """VMs that may leave: not a cluster's test VM."""
    tests = {c.test_vm for c in case.desired.clusters.values()}
    return sorted(n for n in case.desired.vms if n not in tests)


class TestCreatingVms:
    """VMs in the manifests but not in the world are created where they fit, then converge."""

    @examples
    @given(estates(behind_the_back=False), st.data())
    def test_missing_vms_are_created_or_refused_with_a_reason(
        self, case: Case, data: st.DataObject
    ) -> None:
        names = removable(case)
        if not names:
            return
        gone = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))
        observed = without_vms(case.observed, gone)
        plan = make_plan(case.desired, observed)
        assert list(VALIDATOR.iter_errors(plan.to_json())) == []
        created = {a.params["vm"] for a in plan.actions if a.type == "create_vm"}
        refused = {v.target for v in plan.violations if v.rule in REFUSALS}
        for name in gone:
            assert name in created or f"VirtualMachine/{name}" in refused, name
        if plan.blocked:
            return
        after = assert_converges(case.desired, observed, plan)
        for name in gone:
            want, have = case.desired.vms[name], after.vms[name]
            assert (have.memory_mib, have.vcpus, have.nics) == (
                want.memory_mib,
                want.vcpus,
                want.nics,
            )
            assert have.power_state == want.power_state
            assert have.node in after.clusters[have.cluster].nodes
            if want.node is not None:
                assert have.node == want.node


class TestEvictingNodes:
    """A member that leaves the manifests is evicted, or the plan says why it cannot be."""

    @examples
    @given(estates(behind_the_back=False), st.data())
    def test_a_member_left_out_is_evicted_or_refused(self, case: Case, data: st.DataObject) -> None:
        clusters = sorted(c.name for c in case.desired.clusters.values() if len(c.nodes) >= 2)
        if not clusters:
            return
        cluster = case.desired.clusters[data.draw(st.sampled_from(clusters))]
        leaving = data.draw(st.sampled_from(sorted(cluster.nodes)))
        desired = case.desired.with_record(
            replace(cluster, nodes=tuple(n for n in cluster.nodes if n != leaving))
        ).without("Node", leaving)
        for vm in list(desired.vms.values()):
            if vm.node == leaving:  # a pin to a node that leaves would not validate
                desired = desired.with_record(replace(vm, node=None))
        plan = make_plan(desired, case.observed)
        assert list(VALIDATOR.iter_errors(plan.to_json())) == []
        evictions = [a for a in plan.actions if a.type == "evict_node"]
        if not evictions:
            assert any(v.rule in REFUSALS for v in plan.violations), plan.violations
            return
        (evict,) = evictions
        assert evict.params["node"] == leaving
        order = [a.id for a in plan.actions]
        # Everything leaves the node before it is evicted; quorum is set after.
        for a in plan.actions:
            if a.type == "migrate_vm" and a.params["source"] == leaving:
                assert order.index(a.id) < order.index(evict.id)
            if a.type == "update_quorum":
                assert order.index(a.id) > order.index(evict.id)
        if plan.blocked:
            return
        after = assert_converges(desired, case.observed, plan)
        assert leaving not in after.clusters[cluster.name].nodes
        assert not after.vms_on(leaving)

    @examples
    @given(estates(behind_the_back=False), st.data())
    def test_an_interrupted_eviction_is_finished_by_planning_again(
        self, case: Case, data: st.DataObject
    ) -> None:
        clusters = sorted(c.name for c in case.desired.clusters.values() if len(c.nodes) >= 3)
        if not clusters:
            return
        cluster = case.desired.clusters[data.draw(st.sampled_from(clusters))]
        leaving = sorted(cluster.nodes)[-1]
        desired = case.desired.with_record(
            replace(cluster, nodes=tuple(n for n in cluster.nodes if n != leaving))
        ).without("Node", leaving)
        for vm in list(desired.vms.values()):
            if vm.node == leaving:
                desired = desired.with_record(replace(vm, node=None))
        first = make_plan(desired, case.observed)
        if first.blocked:
            return
        done = data.draw(st.integers(0, len(first.actions)), label="actions applied")
        halfway = replay(case.observed, desired, list(first.actions[:done]))[0]
        rest = make_plan(desired, halfway)
        assert not rest.blocked, rest.violations
        assert_converges(desired, halfway, rest)


class TestRemovalNeedsConsent:
    """A VM in no manifest is left alone; under prune it is removed, last; files as told."""

    @examples
    @given(estates(behind_the_back=False), st.data(), st.booleans(), st.booleans())
    def test_vms_out_of_the_manifests(
        self, case: Case, data: st.DataObject, prune: bool, delete: bool
    ) -> None:
        names = removable(case)
        if not names:
            return
        gone = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))
        desired = case.desired
        for cluster in list(desired.clusters.values()):
            desired = desired.with_record(replace(cluster, prune=Prune(prune, delete)))
        # Until removals (which come last), a VM out of the manifests stays as it is: the same
        # as declaring it as observed. So the plan may block only where that one blocks too.
        as_is = desired
        for name in gone:
            as_is = as_is.with_record(case.observed.vms[name])
        blocked_as_is = make_plan(as_is, case.observed).blocked
        desired = without_vms(desired, gone)
        plan = make_plan(desired, case.observed)
        if not blocked_as_is:
            assert not plan.blocked, plan.violations
        assert list(VALIDATOR.iter_errors(plan.to_json())) == []
        removals = [a for a in plan.actions if a.type == "remove_vm"]
        if not prune:
            assert removals == []
            assert {f"VirtualMachine/{n}" for n in gone} <= set(plan.unmanaged)
            return
        assert sorted(a.params["vm"] for a in removals) == sorted(gone)
        assert all(a.params["delete_disks"] is delete for a in removals)
        assert all(a.disruption == "destructive" for a in removals)
        # Removals come last.
        tail = plan.actions[len(plan.actions) - len(removals) :]
        assert [a.type for a in tail] == ["remove_vm"] * len(removals)
        if plan.blocked:
            return  # blocked only where keeping the VMs as they are blocks too (above)
        after = assert_converges(desired, case.observed, plan)
        for name in gone:
            assert name not in after.vms
            files = [
                path
                for volume in after.volumes.values()
                for path in volume.status.files
                if path.startswith(f"{name}/")
            ]
            disks = case.observed.vms[name].disks
            assert len(files) == (0 if delete else len(disks))


class TestAdapters:
    """Adapter changes: a VLAN change is online; an added adapter is online only where
    Hyper-V hot-adds, else the VM is stopped for it (or the plan is refused without
    allow_downtime); either way the plan converges."""

    @examples
    @given(estates(behind_the_back=False), st.data())
    def test_adapter_changes_converge(self, case: Case, data: st.DataObject) -> None:
        names = sorted(n for n, vm in case.desired.vms.items() if vm.nics)
        if not names:
            return
        name = data.draw(st.sampled_from(names))
        want = case.desired.vms[name]
        switch = case.desired.switches[want.nics[0].switch]
        vlans = sorted(switch.config.allowed_vlans) or [10]
        vlan = data.draw(st.sampled_from(vlans))
        add = data.draw(st.booleans(), label="add an adapter")
        nics = (replace(want.nics[0], vlan=vlan), *want.nics[1:])
        if add:
            nics = (*nics, VmNic("extra", switch.name, vlan))
        desired = case.desired.with_record(replace(want, nics=nics))
        plan = make_plan(desired, case.observed)
        assert list(VALIDATOR.iter_errors(plan.to_json())) == []
        mine = [a for a in plan.actions if a.params.get("vm") == name]
        hot = (
            want.generation == 2
            and platform(case.desired.clusters[want.cluster].platform).nic_hot_add
        )
        if add and not hot and not want.allow_downtime and want.power_state == "running":
            assert ("downtime_not_allowed", f"VirtualMachine/{name}") in {
                (v.rule, v.target) for v in plan.violations
            }
            return
        if not add or hot:
            # The generated drift is fixed online (moves included); the adapters add no stop.
            assert "stop_vm" not in {a.type for a in mine}, [a.id for a in mine]
            adapters = [a for a in mine if a.type in ("set_vm_nic", "add_vm_nic")]
            assert {a.disruption for a in adapters} <= {"online"}
        if plan.blocked:
            return  # blocked only where keeping the VMs as they are blocks too (above)
        after = assert_converges(desired, case.observed, plan)
        assert sorted(n.name for n in after.vms[name].nics) == sorted(n.name for n in nics)


class TestVmSettings:
    """Preferred owners never move a VM; automatic actions converge like any other setting."""

    @examples
    @given(estates(behind_the_back=False), st.data())
    def test_owners_and_automatic_actions(self, case: Case, data: st.DataObject) -> None:
        names = sorted(case.desired.vms)
        name = data.draw(st.sampled_from(names))
        want = case.desired.vms[name]
        members = sorted(case.desired.clusters[want.cluster].nodes)
        owners = frozenset(data.draw(st.lists(st.sampled_from(members), max_size=3)))
        start = data.draw(st.sampled_from(("nothing", "start_if_running", "start")))
        changed = replace(want, preferred_owners=owners, automatic_start_action=start)
        desired = case.desired.with_record(changed)
        baseline = make_plan(case.desired, case.observed)
        plan = make_plan(desired, case.observed)
        moves = [a.id for a in plan.actions if a.type == "migrate_vm"]
        assert moves == [a.id for a in baseline.actions if a.type == "migrate_vm"]
        if plan.blocked:
            return  # blocked only where keeping the VMs as they are blocks too (above)
        after = assert_converges(desired, case.observed, plan)
        assert after.vms[name].preferred_owners == owners
        assert after.vms[name].automatic_start_action == start


class TestDynamicMemory:
    """A range around the startup memory, turned on (the VM may be stopped): it converges."""

    @examples
    @given(estates(behind_the_back=False), st.data())
    def test_dynamic_memory_converges(self, case: Case, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(case.desired.vms)))
        want = case.desired.vms[name]
        platform_name = case.desired.clusters[want.cluster].platform
        below = data.draw(st.sampled_from((0, 256, want.memory_mib // 2)))
        minimum = want.memory_mib if platform_name == "2008r2" else want.memory_mib - below
        maximum = want.memory_mib + data.draw(st.sampled_from((0, 1024, 4096)))
        dynamic = DynamicMemory(
            True, max(32, minimum), maximum, data.draw(st.sampled_from((5, 20)))
        )
        changed = replace(want, dynamic_memory=dynamic, allow_downtime=True)
        desired = case.desired.with_record(changed)
        plan = make_plan(desired, case.observed)
        assert list(VALIDATOR.iter_errors(plan.to_json())) == []
        (step,) = [a for a in plan.actions if a.type == "set_vm_memory"]
        # Turning dynamic memory on always needs the VM off: it is stopped first if running.
        if case.observed.vms[name].power_state == "running":
            assert f"stop_vm:{name}" in step.depends_on
        if plan.blocked:
            return
        after = assert_converges(desired, case.observed, plan)
        assert after.vms[name].memory_model() == dynamic
        assert after.vms[name].memory_mib == want.memory_mib


class TestCreatingVolumes:
    """A declared volume on a LUN presented to every member is created and converges."""

    @examples
    @given(estates(behind_the_back=False), st.data())
    def test_a_volume_on_a_presented_lun_is_created(self, case: Case, data: st.DataObject) -> None:
        cluster = case.desired.clusters[data.draw(st.sampled_from(sorted(case.desired.clusters)))]
        lun_gib = data.draw(st.sampled_from((100, 300)))
        observed = case.observed
        for name in cluster.nodes:
            node = observed.nodes[name]
            free = frozen_map({**node.status.free_luns, "LUN-P": lun_gib})
            status = replace(node.status, free_luns=free)
            observed = observed.with_record(replace(node, status=status))
        volume = ClusterSharedVolume("NEWCSV", cluster.name, lun_gib, lun_gib - 10, lun="LUN-P")
        desired = case.desired.with_record(volume)
        plan = make_plan(desired, observed)
        assert list(VALIDATOR.iter_errors(plan.to_json())) == []
        (create,) = [a for a in plan.actions if a.type == "create_csv"]
        assert create.params == {
            "volume": "NEWCSV",
            "lun": "LUN-P",
            "size_gib": lun_gib - 10,
            "file_system": "NTFS",
        }
        if plan.blocked:
            return
        after = assert_converges(desired, observed, plan)
        assert after.volumes["NEWCSV"].lun_size_gib == lun_gib
        for name in cluster.nodes:
            assert "NEWCSV" in after.nodes[name].status.luns


def _slots(vm: VirtualMachine) -> list[tuple[str, str, int, int]]:
    return [(d.name, d.controller, d.controller_number, d.slot) for d in vm.disks]


class TestDiskSlotSwaps:
    """Two disks of a VM trading slots is planned (through a free slot), never refused."""

    @examples
    @given(estates(behind_the_back=False), st.data())
    def test_a_swap_converges(self, case: Case, data: st.DataObject) -> None:
        names = sorted(
            n
            for n, vm in case.desired.vms.items()
            if len(vm.disks) >= 2
            and vm.disks[0].controller == vm.disks[1].controller
            and n in case.observed.vms
            and _slots(case.observed.vms[n])[:2] == _slots(vm)[:2]  # both there, as declared
        )
        if not names:
            return
        want = case.desired.vms[data.draw(st.sampled_from(names))]
        first, second, *rest = want.disks
        swapped = (
            replace(first, controller_number=second.controller_number, slot=second.slot),
            replace(second, controller_number=first.controller_number, slot=first.slot),
            *rest,
        )
        desired = case.desired.with_record(replace(want, disks=swapped, allow_downtime=True))
        plan = make_plan(desired, case.observed)
        assert list(VALIDATOR.iter_errors(plan.to_json())) == []
        moves = [a for a in plan.actions if a.type == "move_disk"]
        assert len(moves) == 3, "one parked, the other moved, the parked one to its slot"
        if plan.blocked:
            return
        after = assert_converges(desired, case.observed, plan)
        slots = {d.name: (d.controller_number, d.slot) for d in after.vms[want.name].disks}
        assert slots[first.name] == (second.controller_number, second.slot)
        assert slots[second.name] == (first.controller_number, first.slot)


class TestFormingClusters:
    """A cluster the world has not formed (its hosts standalone, its CSVs' LUNs presented, no
    VM) is built from zero: create_cluster first, then it converges like any cluster."""

    @examples
    @given(estates(behind_the_back=False), st.data())
    def test_a_cluster_not_formed_yet_is_built_from_zero(
        self, case: Case, data: st.DataObject
    ) -> None:
        name = data.draw(st.sampled_from(sorted(case.desired.clusters)))
        cluster = case.desired.clusters[name]
        subnet = next(n.subnet for n in cluster.networks if n.subnet)
        address = subnet.rsplit(".", 1)[0] + ".10"
        desired = case.desired.with_record(replace(cluster, addresses=(address,)))
        observed = case.observed.without("Cluster", name)
        free = {}
        for volume in case.desired.volumes_of(name):
            desired = desired.with_record(replace(volume, lun=f"LUN-{volume.name}"))
            observed = observed.without("ClusterSharedVolume", volume.name)
            free[f"LUN-{volume.name}"] = volume.lun_size_gib
        for vm in case.desired.vms.values():
            if vm.cluster == name:
                observed = observed.without("VirtualMachine", vm.name)
        for node in case.observed.nodes_of(name):
            status = replace(node.status, luns=frozenset(), free_luns=frozen_map(free))
            observed = observed.with_record(replace(node, status=status, maintenance=False))
        plan = make_plan(desired, observed)
        assert list(VALIDATOR.iter_errors(plan.to_json())) == []
        mine = [a for a in plan.actions if a.cluster == name]
        # The hosts' switches made identical first (validation needs them so), then formed.
        switches = [a.id for a in mine if a.type in ("match_vswitch", "set_vlan_trunk")]
        rest = [a for a in mine if a.id not in switches]
        assert rest[0].type == "create_cluster", [a.id for a in mine]
        assert set(switches) <= set(rest[0].depends_on)
        assert sorted(a.params["volume"] for a in mine if a.type == "create_csv") == sorted(
            v.name for v in case.desired.volumes_of(name)
        )
        if plan.blocked:
            assert any(v.rule in REFUSALS for v in plan.violations), plan.violations
            return
        after = assert_converges(desired, observed, plan)
        assert sorted(after.clusters[name].nodes) == sorted(cluster.nodes)
        assert {v.name for v in after.vms.values() if v.cluster == name} == {
            v.name for v in case.desired.vms.values() if v.cluster == name
        }
