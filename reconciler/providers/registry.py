"""Providers plug in through the ``reconciler.providers`` entry-point group; ``sim`` is built in."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from reconciler.providers.base import Provider, ProviderError

DEFAULT_PROVIDER = "sim"


def available() -> dict[str, Any]:
    found: dict[str, Any] = {ep.name: ep for ep in entry_points(group="reconciler.providers")}
    if "sim" not in found:  # running from a source tree without installed metadata
        from reconciler.providers.sim.provider import SimProvider

        found["sim"] = SimProvider
    return found


def open_provider(name: str, state_dir: Path, **options: Any) -> Provider:
    providers = available()
    if name not in providers:
        raise ProviderError(
            f"unknown provider '{name}' (installed: {', '.join(sorted(providers))})"
        )
    target = providers[name]
    factory = target.load() if hasattr(target, "load") else target
    provider: Provider = factory(state_dir=state_dir, **options)
    return provider


def versions() -> dict[str, str]:
    """Each installed provider and the version of the distribution that brings it."""
    out: dict[str, str] = {}
    for name, target in sorted(available().items()):
        dist = getattr(target, "dist", None)
        if dist is not None:
            out[name] = f"{dist.version} ({dist.name})"
        else:  # the built-in fallback: part of reconciler itself
            from reconciler import __version__

            out[name] = f"{__version__} (reconciler)"
    return out
