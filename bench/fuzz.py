"""Fuzz ``reconciler validate`` over mutated manifest sets; count each outcome class.

Run: .venv/bin/python bench/fuzz.py --count 10000 [--workers 2] [--seed 0] [--save DIR]

Each set is the valid estate in tests/broken/_base with one to three mutations
(tests/manifest_mutations.py). Every validate runs in a worker process limited to 1 GiB of
address space and 5 s of wall time; a worker that overruns is killed and replaced. Outcomes:
- traceback: an uncaught exception, or "Traceback" in the output;
- hang/memory: over 5 s, MemoryError, or the worker died;
- unlocated: exit 1 with an error line that does not start FILE:LINE:COL: inside the set;
- located: exit 1, every line located;  valid: exit 0.
The last line is ``fuzz: N sets, T tracebacks, H hangs/memory, U unlocated errors, L located,
K valid``.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import random
import re
import resource
import shutil
import sys
import tempfile
import time
import traceback
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from manifest_mutations import ManifestSet, base_set, mutate_set  # noqa: E402

TIME_LIMIT_SECONDS = 5.0
MEMORY_LIMIT_BYTES = 2**30
LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): ")
CLASSES = ("traceback", "hang/memory", "unlocated", "located", "valid")


def _worker(conn: Connection, work: str) -> None:
    """Validate each set it is sent, in this process, and send back what happened."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    os.environ["RECONCILER_NO_CACHE"] = "1"
    from click.testing import CliRunner

    from reconciler.cli.main import cli

    runner = CliRunner()
    while True:
        task = conn.recv()
        if task is None:
            return
        index, files = task
        folder = Path(work) / f"set{index}"
        try:
            folder.mkdir()
            for name, content in files.items():
                (folder / name).write_bytes(content)
            result = runner.invoke(
                cli, ["--state-dir", str(folder / ".state"), "validate", str(folder)]
            )
            crash = None
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                if isinstance(result.exception, MemoryError):
                    conn.send((index, "memory", "", "", 0))
                    continue
                crash = "".join(traceback.format_exception(result.exception))
            conn.send((index, crash, result.stdout, result.stderr, result.exit_code))
        except MemoryError:
            conn.send((index, "memory", "", "", 0))
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def classify(files: ManifestSet, folder: str, outcome: tuple[Any, ...]) -> str:
    _index, crash, stdout, stderr, code = outcome
    if crash == "memory":
        return "hang/memory"
    if crash is not None or "Traceback" in stdout or "Traceback" in stderr:
        return "traceback"
    if code == 0:
        return "valid"
    if code != 1:
        return "traceback"
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        return "unlocated"
    counts = {f"{folder}/{name}": content.count(b"\n") + 1 for name, content in files.items()}
    for line in lines:
        found = LINE.match(line)
        if found is None:
            return "unlocated"
        name, number = found["file"], int(found["line"])
        if name not in counts or not 1 <= number <= counts[name] * 2 + 1:
            return "unlocated"  # UTF-16 text has its newlines in other bytes: allow slack
    return "located"


class Pool:
    """Worker processes that can be killed and replaced when one overruns."""

    def __init__(self, size: int, work: str) -> None:
        self.work = work
        self.ctx = multiprocessing.get_context("fork")
        self.workers: list[tuple[Any, Connection]] = [self._start() for _ in range(size)]

    def _start(self) -> tuple[Any, Connection]:
        parent, child = self.ctx.Pipe()
        process = self.ctx.Process(target=_worker, args=(child, self.work), daemon=True)
        process.start()
        return process, parent

    def replace(self, i: int) -> None:
        process, conn = self.workers[i]
        process.kill()
        process.join()
        conn.close()
        shutil.rmtree(self.work, ignore_errors=True)
        Path(self.work).mkdir(exist_ok=True)
        self.workers[i] = self._start()

    def close(self) -> None:
        for process, conn in self.workers:
            with contextlib.suppress(OSError):
                conn.send(None)
            process.join(timeout=2)
            if process.is_alive():
                process.kill()


def run(count: int, workers: int, seed: int, save: Path | None) -> dict[str, int]:
    base = base_set()
    totals = dict.fromkeys(CLASSES, 0)
    examples: dict[str, list[int]] = {c: [] for c in CLASSES}
    with tempfile.TemporaryDirectory(prefix="reconciler-fuzz-") as work:
        pool = Pool(workers, work)
        pending = list(range(count))
        busy: dict[int, tuple[int, ManifestSet, float]] = {}
        started = time.perf_counter()
        done = 0
        try:
            while pending or busy:
                for i in range(len(pool.workers)):
                    if i not in busy and pending:
                        index = pending.pop(0)
                        files = mutate_set(random.Random(seed * 1_000_003 + index), base)
                        pool.workers[i][1].send((index, files))
                        busy[i] = (index, files, time.perf_counter())
                conns = {pool.workers[i][1]: i for i in busy}
                ready = wait(list(conns), timeout=0.5)
                now = time.perf_counter()
                for conn in ready:
                    i = conns[conn]  # type: ignore[index]
                    index, files, _t0 = busy.pop(i)
                    try:
                        outcome = conn.recv()  # type: ignore[union-attr]
                        kind = classify(files, f"{work}/set{index}", outcome)
                    except (EOFError, OSError):
                        kind = "hang/memory"  # the worker died: the address-space limit
                        pool.replace(i)
                    totals[kind] += 1
                    examples[kind].append(index)
                    if save is not None and kind not in ("located", "valid"):
                        _save(save, kind, index, files)
                    done += 1
                for i, (index, files, t0) in list(busy.items()):
                    if now - t0 > TIME_LIMIT_SECONDS:
                        busy.pop(i)
                        pool.replace(i)
                        totals["hang/memory"] += 1
                        examples["hang/memory"].append(index)
                        if save is not None:
                            _save(save, "hang", index, files)
                        done += 1
                if done and done % 1000 == 0 and ready:
                    rate = done / (time.perf_counter() - started)
                    print(f"  {done}/{count} sets, {rate:.0f}/s", file=sys.stderr, flush=True)
        finally:
            pool.close()
    for kind in ("traceback", "hang/memory", "unlocated"):
        if examples[kind]:
            shown = ", ".join(str(i) for i in examples[kind][:10])
            print(f"{kind}: set(s) {shown} (re-run with --save DIR to keep them)")
    return totals


def _save(save: Path, kind: str, index: int, files: ManifestSet) -> None:
    folder = save / f"{kind.replace('/', '-')}-{index}"
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", type=Path, help="Write every problem set under this folder.")
    args = parser.parse_args()
    t = time.perf_counter()
    totals = run(args.count, args.workers, args.seed, args.save)
    print(f"({time.perf_counter() - t:.0f} s, {args.workers} worker(s), seed {args.seed})")
    print(
        f"fuzz: {args.count} sets, {totals['traceback']} tracebacks, "
        f"{totals['hang/memory']} hangs/memory, {totals['unlocated']} unlocated errors, "
        f"{totals['located']} located, {totals['valid']} valid"
    )


if __name__ == "__main__":
    main()
