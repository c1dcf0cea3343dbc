"""The planner: from desired and observed state, an ordered, dependency-linked list of actions.

Pure: same inputs, same plan. Actions are built phase by phase on a projected state moved
by the world rules, so each choice (a destination, a join) sees the effect of the ones
before it; the finished plan is then replayed independently by ``safety.replay``.

The package splits the phases by concern: ``membership`` (nodes, switches, quorum),
``lifecycle`` (VMs created and removed, nodes evicted, unmanaged objects), ``storage``
(volumes), ``vms`` (placement, settings, disks), ``moves`` (migrations, drains, balance),
``rolling`` (rolling updates), ``ordering`` (the dependency check); ``base`` holds the
projected state and ``emit``; ``phases`` runs them in order. Each concern is a class on
``PlannerBase`` (Membership on Moves, Lifecycle on Membership, Vms on Lifecycle, Rolling on
Moves, Storage) so a phase calls the ones it builds on; ``ClusterPlanner`` combines them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from reconciler.engine.diff import ObjectDiff, diff_estates
from reconciler.engine.health import moves_onto_unhealthy, observed_conditions
from reconciler.engine.informational import informational_notes
from reconciler.engine.plan import (
    Plan,
    PlanViolation,
    fingerprint,
    object_digests,
    prior_state_of,
)
from reconciler.engine.planner.ordering import ordered
from reconciler.engine.planner.phases import ClusterPlanner
from reconciler.engine.residual import unresolved
from reconciler.engine.safety import replay
from reconciler.engine.targets import target_closure
from reconciler.engine.unset import adopt_unmanaged, mark_defaults
from reconciler.model.actions import Action
from reconciler.model.physics import actions_makespan
from reconciler.model.records import Estate


def _refused(
    actions: Sequence[Action],
    observed: Estate,
    refuse: Callable[[str, str], str | None],
    desired: Estate | None = None,
) -> list[PlanViolation]:
    out: list[PlanViolation] = []
    for action in actions:
        # A cluster the plan forms is not observed yet: the manifest says its platform.
        cluster = observed.clusters.get(action.cluster) or (
            desired.clusters.get(action.cluster) if desired is not None else None
        )
        why = refuse(action.type, cluster.platform) if cluster is not None else None
        if why:
            fix = "do this step by hand (or with a provider that can), then plan again"
            out.append(PlanViolation("unsupported", action.target, why, fix, "block", action.id))
    return out


def make_plan(
    desired: Estate,
    observed: Estate,
    manifests: Sequence[str] = (),
    target: str | None = None,
    diffs: Sequence[ObjectDiff] | None = None,
    on_cluster: Callable[[str], None] | None = None,
    refuse: Callable[[str, str], str | None] | None = None,
) -> Plan:
    """Plan every cluster of the desired state against the observed state.

    ``diffs``: ``diff_estates(desired, observed)`` when the caller has it already.
    ``on_cluster``: called with each cluster's name once it is planned (progress).
    ``refuse(action type, platform)``: why the provider cannot do a step (its capabilities).
    """
    desired = adopt_unmanaged(desired, observed)  # a field left out keeps the world's value
    actions: list[Action] = []
    violations: list[PlanViolation] = []
    notes: list[str] = []
    # Clusters in the world that no manifest declares: reported, never touched.
    unmanaged = [f"Cluster/{c}" for c in sorted(observed.clusters) if c not in desired.clusters]
    for cluster_name in sorted(desired.clusters):
        planner = ClusterPlanner(
            desired=desired.of_cluster(cluster_name),
            state=observed.of_cluster(cluster_name),
            cluster=cluster_name,
        )
        planner.plan()
        actions.extend(planner.actions)
        violations.extend(planner.violations)
        notes.extend(planner.notes)
        unmanaged.extend(planner.unmanaged)
        if on_cluster is not None:
            on_cluster(cluster_name)
    # Removals last in the whole plan, after every cluster's other work (nothing needs them).
    actions = [a for a in actions if a.disruption != "destructive"] + [
        a for a in actions if a.disruption == "destructive"
    ]
    actions = ordered(actions)
    if target is not None:
        actions = target_closure(actions, target)
    if refuse is not None:
        violations.extend(_refused(actions, observed, refuse, desired))
    if diffs is None:
        diffs = diff_estates(desired, observed)
    projected, replayed = replay(observed, desired, actions)
    known = {(v.rule, v.target) for v in violations}
    # A step already named by a policy rule (never, downtime, delete) needs no second,
    # generic "precondition" entry saying the same thing.
    # Nor does a move onto an unhealthy node: its own block says which way it is unhealthy.
    unhealthy = moves_onto_unhealthy(actions, observed)
    explained = {v.action for v in [*replayed, *unhealthy] if v.rule != "precondition" and v.action}
    violations.extend(
        v
        for v in replayed
        if (v.rule, v.target) not in known
        and not (v.rule == "precondition" and v.action in explained)
    )
    violations.extend(unhealthy)
    violations = unresolved(desired, projected, violations, target, (observed, diffs))
    conditions = observed_conditions(observed, desired)
    notes.extend(c.note() for c in conditions)
    notes.extend(informational_notes(desired, observed))
    digests = object_digests(observed)
    changed = sorted({d.ref for d in diffs})
    return Plan(
        actions=tuple(mark_defaults(desired, actions)),
        violations=tuple(violations),
        fingerprint=fingerprint(digests),
        prior_state=prior_state_of(actions, digests),
        notes=tuple(notes),
        manifests=tuple(manifests),
        changed_objects=tuple(changed),
        makespan_seconds=actions_makespan(actions, observed),
        unmanaged=tuple(unmanaged),
        conditions=tuple(conditions),
    )


__all__ = ["make_plan"]
