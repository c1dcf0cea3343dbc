"""The package layout pyproject.toml cannot say on its own.

``schemas/`` and ``manifests/`` stay at the top of the repository, where editors and the quick
start point at them, and are installed inside the package (``reconciler/schemas``,
``reconciler/examples``) from there: one copy of each, read at run time through
importlib.resources (see ``reconciler/resources.py``).
"""

from pathlib import Path

from setuptools import find_packages, setup

# Each folder of manifests/ (demo/, worlds/) is named, so setuptools packages its data without
# warning that it "would be ignored".
EXAMPLES = [
    f"reconciler.examples.{p.name}"
    for p in sorted((Path(__file__).parent / "manifests").iterdir())
    if p.is_dir() and not p.name.startswith((".", "_"))
]

setup(
    packages=[
        *find_packages(include=["reconciler", "reconciler.*"]),
        "reconciler.schemas",
        "reconciler.examples",
        *EXAMPLES,
    ],
    package_dir={"reconciler.schemas": "schemas", "reconciler.examples": "manifests"},
    package_data={
        "reconciler": [
            "py.typed",
            "model/*.yaml",
            "providers/hyperv/jea/*.psrc",
            "providers/hyperv/wmi1/ps1/*.ps1",
            "providers/hyperv/scripts/ps1/*.ps1",
        ],
        "reconciler.schemas": ["*.json"],
        **{name: ["*.yaml"] for name in EXAMPLES},
    },
)
