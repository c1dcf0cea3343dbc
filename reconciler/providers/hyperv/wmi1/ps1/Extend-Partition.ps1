[CmdletBinding()] param(
    # reconciler-wmi1: Extend-Partition
    [Parameter(Mandatory = $true)] [int] $DiskNumber,
    [Parameter(Mandatory = $true)] [int] $PartitionNumber,
    [Parameter(Mandatory = $true)] [uint64] $SizeBytes
)
$part = Get-WmiObject -Class Win32_DiskPartition | Where-Object { $_.DiskIndex -eq $DiskNumber -and $_.Index -eq ($PartitionNumber - 1) }
if (-not $part) { throw "disk $DiskNumber has no partition $PartitionNumber" }
$growMiB = [uint64](($SizeBytes - [uint64]$part.Size) / 1048576)
$lines = @('rescan', ('select disk {0:d}' -f $DiskNumber), ('select partition {0:d}' -f $PartitionNumber), ('extend size={0:d}' -f $growMiB))
$file = [IO.Path]::GetTempFileName()
try {
    Set-Content -LiteralPath $file -Value $lines -Encoding ASCII
    $out = & "$env:SystemRoot\System32\diskpart.exe" /s $file
    $code = $LASTEXITCODE
} finally { Remove-Item -LiteralPath $file -Force }
New-Object PSObject -Property @{ Method = 'diskpart extend'; ReturnValue = [int]$code; Job = ''; Output = ($out -join "`n") }
