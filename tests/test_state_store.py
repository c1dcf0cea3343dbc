"""The state directory: nothing in it runs code, and damage gives a clear error or a warning."""

from __future__ import annotations

import ast
import json
import os
import pickle
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from reconciler.manifest.cache import ManifestCache, content_key
from reconciler.manifest.load import load_paths, require
from reconciler.runtime.journal import Journal, JournalError, _explain

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "reconciler"
DEMO = ROOT / "manifests" / "demo"
WORLD = ROOT / "manifests" / "worlds" / "demo.yaml"


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


OLD_DRIFT_TABLE = """
CREATE TABLE drift (
    id INTEGER PRIMARY KEY, detected_at REAL NOT NULL, tick_run TEXT, object TEXT NOT NULL,
    fields TEXT NOT NULL, corrected INTEGER NOT NULL DEFAULT 0, corrected_at REAL,
    correction_run TEXT, note TEXT NOT NULL DEFAULT ''
);
"""
OPEN_JOURNAL = """
import sys
from pathlib import Path
from reconciler.runtime.journal import Journal
Journal(Path(sys.argv[1]), lambda: 0.0).close()
"""


def cli_run(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", "--state-dir", str(state), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=120,
    )


class TestJournalUnderConcurrency:
    """Processes that open an old journal together migrate its schema once, all of them fine."""

    @pytest.mark.parametrize("round_", range(3))  # the old race hit about 1 round in 2
    def test_parallel_first_use_migrates_once(self, tmp_path: Path, round_: int) -> None:
        conn = sqlite3.connect(tmp_path / "journal.db")
        conn.executescript(OLD_DRIFT_TABLE)
        conn.close()
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", OPEN_JOURNAL, str(tmp_path)],
                cwd=ROOT,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(16)
        ]
        errors = [p.communicate(timeout=120)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 16, [e for e in errors if e][:1]
        conn = sqlite3.connect(tmp_path / "journal.db")
        columns = [row[1] for row in conn.execute("PRAGMA table_info(drift)")]
        conn.close()
        assert columns.count("last_seen_at") == 1


class TestDamagedStateFiles:
    """A zero-byte, corrupt, locked, read-only or full database: a clear error naming the file."""

    def test_zero_byte_world_is_not_an_empty_world(self, tmp_path: Path) -> None:
        (tmp_path / "world.db").write_bytes(b"")
        proc = cli_run(tmp_path, "plan", str(DEMO))
        assert proc.returncode == 1
        assert f"{tmp_path / 'world.db'} is an empty (zero-byte) file" in proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout
        # sim init makes a world of it again.
        assert cli_run(tmp_path, "sim", "init", str(WORLD)).returncode == 0
        assert cli_run(tmp_path, "plan", str(DEMO)).returncode == 0

    def test_corrupt_world_names_the_file(self, tmp_path: Path) -> None:
        (tmp_path / "world.db").write_bytes(b"this is not sqlite at all" * 100)
        proc = cli_run(tmp_path, "plan", str(DEMO))
        assert proc.returncode == 1
        assert f"the simulated world {tmp_path / 'world.db'} cannot be used" in proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout

    @pytest.mark.parametrize("command", [["history"], ["apply", "--auto-approve", str(DEMO)]])
    def test_corrupt_journal_names_the_file(self, tmp_path: Path, command: list[str]) -> None:
        assert cli_run(tmp_path, "sim", "init", str(WORLD)).returncode == 0
        (tmp_path / "journal.db").write_bytes(b"\x00garbage" * 1000)
        proc = cli_run(tmp_path, *command)
        assert proc.returncode == 1
        assert f"the journal {tmp_path / 'journal.db'} is damaged" in proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout

    def test_locked_journal_names_the_file(self, tmp_path: Path) -> None:
        Journal(tmp_path, lambda: 0.0).close()
        holder = sqlite3.connect(tmp_path / "journal.db", isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(JournalError, match="stayed locked by another process") as exc:
                Journal(tmp_path, lambda: 0.0, busy_timeout_seconds=0.05)
            assert str(tmp_path / "journal.db") in str(exc.value)
        finally:
            holder.execute("ROLLBACK")
            holder.close()

    @pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files anyway")
    def test_read_only_journal_names_the_file(self, tmp_path: Path) -> None:
        Journal(tmp_path, lambda: 0.0).close()
        for name in ("journal.db-wal", "journal.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        (tmp_path / "journal.db").chmod(0o444)
        tmp_path.chmod(0o555)
        try:
            with pytest.raises(JournalError, match="read-only") as exc:
                Journal(tmp_path, lambda: 0.0)
            assert str(tmp_path / "journal.db") in str(exc.value)
        finally:
            tmp_path.chmod(0o755)

    def test_read_only_errors_read_as_such(self, tmp_path: Path) -> None:
        """What SQLite says for a read-only file becomes the read-only message (as root the
        test above cannot make one)."""
        err = _explain(
            tmp_path / "journal.db",
            sqlite3.OperationalError("attempt to write a readonly database"),
        )
        assert str(err).startswith(f"cannot write the journal {tmp_path / 'journal.db'}")
        assert "read-only" in str(err)

    def test_a_full_disk_loses_no_entry_already_written(self, tmp_path: Path) -> None:
        journal = Journal(tmp_path, lambda: 1.0)
        written = [journal.start_run("h", "s", 1) for _ in range(5)]
        # The database may not grow any more: as if the disk were full.
        pages = journal.conn.execute("PRAGMA page_count").fetchone()[0]
        journal.conn.execute(f"PRAGMA max_page_count = {pages}")

        def fill() -> None:
            for _ in range(10000):
                written.append(journal.start_run("h" * 2000, "s", 1))

        with pytest.raises(JournalError, match="the disk is full") as exc:
            fill()
        assert len(written) > 5, "some runs still fitted before the disk filled"
        assert str(tmp_path / "journal.db") in str(exc.value)
        journal.close()
        reopened = Journal(tmp_path, lambda: 2.0)
        try:
            assert sorted(r.id for r in reopened.runs(limit=100000)) == sorted(written)
        finally:
            reopened.close()
