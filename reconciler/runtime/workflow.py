"""Load manifests, observe through a provider, plan: the steps plan, apply and reconcile share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reconciler.engine.plan import Plan
from reconciler.engine.planner import make_plan
from reconciler.manifest.errors import ManifestLoadError
from reconciler.manifest.load import load_paths
from reconciler.model.records import Estate
from reconciler.providers.base import Provider


@dataclass(frozen=True, slots=True)
class Planned:
    desired: Estate
    observed: Estate
    plan: Plan


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
) -> Planned:
    desired = load_desired(paths, cache_dir)
    observed = provider.observe()
    plan = make_plan(
        desired,
        observed,
        manifests=[str(Path(p)) for p in paths],
        target=target,
        refuse=provider.capabilities().refusal,
    )
    return Planned(desired, observed, plan)
