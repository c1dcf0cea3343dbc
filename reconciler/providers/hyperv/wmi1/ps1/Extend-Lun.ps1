[CmdletBinding()] param(
    # reconciler-wmi1: Extend-Lun
    [Parameter(Mandatory = $true)] [ValidatePattern('^[A-Za-z0-9_.-]{1,64}$')] [string] $Lun,
    [Parameter(Mandatory = $true)] [uint64] $SizeBytes
)
$lines = @('rescan', "select lun name=$Lun", ('extend lun size={0:d}' -f [uint64]($SizeBytes / 1048576)))
$file = [IO.Path]::GetTempFileName()
try {
    Set-Content -LiteralPath $file -Value $lines -Encoding ASCII
    $out = & "$env:SystemRoot\System32\diskraid.exe" /s $file
    $code = $LASTEXITCODE
} finally { Remove-Item -LiteralPath $file -Force }
New-Object PSObject -Property @{ Method = 'diskraid extend lun'; ReturnValue = [int]$code; Job = ''; Output = ($out -join "`n") }
