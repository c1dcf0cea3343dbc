"""World rules for VM settings that never move or restart it: preferred owners, automatic
start and stop actions.

Preferred owners are a set (their order is not compared) and setting them never moves the
VM: the cluster only prefers them at the next failover or placement. The automatic start
action changes while the VM runs; the automatic stop action only while it is off.
"""

from __future__ import annotations

from dataclasses import replace

from reconciler.model.actions import Action
from reconciler.model.records import Estate
from reconciler.model.rules_base import RuleResult, already_done, fail, vm_of


def _set_preferred_owners(estate: Estate, action: Action) -> RuleResult:
    vm = vm_of(estate, action)
    if vm is None:
        return fail(estate, f"VM {action.params['vm']} does not exist")
    owners = frozenset(action.params["owners"])
    if vm.preferred_owners == owners:
        return already_done(estate)
    cluster = estate.clusters[vm.cluster]
    strangers = sorted(owners - set(cluster.nodes))
    if strangers:
        return fail(estate, f"{', '.join(strangers)} not a member of {cluster.name}")
    return RuleResult(estate.with_record(replace(vm, preferred_owners=owners)))


def _set_automatic_actions(estate: Estate, action: Action) -> RuleResult:
    vm = vm_of(estate, action)
    if vm is None:
        return fail(estate, f"VM {action.params['vm']} does not exist")
    start = action.params.get("start", vm.automatic_start_action)
    stop = action.params.get("stop", vm.automatic_stop_action)
    if (vm.automatic_start_action, vm.automatic_stop_action) == (start, stop):
        return already_done(estate)
    if stop != vm.automatic_stop_action and vm.power_state != "off":
        return fail(estate, f"{vm.name} must be off to change its automatic stop action")
    changed = replace(vm, automatic_start_action=start, automatic_stop_action=stop)
    return RuleResult(estate.with_record(changed))


SETTINGS_RULES = {
    "set_preferred_owners": _set_preferred_owners,
    "set_automatic_actions": _set_automatic_actions,
}
