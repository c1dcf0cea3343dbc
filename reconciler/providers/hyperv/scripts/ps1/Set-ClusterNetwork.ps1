[CmdletBinding()] param(
    # reconciler-modern: Set-ClusterNetwork
    [Parameter(Mandatory = $true)] [string] $Name,
    [Parameter(Mandatory = $true)] [string] $NewName,
    [Parameter(Mandatory = $true)] [ValidateSet('None', 'Cluster', 'ClusterAndClient')] [string] $Role
)

# A cluster network's Name and Role are properties of the object, set by assignment: no
# cmdlet parameter sets them. The network is matched by exact name (-Name is a wildcard).
$network = Get-ClusterNetwork | Where-Object { $_.Name -eq $Name }
if (-not $network) { throw "no cluster network named $Name" }
if ($network.Name -ne $NewName) { $network.Name = $NewName }
if ([string]$network.Role -ne $Role) {
    $network.Role = [Microsoft.FailoverClusters.PowerShell.ClusterNetworkRole]$Role
}
Get-ClusterNetwork | Where-Object { $_.Name -eq $NewName } |
    Select-Object Name, Role, Address, AddressPrefixLength
