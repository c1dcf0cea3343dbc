"""The domain notes the code cites are in the repository, and each cited section exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = ROOT / "docs" / "domain.md"
SOURCES = [
    *(ROOT / "reconciler").rglob("*.py"),
    *(ROOT / "reconciler").rglob("*.yaml"),
    *(ROOT / "tests").glob("*.py"),
    *(ROOT / "bench").glob("*.py"),
]


def test_no_reference_to_notes_outside_the_repository() -> None:
    for source in SOURCES:
        if source == Path(__file__):
            continue
        text = source.read_text()
        assert "DOMAIN.md" not in text, source
        assert "shared/" not in text, source


def test_every_cited_section_exists() -> None:
    sections = set(re.findall(r"^## (\d+)\. ", DOMAIN.read_text(), flags=re.M))
    assert sections == {str(n) for n in range(1, 11)}
    cited = {
        (source.name, number)
        for source in SOURCES
        for number in re.findall(r"docs/domain\.md section (\d+)", source.read_text())
    }
    assert len(cited) >= 7  # the model, planner and simulator cite it
    assert {number for _, number in cited} <= sections
