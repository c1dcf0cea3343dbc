"""Dump and load are inverse: any valid estate written as YAML reads back as the same records."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from strategies import estates

from reconciler.manifest.dump import to_yaml
from reconciler.manifest.load import load_text
from reconciler.model.records import Estate


class TestRoundTrip:
    """An estate dumped with ``to_yaml`` loads back (``load_text``) equal, with no diagnostics."""

    @settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(estates())
    def test_dump_then_load_gives_the_same_estate(self, estate: Estate) -> None:
        text = to_yaml(estate)
        result = load_text(text, "estate.yaml")
        assert [str(e) for e in result.errors] == [], text
        assert result.estate is not None
        assert result.estate.records() == estate.records()
        assert result.estate == estate
        assert to_yaml(result.estate) == text


class TestEdgeCases:
    """Estates at the edges of the language round-trip too."""

    def test_trunk_with_only_a_native_vlan(self) -> None:
        text = (
            "apiVersion: reconciler/v1\nkind: Cluster\nmetadata: {name: c}\n"
            "spec: {platform: '2016', nodes: [n1], quorum: {mode: node_majority}}\n---\n"
            "apiVersion: reconciler/v1\nkind: Node\nmetadata: {name: n1}\nspec: {cluster: c, "
            "hardware: {model: m, cpu: c, memory_mib: 8192, firmware: f, driver_set: d, "
            "patch_level: p}}\n---\n"
            "apiVersion: reconciler/v1\nkind: VirtualSwitch\nmetadata: {name: s}\n"
            "spec: {cluster: c, type: private, vlan_trunk: {allowed: [], native_vlan: 5}}\n"
        )
        estate = load_text(text).estate
        assert estate is not None
        assert load_text(to_yaml(estate)).estate == estate
