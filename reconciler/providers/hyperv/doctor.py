"""``reconciler doctor``: per node, one pass/fail line per prerequisite, each failure with its fix.

Nodes are checked one by one through their own endpoints, never through the cluster name.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlparse

from reconciler.providers.base import ProviderError
from reconciler.providers.hyperv import model_map as m
from reconciler.providers.hyperv.connections import Connections, NodeConnection
from reconciler.providers.hyperv.credentials import CredentialsError, load_credentials
from reconciler.providers.hyperv.errors import CommandError, ConnectionFailed
from reconciler.providers.hyperv.session import Endpoint, NodeSession

MODULE_FEATURES = ("Hyper-V-PowerShell", "RSAT-Clustering-PowerShell")


@dataclass(frozen=True)
class Check:
    node: str
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = "PASS" if self.ok else "FAIL"
        tail = f" -- fix: {self.fix}" if not self.ok and self.fix else ""
        return f"{mark} {self.node:<16} {self.name:<14} {self.detail}{tail}"


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def check_node(c: NodeConnection, timeout: float = 5.0) -> Iterator[Check]:
    url = urlparse(c.url)
    host, https = url.hostname or c.name, url.scheme == "https"
    port = url.port or (5986 if https else 5985)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        yield Check(
            c.name,
            "reachability",
            False,
            f"{host}:{port}: {exc.strerror or exc}",
            f"open TCP {port} in the node's firewall and start WinRM (winrm quickconfig)",
        )
        return
    yield Check(c.name, "reachability", True, f"{host}:{port} answers")
    if https:
        context = ssl.create_default_context(
            cafile=c.cert_validation if isinstance(c.cert_validation, str) else None
        )
        if c.cert_validation is False:
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        try:
            with (
                socket.create_connection((host, port), timeout=timeout) as raw,
                context.wrap_socket(raw, server_hostname=host),
            ):
                pass
            verified = c.cert_validation is not False
            yield Check(
                c.name,
                "tls",
                verified,
                "certificate verified"
                if verified
                else "certificate NOT verified (cert_validation: false)",
                "give the CA bundle as ca_bundle",
            )
        except (OSError, ssl.SSLError) as exc:
            yield Check(
                c.name,
                "tls",
                False,
                f"handshake failed: {exc}",
                "give the issuing CA as ca_bundle, or fix the node's certificate",
            )
            return
    else:
        yield Check(
            c.name,
            "tls",
            _loopback(host),
            "plain HTTP" + (" on loopback (the local peer)" if _loopback(host) else ""),
            "use an HTTPS listener on 5986 (see docs/hyperv.md)",
        )
    encrypted = https or (
        c.encryption != "never" and c.auth in ("negotiate", "kerberos", "ntlm", "credssp")
    )
    yield Check(
        c.name,
        "encryption",
        encrypted or _loopback(host),
        "TLS"
        if https
        else f"{c.auth} message encryption"
        if encrypted
        else "none (Basic over HTTP)",
        "use HTTPS, or NTLM/Kerberos/CredSSP with encryption: auto",
    )
    yield Check(
        c.name,
        "delegation",
        c.auth == "credssp",
        f"auth {c.auth}"
        + (" delegates credentials" if c.auth == "credssp" else " does not delegate"),
        "Add-ClusterNode and Move-ClusterVirtualMachineRole reach other nodes: use auth: "
        "credssp, or Kerberos constrained delegation (docs/hyperv.md)",
    )


def check_session(c: NodeConnection, session: NodeSession) -> Iterator[Check]:
    try:
        os_info = session.call("Get-CimInstance", {"ClassName": "Win32_OperatingSystem"})
    except ConnectionFailed as exc:
        yield Check(
            c.name,
            "authentication",
            False,
            str(exc),
            "check the account, its password and its rights on the node",
        )
        return
    except CommandError as exc:
        if "CommandNotFoundException" not in exc.fq_error_id:
            yield Check(c.name, "authentication", False, exc.message, "check the JEA role")
            return
        os_info = session.call("Get-WmiObject", {"Class": "Win32_OperatingSystem"})
    yield Check(c.name, "authentication", True, "logged on, commands run")
    info = os_info[0] if os_info else {}
    version = str(info.get("Version", "?"))
    platform = m.platform_of(version)
    yield Check(
        c.name,
        "platform",
        platform not in (None, "2008r2"),
        f"{info.get('Caption', '?')} ({version})",
        "the hyperv provider drives Windows Server 2012 R2 and later",
    )
    try:
        features = session.call("Get-WindowsFeature", {"Name": list(MODULE_FEATURES)})
    except CommandError as exc:
        yield Check(
            c.name,
            "modules",
            False,
            exc.message,
            "install RSAT-Hyper-V-Tools and RSAT-Clustering-PowerShell",
        )
        return
    missing = [str(f.get("Name")) for f in features if not f.get("Installed")]
    yield Check(
        c.name,
        "modules",
        not missing,
        "Hyper-V and FailoverClusters modules present"
        if not missing
        else f"missing {', '.join(missing)}",
        f"Install-WindowsFeature {', '.join(missing)}",
    )


def run_doctor(connections: Connections) -> list[Check]:
    try:
        credentials = load_credentials(os.environ, connections.secrets_file)
    except CredentialsError as exc:
        raise ProviderError(str(exc)) from None
    out: list[Check] = []
    for c in connections.all_nodes():
        network = list(check_node(c))
        out.extend(network)
        if not all(x.ok for x in network if x.name == "reachability") or any(
            x.name == "tls" and not x.ok and "handshake" in x.detail for x in network
        ):
            continue
        session = NodeSession(
            c.name,
            Endpoint(
                url=c.url, auth=c.auth, cert_validation=c.cert_validation, encryption=c.encryption
            ),
            credentials,
        )
        try:
            out.extend(check_session(c, session))
        finally:
            session.close()
    return out
