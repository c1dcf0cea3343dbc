[CmdletBinding()] param(
    # reconciler-wmi1: Set-VmResources
    [Parameter(Mandatory = $true)] [string] $VMName,
    [uint64] $MemoryMB = 0,
    [uint64] $ProcessorCount = 0
)
$ns = 'root\virtualization'
$vm = Get-WmiObject -Namespace $ns -Class Msvm_ComputerSystem -Filter "Caption='Virtual Machine'" | Where-Object { $_.ElementName -eq $VMName }
if (-not $vm) { throw "no virtual machine named $VMName on this host" }
$prefix = 'Microsoft:' + $vm.Name + '\'
$changed = @()
if ($MemoryMB -gt 0) {
    $mem = Get-WmiObject -Namespace $ns -Class Msvm_MemorySettingData | Where-Object { $_.InstanceID.StartsWith($prefix) }
    $mem.VirtualQuantity = $MemoryMB; $mem.Reservation = $MemoryMB; $mem.Limit = $MemoryMB
    $changed += $mem.GetText(1)
}
if ($ProcessorCount -gt 0) {
    $cpu = Get-WmiObject -Namespace $ns -Class Msvm_ProcessorSettingData | Where-Object { $_.InstanceID.StartsWith($prefix) }
    $cpu.VirtualQuantity = $ProcessorCount
    $changed += $cpu.GetText(1)
}
$svc = Get-WmiObject -Namespace $ns -Class Msvm_VirtualSystemManagementService
$r = $svc.ModifyVirtualSystemResources($vm.__PATH, $changed)
$job = ''
if ($r.ReturnValue -eq 4096) { $job = ([wmi]$r.Job).InstanceID }
New-Object PSObject -Property @{ Method = 'ModifyVirtualSystemResources'; ReturnValue = [int]$r.ReturnValue; Job = $job }
