"""What a change to the manifests changes: objects added, removed or edited between two desired
estates (a pull request's base and head), by ``Kind/name``. Pure: no git, no provider.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reconciler.model.codec import encode
from reconciler.model.records import Estate, kind_of


@dataclass(frozen=True, slots=True)
class ChangedObjects:
    """Sorted ``Kind/name`` lists: in head only, in base only, and in both but different."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def __len__(self) -> int:
        return len(self.added) + len(self.removed) + len(self.changed)

    def as_json(self) -> dict[str, list[str]]:
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": list(self.changed),
        }


def _encoded(estate: Estate) -> dict[str, Any]:
    return {f"{kind_of(r)}/{r.name}": encode(r) for r in estate.records()}


def changed_objects(base: Estate, head: Estate) -> ChangedObjects:
    """The manifest objects that differ between ``base`` and ``head``, compared field by field."""
    before, after = _encoded(base), _encoded(head)
    return ChangedObjects(
        added=tuple(sorted(after.keys() - before.keys())),
        removed=tuple(sorted(before.keys() - after.keys())),
        changed=tuple(sorted(k for k in after.keys() & before.keys() if after[k] != before[k])),
    )
