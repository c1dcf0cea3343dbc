"""A cache of parsed, schema-checked manifest files, keyed by their content.

Warm runs over a large estate skip YAML parsing and the schema layer for unchanged files;
the rules across objects always run. Only files that passed both layers are cached.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from functools import cache
from pathlib import Path
from typing import Any

from reconciler import __version__, resources

MAX_ENTRIES = 5000
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


class ManifestCache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def get(self, key: str) -> CachedDocs | None:
        try:
            with open(self.directory / f"{key}.pickle", "rb") as f:
                docs: CachedDocs = pickle.load(f)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError):
            return None
        return docs

    def put(self, key: str, docs: CachedDocs) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.directory / f"{key}.{os.getpid()}.tmp"
            with open(tmp, "wb") as f:
                pickle.dump(docs, f, protocol=pickle.HIGHEST_PROTOCOL)
            tmp.replace(self.directory / f"{key}.pickle")  # atomic: readers never see half
            self._prune()
        except OSError:
            return  # a cache that cannot be written is only a slower run

    def _prune(self) -> None:
        entries = list(self.directory.glob("*.pickle"))
        if len(entries) <= MAX_ENTRIES:
            return
        entries.sort(key=lambda p: p.stat().st_mtime)
        for old in entries[: len(entries) - MAX_ENTRIES]:
            old.unlink(missing_ok=True)
