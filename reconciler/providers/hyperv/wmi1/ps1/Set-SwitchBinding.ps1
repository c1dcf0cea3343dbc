[CmdletBinding()] param(
    # reconciler-wmi1: Set-SwitchBinding
    [Parameter(Mandatory = $true)] [string] $SwitchName,
    [ValidateSet('External', 'Internal', 'Private')] [string] $SwitchType = 'External',
    [string] $UplinkAdapter = '',
    [bool] $ManagementOS = $false
)
# An existing switch bound again, as v1 does it: its uplink and host ports are taken down
# (TeardownSwitch: the physical adapter unbound, the host's internal adapter deleted), then set
# up as asked (SetupSwitch, a job). The switch and its VMs' ports stay. The uplink port's VLAN
# settings go with the old port: the caller sets the trunk again right after.

function Out-Result([string]$Method, $Result) {
    $job = ''
    if ($Result.ReturnValue -eq 4096) { $job = ([wmi]$Result.Job).InstanceID }
    New-Object PSObject -Property @{ Method = $Method; ReturnValue = [int]$Result.ReturnValue; Job = $job }
}
$ns = 'root\virtualization'

$svc = Get-WmiObject -Namespace $ns -Class Msvm_VirtualSwitchManagementService
$switch = Get-WmiObject -Namespace $ns -Class Msvm_VirtualSwitch | Where-Object { $_.ElementName -eq $SwitchName }
if (-not $switch) { throw "no virtual switch named $SwitchName" }
$ports = @(Get-WmiObject -Namespace $ns -Class Msvm_SwitchPort |
    Where-Object { $_.SystemName -eq $switch.Name -and $_.ElementName -ne 'Dynamic Ethernet Switch Port' })
$uplink = $ports | Where-Object { $_.ElementName -ne 'InternalPort' } | Select-Object -First 1
$hostPort = $ports | Where-Object { $_.ElementName -eq 'InternalPort' } | Select-Object -First 1
if ($uplink -or $hostPort) {
    $internal = $null
    if ($hostPort) {
        $internal = Get-WmiObject -Namespace $ns -Class Msvm_InternalEthernetPort | Where-Object { $_.ElementName -eq $SwitchName }
    }
    $down = $svc.TeardownSwitch($uplink.__PATH, $hostPort.__PATH, $internal.__PATH)
    Out-Result 'TeardownSwitch' $down
    if ($down.ReturnValue -eq 4096) {
        while (([wmi]$down.Job).JobState -lt 7) { Start-Sleep -Milliseconds 500 }
    } elseif ($down.ReturnValue -ne 0) { return }
}
if ($SwitchType -eq 'Private') { return }
$ext = $svc.CreateSwitchPort($switch.__PATH, [guid]::NewGuid().ToString(), 'ExternalPort', $null)
$int = $svc.CreateSwitchPort($switch.__PATH, [guid]::NewGuid().ToString(), 'InternalPort', $null)
$nic = $null
if ($SwitchType -eq 'External') {
    $nic = Get-WmiObject -Namespace $ns -Class Msvm_ExternalEthernetPort | Where-Object { $_.ElementName -eq $UplinkAdapter }
    if (-not $nic) { throw "no physical adapter '$UplinkAdapter' to bind" }
}
$internalName = $null
if ($ManagementOS -or $SwitchType -eq 'Internal') { $internalName = $SwitchName }
Out-Result 'SetupSwitch' $svc.SetupSwitch($ext.CreatedSwitchPort, $int.CreatedSwitchPort, $nic, $internalName, $internalName)
