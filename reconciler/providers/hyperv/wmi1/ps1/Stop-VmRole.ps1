[CmdletBinding()] param(
    # reconciler-wmi1: Stop-VmRole
    [Parameter(Mandatory = $true)] [string] $VMName
)
# A clustered VM is stopped by taking its group offline. What that does to the guest is the
# VM resource's OfflineAction (2008 R2: 0 turn off, 1 save = the default, 2 shut down,
# 3 forced shut down): for this stop it is "shut down", then put back as it was.
Import-Module FailoverClusters
$group = Get-ClusterGroup -Name $VMName
$resource = $group | Get-ClusterResource | Where-Object { $_.ResourceType.Name -eq 'Virtual Machine' }
if (-not $resource) { throw "the cluster group $VMName has no Virtual Machine resource" }
$was = ($resource | Get-ClusterParameter -Name OfflineAction).Value
$resource | Set-ClusterParameter -Name OfflineAction -Value 2
try { $null = Stop-ClusterGroup -Name $VMName }
finally { $resource | Set-ClusterParameter -Name OfflineAction -Value $was }
New-Object PSObject -Property @{ Method = 'Stop-ClusterGroup'; ReturnValue = 0; Job = '' }
