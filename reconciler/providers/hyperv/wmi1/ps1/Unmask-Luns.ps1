[CmdletBinding()] param(
    # reconciler-wmi1: Unmask-Luns
    [Parameter(Mandatory = $true)] [ValidatePattern('^[A-Za-z0-9_.-]{1,64}$')] [string[]] $Lun,
    [Parameter(Mandatory = $true)] [ValidatePattern('^[A-Za-z0-9-]{1,63}$')] [string] $HostName
)
$lines = @('rescan')
foreach ($name in $Lun) { $lines += "select lun name=$name"; $lines += "unmask lun add $HostName" }
$lines += 'rescan'
$file = [IO.Path]::GetTempFileName()
try {
    Set-Content -LiteralPath $file -Value $lines -Encoding ASCII
    $out = & "$env:SystemRoot\System32\diskraid.exe" /s $file
    $code = $LASTEXITCODE
} finally { Remove-Item -LiteralPath $file -Force }
New-Object PSObject -Property @{ Method = 'diskraid unmask lun'; ReturnValue = [int]$code; Job = ''; Output = ($out -join "`n") }
