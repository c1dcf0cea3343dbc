"""A reviewed plan is a promise: apply --plan runs exactly what was saved, on the world it saw.

Each tampering below edits a saved demo plan the way a hand, a script or an attacker would;
apply must exit 1, name the first offending action where there is one, and change nothing.
``forge`` recomputes the digests the way the plan schema describes them (written here by
hand, not with the code under test), as an attacker who knows the format would.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reconciler.cli.main import cli
from reconciler.model.records import Estate
from reconciler.providers.sim.provider import SimProvider
from reconciler.runtime.clock import ManualClock
from reconciler.runtime.journal import Journal

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "manifests" / "demo")
WORLD = str(ROOT / "manifests" / "worlds" / "demo.yaml")
MOVE = "migrate_vm:SQL02"  # SQL02 hv01 -> hv02 in the demo plan
Doc = dict[str, Any]


def run(state: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner(env=env).invoke(
        cli, ["--state-dir", str(state), *args], catch_exceptions=False
    )
    return result.exit_code, result.output


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def forge(doc: Doc, key: bytes | None = None) -> Doc:
    """Recompute every digest (and the signature with ``key``): a tamperer who knows the format."""
    previous = ""
    for action in doc["actions"]:
        body = {k: v for k, v in action.items() if k != "digest"}
        previous = action["digest"] = (
            "sha256:" + hashlib.sha256(previous.encode() + b"\n" + _canonical(body)).hexdigest()
        )
    top = {k: v for k, v in doc.items() if k not in ("digest", "signature", "git")}
    doc["digest"] = "sha256:" + hashlib.sha256(_canonical(top)).hexdigest()
    doc.pop("signature", None)
    if key is not None:
        mac = hmac.new(key, doc["digest"].encode(), hashlib.sha256).hexdigest()
        doc["signature"] = "hmac-sha256:" + mac
    return doc


def action(doc: Doc, action_id: str) -> Doc:
    found: Doc = next(a for a in doc["actions"] if a["id"] == action_id)
    return found


def observe(state: Path) -> Estate:
    provider = SimProvider(state_dir=state)
    try:
        return provider.observe()
    finally:
        provider.close()


def run_count(state: Path) -> int:
    journal = Journal(state, ManualClock().now)
    try:
        return len(journal.runs())
    finally:
        journal.close()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    assert run(state, "sim", "init", WORLD)[0] == 0
    return state


@pytest.fixture
def saved(state: Path, tmp_path: Path) -> tuple[Path, Doc]:
    plan_file = tmp_path / "plan.json"
    code, out = run(state, "plan", DEMO, "--out", str(plan_file))
    assert code == 0, out
    return plan_file, json.loads(plan_file.read_text())


def refused(state: Path, plan_file: Path, doc: Doc, env: dict[str, str] | None = None) -> str:
    """Apply the tampered ``doc``: exit 1, and the world and journal are as before."""
    plan_file.write_text(json.dumps(doc, indent=2))
    world_before = observe(state)
    code, out = run(state, "apply", "--plan", str(plan_file), "--auto-approve", env=env)
    assert code == 1, out
    assert "refusing the plan" in out and "nothing was changed" in out
    assert observe(state) == world_before, "a refused plan changed the world"
    assert run_count(state) == 0, "a refused plan started a run"
    return out


def _set_destination(doc: Doc) -> None:
    action(doc, MOVE)["params"]["destination"] = "hv03"


def _set_top_destination(doc: Doc) -> None:
    action(doc, MOVE)["destination"] = "hv03"


def _set_type(doc: Doc) -> None:
    action(doc, "add_disk:FS01")["type"] = "detach_disk"


def _set_reason(doc: Doc) -> None:
    action(doc, MOVE)["reason"] = "nothing to see here"


def _drop_dependency(doc: Doc) -> None:
    action(doc, "add_node:hv05")["depends_on"] = []


def _remove_middle(doc: Doc) -> None:
    del doc["actions"][3]


def _swap(doc: Doc) -> None:
    doc["actions"][0], doc["actions"][1] = doc["actions"][1], doc["actions"][0]


def _duplicate(doc: Doc) -> None:
    extra = copy.deepcopy(action(doc, MOVE))
    extra["id"] = "migrate_vm:SQL02#2"
    doc["actions"].insert(3, extra)


class TestTamperedActions:
    """An edited, removed, added or moved action is refused, and named."""

    @pytest.mark.parametrize(
        ("tamper", "named"),
        [
            (_set_destination, MOVE),
            (_set_top_destination, MOVE),
            (_set_type, "add_disk:FS01"),
            (_set_reason, MOVE),
            (_drop_dependency, "add_node:hv05"),
            (_remove_middle, "action 4"),
            (_swap, "action 1"),
            (_duplicate, "action 4 (migrate_vm:SQL02#2)"),
        ],
        ids=[
            "migration-destination",
            "migration-destination-copy",
            "action-type",
            "reason",
            "depends-on",
            "remove-action",
            "swap-actions",
            "add-action",
        ],
    )
    def test_refused_naming_the_first_offending_action(
        self,
        state: Path,
        saved: tuple[Path, Doc],
        tamper: Callable[[Doc], None],
        named: str,
    ) -> None:
        plan_file, doc = saved
        tamper(doc)
        out = refused(state, plan_file, doc)
        assert named in out
        assert "digest" in out

    def test_contract_destination_change_then_plan_shows_the_same_changes(
        self, state: Path, saved: tuple[Path, Doc]
    ) -> None:
        plan_file, doc = saved
        original = copy.deepcopy(doc)
        _set_destination(doc)
        refused(state, plan_file, doc)
        code, out = run(state, "plan", DEMO, "--json")
        assert code == 0
        again = json.loads(out)
        _strip = ("digest",)
        assert [{k: v for k, v in a.items() if k not in _strip} for a in again["actions"]] == [
            {k: v for k, v in a.items() if k not in _strip} for a in original["actions"]
        ]
        assert action(again, MOVE)["params"]["destination"] == "hv02"

    def test_removing_the_last_action_is_refused(
        self, state: Path, saved: tuple[Path, Doc]
    ) -> None:
        plan_file, doc = saved
        doc["actions"].pop()
        out = refused(state, plan_file, doc)
        assert "last action removed" in out

    def test_a_plan_without_digests_is_refused(self, state: Path, saved: tuple[Path, Doc]) -> None:
        plan_file, doc = saved
        for a in doc["actions"]:
            del a["digest"]
        del doc["digest"]
        assert "has no digest" in refused(state, plan_file, doc)

    def test_an_unknown_field_with_forged_digests_is_refused(
        self, state: Path, saved: tuple[Path, Doc]
    ) -> None:
        plan_file, doc = saved
        action(doc, MOVE)["params_override"] = {"destination": "hv03"}
        out = refused(state, plan_file, forge(doc))
        assert MOVE in out and "would not apply as written" in out


class TestPriorState:
    """Emptying prior state, or a world that moved on, is refused before the first action."""

    def test_emptied_prior_state_is_refused(self, state: Path, saved: tuple[Path, Doc]) -> None:
        plan_file, doc = saved
        doc["prior_state"] = {}
        assert "does not match its digest" in refused(state, plan_file, doc)

    def test_emptied_prior_state_with_forged_digests_names_the_first_action(
        self, state: Path, saved: tuple[Path, Doc]
    ) -> None:
        plan_file, doc = saved
        first = doc["actions"][0]["id"]
        doc["prior_state"] = {}
        out = refused(state, plan_file, forge(doc))
        assert f"{first} touches" in out and "no prior state" in out

    def test_one_touched_object_dropped_with_forged_digests(
        self, state: Path, saved: tuple[Path, Doc]
    ) -> None:
        plan_file, doc = saved
        del doc["prior_state"]["VirtualMachine/SQL02"]
        out = refused(state, plan_file, forge(doc))
        assert f"{MOVE} touches VirtualMachine/SQL02" in out

    def test_a_changed_touched_object_is_stale_naming_the_first_action(
        self, state: Path, saved: tuple[Path, Doc]
    ) -> None:
        plan_file, doc = saved
        code, out = run(
            state,
            "sim",
            "fault",
            "drift",
            "--kind",
            "placement",
            "--target",
            "SQL02",
            "--seed",
            "1",
        )
        assert code == 0, out
        out = refused(state, plan_file, doc)
        assert "stale: 1 object(s) changed since it was made: VirtualMachine/SQL02" in out
        assert f"first action affected is {MOVE} (VirtualMachine/SQL02)" in out

    def test_a_change_to_an_untouched_object_is_stale_too(
        self, state: Path, saved: tuple[Path, Doc]
    ) -> None:
        plan_file, doc = saved
        code, out = run(state, "sim", "fault", "node-crash", "hv04")
        assert code == 0, out
        out = refused(state, plan_file, doc)
        assert "stale" in out and "Node/hv04" in out

    def test_a_destination_the_world_rules_forbid_is_refused_by_the_replay(
        self, state: Path, saved: tuple[Path, Doc]
    ) -> None:
        plan_file, doc = saved
        # hv05 is not a member when the move runs in the tampered order: moved first.
        move = action(doc, MOVE)
        move["params"]["destination"] = move["destination"] = "hv05"
        move["changes"]["node"]["after"] = "hv05"
        doc["actions"].remove(move)
        doc["actions"].insert(0, move)
        out = refused(state, plan_file, forge(doc))
        assert f"{MOVE} breaks the safety rule precondition" in out


class TestSigning:
    """With a key from the environment or a secrets file, only plans signed with it run."""

    KEY = "s3cret-plan-key"

    def _signed(self, state: Path, tmp_path: Path, env: dict[str, str]) -> tuple[Path, Doc]:
        plan_file = tmp_path / "signed.json"
        code, out = run(state, "plan", DEMO, "--out", str(plan_file), env=env)
        assert code == 0, out
        doc = json.loads(plan_file.read_text())
        assert doc["signature"].startswith("hmac-sha256:")
        assert self.KEY not in plan_file.read_text(), "the key never goes into the plan"
        return plan_file, doc

    def test_signed_plan_applies_with_the_key_from_the_environment(
        self, state: Path, tmp_path: Path
    ) -> None:
        env = {"RECONCILER_PLAN_KEY": self.KEY}
        plan_file, _ = self._signed(state, tmp_path, env)
        code, out = run(state, "apply", "--plan", str(plan_file), "--auto-approve", env=env)
        assert code == 0, out

    def test_signed_plan_applies_with_the_key_from_a_secrets_file(
        self, state: Path, tmp_path: Path
    ) -> None:
        secret = tmp_path / "plan.key"
        secret.write_text(self.KEY + "\n")
        env = {"RECONCILER_PLAN_KEY_FILE": str(secret)}
        plan_file, _ = self._signed(state, tmp_path, env)
        code, out = run(state, "apply", "--plan", str(plan_file), "--auto-approve", env=env)
        assert code == 0, out

    def test_unsigned_plan_is_refused_when_a_key_is_set(
        self, state: Path, saved: tuple[Path, Doc]
    ) -> None:
        plan_file, doc = saved
        out = refused(state, plan_file, doc, env={"RECONCILER_PLAN_KEY": self.KEY})
        assert "not signed" in out

    def test_forged_digests_fail_the_signature(self, state: Path, tmp_path: Path) -> None:
        env = {"RECONCILER_PLAN_KEY": self.KEY}
        plan_file, doc = self._signed(state, tmp_path, env)
        _set_destination(doc)
        forge(doc)
        doc["signature"] = "hmac-sha256:" + "0" * 64
        assert "signature does not match" in refused(state, plan_file, doc, env=env)

    def test_signed_with_another_key_is_refused(self, state: Path, tmp_path: Path) -> None:
        plan_file, doc = self._signed(state, tmp_path, {"RECONCILER_PLAN_KEY": "other-key"})
        env = {"RECONCILER_PLAN_KEY": self.KEY}
        assert "signature does not match" in refused(state, plan_file, doc, env=env)

    def test_an_unreadable_key_file_is_named(self, state: Path, tmp_path: Path) -> None:
        missing = tmp_path / "nope.key"
        code, out = run(
            state, "plan", DEMO, "--out", str(tmp_path / "p.json"),
            env={"RECONCILER_PLAN_KEY_FILE": str(missing)},
        )  # fmt: skip
        assert code == 1 and str(missing) in out


class TestNotAPlan:
    """Files that are not plans get a clear error, never a traceback."""

    @pytest.mark.parametrize("content", ["", "not json", "[]", '{"actions": 3}'])
    def test_refused(self, state: Path, tmp_path: Path, content: str) -> None:
        plan_file = tmp_path / "plan.json"
        plan_file.write_text(content)
        code, out = run(state, "apply", "--plan", str(plan_file), "--auto-approve")
        assert code == 1 and "refusing the plan" in out


class TestManifestsDigest:
    """The plan records a digest of its manifest files; the replay at apply uses their
    policies only while they are as they were."""

    def test_unchanged_manifests_are_used_for_the_replay(self, state: Path, tmp_path: Path) -> None:
        manifests = Path(shutil.copytree(DEMO, tmp_path / "m"))
        plan_file = tmp_path / "plan.json"
        assert run(state, "plan", str(manifests), "--out", str(plan_file))[0] == 0
        assert json.loads(plan_file.read_text())["manifests_digest"].startswith("sha256:")
        code, out = run(state, "apply", "--plan", str(plan_file), "--auto-approve")
        assert code == 0, out
        assert "not here as they were" not in out

    def test_edited_manifests_are_not_trusted_for_policy(self, state: Path, tmp_path: Path) -> None:
        manifests = Path(shutil.copytree(DEMO, tmp_path / "m"))
        plan_file = tmp_path / "plan.json"
        assert run(state, "plan", str(manifests), "--out", str(plan_file))[0] == 0
        vms = manifests / "vms.yaml"
        vms.write_text(vms.read_text() + "\n")
        code, out = run(state, "apply", "--plan", str(plan_file), "--auto-approve")
        assert code == 0, out
        assert "the manifests the plan was made from are not here as they were" in out
