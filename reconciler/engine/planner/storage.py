"""Storage phases: extending cluster shared volumes the manifests grow."""

from __future__ import annotations

from reconciler.engine.planner.base import PlannerBase


class Storage(PlannerBase):
    __slots__ = ()

    def extend_storage(self) -> None:
        for volume in self.desired.volumes_of(self.cluster):
            have = self.state.volumes.get(volume.name)
            if have is None:
                self.block(
                    "unsupported",
                    f"ClusterSharedVolume/{volume.name}",
                    f"volume {volume.name} does not exist; creating LUNs and volumes "
                    "is not supported",
                    "create and add the CSV by hand, then plan",
                )
                continue
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
