"""The last plan, reused while nothing it was made from has changed.

Planning is a pure function of the manifest files, the observed estate, the target and this
version of the code (engine/ reads no clock and no environment). A provider that can say
cheaply whether its estate changed (``KnowsItsState``: the simulator digests its object
rows, far cheaper than decoding them) lets a repeated plan of unchanged manifests skip
loading, observing and planning: the scheduled drift check of a quiet estate. The key holds
every input; any difference, or a provider that cannot tell, is a full plan.

One entry, the last plan, as plain JSON beside the manifest cache: nothing read back can run
code, and an entry that does not read is ignored with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import structlog

import reconciler
from reconciler import __version__, resources
from reconciler.engine.plan import Plan, plan_from_json

log = structlog.get_logger("reconciler.plan")

MEMO_FORMAT = "reconciler-plan-memo/1"
MEMO_FILE = "plan-memo.json"


@cache
def code_digest() -> str:
    """This version of reconciler, down to its source and schema files: a planner or schema
    change between two runs (an upgrade, an editable checkout) is a new key."""
    h = hashlib.sha256(__version__.encode())
    package = Path(reconciler.__file__).parent
    for path in sorted(package.rglob("*.py")):
        h.update(path.relative_to(package).as_posix().encode() + b"\0")
        h.update(path.read_bytes())
    for name in resources.schema_names():
        h.update((resources.schemas() / name).read_bytes())
    return h.hexdigest()


def memo_key(
    manifests_digest: str,
    observation_digest: str,
    paths: Sequence[str],
    target: str | None,
    provider: str,
) -> str:
    parts = [code_digest(), manifests_digest, observation_digest, provider, target or "", *paths]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


class PlanMemo:
    def __init__(self, directory: Path) -> None:
        self.path = directory / MEMO_FILE

    def get(self, key: str) -> Plan | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("plan_memo_ignored", file=str(self.path), reason=str(exc))
            return None
        try:
            entry: Any = json.loads(raw)
            if not isinstance(entry, dict) or entry.get("format") != MEMO_FORMAT:
                raise ValueError("not a reconciler plan memo")
            if entry.get("key") != key:
                return None  # the last plan was made from something else
            return plan_from_json(entry["plan"])
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            log.warning("plan_memo_ignored", file=str(self.path), reason=str(exc))
            return None

    def put(self, key: str, plan: Plan) -> None:
        entry = {"format": MEMO_FORMAT, "key": key, "plan": plan.to_json()}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f"{MEMO_FILE}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(entry, separators=(",", ":"), sort_keys=True))
            tmp.replace(self.path)  # atomic: a reader never sees half an entry
        except (OSError, TypeError, ValueError):
            return  # a memo that cannot be written is only a slower next run
