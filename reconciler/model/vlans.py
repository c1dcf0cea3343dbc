"""VLAN id lists: ``"10,20,30-40"`` and ``[10, 20]`` normalised to one sorted set for comparison."""

from __future__ import annotations

VLAN_MIN = 1
VLAN_MAX = 4094


class VlanListError(ValueError):
    """A VLAN list that cannot be read; the message says which item and what is allowed."""


def parse_vlan_list(value: str | int | list[int | str] | tuple[int, ...]) -> frozenset[int]:
    """Parse and range-check a VLAN list; ``"1-3,5"`` and ``[1, 2, 3, 5]`` give the same set."""
    items: list[str]
    if isinstance(value, bool):
        raise VlanListError('expected a VLAN list such as "10,20,30-40"')
    if isinstance(value, int):
        items = [str(value)]
    elif isinstance(value, str):
        items = [part.strip() for part in value.split(",") if part.strip()]
    else:
        items = [str(part).strip() for part in value]
    vlans: set[int] = set()
    for item in items:
        low_text, sep, high_text = item.partition("-")
        try:
            low = int(low_text)
            high = int(high_text) if sep else low
        except ValueError:
            raise VlanListError(f"'{item}' is not a VLAN id or range (use 10 or 30-40)") from None
        for vid in (low, high):
            if not VLAN_MIN <= vid <= VLAN_MAX:
                raise VlanListError(f"VLAN id {vid} is out of range ({VLAN_MIN}..{VLAN_MAX})")
        if high < low:
            raise VlanListError(f"range '{item}' runs backwards (write {high}-{low})")
        vlans.update(range(low, high + 1))
    return frozenset(vlans)


def format_vlan_list(vlans: frozenset[int] | set[int]) -> str:
    """The shortest canonical text: sorted, consecutive ids folded into ranges."""
    ordered = sorted(vlans)
    parts: list[str] = []
    start = prev = None
    for vid in ordered:
        if start is None:
            start = prev = vid
        elif prev is not None and vid == prev + 1:
            prev = vid
        else:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = prev = vid
    if start is not None:
        parts.append(str(start) if start == prev else f"{start}-{prev}")
    return ",".join(parts)
