r"""The constant scripts of the 2012 R2+ path, shipped as ``ps1/*.ps1``.

Only what no cmdlet parameter does is a script (a property set by assignment). Each is a
``[CmdletBinding()] param()`` block, every value a typed parameter; no script text is ever
built from a value. The marker comment (``# reconciler-modern: <Name>``) names each script
for review and for the test peer.
"""

from __future__ import annotations

from importlib import resources


def _load(name: str) -> str:
    return (resources.files(__package__ or __name__) / "ps1" / f"{name}.ps1").read_text("utf-8")


SET_CLUSTER_NETWORK = _load("Set-ClusterNetwork")  # Name and Role by assignment
# (Get-ClusterResource -Name $Name).Name = $NewName: a cluster disk or CSV renamed.
RENAME_CLUSTER_RESOURCE = _load("Rename-ClusterResource")

ALL: dict[str, str] = {
    "Set-ClusterNetwork": SET_CLUSTER_NETWORK,
    "Rename-ClusterResource": RENAME_CLUSTER_RESOURCE,
}
