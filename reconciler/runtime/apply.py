"""The one apply path: a plan (made now, or saved and reviewed) checked, then applied under the
cluster locks with a journal; used by ``reconciler apply`` and by the scheduled loop alike.

A saved plan runs only as reviewed: its digests (and signature, when a key is set) match,
every object an action touches has a recorded prior state that the world still has, and the
safety replay passes on the world as observed now.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from reconciler.engine.plan import (
    Plan,
    PlanRefused,
    first_stale_action,
    object_digests,
    sign,
    stale_objects,
    unrecorded_touch,
    verify_document,
)
from reconciler.engine.planner import make_plan
from reconciler.engine.safety import MANIFEST_POLICY_RULES, replay
from reconciler.manifest.errors import ManifestLoadError
from reconciler.model.actions import Action
from reconciler.model.records import Estate, kind_of
from reconciler.providers.base import Provider
from reconciler.runtime.clock import Clock
from reconciler.runtime.collector import collector_paused
from reconciler.runtime.executor import Executor, OnFailure, Progress, RetryPolicy, RunReport
from reconciler.runtime.journal import LOCK_TTL_SECONDS, LockHeld, LockRecord
from reconciler.runtime.store.base import StateStore
from reconciler.runtime.workflow import load_desired, manifests_digest

PLAN_KEY_ENV = "RECONCILER_PLAN_KEY"
PLAN_KEY_FILE_ENV = "RECONCILER_PLAN_KEY_FILE"
STOP_REQUESTED = "stop requested: the rest waits for the next apply"

__all__ = [
    "Applied",
    "PlanRefused",
    "Prepared",
    "SigningKeyError",
    "UnknownTarget",
    "apply_plan",
    "close_interrupted",
    "prepare",
    "saved_plan_text",
    "signing_key",
    "take_locks",
]


class UnknownTarget(Exception):
    """--target names no object of the estate."""


class SigningKeyError(Exception):
    """The plan signing key is set but cannot be used (the message names the source)."""


def signing_key(environ: Mapping[str, str] | None = None) -> bytes | None:
    """The HMAC key for plans: RECONCILER_PLAN_KEY, or the file RECONCILER_PLAN_KEY_FILE names."""
    env = os.environ if environ is None else environ
    value, path = env.get(PLAN_KEY_ENV), env.get(PLAN_KEY_FILE_ENV)
    if value and path:
        raise SigningKeyError(f"set {PLAN_KEY_ENV} or {PLAN_KEY_FILE_ENV}, not both")
    if path:
        try:
            key = Path(path).read_bytes().strip()
        except OSError as exc:
            raise SigningKeyError(
                f"cannot read the plan signing key file {path} ({PLAN_KEY_FILE_ENV}): "
                f"{exc.strerror or exc}"
            ) from exc
        if not key:
            raise SigningKeyError(f"the plan signing key file {path} is empty")
        return key
    return value.encode() if value else None


def saved_plan_text(plan: Plan, extra: Mapping[str, Any] | None, key: bytes | None) -> str:
    """The plan as 'plan --out' saves it: sorted JSON, signed when there is a key."""
    doc = plan.to_json()
    if extra:
        doc.update(extra)
    if key is not None:
        doc = sign(doc, key)
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


# --- making or reading the plan ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prepared:
    plan: Plan
    observed: Estate
    source: str  # for the journal: the manifest paths, or plan:FILE
    notes: tuple[str, ...] = ()


def prepare(
    provider: Provider,
    *,
    paths: list[str] | None = None,
    saved: Path | None = None,
    cache_dir: Path | None = None,
    target: str | None = None,
    key: bytes | None = None,
) -> Prepared:
    """Plan the manifests at ``paths`` now, or read and check the plan saved at ``saved``."""
    with collector_paused():
        return _prepare(provider, paths, saved, cache_dir, target, key)


def _prepare(
    provider: Provider,
    paths: list[str] | None,
    saved: Path | None,
    cache_dir: Path | None,
    target: str | None,
    key: bytes | None,
) -> Prepared:
    observed = provider.observe()
    if saved is None:
        assert paths is not None
        desired = load_desired(paths, cache_dir)
        plan = make_plan(
            desired,
            observed,
            manifests=paths,
            target=target,
            refuse=provider.capabilities().refusal,  # what the provider cannot do is blocked
        )
        plan = replace(
            plan,
            manifests_digest=manifests_digest(paths),
            provider_paths=provider.capabilities().paths(observed, list(desired.clusters)),
        )
        if (
            target
            and plan.empty
            and target not in plan.prior_state
            and target not in {f"{kind}/{name}" for kind, name in _refs(desired)}
        ):
            raise UnknownTarget(f"no object {target} in the estate (use Kind/name)")
        return Prepared(plan, observed, ",".join(paths))
    plan, notes = check_saved(saved, observed, key, cache_dir)
    return Prepared(plan, observed, f"plan:{saved}", notes)


def _refs(estate: Estate) -> list[tuple[str, str]]:
    return [(kind_of(r), r.name) for r in estate.records()]


def check_saved(
    path: Path, observed: Estate, key: bytes | None, cache_dir: Path | None = None
) -> tuple[Plan, tuple[str, ...]]:
    """The saved plan at ``path`` if it may run on ``observed``; else PlanRefused."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PlanRefused(f"cannot read it: {exc.strerror or exc}") from exc
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # deep nesting: Recursion
        raise PlanRefused(f"it is not JSON: {str(exc)[:200]}") from exc
    plan = verify_document(doc, key)
    missing = unrecorded_touch(plan)
    if missing is not None:
        action, ref = missing
        raise PlanRefused(
            f"{action.id} touches {ref}, for which the plan records no prior state: "
            "make the plan again"
        )
    current = object_digests(observed)
    changed = stale_objects(plan, current)
    if changed:
        shown = ", ".join(changed[:10]) + (" ..." if len(changed) > 10 else "")
        first = first_stale_action(plan, current)
        affected = f"; the first action affected is {first[0].id} ({first[1]})" if first else ""
        raise PlanRefused(
            f"it is stale: {len(changed)} object(s) changed since it was made: {shown}"
            f"{affected}; make a new plan"
        )
    desired = _manifests_of(plan, cache_dir)
    notes: tuple[str, ...] = ()
    if desired is None:
        notes = (
            "the manifests the plan was made from are not here as they were: the replay "
            "checks the world's rules now; their policies were checked when it was made",
        )
    _, violations = replay(observed, desired or observed, plan.actions)
    blocks = [
        v
        for v in violations
        if v.severity == "block" and (desired is not None or v.rule not in MANIFEST_POLICY_RULES)
    ]
    if blocks:
        order = {a.id: i for i, a in enumerate(plan.actions)}
        first_block = min(blocks, key=lambda v: order.get(v.action or "", len(order)))
        raise PlanRefused(
            f"{first_block.action or first_block.target} breaks the safety rule "
            f"{first_block.rule} on the estate as observed now: {first_block.message}"
        )
    return plan, notes


def _manifests_of(plan: Plan, cache_dir: Path | None) -> Estate | None:
    """The desired state the plan was made from, if its manifests are here unchanged."""
    paths = list(plan.manifests)
    if not paths or not plan.manifests_digest or manifests_digest(paths) != plan.manifests_digest:
        return None
    try:
        return load_desired(paths, cache_dir)
    except (ManifestLoadError, OSError):
        return None


# --- locks, interrupted runs --------------------------------------------------------------


def take_locks(
    journal: StateStore, clusters: list[str], lock_timeout: float, clock: Clock
) -> tuple[list[LockRecord], list[str]]:
    """Every cluster's lock, waiting up to ``lock_timeout`` on the clock; LockHeld after."""
    deadline = clock.now() + lock_timeout
    while True:
        try:
            return journal.try_lock(clusters, LOCK_TTL_SECONDS)
        except LockHeld:
            if clock.now() >= deadline:
                raise
            clock.sleep(min(5.0, max(0.1, deadline - clock.now())))


def close_interrupted(journal: StateStore) -> list[str]:
    """Close the runs whose process is gone; one line each saying how far it got."""
    return [
        f"Run {run.id} was {journal.mark_interrupted(run)}" for run in journal.interrupted_runs()
    ]


# --- applying -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Applied:
    run_id: str
    report: RunReport
    summary: str
    outcome: str  # the report's outcome, or interrupted when a stop request cut it short


def apply_plan(
    plan: Plan,
    provider: Provider,
    journal: StateStore,
    clock: Clock,
    progress: Progress,
    locks: list[LockRecord],
    *,
    source: str,
    run_id: str | None = None,
    kind: str = "apply",
    commit_id: str | None = None,
    on_failure: OnFailure = "stop",
    retry: RetryPolicy | None = None,
    stop: threading.Event | None = None,
    should_stop: Callable[[Action], str | None] | None = None,
    defer: Callable[[Action], str | None] | None = None,
) -> Applied:
    """Apply an approved plan under ``locks`` (held), renewing them after each action.

    Starts a run in the journal and records its end, unless the caller passes the
    ``run_id`` of a run it started and ends itself. A set ``stop`` lets the current action
    finish and skips the rest: the run is recorded as interrupted and the next apply resumes.
    """
    owns_run = run_id is None
    if run_id is None:
        clusters = ",".join(sorted({a.cluster for a in plan.actions}))
        run_id = journal.start_run(
            plan.digest(), source, len(plan.actions), kind, commit_id, clusters
        )
    journal.attach_run(locks, run_id)

    def halt(action: Action) -> str | None:
        if stop is not None and stop.is_set():
            return STOP_REQUESTED
        return should_stop(action) if should_stop is not None else None

    executor = Executor(
        provider,
        journal,
        clock,
        progress,
        on_failure=on_failure,
        retry=retry,
        after_action=lambda: journal.renew(locks, LOCK_TTL_SECONDS),
        should_stop=halt,
        defer=defer,
    )
    report = executor.run(plan, run_id)
    summary = (
        f"{report.count('done')} done, {report.count('already_done')} already done, "
        f"{len(report.root_causes)} failed, {report.count('skipped')} skipped"
    )
    stopped = any(r.message == f"skipped: {STOP_REQUESTED}" for r in report.results.values())
    outcome = "interrupted" if stopped else report.outcome
    if owns_run:
        journal.end_run(run_id, outcome, summary)
    return Applied(run_id, report, summary, outcome)
