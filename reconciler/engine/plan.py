"""The plan as an artifact: ordered actions, the prior state they were computed from, violations.

Serialised deterministically (same inputs, same bytes): no timestamps, no program version
(``format_version`` says what apply can read), sorted keys. ``reason``
is for display only; apply acts on ``type``, ``target`` and ``params``.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from reconciler.model.actions import Action
from reconciler.model.codec import record_digest
from reconciler.model.records import Estate, kind_of

FORMAT_VERSION = 1
Severity = Literal["block", "warn"]


@dataclass(frozen=True, slots=True)
class PlanViolation:
    rule: str
    target: str
    message: str
    fix: str
    severity: Severity = "block"
    action: str | None = None  # id of the action that breaks it, if one does

    def as_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "target": self.target,
            "message": self.message,
            "fix": self.fix,
            "severity": self.severity,
            "action": self.action,
        }


@dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[Action, ...]
    violations: tuple[PlanViolation, ...]
    fingerprint: str
    prior_state: Mapping[str, str]  # "Kind/name" -> digest, for the objects the plan touches
    notes: tuple[str, ...] = ()
    manifests: tuple[str, ...] = ()
    changed_objects: tuple[str, ...] = field(default=())
    # Objects in the world that no manifest declares ("Kind/name"): reported, left alone.
    unmanaged: tuple[str, ...] = ()

    @property
    def blocked(self) -> bool:
        return any(v.severity == "block" for v in self.violations)

    @property
    def empty(self) -> bool:
        return not self.actions

    def estimate_seconds(self) -> float:
        # The sum of the estimates as written (to the millisecond), so a saved plan read back
        # has the same summary, and the same digest.
        return sum(round(a.estimate_seconds, 3) for a in self.actions)

    def bytes_to_move(self) -> int:
        return sum(a.estimate_bytes for a in self.actions)

    def summary(self) -> dict[str, Any]:
        by_type = Counter(a.type for a in self.actions)
        by_disruption = Counter(a.disruption for a in self.actions)
        return {
            "actions": len(self.actions),
            "by_type": dict(sorted(by_type.items())),
            "by_disruption": dict(sorted(by_disruption.items())),
            "estimate_seconds": round(self.estimate_seconds(), 3),
            "bytes_to_move": self.bytes_to_move(),
            "violations": len(self.violations),
            "blocked": self.blocked,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "manifests": list(self.manifests),
            "prior_state": dict(sorted(self.prior_state.items())),
            "actions": [action_to_json(a) for a in self.actions],
            "summary": self.summary(),
            "violations": [v.as_json() for v in self.violations],
            "notes": list(self.notes),
            "changed_objects": list(self.changed_objects),
            # Written only when there are some, so plans of fully managed estates keep
            # the bytes they always had.
            **({"unmanaged": list(self.unmanaged)} if self.unmanaged else {}),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"

    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.dumps().encode()).hexdigest()


def action_to_json(a: Action) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": a.id,
        "type": a.type,
        "target": a.target,
        "cluster": a.cluster,
        "depends_on": list(a.depends_on),
        "disruption": a.disruption,
        "reason": a.reason,
        "changes": {k: {"before": b, "after": c} for k, (b, c) in sorted(a.changes.items())},
        "estimate_seconds": round(a.estimate_seconds, 3),
        "estimate_bytes": a.estimate_bytes,
        "params": dict(a.params),
    }
    if a.type == "migrate_vm":
        for key in ("vm", "source", "destination", "method", "memory_mib"):
            out[key] = a.params[key]
    return out


def action_from_json(d: Mapping[str, Any]) -> Action:
    return Action(
        id=d["id"],
        type=d["type"],
        target=d["target"],
        cluster=d["cluster"],
        params=dict(d.get("params") or {}),
        depends_on=tuple(d.get("depends_on") or ()),
        disruption=d.get("disruption", "none"),
        reason=d.get("reason", ""),
        changes={k: (v["before"], v["after"]) for k, v in (d.get("changes") or {}).items()},
        estimate_seconds=float(d.get("estimate_seconds", 0.0)),
        estimate_bytes=int(d.get("estimate_bytes", 0)),
    )


def plan_from_json(d: Mapping[str, Any]) -> Plan:
    if d.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"plan format_version {d.get('format_version')!r} is not {FORMAT_VERSION}: "
            "make the plan again with this version of reconciler"
        )
    return Plan(
        actions=tuple(action_from_json(a) for a in d["actions"]),
        violations=tuple(
            PlanViolation(
                v["rule"], v["target"], v["message"], v["fix"], v["severity"], v.get("action")
            )
            for v in d.get("violations") or ()
        ),
        fingerprint=d["fingerprint"],
        prior_state=dict(d.get("prior_state") or {}),
        notes=tuple(d.get("notes") or ()),
        manifests=tuple(d.get("manifests") or ()),
        changed_objects=tuple(d.get("changed_objects") or ()),
        unmanaged=tuple(d.get("unmanaged") or ()),
    )


# --- fingerprints --------------------------------------------------------------------------


def object_digests(estate: Estate) -> dict[str, str]:
    """A short digest per object, so a stale plan can say which objects changed."""
    return {f"{kind_of(r)}/{r.name}": record_digest(r) for r in estate.records()}


def fingerprint(digests: Mapping[str, str]) -> str:
    h = hashlib.sha256()
    for key in sorted(digests):
        h.update(f"{key}={digests[key]}\n".encode())
    return "sha256:" + h.hexdigest()


def stale_objects(plan: Plan, current: Mapping[str, str]) -> list[str]:
    """Objects the plan was computed from that have changed (or vanished) since."""
    changed = [k for k, v in plan.prior_state.items() if current.get(k) != v]
    return sorted(changed)
