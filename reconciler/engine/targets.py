"""``--target Kind/name``: the part of a plan one object needs, and what must follow it.

A target never leaves the estate half-changed: its actions come with everything they depend
on, the dependents that finish the procedure they start (a joined node is counted in quorum,
tested, validated; a grown LUN's volume is extended; a patched node is verified and resumed),
and the closing half of every state opened on the way (monitoring maintenance begun is
ended), with what those need in turn. Other dependents (a disk that needed the room) stay out.
"""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.model.actions import Action

# Dependents that finish what an action of the key's type starts (the add-node procedure,
# LUN then volume, the patch cycle of one node).
FINISHED_BY: dict[str, frozenset[str]] = {
    "match_vswitch": frozenset({"add_node"}),
    "present_storage": frozenset({"add_node"}),
    "add_node": frozenset(
        {"update_quorum", "test_live_migration", "validate_cluster", "end_monitoring_maintenance"}
    ),
    "update_quorum": frozenset({"test_live_migration", "validate_cluster"}),
    "test_live_migration": frozenset({"validate_cluster", "end_monitoring_maintenance"}),
    "validate_cluster": frozenset({"end_monitoring_maintenance"}),
    "extend_lun": frozenset({"extend_volume"}),
    "drain_node": frozenset({"patch_node"}),
    "patch_node": frozenset({"verify_node", "resume_node"}),
    "verify_node": frozenset({"resume_node"}),
}
# An action that opens a state the estate must not be left in, and the one that closes it
# (on the same target).
CLOSED_BY = {"begin_monitoring_maintenance": "end_monitoring_maintenance"}


def target_closure(actions: Sequence[Action], target: str) -> list[Action]:
    """The actions of ``actions`` (in their order) a target needs and that must follow it."""
    by_id = {a.id: a for a in actions}
    dependents: dict[str, list[str]] = {a.id: [] for a in actions}
    for a in actions:
        for d in a.depends_on:
            if d in dependents:
                dependents[d].append(a.id)
    closers: dict[tuple[str, str], str] = {
        (a.type, a.target): a.id for a in actions if a.type in CLOSED_BY.values()
    }

    wanted: set[str] = set()
    following = [a.id for a in actions if a.target == target]
    while following:
        # What must follow: the dependents that finish it, and the closer of anything opened.
        follows: set[str] = set()
        stack = list(following)
        while stack:
            aid = stack.pop()
            if aid in follows or aid in wanted:
                continue
            follows.add(aid)
            kind = by_id[aid].type
            finishers = FINISHED_BY.get(kind, frozenset())
            stack.extend(d for d in dependents[aid] if by_id[d].type in finishers)
            closer = closers.get((CLOSED_BY.get(kind, ""), by_id[aid].target))
            if closer is not None:
                stack.append(closer)
        # What they need: every dependency; those may open states that must be closed too.
        needed: set[str] = set()
        stack = list(follows)
        while stack:
            aid = stack.pop()
            if aid in needed or aid in wanted:
                continue
            needed.add(aid)
            stack.extend(d for d in by_id[aid].depends_on if d in by_id)
        wanted |= follows | needed
        following = [aid for aid in needed - follows if by_id[aid].type in CLOSED_BY]
    return [a for a in actions if a.id in wanted]
