"""The state directory: nothing in it runs code, and damage gives a clear error or a warning."""

from __future__ import annotations

import ast
import json
import pickle
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from reconciler.manifest.cache import ManifestCache, content_key
from reconciler.manifest.load import load_paths, require

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "reconciler"
DEMO = ROOT / "manifests" / "demo"


class _Trap:
    """Unpickling this writes a marker file: proof that loading ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (str(self.marker), "code ran"))  # type: ignore[return-value]


def _keys(folder: Path) -> list[str]:
    return [content_key(p.read_bytes(), False) for p in sorted(folder.glob("*.yaml"))]


class TestManifestCache:
    """The manifest cache is JSON keyed by content; bad entries are ignored with a warning."""

    def test_no_module_of_the_package_imports_pickle(self) -> None:
        importers = []
        for path in PACKAGE.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                if any(n.split(".")[0] in ("pickle", "cPickle", "dill", "shelve") for n in names):
                    importers.append(str(path.relative_to(ROOT)))
        assert importers == []

    def test_a_crafted_entry_never_runs_code(self, tmp_path: Path) -> None:
        cache_dir = tmp_path / "cache"
        cache_dir.mkdir()
        marker = tmp_path / "pwned"
        payload = pickle.dumps([(_Trap(marker), 1, 1)])
        for key in _keys(DEMO):
            # Whatever name the cache reads, it finds a crafted file there.
            for suffix in (".pickle", ".json", ""):
                (cache_dir / f"{key}{suffix}").write_bytes(payload)
        estate = require(load_paths([str(DEMO)], cache_dir=cache_dir))
        assert not marker.exists(), "a file in the state directory ran code"
        assert "hv05" in estate.nodes, "the manifests were read afresh"

    def test_warm_run_reads_the_cache_and_gives_the_same_estate(self, tmp_path: Path) -> None:
        cache_dir = tmp_path / "cache"
        cold = require(load_paths([str(DEMO)], cache_dir=cache_dir))
        entries = sorted(cache_dir.glob("*.json"))
        assert [p.stem for p in entries] == sorted(_keys(DEMO))
        entry = json.loads(entries[0].read_text())
        assert entry["format"] == "reconciler-manifest-cache/1"
        assert entry["key"] == entries[0].stem
        warm = require(load_paths([str(DEMO)], cache_dir=cache_dir))
        assert warm == cold

    @pytest.mark.parametrize(
        ("content", "why"),
        [
            (b"\x00\x01garbage", "corrupt"),
            (b"", "empty"),
            (b'{"format": "something-else/1", "key": "x", "docs": []}', "foreign"),
            (b"[1, 2, 3]", "not a mapping"),
            (b'{"format": "reconciler-manifest-cache/1", "key": "other", "docs": []}', "key"),
            (
                b'{"format": "reconciler-manifest-cache/1", "key": "KEY", "docs": [["x", 1, 1]]}',
                "document not a mapping",
            ),
        ],
    )
    def test_a_bad_entry_is_ignored_with_a_warning(
        self, tmp_path: Path, content: bytes, why: str
    ) -> None:
        cache_dir = tmp_path / "cache"
        require(load_paths([str(DEMO)], cache_dir=cache_dir))
        key = _keys(DEMO)[0]
        (cache_dir / f"{key}.json").write_bytes(content.replace(b"KEY", key.encode()))
        with capture_logs() as logs:
            assert ManifestCache(cache_dir).get(key) is None, why
        (warning,) = logs
        assert warning["event"] == "manifest_cache_ignored"
        assert warning["log_level"] == "warning"
        assert warning["file"] == str(cache_dir / f"{key}.json"), "the warning names the file"
        estate = require(load_paths([str(DEMO)], cache_dir=cache_dir))
        assert "hv05" in estate.nodes
