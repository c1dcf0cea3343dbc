[CmdletBinding()] param(
    # reconciler-wmi1: Get-VhdInfo
    [Parameter(Mandatory = $true)] [string[]] $Path
)
$ims = Get-WmiObject -Namespace 'root\virtualization' -Class Msvm_ImageManagementService
foreach ($p in $Path) {
    $r = $ims.GetVirtualHardDiskInfo($p)
    if ($r.ReturnValue -ne 0) { throw "GetVirtualHardDiskInfo failed with return value $($r.ReturnValue) for $p" }
    $props = @{ Path = $p }
    foreach ($node in ([xml]$r.Info).SelectNodes('/INSTANCE/PROPERTY')) { $props[$node.NAME] = $node.VALUE }
    New-Object PSObject -Property @{ Path = $p; Type = [int]$props['Type']; MaxInternalSize = [uint64]$props['MaxInternalSize']; FileSize = [uint64]$props['FileSize']; ParentPath = [string]$props['ParentPath'] }
}
