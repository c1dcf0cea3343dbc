"""Actions: the verbs a plan is made of, as plain typed values that serialise to JSON.

An action names its type, its target, and parameters; what it does to the world is in
``rules``. ``reason`` is for display only and never drives an apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

ActionType = Literal[
    "begin_monitoring_maintenance",
    "match_vswitch",
    "set_vlan_trunk",
    "present_storage",
    "add_node",
    "update_quorum",
    "test_live_migration",
    "validate_cluster",
    "end_monitoring_maintenance",
    "drain_node",
    "patch_node",
    "verify_node",
    "resume_node",
    "complete_rolling_update",
    "migrate_vm",
    "extend_lun",
    "extend_volume",
    "extend_vhd",
    "add_disk",
    "detach_disk",
    "convert_disk",
    "set_vm",
    "stop_vm",
    "start_vm",
    "create_vm",
    "remove_vm",
    "evict_node",
    "add_vm_nic",
    "remove_vm_nic",
    "set_vm_nic",
    "move_disk",
    "set_preferred_owners",
    "set_automatic_actions",
    "set_vm_memory",
    "create_csv",
    "rename_csv",
    "remove_csv",
    "create_cluster",
    "set_cluster_addresses",
    "set_scsi_controllers",
    "set_cluster_network",
    "move_vm_storage",
]
ACTION_TYPES: tuple[str, ...] = ActionType.__args__  # type: ignore[attr-defined]

# destructive: something is removed for good (a VM, its files); shown apart, planned last.
Disruption = Literal["none", "online", "live-migration", "downtime", "reboot", "destructive"]
DISRUPTION_ORDER: tuple[Disruption, ...] = (
    "none",
    "online",
    "live-migration",
    "downtime",
    "reboot",
    "destructive",
)

# What each action costs the workloads, by type (migrate_vm depends on its method).
DISRUPTION: dict[str, Disruption] = {
    "begin_monitoring_maintenance": "none",
    "end_monitoring_maintenance": "none",
    "match_vswitch": "online",
    "set_vlan_trunk": "online",
    "present_storage": "none",
    "add_node": "online",
    "update_quorum": "online",
    "test_live_migration": "live-migration",
    "validate_cluster": "none",
    "drain_node": "online",
    "patch_node": "reboot",
    "verify_node": "none",
    "resume_node": "online",
    "complete_rolling_update": "none",
    "migrate_vm": "live-migration",
    "extend_lun": "none",
    "extend_volume": "online",
    "extend_vhd": "online",
    "add_disk": "online",
    "detach_disk": "online",
    "convert_disk": "downtime",
    "set_vm": "downtime",
    "stop_vm": "downtime",
    "start_vm": "online",
    "create_vm": "online",
    "remove_vm": "destructive",
    "evict_node": "online",
    "add_vm_nic": "online",
    "remove_vm_nic": "online",
    "set_vm_nic": "online",
    "move_disk": "online",
    "set_preferred_owners": "none",
    "set_automatic_actions": "none",
    # Online when only the bounds move the way Hyper-V allows; the planner stops the VM first
    # (its own stop_vm step, downtime) when the change needs it off.
    "set_vm_memory": "online",
    "create_csv": "none",
    "rename_csv": "online",  # only with the VMs on it off (the rule refuses otherwise)
    "remove_csv": "destructive",  # the data stays on the LUN, but the volume is gone
    "create_cluster": "none",  # nothing runs on standalone hosts the plan clusters
    "set_cluster_addresses": "online",  # clients of the cluster name reconnect
    "set_scsi_controllers": "downtime",  # only with the VM off, like set_vm
    "set_cluster_network": "online",
    # Live storage migration (2012 and later): the VM runs on while its file is copied; on
    # 2008 R2 the planner stops it first (its own stop_vm step, downtime).
    "move_vm_storage": "online",
}


@dataclass(frozen=True, slots=True)
class Action:
    id: str
    type: ActionType
    target: str  # "Kind/name" of the object the action changes
    cluster: str
    params: Mapping[str, Any] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    disruption: Disruption = "none"
    reason: str = ""
    changes: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)
    estimate_seconds: float = 0.0
    estimate_bytes: int = 0  # memory a move sends over the live-migration network

    def param(self, name: str) -> Any:
        return self.params[name]
