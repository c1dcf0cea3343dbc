"""Change lines that name every sub-field that differs, so no change prints as ``a -> a``."""

from __future__ import annotations

from typing import Any

from reconciler.model.records import SwitchConfig
from reconciler.model.vlans import format_vlan_list


def switch_changes(
    switch: str, have: SwitchConfig | None, want: SwitchConfig
) -> dict[str, tuple[Any, Any]]:
    """``switch.NAME.FIELD: (before, after)`` for each field of the switch that differs."""
    prefix = f"switch.{switch}"
    if have is None:
        uplink = want.uplink_nic or "+".join(want.team_nics) or None
        return {prefix: ("missing", f"{want.type} on {uplink}")}
    out: dict[str, tuple[Any, Any]] = {}
    for attr in ("type", "uplink_nic", "management_os"):
        before, after = getattr(have, attr), getattr(want, attr)
        if before != after:
            out[f"{prefix}.{attr}"] = (before, after)
    if have.allowed_vlans != want.allowed_vlans:
        out[f"{prefix}.vlan_trunk.allowed"] = (
            format_vlan_list(have.allowed_vlans),
            format_vlan_list(want.allowed_vlans),
        )
    if have.native_vlan != want.native_vlan:
        out[f"{prefix}.vlan_trunk.native_vlan"] = (have.native_vlan, want.native_vlan)
    if have.team_nics != want.team_nics:
        out[f"{prefix}.embedded_team"] = (list(have.team_nics), list(want.team_nics))
    return out
