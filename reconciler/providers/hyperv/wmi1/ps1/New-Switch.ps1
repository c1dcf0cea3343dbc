[CmdletBinding()] param(
    # reconciler-wmi1: New-Switch
    [Parameter(Mandatory = $true)] [string] $SwitchName,
    [ValidateSet('External', 'Internal', 'Private')] [string] $SwitchType = 'External',
    [string] $UplinkAdapter = '',
    [bool] $ManagementOS = $false
)

function Out-Result([string]$Method, $Result) {
    $job = ''
    if ($Result.ReturnValue -eq 4096) { $job = ([wmi]$Result.Job).InstanceID }
    New-Object PSObject -Property @{ Method = $Method; ReturnValue = [int]$Result.ReturnValue; Job = $job }
}
$ns = 'root\virtualization'

$svc = Get-WmiObject -Namespace $ns -Class Msvm_VirtualSwitchManagementService
$id = [guid]::NewGuid().ToString()
$made = $svc.CreateSwitch($id, $SwitchName, 1024, $null)
if ($made.ReturnValue -ne 0) { return Out-Result 'CreateSwitch' $made }
if ($SwitchType -eq 'Private') { return Out-Result 'CreateSwitch' $made }
$ext = $svc.CreateSwitchPort($made.CreatedVirtualSwitch, [guid]::NewGuid().ToString(), 'ExternalPort', $null)
$int = $svc.CreateSwitchPort($made.CreatedVirtualSwitch, [guid]::NewGuid().ToString(), 'InternalPort', $null)
$nic = $null
if ($SwitchType -eq 'External') {
    $nic = Get-WmiObject -Namespace $ns -Class Msvm_ExternalEthernetPort | Where-Object { $_.ElementName -eq $UplinkAdapter }
    if (-not $nic) { throw "no physical adapter '$UplinkAdapter' to bind" }
}
$internalName = $null
if ($ManagementOS -or $SwitchType -eq 'Internal') { $internalName = $SwitchName }
Out-Result 'SetupSwitch' $svc.SetupSwitch($ext.CreatedSwitchPort, $int.CreatedSwitchPort, $nic, $internalName, $internalName)
