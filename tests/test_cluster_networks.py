"""Cluster networks, host facts and the clustered role, against the converged golden case.

Each case edits the world (or the manifests) by hand and states what the plan must do:
a network's name and role are set (``set_cluster_network``); what no plan can change (a
subnet, a missing network, a NIC's wiring or offloads, SLAT, the clustered role) is a blocked
item with its reason; what only informs (a link speed) is a note, with exit 0.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from test_no_silent_differences import case, plan

from reconciler.cli.main import cli

HEARTBEAT = "{name: Heartbeat, roles: [heartbeat], subnet: 10.10.1.0/24"
LIVE_MIGRATION = "{name: LiveMigration, roles: [live_migration], subnet: 10.10.2.0/24"


def renamed_heartbeat(text: str) -> str:
    """Windows' own name for the heartbeat network, on the network and on every host's NIC."""
    return text.replace("name: Heartbeat,", "name: Cluster Network 2,").replace(
        "network: Heartbeat,", "network: Cluster Network 2,"
    )


def blocks(out: str) -> list[dict[str, Any]]:
    return [v for v in json.loads(out)["violations"] if v["severity"] == "block"]


class TestNameAndRole:
    def test_a_network_windows_named_is_renamed(self, tmp_path: Path) -> None:
        desired, state = case(tmp_path, [], world=renamed_heartbeat)
        code, out = plan(desired, state, "--json")
        assert code == 2, out
        [action] = json.loads(out)["actions"]
        assert action["type"] == "set_cluster_network"
        assert action["params"] == {
            "network": "Cluster Network 2",
            "subnet": "10.10.1.0/24",
            "name": "Heartbeat",
            "roles": ["heartbeat"],
            "role": "cluster",
        }
        assert action["changes"] == {
            "networks.Cluster Network 2.name": {"before": "Cluster Network 2", "after": "Heartbeat"}
        }

    def test_applied_the_hosts_nics_follow_and_the_plan_is_empty(self, tmp_path: Path) -> None:
        desired, state = case(tmp_path, [], world=renamed_heartbeat)
        result = CliRunner().invoke(
            cli, ["--state-dir", str(state), "apply", "--auto-approve", str(desired)]
        )
        assert result.exit_code == 0, result.output
        code, out = plan(desired, state)
        assert code == 0, out

    def test_a_role_that_differs_is_set(self, tmp_path: Path) -> None:
        client = LIVE_MIGRATION.replace("[live_migration]", "[management]")
        desired, state = case(tmp_path, [("observed.yaml", LIVE_MIGRATION, client)])
        code, out = plan(desired, state, "--json")
        assert code == 2, out
        [action] = json.loads(out)["actions"]
        assert action["id"] == "set_cluster_network:LiveMigration"
        assert action["changes"] == {
            "networks.LiveMigration.role": {"before": "cluster_and_client", "after": "cluster"}
        }

    def test_roles_windows_stores_alike_are_no_difference(self, tmp_path: Path) -> None:
        # Heartbeat and live migration are both the Cluster role in Windows.
        both = LIVE_MIGRATION.replace("[live_migration]", "[heartbeat, live_migration]")
        desired, state = case(tmp_path, [("desired/cluster.yaml", LIVE_MIGRATION, both)])
        code, out = plan(desired, state)
        assert code == 0, out

    def test_the_last_network_for_cluster_traffic_is_kept(self) -> None:
        from sim_strategies import act, lab_world

        from reconciler.model.rules import apply_rules

        result = apply_rules(
            lab_world(),
            act("set_cluster_network", network="LM", subnet=None, name="LM", roles=["vm"]),
        )
        assert result.failures == (
            "cluster lab would have no network for its own traffic (heartbeat): keep one "
            "network with a cluster role",
        )


class TestWhatNoPlanChanges:
    def test_a_subnet_that_differs_is_blocked(self, tmp_path: Path) -> None:
        moved = HEARTBEAT.replace("10.10.1.0/24", "10.10.9.0/24")
        desired, state = case(tmp_path, [("observed.yaml", HEARTBEAT, moved)])
        code, out = plan(desired, state, "--json")
        assert code == 3, out
        [block] = blocks(out)
        assert block["rule"] == "unsupported"
        assert block["message"] == (
            "cluster network Heartbeat is on subnet 10.10.9.0/24, the manifest says "
            "10.10.1.0/24: a cluster network is its IP subnet, which comes from the nodes' "
            "addresses; no plan changes it"
        )
        code, out = plan(desired, state, "--format", "markdown")
        assert code == 3 and "a cluster network is its IP subnet" in out

    def test_a_network_the_world_lacks_is_blocked(self, tmp_path: Path) -> None:
        storage = "    - {name: Storage, roles: [iscsi], subnet: 10.10.3.0/24}\n"
        edit = ("desired/cluster.yaml", "  live_migration:", storage + "  live_migration:")
        desired, state = case(tmp_path, [edit])
        code, out = plan(desired, state, "--json")
        assert code == 3, out
        [block] = blocks(out)
        assert block["message"].startswith("the cluster has no network on subnet 10.10.3.0/24")

    def test_a_nic_on_another_network_and_vmq_are_blocked(self, tmp_path: Path) -> None:
        nic4 = "{name: NIC4, roles: [vm], network: VM, speed_mbps: 1000}"
        vmq_on = nic4.replace("}", ", offloads: {vmq: true}}")
        nic2 = "{name: NIC2, roles: [heartbeat], network: Heartbeat"
        rewired = nic2.replace("network: Heartbeat", "network: LiveMigration")
        desired, state = case(
            tmp_path, [("observed.yaml", nic4, vmq_on), ("observed.yaml", nic2, rewired)]
        )
        code, out = plan(desired, state, "--json")
        assert code == 3, out
        assert [(b["rule"], b["target"], b["message"]) for b in blocks(out)] == [
            (
                "hardware",
                "Node/hv1",
                "hv1's NIC2 is on cluster network LiveMigration, the manifest says Heartbeat: "
                "cabling and addresses are not changed by a plan",
            ),
            (
                "hardware",
                "Node/hv1",
                "hv1's NIC4 has VMQ on, the manifest says off: NIC settings are not changed "
                "by a plan",
            ),
        ]

    def test_a_host_without_slat_is_blocked(self, tmp_path: Path) -> None:
        desired, state = case(tmp_path, [("observed.yaml", "slat: true", "slat: false")])
        code, out = plan(desired, state, "--json")
        assert code == 3, out
        [block] = blocks(out)
        assert (block["target"], block["fix"]) == ("Node/hv1", "set slat: false")

    def test_a_vm_that_is_no_clustered_role_is_blocked(self, tmp_path: Path) -> None:
        web01 = "  name: WEB01\nspec:\n  cluster: lab\n"
        edit = ("observed.yaml", web01, web01 + "  highly_available: false\n")
        desired, state = case(tmp_path, [edit])
        code, out = plan(desired, state, "--json")
        assert code == 3, out
        [block] = blocks(out)
        assert block["target"] == "VirtualMachine/WEB01"
        assert "adding or removing the clustered role is not supported yet" in block["message"]


class TestInformational:
    def test_a_link_speed_is_a_note_not_a_change(self, tmp_path: Path) -> None:
        nic3 = "{name: NIC3, roles: [live_migration], network: LiveMigration, speed_mbps: 1000}"
        desired, state = case(tmp_path, [("observed.yaml", nic3, nic3.replace("1000", "10000"))])
        code, out = plan(desired, state, "--json")
        assert code == 0, out
        assert json.loads(out)["notes"] == [
            "informational: Node/hv1 spec.nics[2].speed_mbps: the world has 10000, the "
            "manifest says 1000 (not reconciled)"
        ]


APP01_DATA = (
    "    - {name: data, controller: scsi, controller_number: 0, slot: 0, type: dynamic, "
    "format: vhd, size_gib: 100, volume: CSV1}\n"
)


class TestReplacingADiskInItsSlot:
    """The old disk is detached first (file kept) and the new one attached after it: the plan
    cannot block itself on the slot (issue 16 item 6)."""

    def _plan(self, tmp_path: Path, new_disk: str, world: Any = None) -> tuple[int, Any, Path]:
        desired, state = case(tmp_path, [("desired/vms.yaml", APP01_DATA, new_disk)], world=world)
        code, out = plan(desired, state, "--json")
        return code, json.loads(out), desired

    def test_another_disk_in_the_slot(self, tmp_path: Path) -> None:
        code, document, _ = self._plan(tmp_path, APP01_DATA.replace("name: data,", "name: logs,"))
        assert code == 2, document
        assert [(a["id"], a["type"], a["depends_on"]) for a in document["actions"]] == [
            ("detach_disk:APP01", "detach_disk", []),
            ("add_disk:APP01", "add_disk", ["detach_disk:APP01"]),
        ]
        assert document["actions"][0]["params"] == {
            "vm": "APP01",
            "disk": "data",
            "delete_file": False,
        }
        assert document["violations"] == []

    def test_another_file_for_the_same_disk(self, tmp_path: Path) -> None:
        def old_file_on_the_volume(text: str) -> str:
            return text.replace(
                "status:\n  coordinator: hv1\n",
                'status:\n  coordinator: hv1\n  files: {"OLD01/data.vhd": 30.0}\n',
            )

        attach = APP01_DATA.replace("volume: CSV1}", "volume: CSV1, file: OLD01/data.vhd}")
        code, document, desired = self._plan(tmp_path, attach, old_file_on_the_volume)
        assert code == 2, document
        detach, add = document["actions"]
        assert (detach["id"], detach["params"]["disk"], detach["params"]["delete_file"]) == (
            "detach_disk:APP01",
            "data",
            False,
        )
        assert detach["changes"] == {"disks.data.file": {"before": "APP01/data.vhd", "after": None}}
        assert (add["id"], add["depends_on"]) == ("add_disk:APP01", ["detach_disk:APP01"])
        assert add["params"]["disk"]["file"] == "OLD01/data.vhd"
        assert document["violations"] == []
        state = tmp_path / "state"
        result = CliRunner().invoke(
            cli, ["--state-dir", str(state), "apply", "--auto-approve", str(desired)]
        )
        assert result.exit_code == 0, result.output
        code, out = plan(desired, state)
        assert code == 0, out
