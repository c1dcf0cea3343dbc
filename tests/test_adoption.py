"""Adoption: ``observe`` turns a running estate into manifests that validate and plan to nothing.

Without pinning every VM where it happens to run, and with derived settings kept declarative
(a quorum that is what ``recommended`` gives stays ``recommended``).
"""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from test_plan_properties import PLATFORMS, concrete_quorum, examples, generated

from reconciler.cli.main import cli
from reconciler.engine.planner import make_plan
from reconciler.manifest.dump import adoptable, to_yaml
from reconciler.manifest.load import load_text

DEMO_WORLD = Path(__file__).resolve().parents[1] / "manifests" / "worlds" / "demo.yaml"


class TestAdoptingAGeneratedEstate:
    """Any estate the generator makes (without drift) is adopted with nothing to do."""

    @examples
    @given(
        st.integers(1, 2),
        st.integers(2, 5),
        st.integers(1, 3),
        st.integers(0, 2**16),
        st.sampled_from(PLATFORMS),
    )
    def test_observe_output_validates_and_plans_no_changes(
        self, clusters: int, nodes: int, per_node: int, seed: int, platform: str
    ) -> None:
        world = concrete_quorum(generated(clusters, nodes, per_node, 0.0, seed, platform).world)
        text = to_yaml(adoptable(world))
        result = load_text(text, "adopted.yaml")
        assert [str(e) for e in result.errors] == []
        assert result.estate is not None
        plan = make_plan(result.estate, world)
        assert plan.empty and not plan.violations, [a.id for a in plan.actions]
        assert plan.unmanaged == ()
        # Nothing is pinned, and every cluster's quorum reads as recommended.
        assert all(vm.node is None for vm in result.estate.vms.values())
        assert {c.quorum.mode for c in result.estate.clusters.values()} == {"recommended"}


class TestObserveCommand:
    """``observe`` leaves placement free by default; ``--pin-vms`` pins as before."""

    def run(self, state: Path, *args: str) -> str:
        result = CliRunner().invoke(cli, ["--state-dir", str(state), *args])
        assert result.exit_code == 0, result.output
        return result.output

    def test_no_pins_unless_asked(self, tmp_path: Path) -> None:
        self.run(tmp_path, "sim", "init", str(DEMO_WORLD))
        free = self.run(tmp_path, "observe")
        assert "\n  node: " not in free
        assert "mode: recommended" in free
        pinned = self.run(tmp_path, "observe", "--pin-vms")
        assert pinned.count("\n  node: ") == 20  # the demo's twenty VMs
