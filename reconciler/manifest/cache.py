"""A cache of parsed, schema-checked manifest files, keyed by their content.

Warm runs over a large estate skip YAML parsing and the schema layer for unchanged files;
the rules across objects always run. Only files that passed both layers are cached. Entries
are plain JSON data, never serialised objects: nothing read back from the state directory
can run code. A corrupt or foreign entry is ignored with a warning and the file read afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import structlog

from reconciler import __version__, resources

log = structlog.get_logger("reconciler.cache")

MAX_ENTRIES = 5000
CACHE_FORMAT = "reconciler-manifest-cache/1"
SUFFIX = ".json"
CachedDocs = list[tuple[Any, int, int]]  # (data, line, column) per document


@cache
def _salt() -> bytes:
    """Anything that changes how a file is read invalidates every entry."""
    h = hashlib.sha256(__version__.encode())
    for name in resources.schema_names():
        h.update((resources.schemas() / name).read_bytes())
    return h.digest()


def content_key(content: bytes, world: bool) -> str:
    h = hashlib.sha256(_salt())
    h.update(b"world" if world else b"desired")
    h.update(content)
    return h.hexdigest()


def _decode(key: str, raw: bytes) -> CachedDocs:
    """The documents of an entry, or ValueError saying why it is not one of ours."""
    entry = json.loads(raw)
    if not isinstance(entry, dict) or entry.get("format") != CACHE_FORMAT:
        raise ValueError("not a reconciler manifest cache entry")
    if entry.get("key") != key:
        raise ValueError("entry is for other content than its file name says")
    docs = entry.get("docs")
    if not isinstance(docs, list):
        raise ValueError("no document list")
    out: CachedDocs = []
    for doc in docs:
        if (
            not isinstance(doc, list)
            or len(doc) != 3
            or not isinstance(doc[0], dict)
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in doc[1:])
        ):
            raise ValueError("a document is not [mapping, line, column]")
        out.append((doc[0], doc[1], doc[2]))
    return out


class ManifestCache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def get(self, key: str) -> CachedDocs | None:
        path = self.directory / f"{key}{SUFFIX}"
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("manifest_cache_ignored", file=str(path), reason=str(exc))
            return None
        try:
            return _decode(key, raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            log.warning("manifest_cache_ignored", file=str(path), reason=str(exc))
            return None

    def put(self, key: str, docs: CachedDocs) -> None:
        entry = {"format": CACHE_FORMAT, "key": key, "docs": [list(d) for d in docs]}
        try:
            text = json.dumps(entry, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError):
            return  # data JSON cannot hold exactly (not expected after the schema layer)
        if _decode(key, text.encode()) != docs:
            return  # e.g. a non-string mapping key: JSON would read it back changed
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.directory / f"{key}.{os.getpid()}.tmp"
            tmp.write_text(text)
            tmp.replace(self.directory / f"{key}{SUFFIX}")  # atomic: readers never see half
            self._prune()
        except OSError:
            return  # a cache that cannot be written is only a slower run

    def _prune(self) -> None:
        entries = list(self.directory.glob(f"*{SUFFIX}"))
        if len(entries) <= MAX_ENTRIES:
            return
        entries.sort(key=lambda p: p.stat().st_mtime)
        for old in entries[: len(entries) - MAX_ENTRIES]:
            old.unlink(missing_ok=True)
