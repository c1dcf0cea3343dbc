r"""The constant scripts of the 2008 R2 path (PowerShell 2.0), shipped as ``ps1/*.ps1``.

Each is a ``[CmdletBinding()] param()`` block and every value arrives as a typed parameter; no
script text is ever built from a value. Where a tool reads a script of its own (diskpart,
diskraid), the lines are built inside PowerShell from parameters that are typed integers or
names validated by a pattern, so no value can become a command. Each write script ends with
ONE WMI method (or tool) call and returns ``Method``, ``ReturnValue`` and ``Job`` (the
Msvm_ConcreteJob InstanceID when ReturnValue is 4096): the provider polls the job and turns
any other non-zero value into an error. PowerShell 2.0 has no ``[pscustomobject]``: results
are ``New-Object PSObject -Property``. The marker comment names each script for review and
for the test peer.
"""

from __future__ import annotations

from importlib import resources


def _load(name: str) -> str:
    return (resources.files(__package__ or __name__) / "ps1" / f"{name}.ps1").read_text("utf-8")


SET_SWITCH_VLANS = _load("Set-SwitchVlans")
NEW_SWITCH = _load("New-Switch")
SET_SWITCH_BINDING = _load("Set-SwitchBinding")  # TeardownSwitch, then SetupSwitch again
NEW_VHD = _load("New-Vhd")
ADD_VHD_DRIVE = _load("Add-VhdDrive")
EXTEND_PARTITION = _load("Extend-Partition")  # diskpart: only typed integers in its lines
EXTEND_LUN = _load("Extend-Lun")  # diskraid, through the array's VDS hardware provider
UNMASK_LUNS = _load("Unmask-Luns")
TEST_LIVE_MIGRATION = _load("Test-LiveMigration")
SET_VM_RESOURCES = _load("Set-VmResources")  # ModifyVirtualSystemResources
GET_VHD_INFO = _load("Get-VhdInfo")  # GetVirtualHardDiskInfo's embedded instance, read
GET_NIC_OFFLOADS = _load("Get-NicOffloads")  # *VMQ, *JumboPacket of each adapter, read
STOP_VM_ROLE = _load("Stop-VmRole")  # Stop-ClusterGroup, the VM resource shut down
SET_VM_STATE = _load("Set-VmState")  # a VM that is not clustered: RequestStateChange
REMOVE_VHD_DRIVE = _load("Remove-VhdDrive")  # RemoveVirtualSystemResources
EXPAND_VHD = _load("Expand-Vhd")  # ExpandVirtualHardDisk (offline only on 2008 R2)

ALL: dict[str, str] = {
    "Set-SwitchVlans": SET_SWITCH_VLANS,
    "New-Switch": NEW_SWITCH,
    "Set-SwitchBinding": SET_SWITCH_BINDING,
    "New-Vhd": NEW_VHD,
    "Add-VhdDrive": ADD_VHD_DRIVE,
    "Extend-Partition": EXTEND_PARTITION,
    "Extend-Lun": EXTEND_LUN,
    "Unmask-Luns": UNMASK_LUNS,
    "Test-LiveMigration": TEST_LIVE_MIGRATION,
    "Get-VhdInfo": GET_VHD_INFO,
    "Get-NicOffloads": GET_NIC_OFFLOADS,
    "Set-VmResources": SET_VM_RESOURCES,
    "Stop-VmRole": STOP_VM_ROLE,
    "Set-VmState": SET_VM_STATE,
    "Remove-VhdDrive": REMOVE_VHD_DRIVE,
    "Expand-Vhd": EXPAND_VHD,
}
