"""Hyper-V, FailoverClusters, Storage and CIM object shapes as psrpcore values.

Each object carries the .NET type names a Windows host emits, so a client sees
``Deserialized.Microsoft.HyperV.PowerShell.VirtualMachine`` and the like; sizes are UInt64
and memory Int64 as on the host, and enums carry their own type names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from psrpcore.types import (
    PSEnumBase,
    PSInt64,
    PSList,
    PSNoteProperty,
    PSObject,
    PSType,
    PSUInt,
    PSUInt64,
)

GIB = 2**30
MIB = 2**20


def ps_object(
    type_names: Iterable[str], props: Mapping[str, Any], to_string: str | None = None
) -> PSObject:
    """An object with adapted (.NET) properties, as a host serialises it."""
    obj = PSObject()
    obj.PSObject.type_names = [*type_names, "System.Object"]
    for name, value in props.items():
        obj.PSObject.adapted_properties.append(PSNoteProperty(name, value))
    if to_string is not None:
        obj.PSObject.to_string = to_string
    return obj


def ps_list(values: Iterable[Any]) -> PSList:
    out = PSList()
    out.extend(values)
    return out


def u64(n: int | float) -> PSUInt64:
    return PSUInt64(int(n))


def i64(n: int) -> PSInt64:
    return PSInt64(n)


def u32(n: int) -> PSUInt:
    return PSUInt(n)


# --- enums (values as in the Hyper-V and FailoverClusters assemblies) ------------------------


@PSType(["Microsoft.HyperV.PowerShell.VMState"])
class VMState(PSEnumBase):
    Other = 1
    Running = 2
    Off = 3
    Stopping = 4
    Saved = 6
    Paused = 9
    Starting = 10


@PSType(["Microsoft.HyperV.PowerShell.StartAction"])
class StartAction(PSEnumBase):
    Nothing = 2
    StartIfRunning = 3
    Start = 4


@PSType(["Microsoft.HyperV.PowerShell.StopAction"])
class StopAction(PSEnumBase):
    TurnOff = 2
    Save = 3
    ShutDown = 4


@PSType(["Microsoft.HyperV.PowerShell.ControllerType"])
class ControllerType(PSEnumBase):
    IDE = 0
    SCSI = 1


@PSType(["Microsoft.Vhd.PowerShell.VhdType"])
class VhdType(PSEnumBase):
    Unknown = 0
    Fixed = 2
    Dynamic = 3
    Differencing = 4


@PSType(["Microsoft.Vhd.PowerShell.VhdFormat"])
class VhdFormat(PSEnumBase):
    Unknown = 0
    VHD = 2
    VHDX = 3


@PSType(["Microsoft.HyperV.PowerShell.VMSwitchType"])
class VMSwitchType(PSEnumBase):
    Private = 0
    Internal = 1
    External = 2


@PSType(["Microsoft.HyperV.PowerShell.VMNetworkAdapterVlanMode"])
class VlanMode(PSEnumBase):
    Untagged = 0
    Access = 1
    Trunk = 2


@PSType(["Microsoft.FailoverClusters.PowerShell.ClusterNodeState"])
class ClusterNodeState(PSEnumBase):
    Up = 0
    Down = 1
    Paused = 2
    Joining = 3
    Unknown = -1


@PSType(["Microsoft.FailoverClusters.PowerShell.ClusterGroupState"])
class ClusterGroupState(PSEnumBase):
    Online = 0
    Offline = 1
    Failed = 2
    PartialOnline = 3
    Pending = 4


@PSType(["Microsoft.FailoverClusters.PowerShell.GroupType"])
class GroupType(PSEnumBase):
    Cluster = 1
    AvailableStorage = 2
    VirtualMachine = 111


@PSType(["Microsoft.FailoverClusters.PowerShell.ClusterQuorumType"])
class ClusterQuorumType(PSEnumBase):
    NodeMajority = 0
    NodeAndDiskMajority = 1
    NodeAndFileShareMajority = 2
    DiskOnly = 3
    Majority = 4
    CloudWitness = 5


@PSType(["Microsoft.FailoverClusters.PowerShell.ClusterNetworkRole"])
class ClusterNetworkRole(PSEnumBase):
    none = 0  # serialised as "None"
    Cluster = 1
    Client = 2
    ClusterAndClient = 3


@PSType(["Microsoft.FailoverClusters.PowerShell.ClusterResourceState"])
class ClusterResourceState(PSEnumBase):
    Online = 2
    Offline = 3
    Failed = 4


# --- type names ----------------------------------------------------------------------------

VM_TYPES = (
    "Microsoft.HyperV.PowerShell.VirtualMachine",
    "Microsoft.HyperV.PowerShell.VirtualMachineBase",
)
HDD_TYPES = (
    "Microsoft.HyperV.PowerShell.HardDiskDrive",
    "Microsoft.HyperV.PowerShell.Drive",
)
VHD_TYPES = ("Microsoft.Vhd.PowerShell.VirtualHardDisk",)
SWITCH_TYPES = ("Microsoft.HyperV.PowerShell.VMSwitch",)
ADAPTER_TYPES = ("Microsoft.HyperV.PowerShell.VMNetworkAdapter",)
VLAN_TYPES = ("Microsoft.HyperV.PowerShell.VMNetworkAdapterVlanSetting",)
CLUSTER_TYPES = ("Microsoft.FailoverClusters.PowerShell.Cluster",)
NODE_TYPES = ("Microsoft.FailoverClusters.PowerShell.ClusterNode",)
GROUP_TYPES = ("Microsoft.FailoverClusters.PowerShell.ClusterGroup",)
RESOURCE_TYPES = ("Microsoft.FailoverClusters.PowerShell.ClusterResource",)
QUORUM_TYPES = ("Microsoft.FailoverClusters.PowerShell.ClusterQuorumSettings",)
CSV_TYPES = ("Microsoft.FailoverClusters.PowerShell.ClusterSharedVolume",)
CSV_STATE_TYPES = ("Microsoft.FailoverClusters.PowerShell.ClusterSharedVolumeStateInfo",)
CSV_INFO_TYPES = ("Microsoft.FailoverClusters.PowerShell.ClusterSharedVolumeInfo",)
PARTITION_INFO_TYPES = ("Microsoft.FailoverClusters.PowerShell.ClusterDiskPartitionInfo",)
NETWORK_TYPES = ("Microsoft.FailoverClusters.PowerShell.ClusterNetwork",)
NETIF_TYPES = ("Microsoft.FailoverClusters.PowerShell.ClusterNetworkInterface",)
PARAMETER_TYPES = ("Microsoft.FailoverClusters.PowerShell.ClusterParameter",)
DISK_TYPES = (
    "Microsoft.Management.Infrastructure.CimInstance#ROOT/Microsoft/Windows/Storage/MSFT_Disk",
    "Microsoft.Management.Infrastructure.CimInstance",
)
PARTITION_TYPES = (
    "Microsoft.Management.Infrastructure.CimInstance#ROOT/Microsoft/Windows/Storage/MSFT_Partition",
    "Microsoft.Management.Infrastructure.CimInstance",
)
SUPPORTED_SIZE_TYPES = (
    "Microsoft.Management.Infrastructure.CimInstance#ROOT/Microsoft/Windows/Storage/"
    "MSFT_StorageSupportedSize",
    "Microsoft.Management.Infrastructure.CimInstance",
)
NETADAPTER_TYPES = (
    "Microsoft.Management.Infrastructure.CimInstance#ROOT/StandardCimv2/MSFT_NetAdapter",
    "Microsoft.Management.Infrastructure.CimInstance",
)
FEATURE_TYPES = ("Microsoft.Windows.ServerManager.Commands.Feature",)
REGISTRY_TYPES = ("System.Management.Automation.PSCustomObject",)


def cim_types(cls: str) -> tuple[str, str]:
    return (
        f"Microsoft.Management.Infrastructure.CimInstance#root/cimv2/{cls}",
        "Microsoft.Management.Infrastructure.CimInstance",
    )


def wmi_types(cls: str) -> tuple[str, ...]:
    return (
        f"System.Management.ManagementObject#root\\cimv2\\{cls}",
        "System.Management.ManagementObject",
        "System.Management.ManagementBaseObject",
    )
