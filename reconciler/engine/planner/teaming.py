"""Changing a switch's embedded team on the members: the switch is recreated (Remove-VMSwitch,
New-VMSwitch -EnableEmbeddedTeaming with the same name), so each node is drained first and
resumed after, one node at a time; a host never has two switches of one name, and the VMs
of the node being recreated run elsewhere meanwhile (on nodes already done, where they can).
World rule: ``match_vswitch`` (refused while a running VM there uses the switch)."""

from __future__ import annotations

from reconciler.engine.changes import switch_changes
from reconciler.engine.placement import choose_destination
from reconciler.engine.planner.membership import Membership
from reconciler.model.records import Cluster
from reconciler.model.rules import switch_to_params


class Teaming(Membership):
    __slots__ = ()

    def recreate_teamed_switches(self, observed: Cluster) -> list[str]:
        """The drain, recreate and resume of each member whose switch team differs."""
        ids: list[str] = []
        previous: list[str] = []  # the next node starts once the one before is back
        done: set[str] = set()
        kept = {n.name for n in self.desired.nodes_of(self.cluster) if n.maintenance}
        for name in sorted(observed.nodes):
            node = self.state.nodes.get(name)
            if node is None:
                continue
            changed = [
                sw
                for sw in self.desired.switches_of(self.cluster)
                if (have := node.status.switches.get(sw.name)) is not None
                and have.team_nics != sw.config.team_nics
            ]
            if not changed:
                continue
            target = f"Node/{name}"
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
                    "switch_team",
                    target,
                    f"the team of {', '.join(s.name for s in changed)} on {name} changes, which "
                    f"recreates the switch, but {', '.join(stuck)} may not be live-migrated "
                    "and allow no downtime",
                    "set allow_downtime: true on those VMs, or change the team by hand",
                )
                continue
            moves: list[str] = []
            unplaced: list[str] = []
            for vm in sorted(running, key=lambda v: (-v.memory_mib, v.name)):
                destination = choose_destination(self.state, vm, exclude={name, *kept}, prefer=done)
                if destination is None:
                    unplaced.append(vm.name)
                    continue
                aid = self.migrate(
                    vm.name, destination, f"{name} is drained to recreate its switch", previous
                )
                if aid:
                    moves.append(aid)
            if unplaced:
                self.block(
                    "no_placement",
                    target,
                    f"{name} cannot be drained to recreate its switch: no node can take "
                    f"{', '.join(unplaced)}",
                    "free memory or add a node first",
                )
                continue
            drained_here = not self.state.nodes[name].maintenance
            drain = self.emit(
                "drain_node",
                target,
                name,
                {"node": name},
                depends_on=[*previous, *moves],
                reason=f"{name} paused so its switch can be recreated with its new team",
                changes={"spec.maintenance": (False, True)},
            )
            recreated: list[str] = []
            for switch in changed:
                have = self.state.nodes[name].status.switches.get(switch.name)
                aid = self.emit(
                    "match_vswitch",
                    target,
                    f"{name}/{switch.name}",
                    {
                        "node": name,
                        "switch": switch.name,
                        "config": switch_to_params(switch.config),
                    },
                    depends_on=[drain or "", *previous],
                    reason=f"the team of {switch.name} differs: the switch is removed and "
                    "made again with the same name on this node only",
                    changes=switch_changes(switch.name, have, switch.config),
                )
                if aid:
                    recreated.append(aid)
            ids.extend(recreated)
            resume = None
            if drained_here and name not in kept:
                resume = self.emit(
                    "resume_node",
                    target,
                    name,
                    {"node": name},
                    depends_on=recreated,
                    reason=f"{name} back in service with the new team",
                    changes={"spec.maintenance": (True, False)},
                )
            previous = [resume] if resume else recreated
            self.node_ready.setdefault(name, []).extend(previous)
            done.add(name)
        return ids
