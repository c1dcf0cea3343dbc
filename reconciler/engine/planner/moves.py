"""Moving VMs: the migration method a policy allows, one migration, pins, drains of nodes
going into maintenance, and balancing memory between serving nodes."""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.engine.placement import (
    choose_destination,
    destination_problems,
    in_service,
    why_nowhere,
)
from reconciler.engine.planner.base import PlannerBase
from reconciler.model.actions import Disruption
from reconciler.model.capacity import usable_memory_mib, used_memory_mib, vm_cost_mib
from reconciler.model.physics import max_parallel_migrations
from reconciler.model.records import Cluster, VirtualMachine
from reconciler.model.rules import placement_problems


class Moves(PlannerBase):
    __slots__ = ()

    def _method(self, vm: VirtualMachine, policy: VirtualMachine) -> str:
        """How a VM moves; ``never`` and ``offline`` VMs with downtime allowed move off instead.

        Without allow_downtime those get the move their policy forbids, so the replay blocks
        it and says why (``never``: live; ``offline``: quick, which is downtime).
        """
        if vm.power_state != "running":
            return "offline"
        if policy.migration_policy == "live":
            return "live"
        return "live" if policy.migration_policy == "never" else "quick"

    def migrate(
        self, vm_name: str, destination: str, reason: str, depends_on: Sequence[str] = ()
    ) -> str | None:
        vm = self.state.vms[vm_name]
        policy = self.desired.vms.get(vm_name, vm)
        target = f"VirtualMachine/{vm_name}"
        stop: str | None = None
        if (
            vm.power_state == "running"
            and policy.migration_policy in ("never", "offline")
            and policy.allow_downtime
        ):
            # Saved state is not supported for such workloads (an Exchange DAG member):
            # shut down, move the VM while it is off, start it on the destination.
            stop = self.emit(
                "stop_vm",
                target,
                vm_name,
                {"vm": vm_name},
                depends_on=[*self.node_ready.get(destination, []), *depends_on],
                reason=f"{reason}: migration_policy {policy.migration_policy} moves it off "
                "(shut down, move, start), never saved",
                changes={"power_state": ("running", "off")},
            )
            vm = self.state.vms[vm_name]
            depends_on = [*depends_on, stop or ""]
        method = self._method(vm, policy)
        cluster = self.state.clusters[self.cluster]
        parallel = max_parallel_migrations(cluster)
        chain = self.migrations[-parallel:] if len(self.migrations) >= parallel else []
        disruption: Disruption = {"live": "live-migration", "quick": "downtime", "offline": "none"}[
            method
        ]  # type: ignore[assignment]
        aid = self.emit(
            "migrate_vm",
            f"VirtualMachine/{vm_name}",
            vm_name,
            {
                "vm": vm_name,
                "source": vm.node,
                "destination": destination,
                "method": method,
                "memory_mib": vm.memory_mib,
            },
            depends_on=[
                *self.node_ready.get(destination, []),
                *chain[:1],
                *self._moves_out_of(destination),
                *depends_on,
            ],
            reason=reason,
            changes={"node": (vm.node, destination)},
            disruption=disruption,
        )
        if aid:
            self.migrations.append(aid)
            if vm.node is not None:
                self.leaving.setdefault(vm.node, []).append(aid)
        if stop is not None:
            start = self.emit(
                "start_vm",
                target,
                vm_name,
                {"vm": vm_name},
                depends_on=[aid or ""],
                reason=f"started again on {destination} after its offline move",
                changes={"power_state": ("off", "running")},
            )
            return start or aid
        return aid

    def _moves_out_of(self, node_name: str) -> list[str]:
        """Moves planned so far that leave ``node_name``: they make room there."""
        return list(self.leaving.get(node_name, ()))

    def _cycle_returns_to(self, node_name: str) -> bool:
        """The rolling update under way has yet to patch or resume ``node_name``.

        VMs pinned there go back once it has (``_return_pinned``), not before: they would
        only have to leave again, or the node is paused and cannot take them.
        """
        desired = self.desired.clusters[self.cluster]
        ru = desired.rolling_update
        if ru is None or not self._cycle_active(desired):
            return False
        if node_name not in self._cycle_nodes(desired):
            return False
        status = self.state.clusters[self.cluster].status
        patched = status.rolling_update_in_progress == ru.id and node_name in status.updated_nodes
        node = self.state.nodes.get(node_name)
        return not patched or (node is not None and node.maintenance)

    def plan_move(self, want: VirtualMachine, after: list[str]) -> str | None:
        have = self.state.vms[want.name]
        if want.node is not None and want.node != have.node:
            if self._cycle_returns_to(want.node):
                return None  # the rolling update brings it back once its node is patched
            return self.migrate(
                want.name, want.node, f"pinned to {want.node} in the manifest", after
            )
        desired_node = self.desired.nodes.get(have.node or "")
        leaving = desired_node is not None and desired_node.maintenance
        # Its host lacks a switch, VLAN or LUN even after this plan's fixes.
        broken = (
            have.node is not None
            and have.power_state == "running"
            and bool(placement_problems(self.state, have, have.node))
        )
        if not leaving and not broken:
            return None
        exclude = {n.name for n in self.desired.nodes_of(self.cluster) if n.maintenance}
        destination = choose_destination(self.state, have, exclude=exclude)
        if destination is None:
            self.block(
                "no_placement",
                f"VirtualMachine/{want.name}",
                f"no node can take {want.name} ({have.memory_mib} MiB): "
                + why_nowhere(self.state, have, exclude),
                "free memory, relax anti-affinity, or recover what the reasons name",
            )
            return None
        why = f"{have.node} goes into maintenance" if leaving else f"{have.node} cannot run it"
        return self.migrate(want.name, destination, why, after)

    def drain_nodes(self) -> None:
        for node in self.desired.nodes_of(self.cluster):
            have = self.state.nodes.get(node.name)
            if have is None or have.maintenance or not node.maintenance:
                continue
            moves = [
                a.id
                for a in self.actions
                if a.type == "migrate_vm" and a.params.get("source") == node.name
            ]
            self.emit(
                "drain_node",
                f"Node/{node.name}",
                node.name,
                {"node": node.name},
                depends_on=moves,
                reason="maintenance: true in the manifest",
                changes={"spec.maintenance": (False, True)},
            )

    def _serving(self) -> list[str]:
        cluster = self.state.clusters[self.cluster]
        excluded = {n.name for n in self.desired.nodes_of(self.cluster) if n.maintenance}
        return [n for n in sorted(cluster.nodes) if in_service(self.state, n) and n not in excluded]

    def _used_pct(self, node_name: str) -> float:
        cluster = self.state.clusters[self.cluster]
        usable = usable_memory_mib(self.state.nodes[node_name], cluster)
        return 100.0 * used_memory_mib(self.state, node_name) / usable if usable else 100.0

    def balance(self, desired: Cluster) -> None:
        """Move VMs from the fullest to the emptiest node until memory use is within the spread."""
        if desired.balance is None:
            return
        spread = desired.balance.max_memory_spread_pct
        for _ in range(len(self.state.vms)):
            serving = self._serving()
            if len(serving) < 2:
                return
            pct = {n: self._used_pct(n) for n in serving}
            high = max(serving, key=lambda n: (pct[n], n))
            low = min(serving, key=lambda n: (pct[n], n))
            if pct[high] - pct[low] <= spread:
                return
            if not self._balance_step(high, low, pct):
                self.notes.append(
                    f"memory use spread {pct[high] - pct[low]:.0f} points "
                    f"({high} to {low}) stays above {spread}: no VM can move"
                )
                return

    def _balance_step(self, high: str, low: str, pct: dict[str, float]) -> bool:
        cluster = self.state.clusters[self.cluster]
        usable_high = usable_memory_mib(self.state.nodes[high], cluster)
        usable_low = usable_memory_mib(self.state.nodes[low], cluster)
        movable = [
            vm
            for vm in self.state.vms_on(high)
            if vm.power_state == "running"
            and self.desired.vms.get(vm.name, vm).node is None
            and self.desired.vms.get(vm.name, vm).migration_policy == "live"
        ]
        for vm in sorted(movable, key=lambda v: (-v.memory_mib, v.name)):
            cost = 100.0 * vm_cost_mib(vm, cluster) / max(1, min(usable_high, usable_low))
            # Only moves that bring the pair closer together, so balancing always ends.
            if max(pct[high] - cost, pct[low] + cost) >= pct[high]:
                continue
            if destination_problems(self.state, vm, low):
                continue
            return (
                self.migrate(
                    vm.name,
                    low,
                    f"balance: {high} at {pct[high]:.0f}% memory, {low} at {pct[low]:.0f}%",
                )
                is not None
            )
        return False
