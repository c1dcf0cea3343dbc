"""World rules for the life of a cluster shared volume: create, rename, remove.

``create_csv`` takes a LUN the array presents to every member (``NodeStatus.free_luns``):
Add-ClusterDisk, format it NTFS, Add-ClusterSharedVolume. ``remove_csv`` is its mirror: the
volume leaves the CSVs and the cluster, and its LUN goes back to being a presented LUN with
its data on it, never formatted or wiped. ``rename_csv`` renames the cluster disk and its
mount point (C:\\ClusterStorage\\NAME); the disk paths of the VMs on it follow, so it is done
only while none of them runs (their files are open under the old path).
"""

from __future__ import annotations

from dataclasses import replace

from reconciler.model.actions import Action
from reconciler.model.quorum import has_quorum, members_up
from reconciler.model.records import ClusterSharedVolume, Estate, Node, VolumeStatus, frozen_map
from reconciler.model.rules_base import RuleResult, already_done, fail

FILE_SYSTEM = "NTFS"


def volume_users(estate: Estate, volume: str) -> list[str]:
    """The VMs with a disk on ``volume``, by name."""
    return sorted(vm.name for vm in estate.vms.values() if volume in vm.volumes())


def _with_luns(node: Node, luns: frozenset[str], free: dict[str, int]) -> Node:
    status = replace(node.status, luns=luns, free_luns=frozen_map(free))
    return replace(node, status=status)


def create_problems(estate: Estate, cluster_name: str, lun: str, size_gib: int) -> list[str]:
    """Why the presented LUN ``lun`` cannot become a CSV of ``cluster_name`` now."""
    cluster = estate.clusters.get(cluster_name)
    if cluster is None:
        return [f"cluster {cluster_name} does not exist"]
    problems: list[str] = []
    members = [estate.nodes[n] for n in cluster.nodes if n in estate.nodes]
    blind = [n.name for n in members if lun not in n.status.free_luns]
    if blind:
        problems.append(f"LUN {lun} is not presented (free) to {', '.join(blind)}")
    sizes = {n.status.free_luns[lun] for n in members if lun in n.status.free_luns}
    if len(sizes) > 1:
        problems.append(f"the members see LUN {lun} at different sizes: {sorted(sizes)} GiB")
    elif sizes and size_gib > min(sizes):
        problems.append(f"LUN {lun} is {min(sizes)} GiB: no {size_gib} GiB volume fits")
    if not any(n.status.state == "up" for n in members):
        problems.append(f"no member of {cluster_name} is up to format LUN {lun}")
    if not has_quorum(cluster.quorum.mode, len(cluster.nodes), members_up(estate, cluster)):
        problems.append(f"cluster {cluster_name} has lost quorum: no disk can be added")
    return problems


def _create_csv(estate: Estate, action: Action) -> RuleResult:
    name = action.params["volume"]
    lun = action.params["lun"]
    size = int(action.params["size_gib"])
    existing = estate.volumes.get(name)
    if existing is not None:
        if existing.lun == lun and existing.cluster == action.cluster:
            return already_done(estate)
        return fail(estate, f"a volume named {name} exists already (on another LUN or cluster)")
    problems = create_problems(estate, action.cluster, lun, size)
    if problems:
        return fail(estate, *problems)
    cluster = estate.clusters[action.cluster]
    members = [estate.nodes[n] for n in cluster.nodes if n in estate.nodes]
    lun_size = members[0].status.free_luns[lun]
    coordinator = next(n.name for n in members if n.status.state == "up")
    volume = ClusterSharedVolume(
        name=name,
        cluster=action.cluster,
        lun_size_gib=lun_size,
        size_gib=size,
        lun=lun,
        status=VolumeStatus(coordinator=coordinator),
    )
    estate = estate.with_record(volume)
    # Every host of the cluster that sees the LUN now sees the volume (a node about to
    # join included: it was presented the same LUN).
    for node in estate.nodes_of(action.cluster):
        if lun in node.status.free_luns:
            free = dict(node.status.free_luns)
            free.pop(lun)
            estate = estate.with_record(_with_luns(node, node.status.luns | {name}, free))
    return RuleResult(estate)


def _rename_csv(estate: Estate, action: Action) -> RuleResult:
    old, new = action.params["volume"], action.params["name"]
    volume = estate.volumes.get(old)
    if volume is None:
        renamed = estate.volumes.get(new)
        if renamed is not None and renamed.lun == action.params.get("lun"):
            return already_done(estate)
        return fail(estate, f"volume {old} does not exist")
    if new in estate.volumes:
        return fail(estate, f"a volume named {new} exists already")
    running = [name for name in volume_users(estate, old) if estate.vms[name].power_state != "off"]
    if running:
        return fail(
            estate,
            f"{', '.join(running)} run from {old}: their disk files are open under "
            f"C:\\ClusterStorage\\{old}; stop them first",
        )
    estate = estate.without("ClusterSharedVolume", old).with_record(replace(volume, name=new))
    for node in estate.nodes_of(volume.cluster):
        if old in node.status.luns:
            luns = (node.status.luns - {old}) | {new}
            estate = estate.with_record(_with_luns(node, luns, dict(node.status.free_luns)))
    for user in volume_users(estate, old):
        vm = estate.vms[user]
        disks = tuple(replace(d, volume=new) if d.volume == old else d for d in vm.disks)
        estate = estate.with_record(replace(vm, disks=disks))
    return RuleResult(estate)


def _remove_csv(estate: Estate, action: Action) -> RuleResult:
    name = action.params["volume"]
    volume = estate.volumes.get(name)
    if volume is None:
        return already_done(estate)
    cluster = estate.clusters.get(volume.cluster)
    if cluster is None:
        return fail(estate, f"cluster {volume.cluster} does not exist")
    problems: list[str] = []
    users = volume_users(estate, name)
    if users:
        problems.append(f"{', '.join(users)} have disks on {name}: it is not removed under them")
    if cluster.quorum.witness.disk == name:
        problems.append(f"{name} is the quorum witness of {cluster.name}")
    if not has_quorum(cluster.quorum.mode, len(cluster.nodes), members_up(estate, cluster)):
        problems.append(f"cluster {cluster.name} has lost quorum: no disk can be removed")
    if problems:
        return fail(estate, *problems)
    # The data stays on the LUN: it is presented again as a free LUN, not formatted.
    lun = volume.lun or name
    estate = estate.without("ClusterSharedVolume", name)
    for node in estate.nodes_of(volume.cluster):
        if name in node.status.luns:
            free = {**node.status.free_luns, lun: volume.lun_size_gib}
            estate = estate.with_record(_with_luns(node, node.status.luns - {name}, free))
    return RuleResult(estate)


STORAGE_RULES = {
    "create_csv": _create_csv,
    "rename_csv": _rename_csv,
    "remove_csv": _remove_csv,
}
