"""The connections file: per cluster its address, per node its WinRM endpoint (YAML or JSON).

::

    defaults:                       # optional, for every node
      auth: negotiate               # negotiate|kerberos|credssp|ntlm|basic|certificate
      ca_bundle: /etc/ssl/hv-ca.pem # or cert_validation: false (never do that outside a lab)
      encryption: auto              # auto|always|never
    secrets_file: /etc/reconciler/hyperv.secret   # optional; else RECONCILER_HYPERV_USER/PASSWORD
    clusters:
      hv-prod:
        address: hv-prod.example.com  # shown only: cmdlets always target nodes, never this name
        nodes:
          hv01: {}                    # https://hv01:5986/wsman
          hv02: {url: https://hv02.example.com:5986/wsman, auth: credssp}

Nothing secret belongs here: credentials come from the environment or the secrets file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reconciler.providers.base import ProviderError

AUTHS = ("negotiate", "kerberos", "credssp", "ntlm", "basic", "certificate")
ENCRYPTIONS = ("auto", "always", "never")
NODE_KEYS = frozenset(
    {"url", "auth", "ca_bundle", "cert_validation", "encryption", "certificate", "certificate_key"}
)
SECRET_KEYS = frozenset({"password", "username", "user", "secret", "access_key"})


@dataclass(frozen=True)
class NodeConnection:
    name: str
    url: str
    auth: str = "negotiate"
    cert_validation: bool | str = True  # True, False, or a CA bundle path
    encryption: str = "auto"
    certificate: str | None = None
    certificate_key: str | None = None


@dataclass(frozen=True)
class ClusterConnection:
    name: str
    address: str | None
    nodes: dict[str, NodeConnection] = field(default_factory=dict)


@dataclass(frozen=True)
class Connections:
    source: str
    clusters: dict[str, ClusterConnection]
    secrets_file: Path | None = None

    def node(self, name: str) -> NodeConnection:
        for cluster in self.clusters.values():
            if name in cluster.nodes:
                return cluster.nodes[name]
        raise ProviderError(f"{self.source}: no connection for node {name}")

    def all_nodes(self) -> list[NodeConnection]:
        return [n for c in self.clusters.values() for n in c.nodes.values()]


def _fail(source: str, where: str, message: str) -> ProviderError:
    return ProviderError(f"{source}: {where}: {message}")


def _node(source: str, where: str, name: str, raw: Any, defaults: dict[str, Any]) -> NodeConnection:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise _fail(source, where, "expected a mapping (url, auth, ca_bundle, encryption)")
    merged = {**defaults, **raw}
    secret = SECRET_KEYS & set(merged)
    if secret:
        raise _fail(
            source,
            where,
            f"{', '.join(sorted(secret))} does not belong in a connections file: use "
            "RECONCILER_HYPERV_USER / RECONCILER_HYPERV_PASSWORD or secrets_file",
        )
    unknown = set(merged) - NODE_KEYS
    if unknown:
        raise _fail(
            source,
            where,
            f"unknown key(s) {', '.join(sorted(unknown))} (allowed: "
            f"{', '.join(sorted(NODE_KEYS))})",
        )
    auth = str(merged.get("auth", "negotiate"))
    if auth not in AUTHS:
        raise _fail(source, f"{where}.auth", f"'{auth}' is not one of {', '.join(AUTHS)}")
    encryption = str(merged.get("encryption", "auto"))
    if encryption not in ENCRYPTIONS:
        raise _fail(
            source, f"{where}.encryption", f"'{encryption}' is not one of {', '.join(ENCRYPTIONS)}"
        )
    validation: bool | str = True
    if "ca_bundle" in merged:
        validation = str(merged["ca_bundle"])
    if "cert_validation" in merged:
        if not isinstance(merged["cert_validation"], bool):
            raise _fail(source, f"{where}.cert_validation", "expected true or false")
        if merged["cert_validation"] is False:
            validation = False
    url = str(merged.get("url") or f"https://{name}:5986/wsman")
    if not url.startswith(("http://", "https://")):
        raise _fail(source, f"{where}.url", f"'{url}' is not an http(s) URL")
    return NodeConnection(
        name,
        url,
        auth,
        validation,
        encryption,
        merged.get("certificate"),
        merged.get("certificate_key"),
    )


def parse_connections(text: str, source: str) -> Connections:
    try:
        data = json.loads(text) if source.endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ProviderError(f"{source}: not valid YAML or JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("clusters"), dict):
        raise _fail(source, "clusters", "expected a mapping of cluster name to its nodes")
    unknown = set(data) - {"clusters", "defaults", "secrets_file"}
    if unknown:
        raise _fail(source, "top level", f"unknown key(s) {', '.join(sorted(unknown))}")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise _fail(source, "defaults", "expected a mapping")
    clusters: dict[str, ClusterConnection] = {}
    for cname, raw in data["clusters"].items():
        where = f"clusters.{cname}"
        if not isinstance(raw, dict) or not isinstance(raw.get("nodes"), dict) or not raw["nodes"]:
            raise _fail(source, f"{where}.nodes", "expected a mapping of node name to endpoint")
        extra = set(raw) - {"address", "nodes"}
        if extra:
            raise _fail(source, where, f"unknown key(s) {', '.join(sorted(extra))}")
        nodes = {
            str(n): _node(source, f"{where}.nodes.{n}", str(n), v, defaults)
            for n, v in raw["nodes"].items()
        }
        clusters[str(cname)] = ClusterConnection(str(cname), raw.get("address"), nodes)
    secrets = data.get("secrets_file")
    return Connections(source, clusters, Path(secrets) if secrets else None)


def load_connections(path: Path) -> Connections:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ProviderError(f"cannot read the connections file {path}: {exc.strerror}") from None
    return parse_connections(text, str(path))


def connections_document(
    clusters: Mapping[str, tuple[str | None, Mapping[str, str]]], auth: str, encryption: str
) -> dict[str, Any]:
    """The document ``sim serve-winrm --write-connections`` writes."""
    return {
        "defaults": {"auth": auth, "encryption": encryption},
        "clusters": {
            name: {
                "address": address,
                "nodes": {n: {"url": url} for n, url in sorted(nodes.items())},
            }
            for name, (address, nodes) in sorted(clusters.items())
        },
    }
