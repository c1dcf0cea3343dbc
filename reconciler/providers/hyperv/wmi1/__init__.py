"""The Windows Server 2008 R2 path: Hyper-V 2.0 through WMI ``root\\virtualization`` (v1)."""
