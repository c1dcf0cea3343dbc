"""Run a rolling update's hook: the manifest's argv list (never through a shell), the node,
cluster and cycle in its environment, a time limit, and the first part of its output kept.

Providers call it to patch a node; what it printed goes into the journal with the action.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

OUTPUT_LIMIT_BYTES = 16 * 1024  # kept of each of stdout and stderr; the rest is counted
# Not for the hook: the key that signs plans is the reconciler's own secret.
WITHHELD_ENV = frozenset({"RECONCILER_PLAN_KEY", "RECONCILER_PLAN_KEY_FILE"})


@dataclass(frozen=True, slots=True)
class HookResult:
    command: tuple[str, ...]
    exit_code: int | None  # None: it did not start, or was killed at the time limit
    timed_out: bool
    stdout: str
    stderr: str
    stdout_bytes: int  # how much it wrote, kept or not
    stderr_bytes: int
    error: str = ""  # why it could not start

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.error

    def describe(self, timeout_seconds: float) -> str:
        if self.error:
            return f"the hook could not start: {self.error}"
        if self.timed_out:
            return f"the hook did not finish within {timeout_seconds:g} s and was killed"
        return f"the hook exited with status {self.exit_code}"

    def as_details(self) -> dict[str, Any]:
        return {
            "command": list(self.command),
            "exit_code": self.exit_code,
            "timed_out": self.timed_out,
            "error": self.error,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "stdout_truncated": self.stdout_bytes > len(self.stdout.encode()),
            "stderr_truncated": self.stderr_bytes > len(self.stderr.encode()),
        }


class _Capture(threading.Thread):
    """Reads a pipe to its end, keeping the first ``limit`` bytes (the hook never blocks)."""

    def __init__(self, pipe: IO[bytes], limit: int) -> None:
        super().__init__(daemon=True)
        self.pipe, self.limit = pipe, limit
        self.kept = bytearray()
        self.total = 0

    def run(self) -> None:
        try:
            while chunk := self.pipe.read(65536):
                self.total += len(chunk)
                room = self.limit - len(self.kept)
                if room > 0:
                    self.kept += chunk[:room]
        except (OSError, ValueError):
            pass

    def text(self) -> str:
        return bytes(self.kept).decode("utf-8", "replace")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def hook_environment(
    node: str, cluster: str, rolling_id: str, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in WITHHELD_ENV}
    env.update(RECONCILER_NODE=node, RECONCILER_CLUSTER=cluster, RECONCILER_ROLLING_ID=rolling_id)
    return env


def run_hook(
    command: Sequence[str],
    *,
    node: str,
    cluster: str,
    rolling_id: str,
    timeout_seconds: float,
    limit_bytes: int = OUTPUT_LIMIT_BYTES,
) -> HookResult:
    """Run ``command`` to its end or its time limit; the hook and its children are killed then."""
    argv = tuple(command)
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=hook_environment(node, cluster, rolling_id),
            start_new_session=True,  # its own process group: a time-out kills all of it
        )
    except (OSError, ValueError) as exc:
        return HookResult(argv, None, False, "", "", 0, 0, str(exc))
    assert proc.stdout is not None and proc.stderr is not None
    out, err = _Capture(proc.stdout, limit_bytes), _Capture(proc.stderr, limit_bytes)
    out.start()
    err.start()
    timed_out = False
    try:
        exit_code: int | None = proc.wait(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        timed_out, exit_code = True, None
        _kill_group(proc)
    except BaseException:
        _kill_group(proc)  # the reconciler is ending (a second Ctrl-C): take the hook along
        raise
    # A child that left the group may hold the pipes open: do not wait for it for ever.
    out.join(timeout=5.0)
    err.join(timeout=5.0)
    proc.stdout.close()
    proc.stderr.close()
    return HookResult(argv, exit_code, timed_out, out.text(), err.text(), out.total, err.total)
