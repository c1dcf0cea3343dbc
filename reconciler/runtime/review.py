"""Plan a pull request: the head commit's manifests against the observed estate, and which
manifest objects changed since the base commit. Manifests are read from the commits themselves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from reconciler.engine.planner import make_plan
from reconciler.engine.review import ChangedObjects, changed_objects
from reconciler.manifest.errors import ManifestLoadError
from reconciler.manifest.gitsource import GitManifests, GitSourceError, load_at
from reconciler.model.records import Estate
from reconciler.providers.base import Provider
from reconciler.runtime.workflow import Planned, log_planned, observe


@dataclass(frozen=True, slots=True)
class GitReview:
    """Where the planned manifests came from, and what the pull request changed in them."""

    repo: str
    head: str
    head_commit: str
    base: str | None = None
    base_commit: str | None = None
    changed: ChangedObjects | None = None  # None when there is no base to compare with

    def as_json(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "base": self.base,
            "head": self.head,
            "base_commit": self.base_commit,
            "head_commit": self.head_commit,
            "changed": None if self.changed is None else self.changed.as_json(),
        }


@dataclass(frozen=True, slots=True)
class GitPlanned:
    review: GitReview
    planned: Planned


def _load(repo: str, ref: str, paths: list[str]) -> GitManifests:
    try:
        return load_at(repo, ref, paths)
    except GitSourceError as exc:
        raise GitSourceError(f"ref {ref}: {exc}") from exc


def plan_git(
    repo: str,
    head: str,
    base: str | None,
    paths: list[str],
    provider: Provider,
    target: str | None = None,
) -> GitPlanned:
    """Plan ``paths`` as they are at ``head``; with ``base``, also list what changed since.

    Raises ``ManifestLoadError`` (errors named ``file@commit:line``) when the manifests at
    either commit are invalid, and ``GitSourceError`` when a ref cannot be read. Manifests are
    loaded before the provider is asked anything.
    """
    at_head = _load(repo, head, paths)
    at_base = _load(repo, base, paths) if base is not None else None
    problems = at_head.result.problems()
    desired = at_head.result.estate
    before: Estate | None = None
    if at_base is not None and not at_base.files:
        before = Estate()  # the pull request adds the first manifests: all of them are new
    elif at_base is not None:
        problems += at_base.result.problems()
        before = at_base.result.estate
    if problems or desired is None or (at_base is not None and before is None):
        raise ManifestLoadError(problems)
    changed = changed_objects(before, desired) if before is not None else None
    observed = observe(provider)
    planning = time.perf_counter()
    plan = make_plan(desired, observed, manifests=paths or ["."], target=target)
    log_planned(plan, time.perf_counter() - planning)
    review = GitReview(
        repo=repo,
        head=head,
        head_commit=at_head.commit,
        base=base,
        base_commit=at_base.commit if at_base is not None else None,
        changed=changed,
    )
    return GitPlanned(review, Planned(plan))
