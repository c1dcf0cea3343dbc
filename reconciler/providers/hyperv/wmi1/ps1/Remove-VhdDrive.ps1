[CmdletBinding()] param(
    # reconciler-wmi1: Remove-VhdDrive
    [Parameter(Mandatory = $true)] [string] $VMName,
    [ValidateSet('IDE', 'SCSI')] [string] $ControllerType = 'SCSI',
    [int] $ControllerNumber = 0,
    [int] $ControllerLocation = 0
)
# The drive at that controller slot and the disk image in it go in one
# RemoveVirtualSystemResources call; the VHD file stays where it is.

function Out-Result([string]$Method, $Result) {
    $job = ''
    if ($Result.ReturnValue -eq 4096) { $job = ([wmi]$Result.Job).InstanceID }
    New-Object PSObject -Property @{ Method = $Method; ReturnValue = [int]$Result.ReturnValue; Job = $job }
}
$ns = 'root\virtualization'

$vm = Get-WmiObject -Namespace $ns -Class Msvm_ComputerSystem -Filter "Caption='Virtual Machine'" | Where-Object { $_.ElementName -eq $VMName }
if (-not $vm) { throw "no virtual machine named $VMName on this host" }
$prefix = 'Microsoft:' + $vm.Name + '\'
$rasd = Get-WmiObject -Namespace $ns -Class Msvm_ResourceAllocationSettingData | Where-Object { $_.InstanceID.StartsWith($prefix) }
$kind = 5; if ($ControllerType -eq 'SCSI') { $kind = 6 }
$controller = $rasd | Where-Object { $_.ResourceType -eq $kind -and $_.Address -eq [string]$ControllerNumber }
if (-not $controller) { throw "$VMName has no $ControllerType controller $ControllerNumber" }
$drive = $rasd | Where-Object { $_.ResourceType -eq 22 -and $_.Parent -eq $controller.__PATH -and $_.Address -eq [string]$ControllerLocation }
if (-not $drive) { throw "$VMName has no drive at $ControllerType $ControllerNumber`:$ControllerLocation" }
$image = $rasd | Where-Object { $_.ResourceType -eq 21 -and $_.Parent -eq $drive.__PATH }
$remove = @($drive.__PATH); if ($image) { $remove = @($image.__PATH, $drive.__PATH) }
$svc = Get-WmiObject -Namespace $ns -Class Msvm_VirtualSystemManagementService
Out-Result 'RemoveVirtualSystemResources' $svc.RemoveVirtualSystemResources($vm.__PATH, $remove)
