"""No silent differences: what the manifests ask for that the plan would leave as it is.

The plan is replayed and the projected state diffed against the manifests. A difference that
survives is a blocked item with its reason, never a warning: the planner cannot act on it, so
``plan --detailed-exitcode`` must not say "no changes". A warning the planner already gave for
that object becomes the block (its message is the reason); otherwise the block names the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from reconciler.engine.diff import FieldChange, ObjectDiff, diff_estates
from reconciler.engine.plan import PlanViolation
from reconciler.model.records import Estate

RULE = "unresolved"


def _show(value: object) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def _field_text(change: FieldChange) -> str:
    return f"{change.path}: {_show(change.before)} -> {_show(change.after)}"


def _message(diff: ObjectDiff) -> str:
    if diff.op == "add":
        return (
            f"{diff.ref} is in the manifests but not in the world, and this plan does not create it"
        )
    fields = "; ".join(_field_text(c) for c in diff.changes[:6])
    more = f" (and {len(diff.changes) - 6} more)" if len(diff.changes) > 6 else ""
    return f"{diff.ref} would still differ after this plan: {fields}{more}"


def _suspects(
    desired: Estate, projected: Estate, before: tuple[Estate, Sequence[ObjectDiff]] | None
) -> set[str] | None:
    if before is None:
        return None
    observed, diffs = before
    out = {d.name for d in diffs if d.kind == "VirtualMachine"}
    out.update(n for n in desired.vms if projected.vms.get(n) is not observed.vms.get(n))
    return out


def unresolved(
    desired: Estate,
    projected: Estate,
    violations: Sequence[PlanViolation],
    target: str | None = None,
    before: tuple[Estate, Sequence[ObjectDiff]] | None = None,
) -> list[PlanViolation]:
    """``violations`` with every difference the plan leaves behind made a block.

    ``projected``: the state after replaying the plan. ``target``: a plan limited to one
    object answers only for that object. ``before``: the observed state the plan was
    replayed from and its diff against ``desired``; a VM neither in that diff nor changed by
    the replay (the same record) cannot differ now, so only the others are compared again.
    """
    left = {
        d.ref: d for d in diff_estates(desired, projected, _suspects(desired, projected, before))
    }
    if target is not None:
        left = {ref: d for ref, d in left.items() if ref == target}
    out: list[PlanViolation] = []
    explained = {v.target for v in violations if v.severity == "block"}
    for v in violations:
        if v.target in left and v.target not in explained:
            # A difference left as it is: not a mere warning. One block per object suffices.
            v = replace(v, severity="block")
            explained.add(v.target)
        out.append(v)
    for ref, diff in sorted(left.items()):
        if ref in explained:
            continue
        out.append(
            PlanViolation(
                RULE,
                ref,
                _message(diff),
                "change it by hand, or make the manifest say what the world has",
            )
        )
    return out
