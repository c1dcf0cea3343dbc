[CmdletBinding()] param(
    # reconciler-wmi1: Get-NicOffloads
)
# 2008 R2 has no NetAdapter cmdlets. A network adapter's advanced properties are the
# standardized keywords (*VMQ, *JumboPacket) under its driver key: the network adapter class
# key, subkey = Win32_NetworkAdapter.Index as four digits. Read only; nothing is built from a
# value but that integer.
$class = 'HKLM:\SYSTEM\CurrentControlSet\Control\Class\{4D36E972-E325-11CE-BFC1-08002BE10318}'
foreach ($adapter in @(Get-WmiObject -Class Win32_NetworkAdapter -Filter "PhysicalAdapter=True")) {
    if (-not $adapter.NetConnectionID) { continue }
    $key = Join-Path $class ('{0:D4}' -f [int]$adapter.Index)
    $p = Get-ItemProperty -LiteralPath $key -ErrorAction SilentlyContinue
    New-Object PSObject -Property @{
        Name = [string]$adapter.NetConnectionID
        Vmq = [string]$p.'*VMQ'
        JumboPacket = [string]$p.'*JumboPacket'
    }
}
