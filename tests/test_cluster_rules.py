"""World rules for a cluster as a whole: create_cluster from standalone hosts, and the cluster
name's static addresses (set_cluster_addresses).

``standalone()`` is the lab world (sim_strategies) plus hosts e1 and e2 meant for cluster
``edge``, which does not exist yet: up, with the roles, the lab's baseline and switch ``vs``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from sim_strategies import act, lab_world
from test_sim_rules import accepted, refused

from reconciler.model.records import ClusterNetwork, Estate, Quorum
from reconciler.model.rules import invariants

NETWORKS = [
    {"name": "Management", "roles": ["management"], "subnet": "10.20.0.0/24"},
    {"name": "LM", "roles": ["live_migration"], "subnet": "10.20.1.0/24"},
]


def standalone() -> Estate:
    world = lab_world(spare_ready=True)
    for name in ("e1", "e2"):
        world = world.with_record(replace(world.nodes["n3"], name=name, cluster="edge"))
    return world


def create(nodes: Any = ("e1", "e2"), addresses: Any = ("10.20.0.10",), **kw: Any) -> Any:
    return act(
        "create_cluster",
        "edge",
        nodes=list(nodes),
        addresses=list(addresses),
        networks=kw.get("networks", NETWORKS),
        platform=kw.get("platform", "2012r2"),
        no_storage=True,
    )


class TestCreatingACluster:
    def test_the_hosts_become_its_members_with_node_majority_and_no_storage(self) -> None:
        after = accepted(standalone(), create())
        cluster = after.clusters["edge"]
        assert cluster.nodes == ("e1", "e2")
        assert cluster.quorum == Quorum("node_majority")
        assert cluster.addresses == ("10.20.0.10",)
        assert cluster.networks[1] == ClusterNetwork(
            "LM", ("live_migration",), 1000, "10.20.1.0/24"
        )
        assert after.volumes_of("edge") == []
        assert invariants(after, "edge") == []

    def test_then_the_quorum_and_witness_the_manifest_wants(self) -> None:
        world = accepted(standalone(), create())
        quorum = act(
            "update_quorum",
            "edge",
            mode="node_and_file_share_majority",
            witness={"file_share": r"\\fs\edge"},
        )
        after = accepted(world, quorum)
        assert after.clusters["edge"].quorum.mode == "node_and_file_share_majority"

    @pytest.mark.parametrize(
        ("world", "action", "why"),
        [
            pytest.param(standalone(), create(addresses=()), "needs a static address", id="no-ip"),
            pytest.param(
                standalone(),
                create(addresses=("172.16.0.1",)),
                "address 172.16.0.1 is in no cluster network's subnet (10.20.0.0/24, 10.20.1.0/24)",
                id="ip-outside",
            ),
            pytest.param(
                standalone(), create(nodes=("e1", "n1")), "n1 is already a member", id="member"
            ),
            pytest.param(
                standalone().with_record(
                    replace(
                        standalone().nodes["e2"],
                        hardware=replace(standalone().nodes["e2"].hardware, patch_level="x"),
                    )
                ),
                create(),
                "e2's hardware, drivers or patches differ from e1",
                id="baseline",
            ),
            pytest.param(
                standalone().with_record(
                    replace(
                        standalone().nodes["e2"],
                        status=replace(standalone().nodes["e2"].status, switches={}),
                    )
                ),
                create(),
                "switch vs on e2 differs from e1",
                id="switches",
            ),
            pytest.param(
                standalone().with_record(
                    replace(
                        standalone().nodes["e2"],
                        status=replace(standalone().nodes["e2"].status, state="down"),
                    )
                ),
                create(),
                "e2 is down",
                id="down",
            ),
            pytest.param(standalone(), create(nodes=("e1", "zz")), "node zz does not exist"),
        ],
    )
    def test_validation_refuses_with_the_reason(self, world: Estate, action: Any, why: str) -> None:
        refused(world, action, "cluster validation failed", why)


class TestClusterAddresses:
    def test_set_within_the_subnets(self) -> None:
        world = accepted(standalone(), create())
        after = accepted(
            world, act("set_cluster_addresses", "edge", addresses=["10.20.0.10", "10.20.1.10"])
        )
        assert after.clusters["edge"].addresses == ("10.20.0.10", "10.20.1.10")

    def test_refused_outside_every_subnet(self) -> None:
        world = accepted(standalone(), create())
        refused(
            world,
            act("set_cluster_addresses", "edge", addresses=["192.168.1.1"]),
            "address 192.168.1.1 is in no cluster network's subnet",
        )
