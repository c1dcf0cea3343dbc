[CmdletBinding()] param(
    # reconciler-wmi1: Test-LiveMigration
    [Parameter(Mandatory = $true)] [string] $VMName,
    [Parameter(Mandatory = $true)] [string] $Node
)
Import-Module FailoverClusters
$origin = (Get-ClusterGroup -Name $VMName).OwnerNode.Name
$null = Move-ClusterVirtualMachineRole -Name $VMName -Node $Node
$null = Move-ClusterVirtualMachineRole -Name $VMName -Node $origin
$tested = @((Get-Cluster | Get-ClusterParameter -Name ReconcilerTestedNodes -ErrorAction SilentlyContinue).Value -split ',' | Where-Object { $_ }) + $Node
Get-Cluster | Set-ClusterParameter -Name ReconcilerTestedNodes -Value (($tested | Sort-Object -Unique) -join ',') -Create
New-Object PSObject -Property @{ Method = 'Move-ClusterVirtualMachineRole'; ReturnValue = 0; Job = '' }
