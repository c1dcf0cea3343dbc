"""Plans rendered for people: a summary line, then the steps in the order apply runs them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reconciler.cli.safe_text import markup_safe, visible
from reconciler.engine.plan import Plan
from reconciler.model.actions import DISRUPTION_ORDER, Action

if TYPE_CHECKING:
    from reconciler.runtime.review import GitReview

SYMBOL: dict[str, str] = {
    "add_node": "+",
    "add_disk": "+",
    "present_storage": "+",
    "begin_monitoring_maintenance": "~",
    "end_monitoring_maintenance": "~",
    "match_vswitch": "~",
    "set_vlan_trunk": "~",
    "update_quorum": "~",
    "validate_cluster": "~",
    "extend_lun": "~",
    "extend_volume": "~",
    "extend_vhd": "~",
    "convert_disk": "~",
    "set_vm": "~",
    "start_vm": "~",
    "stop_vm": "~",
    "resume_node": "~",
    "drain_node": "→",
    "patch_node": "~",
    "verify_node": "~",
    "complete_rolling_update": "~",
    "migrate_vm": "→",
    "test_live_migration": "→",
    "detach_disk": "-",
    "create_vm": "+",
    "remove_vm": "-",
    "evict_node": "-",
}
COLOUR = {"+": "green", "~": "yellow", "→": "cyan", "-": "red"}


def duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def size(n_bytes: int) -> str:
    gib = n_bytes / 2**30
    return f"{gib:.1f} GiB" if gib >= 1 else f"{n_bytes / 2**20:.0f} MiB"


def group_of(action: Action) -> str:
    """Where a reader looks for an action: a node, the cluster, or storage."""
    p = action.params
    if action.type == "migrate_vm":
        return f"node {p['source']}"
    if "node" in p:
        return f"node {p['node']}"
    if action.type in ("extend_lun", "extend_volume"):
        return "storage"
    if "vm" in p:
        return "virtual machines"
    return "cluster"


def describe(action: Action) -> str:
    p = action.params
    if action.type == "migrate_vm":
        return (
            f"{p['vm']} {p['source']} -> {p['destination']} ({p['method']}, {p['memory_mib']} MiB)"
        )
    if action.type == "test_live_migration":
        return f"{p['vm']} to {p['node']} and back"
    changes = ", ".join(f"{k}: {_value(b)} -> {_value(a)}" for k, (b, a) in action.changes.items())
    return f"{action.target}  {changes}" if changes else action.target


def _value(v: object) -> str:
    """A value as a manifest spells it: true/false, [a, b], {k: v}; (none) when absent."""
    if v is None:
        return "(none)"
    return _spelled(v)


def _spelled(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_spelled(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_spelled(x)}" for k, x in v.items()) + "}"
    return str(v)


def summary_line(plan: Plan) -> str:
    if plan.empty and not plan.violations:
        return "No changes. The estate matches the manifests."
    if plan.empty:
        blocking = sum(1 for v in plan.violations if v.severity == "block")
        what = f"BLOCKED by {blocking} safety violation(s)" if blocking else "warnings only"
        return f"Plan: no action can be planned; the estate does not match the manifests ({what})."
    s = plan.summary()
    counts = s["by_disruption"]
    disruption = ", ".join(f"{counts[d]} {d}" for d in DISRUPTION_ORDER if d in counts)
    moved = f", {size(plan.bytes_to_move())} to move" if plan.bytes_to_move() else ""
    blocked = sum(1 for v in plan.violations if v.severity == "block")
    warned = len(plan.violations) - blocked
    state = f"BLOCKED by {blocked} safety violation(s)" if blocked else "safe to apply"
    warn = f", {warned} warning(s)" if warned else ""
    removals = [a.target for a in plan.actions if a.disruption == "destructive"]
    removed = f" REMOVES {len(removals)}: {', '.join(removals)}." if removals else ""
    return (
        f"Plan: {len(plan.actions)} action(s) ({disruption}); estimated "
        f"{duration(plan.estimate_seconds())}{moved}; {state}{warn}.{removed}"
    )


def plan_lines(plan: Plan, colour: bool = True) -> list[str]:
    """The plan for a person: each step in the order apply runs it, numbered, with its cost.

    A cluster heading starts each run of steps in one cluster, so the numbers always ascend.
    """
    out = [summary_line(plan)]
    step = {a.id: i + 1 for i, a in enumerate(plan.actions)}
    width = len(str(len(plan.actions)))
    safe = markup_safe if colour else visible  # names and values are user text
    cluster: str | None = None
    for a in plan.actions:
        if a.cluster != cluster:
            cluster = a.cluster
            out += ["", f"Cluster {safe(cluster)}"]
        sym = SYMBOL.get(a.type, "~")
        mark = f"[{COLOUR[sym]}]{sym}[/]" if colour else sym
        flagged = any(v.action == a.id and v.severity == "block" for v in plan.violations)
        flag = "  [red]! blocked[/]" if flagged and colour else ("  ! blocked" if flagged else "")
        out.append(
            f"  {step[a.id]:>{width}}. {mark} {a.type:<28} {safe(describe(a))}"
            f"  {safe(f'[{a.disruption}, ~{duration(a.estimate_seconds)}]')}{flag}"
        )
        if a.type == "extend_vhd":
            out.append(" " * (6 + width) + "then extend the partition inside the guest")
    if plan.violations:
        out.append("")
        out.append("Safety violations:")
        for v in plan.violations:
            level = "BLOCK" if v.severity == "block" else "warn "
            where = f" (step {step[v.action]})" if v.action in step else ""
            out.append(safe(f"  {level} {v.rule}: {v.target}{where}: {v.message}"))
            out.append(safe(f"        fix: {v.fix}"))
    if plan.notes:
        out.append("")
        out.extend(safe(f"note: {n}") for n in plan.notes)
    if plan.provider_paths:
        out.append("")
        out.extend(safe(f"driven as: Cluster/{c}: {how}") for c, how in plan.provider_paths)
    if plan.unmanaged:
        out.append("")
        out.append("Unmanaged (in the world, in no manifest; left alone):")
        out.extend(safe(f"  ? {ref}") for ref in plan.unmanaged)
    return out


def review_lines(review: GitReview) -> list[str]:
    """Where a git plan's manifests came from and which objects the change touches."""
    where = f"Manifests at {review.head_commit[:10]} ({review.head}) in {review.repo}"
    if review.base_commit is None or review.changed is None:
        return [where + ".", ""]
    changed = review.changed
    out = [where + f", compared with {review.base_commit[:10]} ({review.base}):"]
    out += [f"  + {name}" for name in changed.added]
    out += [f"  - {name}" for name in changed.removed]
    out += [f"  ~ {name}" for name in changed.changed]
    if changed.empty:
        out.append("  no manifest object changed")
    return [*out, ""]
