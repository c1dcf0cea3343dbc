"""A WS-Management + PowerShell Remoting (PSRP) peer of the simulator, served on loopback only."""
