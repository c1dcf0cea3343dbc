"""The manifest reference: generated from the schemas, and kept in sync in README.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reconciler.manifest.reference import (
    BEGIN,
    END,
    extract_block,
    main,
    render_reference,
    replace_block,
)
from reconciler.manifest.schema import schema_for
from reconciler.model.records import KINDS

README = Path(__file__).resolve().parents[1] / "README.md"


def section(reference: str, kind: str) -> str:
    """One kind's part of the reference: from its heading to the next kind's."""
    start = reference.index(f"\n### {kind}\n")
    following = reference.find("\n### ", start + 1)
    return reference[start : following if following >= 0 else None]


def field_paths(reference: str) -> list[str]:
    return re.findall(r"^\| `([^`]+)` \|", reference, flags=re.MULTILINE)


class TestReadmeInSync:
    """README.md carries exactly the reference generated from the current schemas."""

    def test_readme_block_equals_render_reference(self) -> None:
        text = README.read_text(encoding="utf-8")
        fix = "python -m reconciler.manifest.reference --write README.md"
        assert extract_block(text) == render_reference(), f"README.md is out of date: run {fix}"

    def test_readme_starts_with_the_title(self) -> None:
        assert README.read_text(encoding="utf-8").startswith("# reconciler\n")


class TestRenderReference:
    """Each kind gets a heading, its description and a table of every field, status apart."""

    @pytest.mark.parametrize("kind", KINDS)
    def test_kind_has_heading_description_and_schema(self, kind: str) -> None:
        part = section(render_reference(), kind)
        assert str(schema_for(kind)["description"]) in part
        assert "| Field | Type | Required | Allowed | Description |" in part

    def test_nested_list_fields_use_dotted_paths(self) -> None:
        vm = section(render_reference(), "VirtualMachine")
        assert (
            "| `spec.disks[].size_gib` | integer | yes | at least 1 | Maximum size in GiB "
            "(a VHD at most 2040, a VHDX at most 65536: 64 TiB). |" in vm
        )
        assert (
            "| `spec.vcpus` | integer | yes | 1..2048 | Virtual processors, at most the "
            "platform's per-VM maximum. |" in vm
        )
        assert (
            "| `spec.power_state` | string | no | `running`, `off` | running or off. Left out: "
            "not managed for an existing VM" in vm
        )

    @pytest.mark.parametrize("kind", KINDS)
    def test_every_schema_field_is_listed_once(self, kind: str) -> None:
        def walk(schema: dict[str, object], prefix: str) -> list[str]:
            out: list[str] = []
            if schema.get("type") == "array":
                items = schema.get("items")
                return walk(items, f"{prefix}[]") if isinstance(items, dict) else []
            props = schema.get("properties")
            for name, sub in (props if isinstance(props, dict) else {}).items():
                path = f"{prefix}.{name}" if prefix else name
                out += [path, *walk(sub, path)]
            extra = schema.get("additionalProperties")
            if not props and isinstance(extra, dict) and "properties" in extra:
                out += walk(extra, f"{prefix}.<key>")
            return out

        expected = [p for p in walk(schema_for(kind), "") if p != "status"]
        assert sorted(field_paths(section(render_reference(), kind))) == sorted(expected)

    @pytest.mark.parametrize("kind", KINDS)
    def test_status_fields_are_in_the_observed_only_table(self, kind: str) -> None:
        part = section(render_reference(), kind)
        desired, _, observed = part.partition(f"#### {kind}: observed-only (world files)")
        assert observed, "every kind has observed-only status fields"
        assert not [p for p in field_paths(desired) if p.startswith("status")]
        paths = field_paths(observed)
        assert paths
        assert all(p.startswith("status.") for p in paths)

    def test_cells_escape_pipes_and_backslashes(self) -> None:
        cluster = section(render_reference(), "Cluster")
        assert "Witness file share path (\\\\\\\\server\\\\share)." in cluster


class TestWriteBlock:
    """``--write`` replaces only the block between the markers; ``--check`` spots a stale one."""

    def test_write_replaces_block_and_keeps_the_rest(self, tmp_path: Path) -> None:
        readme = tmp_path / "README.md"
        readme.write_text(f"# title\n\nintro\n\n{BEGIN}\nstale\n{END}\n\n## After\ntext\n")
        assert main(["--check", str(readme)]) == 1
        assert main(["--write", str(readme)]) == 0
        text = readme.read_text()
        assert text.startswith(f"# title\n\nintro\n\n{BEGIN}\n")
        assert text.endswith(f"{END}\n\n## After\ntext\n")
        assert extract_block(text) == render_reference()
        assert main(["--check", str(readme)]) == 0

    def test_write_is_idempotent(self) -> None:
        text = f"a\n{BEGIN}\n{END}\nb\n"
        once = replace_block(text, render_reference())
        assert replace_block(once, render_reference()) == once

    def test_missing_markers_is_an_error(self, tmp_path: Path) -> None:
        readme = tmp_path / "README.md"
        readme.write_text("# no markers\n")
        assert main(["--write", str(readme)]) == 1
        assert readme.read_text() == "# no markers\n"

    def test_prints_reference_without_arguments(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main([]) == 0
        assert capsys.readouterr().out == render_reference()
