"""Manifests read from a git commit itself (no working copy), for CI and scheduled runs.

git is run with argument lists (never a shell) and plumbing commands only: resolve the ref,
list the .yaml files under the given paths at that commit, and read their blobs.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from reconciler.manifest.discovery import select_manifests
from reconciler.manifest.documents import (
    NOT_CHECKED,
    Document,
    declared_names,
    is_manifest_path,
    read_bytes,
)
from reconciler.manifest.errors import ManifestError
from reconciler.manifest.load import LoadResult, load_documents


class GitSourceError(Exception):
    """The repository or ref cannot be read (no such repo, unknown ref, git missing)."""


@dataclass(frozen=True, slots=True)
class GitManifests:
    repo: str
    ref: str
    commit: str
    files: tuple[str, ...]
    result: LoadResult


def _git(repo: str | Path, *args: str) -> bytes:
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, check=False, timeout=120
        )
    except FileNotFoundError as exc:
        raise GitSourceError("git is not installed") from exc
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip() or f"git {args[0]} failed"
        raise GitSourceError(message)
    return proc.stdout


def resolve(repo: str | Path, ref: str) -> str:
    """The commit id a ref names (branch, tag, or id)."""
    if ref.startswith("-"):
        raise GitSourceError(f"not a ref: {ref}")
    return (
        _git(repo, "rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}")
        .decode()
        .strip()
    )


def manifest_paths(repo: str | Path, commit: str, paths: list[str]) -> list[str]:
    # --full-name: paths from the repository root, as `cat-file commit:path` wants them, even
    # when REPO is a subfolder of the repository.
    listed = _git(
        repo, "ls-tree", "-r", "-z", "--full-name", "--name-only", commit, "--", *(paths or ["."])
    )
    names = [n for n in listed.decode().split("\0") if n]
    return sorted(n for n in names if is_manifest_path(n))


def load_at(repo: str | Path, ref: str, paths: list[str], world: bool = False) -> GitManifests:
    """Load the manifests under ``paths`` as they are in commit ``ref`` of ``repo``."""
    commit = resolve(repo, ref)
    files = manifest_paths(repo, commit, paths)
    docs: list[Document] = []
    errors: list[ManifestError] = []
    unchecked: set[str] = set()
    for name in files:
        blob = _git(repo, "cat-file", "blob", f"{commit}:{name}")
        label = f"{name}@{commit[:10]}"
        file_docs, file_errors = read_bytes(blob, label)
        if any(e.message.endswith(NOT_CHECKED) for e in file_errors):
            unchecked |= declared_names(blob.decode("utf-8", errors="replace"))
        docs.extend(file_docs)
        errors.extend(file_errors)
    labels = [f"{name}@{commit[:10]}" for name in files]
    given = {p.strip("/") for p in paths}
    named = {label for name, label in zip(files, labels, strict=True) if name in given}
    docs, errors, kept = select_manifests(named, docs, errors, labels, world)
    files = [name for name, label in zip(files, labels, strict=True) if label in kept]
    if not files and not any(e.severity == "error" for e in errors):
        errors.append(
            ManifestError(
                f"{repo}@{ref}",
                0,
                0,
                "-",
                "-",
                f"no manifests under {', '.join(paths) or 'the repository'} at {ref}",
                "files ending in .yaml or .yml",
            )
        )
    result = load_documents(docs, errors, list(files), world, unchecked)
    return GitManifests(str(repo), ref, commit, tuple(files), result)
