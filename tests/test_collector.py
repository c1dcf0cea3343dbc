"""The cyclic collector is paused only for the span of a plan, and always comes back."""

from __future__ import annotations

import gc
import shutil
from pathlib import Path

import pytest

from reconciler.providers.sim.provider import SimProvider
from reconciler.runtime.collector import collector_paused
from reconciler.runtime.workflow import plan_paths

ROOT = Path(__file__).resolve().parents[1]


def _fail_paused(seen: list[bool]) -> None:
    with collector_paused():
        seen.append(gc.isenabled())
        raise RuntimeError("a plan that fails")


def test_paused_inside_and_enabled_after_even_on_error() -> None:
    assert gc.isenabled()
    seen: list[bool] = []
    with pytest.raises(RuntimeError):
        _fail_paused(seen)
    assert seen == [False]
    assert gc.isenabled()


def test_a_collector_the_caller_disabled_stays_disabled() -> None:
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


class Watching(SimProvider):
    """Records whether the collector ran while the estate was observed."""

    seen: list[bool]

    def observe(self, scope=None):  # type: ignore[no-untyped-def]
        self.seen.append(gc.isenabled())
        return super().observe(scope)


def test_a_plan_observes_with_the_collector_paused_and_restores_it(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from reconciler.cli.main import cli

    state = tmp_path / "state"
    world = str(ROOT / "manifests" / "worlds" / "demo.yaml")
    result = CliRunner().invoke(cli, ["--state-dir", str(state), "sim", "init", world])
    assert result.exit_code == 0, result.output
    shutil.copytree(ROOT / "manifests" / "demo", tmp_path / "m")
    provider = Watching(state_dir=state)
    provider.seen = []
    try:
        assert plan_paths([str(tmp_path / "m")], provider).plan.actions
    finally:
        provider.close()
    assert provider.seen == [False]
    assert gc.isenabled()
