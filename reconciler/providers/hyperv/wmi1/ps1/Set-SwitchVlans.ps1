[CmdletBinding()] param(
    # reconciler-wmi1: Set-SwitchVlans
    [Parameter(Mandatory = $true)] [string] $SwitchName,
    [int[]] $TrunkedVlanId = @(),
    [int] $NativeVlanId = 0
)

function Out-Result([string]$Method, $Result) {
    $job = ''
    if ($Result.ReturnValue -eq 4096) { $job = ([wmi]$Result.Job).InstanceID }
    New-Object PSObject -Property @{ Method = $Method; ReturnValue = [int]$Result.ReturnValue; Job = $job }
}
$ns = 'root\virtualization'

$switch = Get-WmiObject -Namespace $ns -Class Msvm_VirtualSwitch | Where-Object { $_.ElementName -eq $SwitchName }
if (-not $switch) { throw "no virtual switch named $SwitchName" }
$port = Get-WmiObject -Namespace $ns -Class Msvm_SwitchPort |
    Where-Object { $_.SystemName -eq $switch.Name -and $_.ElementName -ne 'InternalPort' -and $_.ElementName -ne 'Dynamic Ethernet Switch Port' }
$vlan = Get-WmiObject -Namespace $ns -Class Msvm_VLANEndpointSettingData |
    Where-Object { $_.InstanceID -eq ('Microsoft:' + $port.Name) }
$vlan.TrunkedVLANList = [uint16[]]$TrunkedVlanId
$vlan.NativeVLAN = [uint16]$NativeVlanId
$null = $vlan.Put()
New-Object PSObject -Property @{ Method = 'Msvm_VLANEndpointSettingData.Put'; ReturnValue = 0; Job = '' }
