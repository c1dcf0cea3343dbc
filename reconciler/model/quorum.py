"""Quorum arithmetic: votes, the recommended mode, and how many failures a cluster survives.

Node Majority with n nodes survives ceil(n/2) - 1 failures; with an online witness, ceil(n/2)
(docs/domain.md section 5). The cluster stops when the votes it can see are not a majority.
"""

from __future__ import annotations

import math

from reconciler.model.records import Cluster, Estate, Quorum, QuorumMode, Witness

WITNESS_MODES: dict[QuorumMode, str] = {
    "node_and_disk_majority": "disk",
    "node_and_file_share_majority": "file_share",
    "disk_only": "disk",
    "cloud_witness": "cloud",
}


def recommended_mode(node_count: int, witness: Witness) -> QuorumMode:
    """Odd: Node Majority. Even: a witness mode, preferring the witness the cluster has."""
    if node_count % 2 == 1:
        return "node_majority"
    if witness.kind == "file_share":
        return "node_and_file_share_majority"
    if witness.kind == "cloud":
        return "cloud_witness"
    return "node_and_disk_majority"


def effective_quorum(desired: Quorum, node_count: int) -> Quorum:
    """Resolve ``recommended`` to a concrete mode for the given membership."""
    if desired.mode != "recommended":
        return desired
    mode = recommended_mode(node_count, desired.witness)
    witness = desired.witness if mode in WITNESS_MODES else Witness()
    return Quorum(mode=mode, witness=witness)


def failures_tolerated(mode: QuorumMode, node_count: int) -> int:
    if node_count <= 0:
        return 0
    if mode == "disk_only":
        return node_count - 1  # survives anything but the disk
    if mode in WITNESS_MODES:
        return node_count // 2  # n + witness votes: even n survives n/2, odd n (n-1)/2
    return math.ceil(node_count / 2) - 1


def has_quorum(
    mode: QuorumMode, members: int, members_up: int, witness_online: bool = True
) -> bool:
    if members == 0:
        return False
    if mode == "disk_only":
        return witness_online and members_up > 0
    total = members + (1 if mode in WITNESS_MODES else 0)
    votes = members_up + (1 if mode in WITNESS_MODES and witness_online else 0)
    return votes * 2 > total


def members_up(estate: Estate, cluster: Cluster) -> int:
    # Asked after every step of a plan replay; the nodes' states change far less often.
    memo = estate.host_memo()
    key = ("members_up", cluster.name)
    cached: tuple[Cluster, int] | None = memo.get(key)
    if cached is not None and cached[0] is cluster:
        return cached[1]
    up = sum(
        1
        for name in cluster.nodes
        if name in estate.nodes and estate.nodes[name].status.state == "up"
    )
    memo[key] = (cluster, up)
    return up


def cluster_has_quorum(estate: Estate, cluster_name: str) -> bool:
    cluster = estate.clusters[cluster_name]
    return has_quorum(cluster.quorum.mode, len(cluster.nodes), members_up(estate, cluster))


def quorum_problem(quorum: Quorum, node_count: int, cloud_witness_supported: bool) -> str | None:
    """Why a quorum setting makes no sense for this node count and witness, or None."""
    mode = quorum.mode
    if mode == "recommended":
        return None
    needed = WITNESS_MODES.get(mode)
    if needed is None and quorum.witness.kind is not None:
        return f"mode {mode} uses no witness, but a {quorum.witness.kind} witness is given"
    if needed is not None and quorum.witness.kind != needed:
        return f"mode {mode} needs a {needed} witness"
    if mode == "cloud_witness" and not cloud_witness_supported:
        return "cloud_witness is not available on this platform"
    if mode == "node_majority" and node_count % 2 == 0:
        return (
            f"node_majority with {node_count} nodes survives "
            f"{failures_tolerated(mode, node_count)} failure(s), no more than "
            f"{node_count - 1} nodes would; an even node count needs a witness"
        )
    if mode != "disk_only" and needed is not None and node_count % 2 == 1:
        return (
            f"{mode} with an odd node count ({node_count}) gives an even vote count; "
            "an odd node count needs node_majority"
        )
    return None
