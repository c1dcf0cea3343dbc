"""reconciler: declarative desired state for Hyper-V failover clusters.

Manifests (YAML) are loaded into the typed model, diffed against what a provider observes,
and planned into an ordered, safety-checked list of actions that the executor applies.
"""

__version__ = "0.1.0"
