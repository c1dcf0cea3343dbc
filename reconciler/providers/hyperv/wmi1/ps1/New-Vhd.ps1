[CmdletBinding()] param(
    # reconciler-wmi1: New-Vhd
    [Parameter(Mandatory = $true)] [string] $Path,
    [Parameter(Mandatory = $true)] [uint64] $SizeBytes,
    [ValidateSet('Fixed', 'Dynamic', 'Differencing')] [string] $Type = 'Dynamic',
    [string] $ParentPath = ''
)

function Out-Result([string]$Method, $Result) {
    $job = ''
    if ($Result.ReturnValue -eq 4096) { $job = ([wmi]$Result.Job).InstanceID }
    New-Object PSObject -Property @{ Method = $Method; ReturnValue = [int]$Result.ReturnValue; Job = $job }
}
$ns = 'root\virtualization'

$ims = Get-WmiObject -Namespace $ns -Class Msvm_ImageManagementService
if ($Type -eq 'Fixed') { Out-Result 'CreateFixedVirtualHardDisk' $ims.CreateFixedVirtualHardDisk($Path, $SizeBytes) }
elseif ($Type -eq 'Dynamic') { Out-Result 'CreateDynamicVirtualHardDisk' $ims.CreateDynamicVirtualHardDisk($Path, $SizeBytes) }
else { Out-Result 'CreateDifferencingVirtualHardDisk' $ims.CreateDifferencingVirtualHardDisk($Path, $ParentPath) }
