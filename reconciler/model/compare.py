"""What counts as the same: normal forms for values written more than one way.

Adapters are a set keyed by name (the order they are listed in is not a difference); VLAN sets
are frozensets already (``"1-3,5"`` and ``[1, 2, 3, 5]`` load the same).
"""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.model.records import VmNic


def nic_key(nics: Iterable[VmNic]) -> tuple[tuple[str, str, int | None], ...]:
    return tuple(sorted((n.name, n.switch, n.vlan) for n in nics))


def same_nics(a: Iterable[VmNic], b: Iterable[VmNic]) -> bool:
    return nic_key(a) == nic_key(b)
