[CmdletBinding()] param(
    # reconciler-modern: Rename-ClusterResource
    [Parameter(Mandatory = $true)] [string] $Name,
    [Parameter(Mandatory = $true)] [string] $NewName
)

# A cluster resource's Name has no cmdlet parameter: it is set by assigning the property of
# the object Get-ClusterResource returns. Both names arrive as typed parameters.
$resource = Get-ClusterResource -Name $Name -ErrorAction Stop
$resource.Name = $NewName
Get-ClusterResource -Name $NewName -ErrorAction Stop
