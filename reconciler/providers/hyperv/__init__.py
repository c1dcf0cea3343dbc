"""The hyperv provider: Windows Server failover clusters over PowerShell Remoting (pypsrp)."""
