"""The provider protocol: observe the estate, apply one action, say what you can do, close.

Outcomes split what the executor must treat differently::

    Outcome.status
    ├── done                  the action ran and had its effect
    ├── already_done          the target was already as desired (idempotence)
    ├── precondition_failed   the world does not allow it now; nothing changed (reason given)
    ├── transient_error       try again later (retried with backoff)
    └── permanent_error       retrying will not help; stop this branch
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from reconciler.model.actions import Action
from reconciler.model.records import Estate

OutcomeStatus = Literal[
    "done", "already_done", "precondition_failed", "transient_error", "permanent_error"
]


@dataclass(frozen=True, slots=True)
class Outcome:
    status: OutcomeStatus
    message: str = ""
    seconds: float = 0.0  # how long the action took (simulated time on the simulator)
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.status in ("done", "already_done")


@dataclass(frozen=True, slots=True)
class Capabilities:
    name: str
    simulated: bool
    actions: frozenset[str]
    platforms: frozenset[str]
    reasons: Mapping[str, str] = field(default_factory=dict)  # action type -> why not done
    # Where a platform is driven another way (2008 R2 through WMI v1): its own actions/reasons.
    platform_actions: Mapping[str, frozenset[str]] = field(default_factory=dict)
    platform_reasons: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # How a cluster of each platform is driven (shown in the plan); "" for any other platform.
    platform_paths: Mapping[str, str] = field(default_factory=dict)
    default_path: str = ""

    def paths(self, estate: Estate, clusters: Sequence[str]) -> tuple[tuple[str, str], ...]:
        """(cluster, how this provider drives it) for the observed ``clusters`` it names."""
        out = []
        for name in sorted(clusters):
            cluster = estate.clusters.get(name)
            if cluster is None:
                continue
            path = self.platform_paths.get(cluster.platform, self.default_path)
            if path:
                out.append((name, path))
        return tuple(out)

    def refusal(self, action_type: str, platform: str) -> str | None:
        """Why this provider cannot do ``action_type`` on ``platform``, or None if it can."""
        if platform not in self.platforms:
            return f"the {self.name} provider does not drive Windows Server {platform} clusters"
        actions = self.platform_actions.get(platform, self.actions)
        if action_type not in actions:
            reasons = self.platform_reasons.get(platform, self.reasons)
            why = reasons.get(action_type, "it has no way to do it")
            return f"the {self.name} provider cannot {action_type}: {why}"
        return None


@dataclass(frozen=True, slots=True)
class Scope:
    """What a targeted observe reads: one cluster, or only some of its objects ("Kind/name")."""

    cluster: str
    objects: frozenset[str] = frozenset()


LIFECYCLE_SCOPES = frozenset(
    {
        "detach_disk",
        "create_vm",
        "remove_vm",
        "evict_node",
        "add_vm_nic",
        "remove_vm_nic",
        "set_vm_nic",
        "move_disk",
        "set_preferred_owners",
        "set_automatic_actions",
        # Storage and formation change every host's LUNs (or make the cluster itself).
        "create_csv",
        "rename_csv",
        "remove_csv",
        "create_cluster",
    }
)


def scope_of(action: Action) -> Scope:
    """The objects an action changes, i.e. what must be read back to verify it."""
    p = action.params
    refs = {action.target}
    if "node" in p and isinstance(p["node"], str):
        refs.add(f"Node/{p['node']}")
    if "vm" in p and isinstance(p["vm"], str):
        refs.add(f"VirtualMachine/{p['vm']}")
    if "volume" in p and isinstance(p["volume"], str):
        refs.add(f"ClusterSharedVolume/{p['volume']}")
    disk = p.get("disk")
    if isinstance(disk, Mapping) and isinstance(disk.get("volume"), str):
        refs.add(f"ClusterSharedVolume/{disk['volume']}")
    if action.type in (
        "add_node",
        "patch_node",
        "test_live_migration",
        "validate_cluster",
        "complete_rolling_update",
    ):
        refs.add(f"Cluster/{action.cluster}")
    if action.type in LIFECYCLE_SCOPES:
        # Read back against the whole cluster: membership and quorum (evict), placement
        # and volume space (create), unused files (detach, remove), host switches (adapters).
        return Scope(action.cluster)
    return Scope(action.cluster, frozenset(refs))


@runtime_checkable
class Provider(Protocol):
    def observe(self, scope: Scope | None = None) -> Estate:
        """The whole estate; with ``scope``, only those objects (or that cluster)."""
        ...

    def apply(self, action: Action) -> Outcome: ...

    def capabilities(self) -> Capabilities: ...

    def close(self) -> None: ...


@runtime_checkable
class KnowsItsState(Protocol):
    """Optional: a provider that can tell, without observing, whether ``observe()`` would
    return what it returned last time: a digest of everything observe reads (None: it cannot
    tell this time). A plan of unchanged manifests against an unchanged digest is reused."""

    def observation_digest(self) -> str | None: ...


@runtime_checkable
class RunsMigrationsTogether(Protocol):
    """Optional: a provider that can run several live migrations of one cluster at once."""

    def apply_migrations(self, actions: Sequence[Action]) -> list[Outcome]: ...


class ProviderError(Exception):
    """A provider could not be opened or reached (no world, no credentials, no route)."""
