"""The plan as an artifact: ordered actions, the prior state they were computed from, violations.

Serialised deterministically (same inputs, same bytes): no timestamps, no program version
(``format_version`` says what apply can read), sorted keys. ``reason``
is for display only; apply acts on ``type``, ``target`` and ``params``.

A saved plan carries its own integrity: each action a digest of everything in it chained to
the action before (an edit, a removal or a reordering names the first action it breaks), the
plan a digest over all of it, and optionally an HMAC signature of that digest. Verifying
reads the document as saved, so a field this code would ignore is covered too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from reconciler.model.actions import Action
from reconciler.model.codec import record_digest
from reconciler.model.conditions import Condition
from reconciler.model.records import Estate, kind_of

FORMAT_VERSION = 1
Severity = Literal["block", "warn"]
ABSENT = "absent"  # prior state of an object an action touches that does not exist yet
SIGNATURE_PREFIX = "hmac-sha256:"
# Top-level keys outside the plan digest: the digest itself, its signature, and the git
# review block that 'plan --git' adds for display.
UNSIGNED_KEYS = frozenset({"digest", "signature", "git"})


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
    # Start to end, migrations of a group overlapping as apply runs them (None: one at a time).
    makespan_seconds: float | None = None
    manifests_digest: str = ""  # of the manifest files the plan was made from, if read from files
    # Objects in the world that no manifest declares ("Kind/name"): reported, left alone.
    unmanaged: tuple[str, ...] = ()
    # Observed health (model/conditions.py): reported, not differences; blocks nothing itself.
    conditions: tuple[Condition, ...] = ()
    # (cluster, how the provider drives it), e.g. "Windows Server 2008 R2 via WMI v1".
    provider_paths: tuple[tuple[str, str], ...] = ()

    @property
    def blocked(self) -> bool:
        return any(v.severity == "block" for v in self.violations)

    @property
    def empty(self) -> bool:
        return not self.actions

    def estimate_seconds(self) -> float:
        """How long apply takes: the makespan, live migrations running up to the cluster's
        max_parallel_migrations at once (the serial sum when the planner gave none)."""
        if self.makespan_seconds is not None:
            return round(self.makespan_seconds, 3)
        return self.serial_seconds()

    def serial_seconds(self) -> float:
        # The sum of the estimates as written (to the millisecond), so a saved plan read back
        # has the same summary, and the same digest.
        return round(sum(round(a.estimate_seconds, 3) for a in self.actions), 3)

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
            "serial_seconds": self.serial_seconds(),
            "bytes_to_move": self.bytes_to_move(),
            "violations": len(self.violations),
            "blocked": self.blocked,
        }

    def to_json(self) -> dict[str, Any]:
        actions: list[dict[str, Any]] = []
        previous = ""
        for a in self.actions:
            doc = action_to_json(a)
            previous = doc["digest"] = action_digest(doc, previous)
            actions.append(doc)
        body: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "manifests": list(self.manifests),
            "manifests_digest": self.manifests_digest,
            "prior_state": dict(sorted(self.prior_state.items())),
            "actions": actions,
            "summary": self.summary(),
            "violations": [v.as_json() for v in self.violations],
            "notes": list(self.notes),
            "changed_objects": list(self.changed_objects),
            # Written only when there are some, so plans of fully managed estates keep
            # the bytes they always had.
            **({"unmanaged": list(self.unmanaged)} if self.unmanaged else {}),
            **({"conditions": [c.as_json() for c in self.conditions]} if self.conditions else {}),
            **({"provider_paths": dict(self.provider_paths)} if self.provider_paths else {}),
        }
        body["digest"] = plan_digest(body)
        return body

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"

    def digest(self) -> str:
        """The plan digest: over every action with its parameters, the prior state and the
        manifests digest (the journal records it as the run's plan hash)."""
        return str(self.to_json()["digest"])


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


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def action_digest(doc: Mapping[str, Any], previous: str) -> str:
    """Digest of an action as saved (all its fields but ``digest``), chained to the one before."""
    h = hashlib.sha256(previous.encode() + b"\n")
    h.update(_canonical({k: v for k, v in doc.items() if k != "digest"}))
    return "sha256:" + h.hexdigest()


def plan_digest(doc: Mapping[str, Any]) -> str:
    return (
        "sha256:"
        + hashlib.sha256(
            _canonical({k: v for k, v in doc.items() if k not in UNSIGNED_KEYS})
        ).hexdigest()
    )


def sign(doc: dict[str, Any], key: bytes) -> dict[str, Any]:
    """The document with an HMAC-SHA256 signature of its digest."""
    mac = hmac.new(key, str(doc["digest"]).encode(), hashlib.sha256).hexdigest()
    return {**doc, "signature": SIGNATURE_PREFIX + mac}


class PlanRefused(Exception):
    """A saved plan that must not run; the message names the first offending action."""


def _action_label(d: Any, index: int) -> str:
    aid = d.get("id") if isinstance(d, Mapping) else None
    return f"action {index + 1} ({aid})" if isinstance(aid, str) else f"action {index + 1}"


def verify_document(doc: Any, key: bytes | None = None) -> Plan:
    """The plan in a saved document, or PlanRefused saying what does not match and where.

    With ``key`` the document must carry a valid signature made with it.
    """
    if not isinstance(doc, Mapping):
        raise PlanRefused("not a plan: the file holds no JSON object")
    if doc.get("format_version") != FORMAT_VERSION:  # another version: say so, not "edited"
        raise PlanRefused(
            f"plan format_version {doc.get('format_version')!r} is not {FORMAT_VERSION}: "
            "make the plan again with this version of reconciler"
        )
    actions = doc.get("actions")
    if not isinstance(actions, list):
        raise PlanRefused("not a plan: no list of actions")
    previous = ""
    for i, a in enumerate(actions):
        if not isinstance(a, Mapping):
            raise PlanRefused(f"{_action_label(a, i)} is not an object")
        recorded = a.get("digest")
        if not isinstance(recorded, str):
            raise PlanRefused(f"{_action_label(a, i)} has no digest: make the plan again")
        expected = action_digest(a, previous)
        if not hmac.compare_digest(recorded, expected):
            raise PlanRefused(
                f"{_action_label(a, i)} does not match its digest: it was edited, or an "
                "action before it was removed, added or moved"
            )
        previous = recorded
    recorded_digest = doc.get("digest")
    if not isinstance(recorded_digest, str):
        raise PlanRefused("the plan has no digest: make it again with 'plan --out FILE'")
    if not hmac.compare_digest(recorded_digest, plan_digest(doc)):
        raise PlanRefused(
            "the plan does not match its digest: its prior state, manifests digest, "
            "violations, notes or summary were edited, or its last action removed"
        )
    if key is not None:
        signature = doc.get("signature")
        if not isinstance(signature, str):
            raise PlanRefused("the plan is not signed, and a signing key is set: sign it")
        if not hmac.compare_digest(signature, sign(dict(doc), key)["signature"]):
            raise PlanRefused("the plan's signature does not match the signing key")
    try:
        plan = plan_from_json(doc)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PlanRefused(f"not a plan this version can read: {exc}") from exc
    for i, (action, saved) in enumerate(zip(plan.actions, actions, strict=True)):
        if action_to_json(action) != {k: v for k, v in saved.items() if k != "digest"}:
            raise PlanRefused(
                f"{_action_label(saved, i)} has fields this version of reconciler would not "
                "apply as written: make the plan again"
            )
    return plan


def touched_objects(action: Action) -> list[str]:
    """Every object an action reads or changes, as Kind/name: its target, cluster, and the
    nodes, VMs, volumes and switches its parameters name."""
    out = [action.target, f"Cluster/{action.cluster}"]
    p = action.params
    for key, kind in (
        ("node", "Node"),
        ("source", "Node"),
        ("destination", "Node"),
        ("vm", "VirtualMachine"),
        ("test_vm", "VirtualMachine"),
        ("volume", "ClusterSharedVolume"),
        ("switch", "VirtualSwitch"),
    ):
        value = p.get(key)
        if isinstance(value, str) and value:
            out.append(f"{kind}/{value}")
    for key, kind in (("nodes", "Node"), ("volumes", "ClusterSharedVolume")):
        values = p.get(key)
        if isinstance(values, list | tuple):
            out.extend(f"{kind}/{v}" for v in values if isinstance(v, str))
    return list(dict.fromkeys(out))


def prior_state_of(actions: Sequence[Action], digests: Mapping[str, str]) -> dict[str, str]:
    """Observed digests, plus ABSENT for each object an action touches that is not there."""
    out = dict(digests)
    for action in actions:
        for ref in touched_objects(action):
            out.setdefault(ref, ABSENT)
    return out


def unrecorded_touch(plan: Plan) -> tuple[Action, str] | None:
    """The first action touching an object the plan has no prior state for."""
    for action in plan.actions:
        for ref in touched_objects(action):
            if ref not in plan.prior_state:
                return action, ref
    return None


def first_stale_action(plan: Plan, current: Mapping[str, str]) -> tuple[Action, str] | None:
    """The first action touching an object whose observed state is not the recorded one."""
    for action in plan.actions:
        for ref in touched_objects(action):
            if current.get(ref, ABSENT) != plan.prior_state.get(ref):
                return action, ref
    return None


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
        makespan_seconds=_float_or_none((d.get("summary") or {}).get("estimate_seconds")),
        manifests_digest=str(d.get("manifests_digest") or ""),
        unmanaged=tuple(d.get("unmanaged") or ()),
        conditions=tuple(
            Condition(c["type"], c["target"], c["reason"], c["status"], c.get("since"))
            for c in d.get("conditions") or ()
        ),
        provider_paths=tuple(sorted((d.get("provider_paths") or {}).items())),
    )


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


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
    """Objects the plan was computed from that have changed (or vanished, or appeared) since."""
    changed = [k for k, v in plan.prior_state.items() if current.get(k, ABSENT) != v]
    return sorted(changed)
