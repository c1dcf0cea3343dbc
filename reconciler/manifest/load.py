"""Load manifests (desired state) or a world file (observed state) in three layers.

1. YAML syntax, 2. each document against its kind's schema, 3. rules across objects.
All errors are collected; an estate is returned only when there are none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from reconciler.manifest.build import build_record, switch_config
from reconciler.manifest.cache import ManifestCache, content_key
from reconciler.manifest.checks import ANY_NAME, check_estate
from reconciler.manifest.discovery import select_manifests
from reconciler.manifest.documents import (
    NOT_CHECKED,
    Document,
    Source,
    declared_names,
    manifest_files,
    read_bytes,
    read_text,
)
from reconciler.manifest.errors import ManifestError, ManifestLoadError
from reconciler.manifest.schema import check_document
from reconciler.model.records import (
    ClusterSharedVolume,
    Estate,
    Node,
    Record,
    SwitchConfig,
    VirtualMachine,
    VirtualSwitch,
    frozen_map,
    kind_of,
)
from reconciler.model.vlans import VlanListError


@dataclass(slots=True)
class LoadResult:
    estate: Estate | None
    errors: list[ManifestError] = field(default_factory=list)
    sources: dict[tuple[str, str], Document] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.estate is not None

    def problems(self) -> list[ManifestError]:
        return [e for e in self.errors if e.severity == "error"]


def load_paths(paths: list[str], world: bool = False, cache_dir: Path | None = None) -> LoadResult:
    """Load every manifest under ``paths``; with ``cache_dir``, unchanged files load warm."""
    docs: list[Document] = []
    errors: list[ManifestError] = []
    files: list[str] = []
    cache = ManifestCache(cache_dir) if cache_dir is not None else None
    keys: dict[str, str] = {}
    cached_files: set[str] = set()
    unchecked: set[str] = set()
    empty: list[str] = []
    for name, path in manifest_files(paths):
        if path is None:
            errors.append(
                ManifestError(
                    name,
                    0,
                    0,
                    "-",
                    "-",
                    "no such file or folder",
                    "a manifest file or a folder of .yaml files",
                )
            )
            continue
        try:
            content = path.read_bytes()
        except OSError as exc:
            unchecked.add(ANY_NAME)  # what it declares is unknown: so is every reference
            errors.append(
                ManifestError(
                    name, 0, 0, "-", "-", f"cannot read the file: {exc.strerror}", "a readable file"
                )
            )
            continue
        files.append(name)
        if cache is not None:
            key = keys[name] = content_key(content, world)
            cached = cache.get(key)
            if cached is not None:
                cached_files.add(name)
                source = Source(file=str(path))
                docs.extend(
                    Document(name, i, data, line, col, checked=True, source=source)
                    for i, (data, line, col) in enumerate(cached)
                )
                continue
        file_docs, file_errors = read_bytes(content, name, path)
        if any(e.message.endswith(NOT_CHECKED) for e in file_errors):
            unchecked |= declared_names(content.decode("utf-8", errors="replace"))
        elif not file_docs and not file_errors:
            empty.append(name)
        docs.extend(file_docs)
        errors.extend(file_errors)
    docs, errors, files = select_manifests(set(paths), docs, errors, files, world)
    errors.extend(_empty_files(empty, no_manifests=not docs and not errors))
    if not files and not any(e.severity == "error" for e in errors):
        errors.append(
            ManifestError(
                ",".join(paths),
                0,
                0,
                "-",
                "-",
                "no manifests found",
                "files ending in .yaml or .yml",
            )
        )
    fill = None
    if cache is not None:
        fresh = {name: key for name, key in keys.items() if name not in cached_files}
        fill = _CacheFill(cache, fresh, docs, errors)
    result = load_documents(docs, errors, files, world, unchecked, fill)
    if fill is not None:
        fill.flush()
    return result


def _empty_files(empty: list[str], no_manifests: bool) -> list[ManifestError]:
    """An empty file is a warning; when every file is empty, there are no manifests: an error."""
    if no_manifests and empty:
        return [
            ManifestError(
                empty[0],
                1,
                1,
                "-",
                "-",
                f"no manifests found: {len(empty)} file(s), all empty",
                "apiVersion, kind, metadata, spec in each document",
            )
        ]
    return [
        ManifestError(
            name,
            1,
            1,
            "-",
            "-",
            "the file is empty: it declares no objects",
            "delete it, or add manifests",
            "warning",
        )
        for name in empty
    ]


class _CacheFill:
    """Caches each newly read file whose every document passed the syntax and schema layers
    (the rules across objects run on every load, cached or not), as soon as its last document
    is checked: so a file's data need not be kept for the cache once its records are built."""

    def __init__(
        self,
        cache: ManifestCache,
        keys: dict[str, str],
        docs: list[Document],
        errors: list[ManifestError],
    ) -> None:
        self.cache = cache
        self.keys = keys
        self.failed = {e.file for e in errors if e.severity == "error"}  # in reading
        self.counts: dict[str, int] = {}
        for doc in docs:
            self.counts[doc.file] = self.counts.get(doc.file, 0) + 1
        self.file: str | None = None
        self.passed: list[tuple[Any, int, int]] = []

    def __call__(self, doc: Document) -> None:
        if doc.file != self.file:
            self.flush()
            self.file = doc.file
        self.passed.append((doc.data, doc.line, doc.col))

    def flush(self) -> None:
        name, passed = self.file, self.passed
        self.passed = []
        if name is None or name in self.failed or name not in self.keys:
            return
        if len(passed) == self.counts.get(name):
            self.cache.put(self.keys[name], passed)


def load_text(text: str, file: str = "<text>", world: bool = False) -> LoadResult:
    docs, errors = read_text(text, file)
    return load_documents(docs, errors, [file], world)


def require(result: LoadResult) -> Estate:
    if result.estate is None:
        raise ManifestLoadError(result.problems())
    return result.estate


def load_documents(
    docs: list[Document],
    errors: list[ManifestError],
    files: list[str],
    world: bool,
    unchecked: set[str] | None = None,
    passed: Callable[[Document], None] | None = None,
) -> LoadResult:
    """Schema and cross-object layers; ``unchecked`` holds names declared in files that could
    not be read, so that references to them are not reported a second time. ``passed`` sees
    each document whose record was built, before its data is let go (only the kind and name
    are kept, for errors): the records are what the rest of the load needs."""
    unchecked = set(unchecked or ())
    records: list[Record] = []
    sources: dict[tuple[str, str], Document] = {}
    statuses: dict[tuple[str, str], dict[str, Any]] = {}
    for doc in docs:
        _normalise(doc)
        doc_errors = [] if doc.checked else check_document(doc)
        if not world and isinstance(doc.data, dict) and "status" in doc.data:
            doc_errors.append(
                doc.error(
                    ("status",),
                    "status is observed-only: it belongs in world files",
                    "apiVersion, kind, metadata, spec",
                )
            )
        errors.extend(doc_errors)
        if doc_errors:
            if doc.name != "?":
                unchecked.add(doc.name)
            continue
        key = (doc.kind, doc.name)
        if key in sources:
            first = sources[key]
            line, _ = first.pos(())
            errors.append(
                doc.error(
                    ("metadata", "name"),
                    f"duplicate {doc.kind} name '{doc.name}'",
                    f"unique names per kind; first defined at {first.file}:{line}",
                )
            )
            continue
        try:
            record = build_record(doc.data)
        except VlanListError as exc:
            errors.append(
                doc.error(
                    ("spec", "vlan_trunk", "allowed"),
                    str(exc),
                    'VLAN ids 1..4094, lists like "10,20,30-40"',
                )
            )
            continue
        sources[key] = doc
        statuses[key] = doc.data.get("status") or {}
        records.append(record)
        if passed is not None and not doc.checked:
            passed(doc)
        doc.release()
    estate = _assemble(records, statuses, world, errors, sources)
    errors.extend(check_estate(estate, sources, world, unchecked))
    errors.sort(key=lambda e: (e.file, e.line, e.col, e.message))
    ok = not any(e.severity == "error" for e in errors)
    return LoadResult(estate if ok else None, errors, sources, files)


def _normalise(doc: Document) -> None:
    """Forgive what YAML does to bare values: `platform: 2016` reads as an integer."""
    data = doc.data
    if isinstance(data, dict) and data.get("kind") == "Cluster":
        spec = data.get("spec")
        if isinstance(spec, dict) and isinstance(spec.get("platform"), int):
            spec["platform"] = str(spec["platform"])


def _assemble(
    records: list[Record],
    statuses: dict[tuple[str, str], dict[str, Any]],
    world: bool,
    errors: list[ManifestError],
    sources: dict[tuple[str, str], Document],
) -> Estate:
    tables: dict[str, dict[str, Any]] = {
        "Cluster": {},
        "Node": {},
        "VirtualSwitch": {},
        "ClusterSharedVolume": {},
        "VirtualMachine": {},
    }
    for record in records:
        tables[kind_of(record)][record.name] = record
    estate = Estate.from_tables(tables)
    if not world:
        return estate
    return _observed_facts(estate, statuses, errors, sources)


def _observed_facts(
    estate: Estate,
    statuses: dict[tuple[str, str], dict[str, Any]],
    errors: list[ManifestError],
    sources: dict[tuple[str, str], Document],
) -> Estate:
    """A world file states per-host facts as exceptions; spell them out for every node."""
    nodes: dict[str, Node] = {}
    # Each cluster's switches and volumes once, not a scan of the estate per node.
    switches_of: dict[str, list[VirtualSwitch]] = {}
    for _, switch in sorted(estate.switches.items()):
        switches_of.setdefault(switch.cluster, []).append(switch)
    luns_of: dict[str, frozenset[str]] = {}
    for volume in estate.volumes.values():
        luns_of[volume.cluster] = luns_of.get(volume.cluster, frozenset()) | {volume.name}
    for name, node in estate.nodes.items():
        cluster = estate.clusters.get(node.cluster)
        host_switches: dict[str, SwitchConfig] = {}
        for switch in switches_of.get(node.cluster, ()):
            status = statuses[("VirtualSwitch", switch.name)]
            if name in (status.get("missing_on") or ()):
                continue
            override = (status.get("differs_on") or {}).get(name)
            if override is not None:
                host_switches[switch.name] = switch_config(
                    {
                        "type": switch.config.type,
                        "uplink_nic": switch.config.uplink_nic,
                        "management_os": switch.config.management_os,
                        "embedded_team": list(switch.config.team_nics),
                        **override,
                    }
                )
            else:
                host_switches[switch.name] = switch.config
        node_status = statuses[("Node", name)]
        if "luns" in node_status:
            luns = node.status.luns
        elif cluster is not None and name in cluster.nodes:
            luns = luns_of.get(node.cluster, frozenset())
        else:
            luns = frozenset()
        nodes[name] = replace(
            node, status=replace(node.status, switches=frozen_map(host_switches), luns=luns)
        )
        known = [n.name for n in cluster.networks] if cluster is not None else []
        for net in sorted(node.status.networks_down - set(known)):
            errors.append(
                sources[("Node", name)].error(
                    ("status", "networks_down"),
                    f"{net} is not a network of cluster {node.cluster}",
                    f"one of: {', '.join(known)}" if known else "the cluster declares none",
                )
            )
    volumes: dict[str, ClusterSharedVolume] = {}
    for name, volume in estate.volumes.items():
        cluster = estate.clusters.get(volume.cluster)
        coordinator = volume.status.coordinator
        if coordinator is None and cluster is not None and cluster.nodes:
            coordinator = cluster.nodes[0]
        volumes[name] = replace(volume, status=replace(volume.status, coordinator=coordinator))
        members = list(cluster.nodes) if cluster is not None else []
        for node_name in sorted(set(volume.status.redirected) - set(members)):
            errors.append(
                sources[("ClusterSharedVolume", name)].error(
                    ("status", "redirected", node_name),
                    f"{node_name} is not a member of cluster {volume.cluster}",
                    f"one of: {', '.join(members)}" if members else "the cluster has no members",
                )
            )
    vms: dict[str, VirtualMachine] = {}
    if estate.vms and not any(statuses.values()):
        # Not one object says what was observed: desired manifests given as a world.
        first = min(
            (sources[("VirtualMachine", n)] for n in estate.vms), key=lambda d: (d.file, d.line)
        )
        errors.append(
            first.error(
                ("status",),
                "no object has a status: these look like desired manifests, not a world",
                "a world file states what is observed: status.node for every VM",
            )
        )
        return replace(estate, nodes=nodes, volumes=volumes)
    for name, vm in estate.vms.items():
        if vm.node is None:
            doc = sources[("VirtualMachine", name)]
            errors.append(
                doc.error(
                    ("status",),
                    "a world VM must say where it is",
                    "status.node: the node it is registered on",
                )
            )
        vms[name] = vm
    return replace(estate, nodes=nodes, volumes=volumes, vms=vms)


def read_world_file(path: str | Path) -> LoadResult:
    return load_paths([str(path)], world=True)
