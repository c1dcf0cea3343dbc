"""Which of the YAML files found under a folder are desired manifests.

A repository that holds manifests holds other YAML too: CI pipelines, tool settings, and the
simulator's world files. Walking a folder keeps the files that are ours and leaves the rest:

- a world file (observed state: it describes a cluster and its documents carry ``status``) is
  left out with a warning saying where it belongs; named on the command line, it is refused
  with that hint instead of one "status is observed-only" error per document;
- a file none of whose documents is a reconciler document (no ``apiVersion: reconciler/...``,
  no kind of ours) is someone else's YAML and is left out quietly.

A file that has any error or warning of its own (a YAML syntax error, say) is always kept: it
may well be a broken manifest, and broken manifests are reported, never skipped.
"""

from __future__ import annotations

from reconciler.manifest.documents import Document
from reconciler.manifest.errors import ManifestError
from reconciler.model.records import KINDS

WORLD_HINT = "reconciler sim init FILE reads it; validate and plan read desired manifests"


def _ours(data: object) -> bool:
    if not isinstance(data, dict):
        return False
    api = data.get("apiVersion")
    return (isinstance(api, str) and api.startswith("reconciler/")) or data.get("kind") in KINDS


def is_reconciler_document(doc: Document) -> bool:
    """Ours, or a broken one of ours: manifests written as list items are still manifests."""
    if isinstance(doc.data, list):
        return any(_ours(item) for item in doc.data)
    return _ours(doc.data)


def is_world_file(docs: list[Document]) -> bool:
    """Observed state for the simulator: a cluster, and documents that carry ``status``."""
    dicts = [d.data for d in docs if isinstance(d.data, dict)]
    return any(d.get("kind") == "Cluster" for d in dicts) and any("status" in d for d in dicts)


def select_manifests(
    named: set[str],
    docs: list[Document],
    errors: list[ManifestError],
    files: list[str],
    world: bool,
) -> tuple[list[Document], list[ManifestError], list[str]]:
    """Keep the desired manifests among ``files`` (as ``Document.file`` names them): the
    documents, errors and files kept. ``named``: files given by name, not found in a folder."""
    if world:
        return docs, errors, files
    by_file: dict[str, list[Document]] = {}
    for doc in docs:
        by_file.setdefault(doc.file, []).append(doc)
    with_messages = {e.file for e in errors}
    dropped: set[str] = set()
    notes: list[ManifestError] = []
    for name in files:
        file_docs = by_file.get(name, [])
        is_named = name in named
        if is_world_file(file_docs):
            dropped.add(name)
            what = "a world file (observed state, with status), not desired manifests"
            if is_named:
                notes.append(ManifestError(name, 1, 1, "-", "-", what, WORLD_HINT))
            else:
                notes.append(
                    ManifestError(name, 1, 1, "-", "-", f"skipped: {what}", WORLD_HINT, "warning")
                )
        elif (
            not is_named
            and name not in with_messages
            and not any(is_reconciler_document(d) for d in file_docs)
        ):
            dropped.add(name)
    if not dropped:
        return docs, errors, files
    kept_docs = [d for d in docs if d.file not in dropped]
    kept_errors = [e for e in errors if e.file not in dropped] + notes
    return kept_docs, kept_errors, [f for f in files if f not in dropped]
