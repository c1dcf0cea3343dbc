[CmdletBinding()] param(
    # reconciler-wmi1: Set-VmState
    [Parameter(Mandatory = $true)] [string] $VMName,
    [Parameter(Mandatory = $true)] [ValidateSet('Running', 'Off')] [string] $State
)
# A VM that is not clustered: started with RequestStateChange(2) (a job), shut down through
# the guest's shutdown integration component (the caller waits for EnabledState 3).

function Out-Result([string]$Method, $Result) {
    $job = ''
    if ($Result.ReturnValue -eq 4096) { $job = ([wmi]$Result.Job).InstanceID }
    New-Object PSObject -Property @{ Method = $Method; ReturnValue = [int]$Result.ReturnValue; Job = $job }
}
$ns = 'root\virtualization'

$vm = Get-WmiObject -Namespace $ns -Class Msvm_ComputerSystem -Filter "Caption='Virtual Machine'" | Where-Object { $_.ElementName -eq $VMName }
if (-not $vm) { throw "no virtual machine named $VMName on this host" }
if ($State -eq 'Running') { return Out-Result 'RequestStateChange' $vm.RequestStateChange(2) }
$shutdown = Get-WmiObject -Namespace $ns -Class Msvm_ShutdownComponent | Where-Object { $_.SystemName -eq $vm.Name }
if (-not $shutdown) { throw "$VMName has no shutdown integration component: stop it by hand" }
Out-Result 'InitiateShutdown' $shutdown.InitiateShutdown($true, 'reconciler stop_vm')
