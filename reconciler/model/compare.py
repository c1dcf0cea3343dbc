"""What counts as the same: normal forms for values written more than one way.

Adapters are a set keyed by name (the order they are listed in is not a difference); VLAN sets
are frozensets already (``"1-3,5"`` and ``[1, 2, 3, 5]`` load the same).
"""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.model.records import VmNic

NicKey = tuple[str, str, int | None, tuple[int, ...], int | None, str | None]


def nic_key(nics: Iterable[VmNic]) -> tuple[NicKey, ...]:
    """Each adapter by name: switch, access VLAN, trunk VLANs and native VLAN, static MAC."""
    return tuple(
        sorted(
            (n.name, n.switch, n.vlan, tuple(sorted(n.trunk)), n.native_vlan, n.mac) for n in nics
        )
    )


def same_nics(a: Iterable[VmNic], b: Iterable[VmNic]) -> bool:
    if isinstance(a, tuple) and a == b:
        return True  # the same adapters in the same order: no need to sort
    return nic_key(a) == nic_key(b)
