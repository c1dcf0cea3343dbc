[CmdletBinding()] param(
    # reconciler-wmi1: Add-VhdDrive
    [Parameter(Mandatory = $true)] [string] $VMName,
    [ValidateSet('IDE', 'SCSI')] [string] $ControllerType = 'SCSI',
    [int] $ControllerNumber = 0,
    [int] $ControllerLocation = 0,
    [Parameter(Mandatory = $true)] [string] $Path
)

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
$svc = Get-WmiObject -Namespace $ns -Class Msvm_VirtualSystemManagementService
$drive = ([wmiclass]"\\.\root\virtualization:Msvm_ResourceAllocationSettingData").CreateInstance()
$drive.ResourceType = 22; $drive.ResourceSubType = 'Microsoft Synthetic Disk Drive'
$drive.Parent = $controller.__PATH; $drive.Address = [string]$ControllerLocation
$added = $svc.AddVirtualSystemResources($vm.__PATH, @($drive.GetText(1)))
if ($added.ReturnValue -ne 0) { return Out-Result 'AddVirtualSystemResources' $added }
$image = ([wmiclass]"\\.\root\virtualization:Msvm_ResourceAllocationSettingData").CreateInstance()
$image.ResourceType = 21; $image.ResourceSubType = 'Microsoft Virtual Hard Disk'
$image.Parent = $added.NewResources[0]; $image.Connection = @($Path)
Out-Result 'AddVirtualSystemResources' $svc.AddVirtualSystemResources($vm.__PATH, @($image.GetText(1)))
