"""Files the program reads at run time: the JSON schemas and the demo estate.

They live once, at the top of the repository (``schemas/``, ``manifests/``), where editors and
the quick start point at them. A wheel carries them inside the package (``reconciler/schemas``,
``reconciler/examples``; see setup.py); a source checkout or an editable install reads the
top-level folders themselves. Everything goes through importlib.resources, so a zipped or
otherwise unusual install works too.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path


def _packaged(inside: str, top_level: str) -> Traversable:
    packaged = files("reconciler") / inside
    if packaged.is_dir():
        return packaged
    # Source checkout: the folder next to the package, not a second copy of it.
    return Path(str(files("reconciler"))).parent / top_level


@cache
def schemas() -> Traversable:
    """The folder of ``*.schema.json`` files."""
    return _packaged("schemas", "schemas")


@cache
def examples() -> Traversable:
    """The demo estate: ``demo/`` (desired manifests) and ``worlds/demo.yaml``."""
    return _packaged("examples", "manifests")


def schema_names() -> list[str]:
    return sorted(f.name for f in schemas().iterdir() if f.name.endswith(".schema.json"))
