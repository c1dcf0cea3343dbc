"""The plan memo: a repeated plan is reused only while every input is as it was."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli.main import cli
from reconciler.engine.plan import Plan
from reconciler.model.actions import Action
from reconciler.providers.base import Capabilities, Outcome, Scope
from reconciler.providers.sim.provider import SimProvider
from reconciler.runtime import plan_memo
from reconciler.runtime.workflow import plan_paths

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "manifests" / "demo"
WORLD = ROOT / "manifests" / "worlds" / "demo.yaml"


def cli_run(state: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--state-dir", str(state), *args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def demo(tmp_path: Path) -> tuple[Path, Path]:
    state, manifests = tmp_path / "state", tmp_path / "m"
    shutil.copytree(DEMO, manifests)
    code, out = cli_run(state, "sim", "init", str(WORLD))
    assert code == 0, out
    return state, manifests


def planned(state: Path, manifests: Path, target: str | None = None) -> tuple[Plan, bool]:
    provider = SimProvider(state_dir=state)
    try:
        result = plan_paths(
            [str(manifests)], provider, target, state / "cache" / "manifests", None, state / "cache"
        )
    finally:
        provider.close()
    return result.plan, result.reused


def test_the_second_plan_of_unchanged_inputs_is_the_first_one(demo: tuple[Path, Path]) -> None:
    state, manifests = demo
    first, reused_first = planned(state, manifests)
    second, reused_second = planned(state, manifests)
    assert (reused_first, reused_second) == (False, True)
    assert first.actions  # the demo world needs work: a memo of an empty plan proves little
    assert second.dumps() == first.dumps()


def test_a_changed_world_is_planned_again(demo: tuple[Path, Path]) -> None:
    state, manifests = demo
    first, _ = planned(state, manifests)
    code, out = cli_run(state, "apply", "--auto-approve", str(manifests))
    assert code == 0, out
    again, reused = planned(state, manifests)
    assert not reused
    assert first.actions and not again.actions  # the old plan would have redone the work


def test_a_changed_manifest_is_planned_again(demo: tuple[Path, Path]) -> None:
    state, manifests = demo
    planned(state, manifests)
    vm_file = next(
        p for p in sorted(manifests.rglob("*.yaml")) if "VirtualMachine" in p.read_text()
    )
    vm_file.write_text(vm_file.read_text() + "\n# reviewed\n")  # bytes differ, meaning not
    again, reused = planned(state, manifests)
    assert not reused
    assert again.manifests_digest != ""


def test_another_target_is_another_plan(demo: tuple[Path, Path]) -> None:
    state, manifests = demo
    full, _ = planned(state, manifests)
    target = full.actions[0].target
    limited, reused = planned(state, manifests, target)
    assert not reused
    assert len(limited.actions) < len(full.actions)


def test_another_version_of_the_code_is_planned_again(
    demo: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    state, manifests = demo
    planned(state, manifests)
    monkeypatch.setattr(plan_memo, "code_digest", lambda: "an upgraded reconciler")
    assert planned(state, manifests)[1] is False


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b'{"format": "reconciler-plan-memo/1", "key": 7, "plan": []}',
        b'["a list"]',
    ],
)
def test_a_damaged_memo_is_ignored_and_the_plan_made(
    demo: tuple[Path, Path], content: bytes
) -> None:
    state, manifests = demo
    first, _ = planned(state, manifests)
    (state / "cache" / plan_memo.MEMO_FILE).write_bytes(content)
    again, reused = planned(state, manifests)
    assert not reused
    assert again.dumps() == first.dumps()


def test_a_memo_whose_plan_does_not_read_is_ignored(demo: tuple[Path, Path]) -> None:
    state, manifests = demo
    planned(state, manifests)
    memo = state / "cache" / plan_memo.MEMO_FILE
    entry = json.loads(memo.read_text())
    entry["plan"]["format_version"] = -1
    memo.write_text(json.dumps(entry))
    assert planned(state, manifests)[1] is False


class Blind:
    """A provider that cannot tell whether its estate changed (as the hyperv provider)."""

    def __init__(self, inner: SimProvider) -> None:
        self.inner = inner

    def observe(self, scope: Scope | None = None) -> object:
        return self.inner.observe(scope)

    def apply(self, action: Action) -> Outcome:
        return self.inner.apply(action)

    def capabilities(self) -> Capabilities:
        return self.inner.capabilities()

    def close(self) -> None:
        self.inner.close()


def test_a_provider_that_cannot_tell_its_state_is_always_observed(
    demo: tuple[Path, Path],
) -> None:
    state, manifests = demo
    provider = Blind(SimProvider(state_dir=state))
    try:
        for _ in range(2):
            result = plan_paths(
                [str(manifests)],
                provider,  # type: ignore[arg-type]
                None,
                state / "cache" / "manifests",
                None,
                state / "cache",
            )
            assert not result.reused
    finally:
        provider.close()
    assert not (state / "cache" / plan_memo.MEMO_FILE).exists()


def test_the_cli_plans_the_same_with_and_without_the_memo(demo: tuple[Path, Path]) -> None:
    state, manifests = demo
    outputs = [cli_run(state, "plan", "--json", str(manifests)) for _ in range(2)]
    assert (state / "cache" / plan_memo.MEMO_FILE).exists()
    assert outputs[0] == outputs[1]
    assert json.loads(outputs[0][1])["actions"]


class Busy(SimProvider):
    """A world that changes while it is being planned: its digest differs at every call."""

    calls = 0

    def observation_digest(self) -> str | None:
        self.calls += 1
        return f"state {self.calls}"


def test_a_plan_made_while_the_world_changed_is_not_kept(demo: tuple[Path, Path]) -> None:
    state, manifests = demo
    provider = Busy(state_dir=state)
    try:
        result = plan_paths(
            [str(manifests)], provider, None, state / "cache" / "manifests", None, state / "cache"
        )
    finally:
        provider.close()
    assert not result.reused and result.plan.actions
    assert provider.calls == 2  # before observing, and after planning
    assert not (state / "cache" / plan_memo.MEMO_FILE).exists()
