"""Checks shared by the rolling-update tests: which nodes a plan may have paused at once.

A plan is a dependency graph, not only a sequence: an executor that honours ``depends_on``
may run independent actions together. A node is paused from its ``drain_node`` to its
``resume_node``; two nodes can be paused at the same time unless one's resume is an ancestor
of the other's drain. ``most_paused_together`` is the largest set of nodes that pairwise
could be, an upper bound on how many a dependency-respecting executor could have out at once.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from reconciler.model.actions import Action


def ancestors(actions: Sequence[Action]) -> dict[str, frozenset[str]]:
    """Every action id mapped to all the ids it depends on, directly or not."""
    out: dict[str, frozenset[str]] = {}
    for action in actions:  # plans are in a topological order: dependencies come first
        found: set[str] = set()
        for dep in action.depends_on:
            found.add(dep)
            found |= out.get(dep, frozenset())
        out[action.id] = frozenset(found)
    return out


def pause_spans(
    actions: Sequence[Action], paused_at_start: Iterable[str] = ()
) -> dict[str, tuple[str | None, str | None]]:
    """Node -> (id of the drain that pauses it or None if paused already, id of its resume)."""
    spans: dict[str, tuple[str | None, str | None]] = {n: (None, None) for n in paused_at_start}
    for action in actions:
        node = str(action.params.get("node"))
        if action.type == "drain_node":
            spans[node] = (action.id, spans.get(node, (None, None))[1])
        elif action.type == "resume_node" and node in spans:
            spans[node] = (spans[node][0], action.id)
    return spans


def most_paused_together(
    actions: Sequence[Action], paused_at_start: Iterable[str] = ()
) -> tuple[str, ...]:
    """The largest set of nodes whose pauses the dependencies let overlap."""
    deps = ancestors(actions)
    spans = pause_spans(actions, paused_at_start)

    def before(first: str, second: str) -> bool:
        """``first`` is back in service before ``second`` is paused, by the dependencies."""
        resume, drain = spans[first][1], spans[second][0]
        return resume is not None and drain is not None and resume in deps[drain]

    nodes = sorted(spans)
    for size in range(len(nodes), 0, -1):
        for group in itertools.combinations(nodes, size):
            if not any(before(a, b) or before(b, a) for a, b in itertools.combinations(group, 2)):
                return group
    return ()


def most_paused_in_order(actions: Sequence[Action], paused_at_start: Iterable[str] = ()) -> int:
    """The most nodes paused at once when the actions run one after another, in plan order."""
    paused = set(paused_at_start)
    most = len(paused)
    for action in actions:
        if action.type == "drain_node":
            paused.add(action.params["node"])
        elif action.type == "resume_node":
            paused.discard(action.params["node"])
        most = max(most, len(paused))
    return most
