"""reconciler: declarative desired state for Hyper-V failover clusters.

Manifests (YAML) are loaded into the typed model, diffed against what a provider observes,
and planned into an ordered, safety-checked list of actions that the executor applies.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    # One version, written once in pyproject.toml and read back from the installed metadata.
    __version__ = version("reconciler")
except PackageNotFoundError:  # a source tree run without installing it
    __version__ = "0+unknown"
