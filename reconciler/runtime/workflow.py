"""Load manifests, observe through a provider, plan: the steps plan, apply and reconcile share."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import structlog

from reconciler.engine.plan import Plan
from reconciler.engine.planner import make_plan
from reconciler.manifest.documents import manifest_files
from reconciler.manifest.errors import ManifestLoadError
from reconciler.manifest.load import load_paths
from reconciler.model.records import Estate
from reconciler.providers.base import KnowsItsState, Provider
from reconciler.runtime.collector import collector_paused
from reconciler.runtime.plan_memo import PlanMemo, memo_key

log = structlog.get_logger("reconciler.plan")


class PlanProgress(Protocol):
    """Where a long plan reports how far it got (a bar on a terminal, nothing elsewhere)."""

    def phase(self, name: str, total: int | None = None) -> None:
        """A new phase begins; ``total``: how many items it counts, when it counts them."""

    def advance(self, item: str) -> None:
        """One more item of the current phase is done."""


@dataclass(frozen=True, slots=True)
class Planned:
    plan: Plan
    reused: bool = False  # the last plan, from the memo: nothing it was made from changed


def manifests_digest(paths: list[str]) -> str:
    """Digest of the manifest files under ``paths`` (names and bytes): what a plan was made
    from. Empty if one cannot be read (the load reports that)."""
    h = hashlib.sha256()
    try:
        for name, path in manifest_files(paths):
            if path is None:
                return ""
            content = path.read_bytes()
            h.update(f"{name}\0{len(content)}\0".encode())
            h.update(content)
    except OSError:
        return ""
    return "sha256:" + h.hexdigest()


def load_desired(paths: list[str], cache_dir: Path | None = None) -> Estate:
    result = load_paths(paths, cache_dir=cache_dir)
    if result.estate is None:
        raise ManifestLoadError(result.problems())
    return result.estate


def plan_paths(
    paths: list[str],
    provider: Provider,
    target: str | None = None,
    cache_dir: Path | None = None,
    progress: PlanProgress | None = None,
    memo_dir: Path | None = None,
) -> Planned:
    """Load, observe, plan; with ``memo_dir``, the last plan when nothing it was made from
    has changed (runtime/plan_memo.py)."""
    with collector_paused():
        return _plan_paths(paths, provider, target, cache_dir, progress, memo_dir)


def _plan_paths(
    paths: list[str],
    provider: Provider,
    target: str | None,
    cache_dir: Path | None,
    progress: PlanProgress | None,
    memo_dir: Path | None,
) -> Planned:
    started = time.perf_counter()
    files = manifests_digest(paths)
    memo, key, state = _memo_for(files, paths, provider, target, memo_dir)
    if memo is not None and key is not None and (reused := memo.get(key)) is not None:
        log.info("plan_reused", paths=paths, seconds=round(time.perf_counter() - started, 3))
        return Planned(reused, reused=True)
    if progress is not None:
        progress.phase("load manifests")
    desired = load_desired(paths, cache_dir)
    log.info(
        "manifests_loaded",
        paths=paths,
        clusters=len(desired.clusters),
        nodes=len(desired.nodes),
        vms=len(desired.vms),
        seconds=round(time.perf_counter() - started, 3),
    )
    observed = observe(provider, progress)
    if progress is not None:
        progress.phase("plan clusters", total=len(desired.clusters))
    planning = time.perf_counter()
    plan = make_plan(
        desired,
        observed,
        manifests=[str(Path(p)) for p in paths],
        target=target,
        on_cluster=progress.advance if progress is not None else None,
        refuse=provider.capabilities().refusal,
    )
    log_planned(plan, time.perf_counter() - planning)
    paths_of = provider.capabilities().paths(observed, list(desired.clusters))
    plan = replace(plan, manifests_digest=files, provider_paths=paths_of)
    # Kept only if the world did not change while it was observed and planned: the key
    # must name the state the plan was made from.
    if memo is not None and key is not None and _state_of(provider) == state:
        memo.put(key, plan)
    return Planned(plan)


def _state_of(provider: Provider) -> str | None:
    return provider.observation_digest() if isinstance(provider, KnowsItsState) else None


def _memo_for(
    files: str, paths: list[str], provider: Provider, target: str | None, memo_dir: Path | None
) -> tuple[PlanMemo | None, str | None, str | None]:
    """The plan memo, this plan's key in it and the state digest the key holds, when the
    provider can tell its state."""
    state = _state_of(provider) if memo_dir is not None else None
    if memo_dir is None or not files or state is None:
        return None, None, None
    name = provider.capabilities().name
    key = memo_key(files, state, [str(Path(p)) for p in paths], target, name)
    return PlanMemo(memo_dir), key, state


def observe(provider: Provider, progress: PlanProgress | None = None) -> Estate:
    started = time.perf_counter()
    if progress is not None:
        progress.phase("observe")
    observed = provider.observe()
    log.info(
        "observed",
        clusters=len(observed.clusters),
        nodes=len(observed.nodes),
        vms=len(observed.vms),
        seconds=round(time.perf_counter() - started, 3),
    )
    return observed


def log_planned(plan: Plan, seconds: float) -> None:
    summary = plan.summary()
    log.info(
        "planned",
        actions=summary["actions"],
        by_type=summary["by_type"],
        violations=summary["violations"],
        blocked=summary["blocked"],
        estimate_seconds=summary["estimate_seconds"],
        fingerprint=plan.fingerprint,
        seconds=round(seconds, 3),
    )
