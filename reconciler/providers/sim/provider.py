"""The embedded simulator: a Hyper-V estate in SQLite that obeys the same rules as the planner.

Each ``apply`` loads the action's cluster, checks the world rules, runs the physics (the
simulated clock advances; nothing sleeps) and writes the new state in one transaction.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from reconciler.model.actions import ACTION_TYPES, Action
from reconciler.model.capacity import free_memory_mib, vm_cost_mib
from reconciler.model.conditions import stamp_since
from reconciler.model.physics import (
    action_seconds,
    estimate_move,
    live_inputs,
    schedule_live_moves,
)
from reconciler.model.platforms import PLATFORM_NAMES
from reconciler.model.quorum import has_quorum, members_up
from reconciler.model.records import Estate, VirtualMachine
from reconciler.model.rules import apply_rules, placement_problems
from reconciler.model.timing import makespan
from reconciler.providers.base import Capabilities, Outcome, ProviderError, Scope
from reconciler.providers.hook import HookResult, run_hook
from reconciler.providers.sim.health import HealthFaultError
from reconciler.providers.sim.store import (
    MigrationRecord,
    WorldBackend,
    WorldTx,
    open_world_store,
)

log = structlog.get_logger("reconciler.sim")

# Faults that end the process as a power loss would (no cleanup, exit 137), armed in the
# world by 'sim fault crash-after N' / 'crash-during N': after the N-th action has taken
# effect (and before the caller can record it), or inside the N-th action's transaction.
CRASH_AFTER = "crash_after"
CRASH_DURING = "crash_during"
CRASH_EXIT_CODE = 137
# Test hook: the process stops itself (SIGSTOP) inside the N-th action's transaction, so a
# test can kill -9 it there, mid-apply, holding its lease.
HANG_MID_ACTION_ENV = "RECONCILER_SIM_HANG_MID_ACTION"


class SimProvider:
    name = "sim"

    def __init__(self, state_dir: Path, state_url: str | None = None, **_options: Any) -> None:
        self.store: WorldBackend = open_world_store(Path(state_dir), state_url)
        self._applied = 0  # actions this provider applied, for the hang test hook

    # --- protocol ---------------------------------------------------------------------------

    def observe(self, scope: Scope | None = None) -> Estate:
        self._require_world()
        if scope is None:
            return self.store.load()
        # Only the named objects' rows are read: verifying an action reads what it touched.
        return self.store.load(cluster=scope.cluster, objects=scope.objects)

    def observation_digest(self) -> str | None:
        self._require_world()
        return self.store.objects_digest()

    def observe_cluster(self, cluster: str) -> Estate:
        self._require_world()
        return self.store.load(cluster=cluster)

    def capabilities(self) -> Capabilities:
        return Capabilities(
            name="sim",
            simulated=True,
            actions=frozenset(ACTION_TYPES),
            platforms=frozenset(PLATFORM_NAMES),
        )

    def close(self) -> None:
        self.store.close()

    def apply(self, action: Action) -> Outcome:
        self._require_world()
        dies_inside = self._arm_crash_during(1)
        self._applied += 1
        if action.type not in ACTION_TYPES:
            # Not a state of the world: no retry and no change of the world will make it run.
            return Outcome("permanent_error", f"the simulator has no action type {action.type}")
        details: dict[str, Any] = {}
        if action.type == "patch_node" and action.params.get("command"):
            # The hook runs for real, outside any transaction (it may take an hour); the
            # node's patch level rises only if it succeeds.
            before = self.observe_cluster(action.cluster)
            check = apply_rules(before, action)
            if check.failures:
                return Outcome("precondition_failed", "; ".join(check.failures))
            if check.done:
                return Outcome("already_done", f"{action.target} is already as desired")
            hook = self._run_hook(action)
            details["hook"] = hook.as_details()
            if not hook.ok:
                return Outcome(
                    "permanent_error",
                    f"{hook.describe(float(action.params.get('timeout_seconds', 3600)))}: "
                    f"{action.params['node']} stays drained and unpatched; the rolling update "
                    "stops here (fix the cause, then apply again to carry on)",
                    details=details,
                )
        with self.store.transaction() as conn:
            before = self.store.load(conn, cluster=action.cluster)
            result = apply_rules(before, action)
            if result.failures:
                return Outcome("precondition_failed", "; ".join(result.failures))
            if result.done:
                return Outcome("already_done", f"{action.target} is already as desired")
            # verify_node live-migrates the cluster's test VM onto the node and back.
            if action.type in ("migrate_vm", "test_live_migration") or (
                action.type == "verify_node" and action.params.get("test_vm")
            ):
                failed = self.store.take_migration_failure(conn, action.cluster)
                if failed:
                    seconds = self._record_moves(conn, before, action, "failed")
                    self.store.advance_clock(conn, seconds)
                    self.store.log_event(conn, "migration_failed", f"{action.id} failed")
                    return Outcome(
                        "transient_error",
                        "live migration failed (injected fault); the VM stays on its source",
                        seconds,
                    )
                seconds = self._record_moves(conn, before, action, "done")
                details.update(self.store.last_migration(conn))
                if action.type == "migrate_vm" and action.params["method"] == "live":
                    factor = self.store.link_factor(conn, action.cluster)
                    details["pass_seconds"] = self._pass_seconds(before, action, factor)
            else:
                seconds = action_seconds(action, before.clusters.get(action.cluster), None)
            self._save(conn, before, result.estate)
            self._maybe_hang()
            if dies_inside:
                os._exit(CRASH_EXIT_CODE)  # the transaction never commits
            self.store.advance_clock(conn, seconds)
            dies_after = self.store.count_toward_crash(conn, CRASH_AFTER)
        if dies_after:
            os._exit(CRASH_EXIT_CODE)  # the effect is committed; the caller never hears of it
        log.debug("sim.apply", action=action.id, type=action.type, seconds=round(seconds, 3))
        return Outcome("done", f"{action.type} {action.target}", seconds, details)

    def apply_migrations(self, actions: Sequence[Action]) -> list[Outcome]:
        """Live migrations of one cluster started together, in one transaction.

        At most the cluster's max_parallel_migrations run at once; a further one waits for a
        slot (the notes' progress bar sitting at 50%). Those running share the live-migration
        link fairly, so each takes longer than alone (docs/domain.md section 8).
        """
        self._require_world()
        if len({a.cluster for a in actions}) != 1 or any(
            a.type != "migrate_vm" or a.params.get("method") != "live" for a in actions
        ):
            return [self.apply(a) for a in actions]
        dies_inside = self._arm_crash_during(len(actions))
        cluster_name = actions[0].cluster
        outcomes: dict[int, Outcome] = {}
        with self.store.transaction() as conn:
            before = self.store.load(conn, cluster=cluster_name)
            state = before
            accepted: list[int] = []
            for i, action in enumerate(actions):
                result = apply_rules(state, action)
                if result.failures:
                    outcomes[i] = Outcome("precondition_failed", "; ".join(result.failures))
                elif result.done:
                    outcomes[i] = Outcome("already_done", f"{action.target} is already as desired")
                elif self.store.take_migration_failure(conn, cluster_name):
                    outcomes[i] = Outcome(
                        "transient_error",
                        "live migration failed (injected fault); the VM stays on its source",
                    )
                else:
                    accepted.append(i)
                    state = result.estate
            cluster = before.clusters[cluster_name]
            factor = self.store.link_factor(conn, cluster_name)
            vms = [before.vms[actions[i].params["vm"]] for i in accepted]
            starts, estimates = schedule_live_moves(cluster, vms, factor)
            now = self.store.clock(conn)
            for i, vm, start, est in zip(accepted, vms, starts, estimates, strict=True):
                action = actions[i]
                self.store.record_migration(
                    conn,
                    MigrationRecord(
                        now + start,
                        cluster_name,
                        vm.name,
                        vm.node,
                        action.params["destination"],
                        "live",
                        est.total_seconds,
                        est.downtime_seconds,
                        est.passes,
                        est.bytes_sent,
                        "done",
                    ),
                )
                outcomes[i] = Outcome(
                    "done",
                    f"migrate_vm {action.target}",
                    est.total_seconds,
                    {
                        "migration_seconds": est.total_seconds,
                        "downtime_seconds": est.downtime_seconds,
                        "passes": est.passes,
                        "bytes_sent": est.bytes_sent,
                        "waited_seconds": start,
                        "concurrent": len(accepted),
                    },
                )
            elapsed = makespan(starts, estimates)
            self._save(conn, before, state)
            if dies_inside:
                os._exit(CRASH_EXIT_CODE)
            self.store.advance_clock(conn, elapsed)
            dies_after = bool(accepted) and self.store.count_toward_crash(
                conn, CRASH_AFTER, len(accepted)
            )
        if dies_after:
            os._exit(CRASH_EXIT_CODE)
        return [outcomes[i] for i in range(len(actions))]

    # --- physics ----------------------------------------------------------------------------

    def _record_moves(self, conn: WorldTx, estate: Estate, action: Action, outcome: str) -> float:
        vm = estate.vms[action.params.get("vm") or action.params["test_vm"]]
        cluster = estate.clusters[vm.cluster]
        factor = self.store.link_factor(conn, cluster.name)
        now = self.store.clock(conn)
        if action.type in ("test_live_migration", "verify_node"):
            legs = [(vm.node, action.params["node"]), (action.params["node"], vm.node)]
            method = "live"
        else:
            legs = [(vm.node, action.params["destination"])]
            method = action.params["method"]
        total = 0.0
        for source, destination in legs:
            est = estimate_move(cluster, vm, method, factor)
            self.store.record_migration(
                conn,
                MigrationRecord(
                    now + total,
                    cluster.name,
                    vm.name,
                    source,
                    str(destination),
                    method,
                    est.total_seconds,
                    est.downtime_seconds,
                    est.passes,
                    est.bytes_sent,
                    outcome,
                ),
            )
            total += est.total_seconds
            if outcome == "failed":
                break
        return total

    @staticmethod
    def _pass_seconds(estate: Estate, action: Action, factor: float) -> list[float]:
        """How long each pre-copy pass takes, for progress shown pass by pass."""
        vm = estate.vms[action.params["vm"]]
        cluster = estate.clusters[vm.cluster]
        inputs = live_inputs(cluster, vm, factor)
        passes = estimate_move(cluster, vm, "live", factor).passes
        size = inputs.memory_mib
        out: list[float] = []
        for _ in range(passes + 1):
            out.append(size / inputs.bandwidth_mib_s)
            size = min(inputs.memory_mib, inputs.dirty_mib_s * out[-1])
        return out

    def _maybe_hang(self) -> None:
        hang = os.environ.get(HANG_MID_ACTION_ENV)
        if hang and hang.isdigit() and int(hang) == self._applied:
            # Sent to this thread, not the process: a process-directed stop may be taken by
            # another thread while this one runs on and commits (seen under load).
            signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)

    @staticmethod
    def _run_hook(action: Action) -> HookResult:
        return run_hook(
            action.params["command"],
            node=action.params["node"],
            cluster=action.cluster,
            rolling_id=action.params["cycle"],
            timeout_seconds=float(action.params.get("timeout_seconds", 3600)),
        )

    def _arm_crash_during(self, actions: int) -> bool:
        """Count actions toward a crash-during fault, committed before the action's own
        transaction (which the crash rolls back); True when this action is to die inside."""
        if not self.store.has_fault(CRASH_DURING):
            return False
        with self.store.transaction() as conn:
            return self.store.count_toward_crash(conn, CRASH_DURING, actions)

    def _require_world(self) -> None:
        if not self.store.exists:
            raise ProviderError(
                f"no simulated world in {self.store.location}: "
                "create one with 'reconciler sim init WORLD.yaml' "
                "(try manifests/worlds/demo.yaml, which 'reconciler demo' writes)"
            )

    # --- setting up and disturbing the world (sim-only) -------------------------------------

    def init_world(self, estate: Estate, source: str) -> None:
        # What is unhealthy in the world file has been so since the world began (t=0).
        self.store.replace_world(stamp_since(estate, 0.0), source)

    def _save(self, conn: WorldTx, before: Estate, after: Estate) -> None:
        """Write a change, noting when each condition it brings began (the world's clock)."""
        self.store.save_changes(conn, before, stamp_since(after, self.store.clock(conn)))

    def health_fault(self, fault: Callable[[Estate], tuple[Estate, list[str]]]) -> list[str]:
        """A VM role failing, a CSV redirected, a network down or up (providers/sim/health)."""
        self._require_world()
        with self.store.transaction() as conn:
            world = self.store.load(conn)
            try:
                estate, report = fault(world)
            except HealthFaultError as exc:
                raise ProviderError(str(exc)) from exc
            self._save(conn, world, estate)
            for line in report:
                self.store.log_event(conn, "fault", line)
        return report

    def clock(self) -> float:
        return self.store.clock()

    def crash_node(self, node_name: str) -> list[str]:
        """A node fails: HA VMs restart elsewhere where capacity allows; the rest stay down."""
        self._require_world()
        report: list[str] = []
        with self.store.transaction() as conn:
            world = self.store.load(conn)
            node = world.nodes.get(node_name)
            if node is None:
                raise ProviderError(f"no node {node_name}")
            estate = world.with_record(replace(node, status=replace(node.status, state="down")))
            report.append(f"{node_name} is down")
            cluster = estate.clusters.get(node.cluster)
            victims = estate.vms_on(node_name)
            for vm in sorted(victims, key=lambda v: (-v.memory_mib, v.name)):
                if vm.power_state != "running":
                    continue
                target = self._restart_target(estate, vm) if vm.highly_available else None
                if target is None and not vm.highly_available:
                    estate = estate.with_record(replace(vm, power_state="off"))
                    report.append(f"{vm.name} stays down (not highly available)")
                elif target is None:
                    # The cluster gives up restarting the role: Failed, until started.
                    failed = replace(vm.status, failed=True)
                    estate = estate.with_record(replace(vm, power_state="off", status=failed))
                    report.append(f"{vm.name} stays down (no capacity): its role is failed")
                else:
                    estate = estate.with_record(replace(vm, node=target))
                    report.append(f"{vm.name} restarted on {target}")
            if cluster is not None and not has_quorum(
                cluster.quorum.mode, len(cluster.nodes), members_up(estate, cluster)
            ):
                report.append(f"cluster {cluster.name} lost quorum: every VM stops")
                for vm in list(estate.vms.values()):
                    if vm.cluster == cluster.name and vm.power_state == "running":
                        estate = estate.with_record(replace(vm, power_state="off"))
            self._save(conn, world, estate)
            for line in report:
                self.store.log_event(conn, "node_crash", line)
        return report

    @staticmethod
    def _restart_target(estate: Estate, vm: VirtualMachine) -> str | None:
        cluster = estate.clusters[vm.cluster]
        best: tuple[int, str] | None = None
        for name in cluster.nodes:
            node = estate.nodes.get(name)
            if node is None or node.status.state != "up" or node.maintenance or name == vm.node:
                continue
            if placement_problems(estate, vm, name):
                continue
            free = free_memory_mib(estate, name)
            if free < vm_cost_mib(vm, cluster, node):
                continue
            if best is None or (free, name) > best:
                best = (free, name)
        return best[1] if best else None

    def recover_node(self, node_name: str) -> list[str]:
        self._require_world()
        with self.store.transaction() as conn:
            world = self.store.load(conn)
            node = world.nodes.get(node_name)
            if node is None:
                raise ProviderError(f"no node {node_name}")
            estate = world.with_record(replace(node, status=replace(node.status, state="up")))
            self._save(conn, world, estate)
            self.store.log_event(conn, "node_recover", f"{node_name} is up")
        return [f"{node_name} is up"]

    def fail_migrations(self, count: int, cluster: str | None = None) -> list[str]:
        self._require_world()
        with self.store.transaction() as conn:
            self.store.add_fault(conn, "fail_migrations", cluster, remaining=count)
            self.store.log_event(conn, "fault", f"next {count} migration(s) fail")
        return [f"the next {count} migration(s) will fail"]

    def slow_link(self, factor: float, cluster: str | None = None) -> list[str]:
        self._require_world()
        with self.store.transaction() as conn:
            self.store.add_fault(conn, "slow_link", cluster, factor=factor)
            self.store.log_event(conn, "fault", f"live-migration link at {factor:.0%}")
        return [f"live-migration bandwidth now {factor:.0%} of nominal"]

    def arm_crash(self, kind: str, count: int) -> list[str]:
        """The process applying the ``count``-th action from now ends abruptly (exit 137)."""
        self._require_world()
        when = "after" if kind == CRASH_AFTER else "during"
        with self.store.transaction() as conn:
            self.store.clear_faults(conn, kind)
            self.store.add_fault(conn, kind, None, remaining=count)
            self.store.log_event(conn, "fault", f"crash {when} action {count}")
        return [
            f"the process applying action {count} from now will end abruptly {when} it "
            + ("takes effect" if kind == CRASH_AFTER else "is committed")
        ]

    def change_behind_back(self, before: Estate, after: Estate, message: str) -> None:
        """Write a drifted world (made by ``drift``) in one transaction, with an event."""
        with self.store.transaction() as conn:
            self._save(conn, before, after)
            self.store.log_event(conn, "drift", message)
