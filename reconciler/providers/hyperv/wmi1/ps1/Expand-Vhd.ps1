[CmdletBinding()] param(
    # reconciler-wmi1: Expand-Vhd
    [Parameter(Mandatory = $true)] [string] $Path,
    [Parameter(Mandatory = $true)] [uint64] $SizeBytes
)
# 2008 R2 grows a VHD only while no running VM holds it (no online resize): the caller checks.

function Out-Result([string]$Method, $Result) {
    $job = ''
    if ($Result.ReturnValue -eq 4096) { $job = ([wmi]$Result.Job).InstanceID }
    New-Object PSObject -Property @{ Method = $Method; ReturnValue = [int]$Result.ReturnValue; Job = $job }
}
$ns = 'root\virtualization'

$ims = Get-WmiObject -Namespace $ns -Class Msvm_ImageManagementService
Out-Result 'ExpandVirtualHardDisk' $ims.ExpandVirtualHardDisk($Path, $SizeBytes)
