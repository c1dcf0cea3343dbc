"""Storage phases: cluster shared volumes created from presented LUNs, renamed, extended,
and (under prune) removed. World rules: ``rules_storage`` and ``rules``."""

from __future__ import annotations

from reconciler.engine.planner.base import PlannerBase
from reconciler.model.records import ClusterSharedVolume
from reconciler.model.rules_storage import FILE_SYSTEM, volume_users


def renamed_from(desired: ClusterSharedVolume, observed: list[ClusterSharedVolume]) -> str | None:
    """The observed volume on the LUN ``desired`` names, when it goes by another name."""
    if desired.lun is None:
        return None
    for have in observed:
        if have.lun == desired.lun and have.name != desired.name:
            return have.name
    return None


class Storage(PlannerBase):
    __slots__ = ()

    def rename_volume(self, volume: ClusterSharedVolume, old: str) -> None:
        target = f"ClusterSharedVolume/{old}"  # the object as it is observed now
        running = [
            vm for vm in volume_users(self.state, old) if self.state.vms[vm].power_state != "off"
        ]
        if running:
            self.block(
                "csv_in_use",
                target,
                f"{old} (LUN {volume.lun}) is renamed {volume.name} in the manifest, but "
                f"{', '.join(running)} run from it: their files are open under the old path",
                "stop those VMs (power_state: off) for the rename, or keep the old name",
            )
            return
        aid = self.emit(
            "rename_csv",
            target,
            old,
            {
                "volume": old,
                "name": volume.name,
                "lun": volume.lun,
                "vms": volume_users(self.state, old),
            },
            reason=f"the volume on LUN {volume.lun} is named {volume.name} in the manifest",
            changes={"name": (old, volume.name)},
        )
        if aid:
            self.volume_ready.setdefault(volume.name, []).append(aid)

    def create_volume(self, volume: ClusterSharedVolume) -> None:
        target = f"ClusterSharedVolume/{volume.name}"
        if volume.lun is None:
            self.block(
                "unsupported",
                target,
                f"volume {volume.name} does not exist and its manifest names no LUN to "
                "create it from",
                "set spec.lun to the id of a LUN presented to every member, or create the "
                "CSV by hand",
            )
            return
        members = [
            self.state.nodes[n]
            for n in self.state.clusters[self.cluster].nodes
            if n in self.state.nodes
        ]
        sizes = sorted(
            {n.status.free_luns[volume.lun] for n in members if volume.lun in n.status.free_luns}
        )
        size = min([volume.size_gib, *sizes])
        aid = self.emit(
            "create_csv",
            target,
            volume.name,
            {
                "volume": volume.name,
                "lun": volume.lun,
                "size_gib": size,
                "file_system": FILE_SYSTEM,
            },
            depends_on=[
                *(a for n in members for a in self.node_ready.get(n.name, [])),
                *(a for a in [f"create_cluster:{self.cluster}"] if a in self.ids),
            ],
            reason=f"{volume.name} is in the manifests: LUN {volume.lun} added as a cluster "
            f"disk, formatted {FILE_SYSTEM} and added to the CSVs",
            changes={
                "lun": (None, volume.lun),
                "size_gib": (None, size),
                "lun_size_gib": (None, sizes[0] if sizes else None),
            },
        )
        if aid:
            self.volume_ready.setdefault(volume.name, []).append(aid)

    def prune_volumes(self) -> None:
        """Under ``spec.prune.enabled``, a volume in no manifest leaves the cluster, last.

        Its LUN is given back with the data on it (never formatted); a volume some VM still
        has a disk on is not removed, and the plan says why.
        """
        if not self.desired.clusters[self.cluster].prune.enabled:
            return
        for volume in self.state.volumes_of(self.cluster):
            if volume.name in self.desired.volumes:
                continue
            target = f"ClusterSharedVolume/{volume.name}"
            users = volume_users(self.state, volume.name)
            if users:
                self.block(
                    "remove_csv",
                    target,
                    f"{volume.name} is in no manifest, but {', '.join(users)} have disks on it",
                    "move those disks or remove those VMs first; the volume is kept",
                )
                continue
            self.emit(
                "remove_csv",
                target,
                volume.name,
                {"volume": volume.name, "lun": volume.lun},
                # After the VMs pruned with it (one of them may have had its disks there).
                depends_on=[a.id for a in self.actions if a.type == "remove_vm"],
                reason=f"{volume.name} is in no manifest and Cluster/{self.cluster} has "
                "spec.prune.enabled: it leaves the CSVs and the cluster, its LUN keeps the data",
                changes={"volume": (f"{volume.size_gib} GiB on LUN {volume.lun}", None)},
            )

    def extend_storage(self) -> None:
        observed = self.state.volumes_of(self.cluster)
        for volume in self.desired.volumes_of(self.cluster):
            if volume.name in self.state.volumes:
                continue
            old = renamed_from(volume, observed)
            if old is not None and old not in self.desired.volumes:
                self.rename_volume(volume, old)
            else:
                self.create_volume(volume)
        for volume in self.desired.volumes_of(self.cluster):
            have = self.state.volumes.get(volume.name)
            if have is None:
                continue  # not created or renamed: the plan says why
            target = f"ClusterSharedVolume/{volume.name}"
            if volume.lun_size_gib < have.lun_size_gib or volume.size_gib < have.size_gib:
                self.block(
                    "no_shrink",
                    target,
                    f"{volume.name} is {have.size_gib} GiB on a {have.lun_size_gib} GiB "
                    f"LUN; the manifest asks for {volume.size_gib} on "
                    f"{volume.lun_size_gib}: volumes and LUNs never shrink",
                    f"set size_gib >= {have.size_gib} and lun_size_gib >= {have.lun_size_gib}",
                )
                continue
            lun = None
            if volume.lun_size_gib > have.lun_size_gib:
                lun = self.emit(
                    "extend_lun",
                    target,
                    volume.name,
                    {"volume": volume.name, "lun_size_gib": volume.lun_size_gib},
                    reason="grow the LUN on the storage array before the volume",
                    changes={"spec.lun_size_gib": (have.lun_size_gib, volume.lun_size_gib)},
                )
            if volume.size_gib > have.size_gib:
                ext = self.emit(
                    "extend_volume",
                    target,
                    volume.name,
                    {
                        "volume": volume.name,
                        "size_gib": volume.size_gib,
                        "coordinator": have.status.coordinator,
                    },
                    depends_on=[lun or ""],
                    reason=f"rescan and extend on the coordinator node {have.status.coordinator}",
                    changes={"spec.size_gib": (have.size_gib, volume.size_gib)},
                )
                if ext:
                    self.volume_ready.setdefault(volume.name, []).append(ext)
