"""The planner's state for one cluster and how it emits: each action is tried on the projected
state by the world rules, so every later choice sees the effect of the ones before it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from reconciler.engine.plan import PlanViolation
from reconciler.model.actions import DISRUPTION, Action, ActionType, Disruption
from reconciler.model.physics import action_seconds, estimate_move
from reconciler.model.records import Cluster, Estate
from reconciler.model.rules import apply_rules


@dataclass(slots=True)
class PlannerBase:
    desired: Estate
    state: Estate  # projected: the observed state moved by every action emitted so far
    cluster: str
    actions: list[Action] = field(default_factory=list)
    violations: list[PlanViolation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unmanaged: list[str] = field(default_factory=list)  # in the world, in no manifest
    ids: set[str] = field(default_factory=set)
    node_ready: dict[str, list[str]] = field(default_factory=dict)  # before a node is a target
    volume_ready: dict[str, list[str]] = field(default_factory=dict)
    migrations: list[str] = field(default_factory=list)
    leaving: dict[str, list[str]] = field(default_factory=dict)  # source node -> its moves

    def emit(
        self,
        type_: ActionType,
        target: str,
        subject: str,
        params: Mapping[str, Any],
        depends_on: Sequence[str] = (),
        reason: str = "",
        changes: Mapping[str, tuple[Any, Any]] | None = None,
        disruption: Disruption | None = None,
    ) -> str | None:
        """Add an action if the projected state is not already as it wants; returns its id."""
        action_id = f"{type_}:{subject}"
        n = 2
        while action_id in self.ids:
            action_id = f"{type_}:{subject}#{n}"
            n += 1
        action = Action(
            id=action_id,
            type=type_,
            target=target,
            cluster=self.cluster,
            params=dict(params),
            depends_on=tuple(sorted(set(d for d in depends_on if d))),
            disruption=disruption or DISRUPTION[type_],
            reason=reason,
            changes=dict(changes or {}),
        )
        result = apply_rules(self.state, action)
        if result.done:
            return None
        vm_name = params.get("vm")
        vm = self.state.vms.get(vm_name) if isinstance(vm_name, str) else None
        cluster = self.state.clusters.get(self.cluster)
        seconds = action_seconds(action, cluster, vm)
        moved = 0
        if type_ == "migrate_vm" and cluster is not None and vm is not None:
            moved = estimate_move(cluster, vm, params["method"]).bytes_sent
        elif type_ == "test_live_migration" and cluster is not None and vm is not None:
            moved = 2 * estimate_move(cluster, vm, "live").bytes_sent
        action = replace(action, estimate_seconds=seconds, estimate_bytes=moved)
        self.actions.append(action)
        self.ids.add(action_id)
        if result.ok:
            self.state = result.estate
        return action_id

    def block(
        self, rule: str, target: str, message: str, fix: str, severity: str = "block"
    ) -> None:
        self.violations.append(
            PlanViolation(rule, target, message, fix, "warn" if severity == "warn" else "block")
        )

    def _cycle_active(self, desired: Cluster) -> bool:
        """A rolling update is declared and not yet recorded as complete."""
        ru = desired.rolling_update
        cluster = self.state.clusters.get(self.cluster)
        return (
            ru is not None and cluster is not None and cluster.status.rolling_update_done != ru.id
        )

    def _cycle_nodes(self, desired: Cluster) -> list[str]:
        ru = desired.rolling_update
        members = self.state.clusters[self.cluster].nodes
        if ru is None:
            return []
        listed = list(ru.nodes) if ru.nodes is not None else list(members)
        return [n for n in listed if n in members]

    def _emitted(self, action_id: str) -> str:
        return action_id if action_id in self.ids else ""
