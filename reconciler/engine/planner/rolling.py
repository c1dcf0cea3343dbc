"""Rolling updates: one node at a time drained, patched, verified and resumed, VMs
returned where they are pinned."""

from __future__ import annotations

from reconciler.engine.placement import choose_destination
from reconciler.engine.planner.moves import Moves
from reconciler.model.capacity import used_memory_mib
from reconciler.model.quorum import failures_tolerated
from reconciler.model.records import Cluster
from reconciler.model.rules import switch_to_params


class Rolling(Moves):
    __slots__ = ()

    def rolling_update(self, desired: Cluster) -> None:
        """Patch every listed node in turn: drain, hook, verify, resume; no fail-back.

        Drained VMs go to nodes already patched in this cycle (or outside it), so with one
        node's worth of spare capacity each VM moves once. The least-loaded node goes first.
        """
        ru = desired.rolling_update
        if ru is None or not self._cycle_active(desired):
            return
        cluster = self.state.clusters[self.cluster]
        members = cluster.nodes
        listed = list(ru.nodes) if ru.nodes is not None else list(members)
        for name in listed:
            if name not in members:
                self.block(
                    "rolling_update",
                    f"Cluster/{self.cluster}",
                    f"rolling update {ru.id} lists {name}, which is not a member",
                    "list member nodes only, or all",
                )
        cycle = [n for n in listed if n in members]
        started = cluster.status.rolling_update_in_progress == ru.id
        done = set(cluster.status.updated_nodes) if started else set()
        patched = done | {n for n in members if n not in cycle}
        tolerated = failures_tolerated(cluster.quorum.mode, len(members))
        batch_size = max(1, min(ru.max_unavailable, tolerated))
        if ru.max_unavailable > batch_size:
            self.notes.append(
                f"rolling update {ru.id}: quorum ({cluster.quorum.mode}, "
                f"{len(members)} nodes) allows {batch_size} node(s) out at once"
            )
        begin = self.emit(
            "begin_monitoring_maintenance",
            f"Cluster/{self.cluster}",
            self.cluster,
            {"cluster": self.cluster},
            reason=f"rolling update {ru.id}: monitoring in maintenance mode",
        )
        previous: list[str] = [begin] if begin else []
        resumed: list[str] = []
        # Nodes patched before an interruption but not yet back in service.
        finished = [n for n in sorted(done) if self.state.nodes[n].maintenance]
        for name in finished:
            resumed.extend(self._finish_node(desired, name, previous))
        resumed.extend(self._return_pinned(ru.id, finished, resumed))
        if resumed:
            previous = [*previous, *resumed]  # the next node waits for these to be back
        todo = [n for n in cycle if n not in done]
        blocked = False
        while todo:
            load = {n: used_memory_mib(self.state, n) for n in todo}
            batch = sorted(todo, key=lambda n: (load[n], n))[:batch_size]
            moves: list[str] = []
            ready: list[str] = []
            for name in batch:
                node_moves = self._drain_for_cycle(ru.id, name, batch, patched, previous)
                if node_moves is None:
                    blocked = True
                    continue
                moves.extend(node_moves)
                ready.append(name)
            batch_done: list[str] = []
            for name in ready:
                drain = self.emit(
                    "drain_node",
                    f"Node/{name}",
                    name,
                    {"node": name},
                    depends_on=[*previous, *moves],
                    reason=f"rolling update {ru.id}: pause {name} for patching",
                    changes={"spec.maintenance": (False, True)},
                )
                level = ru.patch_level or self._target_level(name)
                patch = self.emit(
                    "patch_node",
                    f"Node/{name}",
                    name,
                    {
                        "node": name,
                        "cycle": ru.id,
                        "patch_level": level,
                        "command": list(ru.hook.command),
                        "timeout_seconds": ru.hook.timeout_seconds,
                    },
                    # Drained by this phase, or earlier by maintenance: true.
                    depends_on=[drain or self._emitted(f"drain_node:{name}"), *previous],
                    reason=f"rolling update {ru.id}: run the hook, reboot",
                    changes={
                        "spec.hardware.patch_level": (
                            self.state.nodes[name].hardware.patch_level,
                            level,
                        )
                    },
                )
                batch_done.extend(self._finish_node(desired, name, [patch or "", *previous]))
            batch_done.extend(self._return_pinned(ru.id, ready, batch_done))
            patched |= set(ready)
            todo = [n for n in todo if n not in batch]
            previous = batch_done or previous
            resumed.extend(batch_done)
        if blocked:
            return  # the cycle cannot complete; what could be patched is in the plan
        # Nodes kept in maintenance by their manifest are patched but stay paused.
        kept = {n.name for n in self.desired.nodes_of(self.cluster) if n.maintenance}
        complete = self.emit(
            "complete_rolling_update",
            f"Cluster/{self.cluster}",
            self.cluster,
            {"cycle": ru.id, "nodes": [n for n in cycle if n not in kept]},
            depends_on=[*resumed, *previous],
            reason=f"every listed node patched: cycle {ru.id} recorded as done",
            changes={"status.rolling_update_done": (cluster.status.rolling_update_done, ru.id)},
        )
        if self.state.clusters[self.cluster].status.monitoring_maintenance:
            self.emit(
                "end_monitoring_maintenance",
                f"Cluster/{self.cluster}",
                self.cluster,
                {"cluster": self.cluster},
                depends_on=[complete or "", *resumed],
                reason=f"rolling update {ru.id} finished: monitoring back on",
            )

    def _return_pinned(self, cycle: str, nodes: list[str], after: list[str]) -> list[str]:
        """VMs pinned to a node go back to it once it is patched and in service again."""
        moves: list[str] = []
        pinned = [vm for vm in self.desired.vms.values() if vm.node in nodes]  # few, if any
        for vm in sorted(pinned, key=lambda v: v.name):
            have = self.state.vms.get(vm.name)
            if have is None or have.node == vm.node:
                continue
            aid = self.migrate(
                vm.name,
                vm.node or "",
                f"rolling update {cycle}: back to {vm.node}, where it is pinned",
                after,
            )
            if aid:
                moves.append(aid)
        return moves

    def _target_level(self, name: str) -> str:
        wanted = self.desired.nodes.get(name)
        node = self.state.nodes[name]
        return wanted.hardware.patch_level if wanted else node.hardware.patch_level

    def _drain_for_cycle(
        self, cycle: str, name: str, batch: list[str], patched: set[str], after: list[str]
    ) -> list[str] | None:
        """Moves that empty ``name`` for patching; None when a VM's policy forbids it."""
        running = [vm for vm in self.state.vms_on(name) if vm.power_state == "running"]
        stuck = [
            vm.name
            for vm in running
            if (policy := self.desired.vms.get(vm.name, vm)).migration_policy
            in ("never", "offline")
            and not policy.allow_downtime
        ]
        if stuck:
            self.block(
                "rolling_update",
                f"Node/{name}",
                f"rolling update {cycle} cannot patch {name}: {', '.join(stuck)} may "
                "not be live-migrated and allows no downtime; the node is left as it is",
                "set allow_downtime: true on those VMs (quick migration or shutdown), "
                "or leave the node out of rolling_update.nodes",
            )
            return None
        moves: list[str] = []
        excluded = set(batch) | {
            n.name for n in self.desired.nodes_of(self.cluster) if n.maintenance
        }
        for vm in sorted(running, key=lambda v: (-v.memory_mib, v.name)):
            destination = choose_destination(self.state, vm, exclude=excluded, prefer=patched)
            if destination is None:
                self.block(
                    "no_placement",
                    f"VirtualMachine/{vm.name}",
                    f"rolling update {cycle}: no node can take {vm.name} "
                    f"({vm.memory_mib} MiB) while {name} is patched",
                    "free memory, add a node, or relax anti-affinity",
                )
                return None
            aid = self.migrate(
                vm.name, destination, f"rolling update {cycle}: {name} is patched next", after
            )
            if aid:
                moves.append(aid)
        return moves

    def _finish_node(self, desired: Cluster, name: str, after: list[str]) -> list[str]:
        ru = desired.rolling_update
        assert ru is not None
        level = ru.patch_level or self._target_level(name)
        test_vm = desired.test_vm if ru.test_migration else None
        verify = self.emit(
            "verify_node",
            f"Node/{name}",
            name,
            {
                "node": name,
                "patch_level": level,
                "test_vm": test_vm,
                # What the manifests say the node's switches are: verified against them.
                "switches": {
                    sw.name: switch_to_params(sw.config)
                    for sw in self.desired.switches_of(self.cluster)
                },
            },
            depends_on=after,
            reason=f"{name} up, at {level}" + (f", {test_vm} can run there" if test_vm else ""),
        )
        wanted = self.desired.nodes.get(name)
        if wanted is not None and wanted.maintenance:
            return [verify] if verify else []
        resume = self.emit(
            "resume_node",
            f"Node/{name}",
            name,
            {"node": name},
            depends_on=[verify or "", *after],
            reason=f"rolling update {ru.id}: {name} back in service",
            changes={"spec.maintenance": (True, False)},
        )
        return [x for x in (verify, resume) if x]
