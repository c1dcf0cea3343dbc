"""The plan's order: emission order, proven to be a topological order of the dependencies."""

from __future__ import annotations

from graphlib import CycleError, TopologicalSorter

from reconciler.model.actions import Action


def ordered(actions: list[Action]) -> list[Action]:
    """Emission order, checked to be a topological order of the dependency graph.

    The planner emits on a projected state, so its sequence is the one that was proven
    valid; graphlib confirms there is no cycle and every dependency comes first.
    """
    sorter: TopologicalSorter[str] = TopologicalSorter()
    position = {a.id: i for i, a in enumerate(actions)}
    for a in actions:
        sorter.add(a.id, *[d for d in a.depends_on if d in position])
        late = [d for d in a.depends_on if position.get(d, -1) >= position[a.id]]
        if late:
            raise RuntimeError(f"planner bug: {a.id} depends on later {', '.join(late)}")
    try:
        sorter.prepare()
    except CycleError as exc:  # a planner bug, never a user error
        raise RuntimeError(f"dependency cycle in the plan: {' -> '.join(exc.args[1])}") from exc
    return actions
