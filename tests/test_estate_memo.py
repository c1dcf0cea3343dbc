"""The per-state memos (VMs on a node, memory used, volume use) carried from state to state.

Expected values are worked out by hand from the records below, not with the code's sums.
"""

from __future__ import annotations

from dataclasses import replace

from reconciler.model.capacity import used_memory_mib, vm_cost_mib
from reconciler.model.records import (
    Cluster,
    ClusterSharedVolume,
    Disk,
    Estate,
    Hardware,
    Node,
    Quorum,
    VirtualMachine,
    VolumeStatus,
)
from reconciler.model.rules import volume_used_gib


def _vm(name: str, node: str | None, memory: int, size_gib: int = 10) -> VirtualMachine:
    disk = Disk("os", "scsi", 0, 0, "fixed", "vhdx", size_gib, "csv1")
    return VirtualMachine(name, "c1", memory, 2, node=node, disks=(disk,))


def _estate() -> Estate:
    hw = Hardware("blade", "cpu", 65536, "fw1", "drv1", "2026-10")
    return Estate(
        clusters={"c1": Cluster("c1", "2019", ("n1", "n2"), Quorum("node_majority"))},
        nodes={"n1": Node("n1", "c1", hw), "n2": Node("n2", "c1", hw)},
        volumes={
            "csv1": ClusterSharedVolume(
                "csv1", "c1", 1000, 1000, status=VolumeStatus(other_used_gib=5.0)
            )
        },
        vms={"b": _vm("b", "n1", 2048), "a": _vm("a", "n1", 4096), "c": _vm("c", "n2", 1024)},
    )


def test_vms_on_follows_moves_in_name_order() -> None:
    state = _estate()
    assert [v.name for v in state.vms_on("n1")] == ["a", "b"]  # the index is built here
    moved = state.with_record(replace(state.vms["a"], node="n2"))
    assert [v.name for v in moved.vms_on("n1")] == ["b"]
    assert [v.name for v in moved.vms_on("n2")] == ["a", "c"]
    gone = moved.without("VirtualMachine", "c")
    assert [v.name for v in gone.vms_on("n2")] == ["a"]
    assert [v.name for v in state.vms_on("n2")] == ["c"]  # the earlier state is untouched


def test_used_memory_follows_moves_and_resizes() -> None:
    state = _estate()
    cluster = state.clusters["c1"]
    cost = {n: vm_cost_mib(state.vms[n], cluster) for n in "abc"}
    assert used_memory_mib(state, "n1") == cost["a"] + cost["b"]  # fills the memo
    moved = state.with_record(replace(state.vms["a"], node="n2"))
    assert used_memory_mib(moved, "n1") == cost["b"]
    assert used_memory_mib(moved, "n2") == cost["a"] + cost["c"]
    stopped = moved.with_record(replace(moved.vms["c"], power_state="off"))
    assert used_memory_mib(stopped, "n2") == cost["a"]
    # A node record that changes drops the memo: its costs may depend on the node.
    paused = stopped.with_record(replace(stopped.nodes["n2"], maintenance=True))
    assert used_memory_mib(paused, "n2") == cost["a"]


def test_volume_use_follows_disk_changes_not_moves() -> None:
    state = _estate()
    assert volume_used_gib(state, "csv1") == 5 + 10 + 10 + 10  # other use + three fixed disks
    moved = state.with_record(replace(state.vms["a"], node="n2"))
    assert volume_used_gib(moved, "csv1") == 35
    grown = moved.with_record(_vm("b", "n1", 2048, size_gib=40))
    assert volume_used_gib(grown, "csv1") == 5 + 10 + 40 + 10
    assert volume_used_gib(grown.without("VirtualMachine", "c"), "csv1") == 55
