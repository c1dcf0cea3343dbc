r"""The modern path's constant scripts, shipped as ``ps1/*.ps1``: only where no cmdlet
parameter does the job (a property set by assignment).

Each is a ``[CmdletBinding()] param()`` block and every value arrives as a typed parameter;
no script text is ever built from a value. The marker comment (``# reconciler: <Name>``)
names each script for review and for the test peer.
"""

from __future__ import annotations

from importlib import resources


def _load(name: str) -> str:
    return (resources.files(__package__ or __name__) / "ps1" / f"{name}.ps1").read_text("utf-8")


# (Get-ClusterResource -Name $Name).Name = $NewName: a cluster disk or CSV renamed.
RENAME_CLUSTER_RESOURCE = _load("Rename-ClusterResource")

ALL: dict[str, str] = {"Rename-ClusterResource": RENAME_CLUSTER_RESOURCE}
