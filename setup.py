"""The package layout pyproject.toml cannot say on its own.

``schemas/`` and ``manifests/`` stay at the top of the repository, where editors and the quick
start point at them, and are installed inside the package (``reconciler/schemas``,
``reconciler/examples``) from there: one copy of each, read at run time through
importlib.resources (see ``reconciler/resources.py``).
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["reconciler", "reconciler.*"]),
        "reconciler.schemas",
        "reconciler.examples",
    ],
    package_dir={"reconciler.schemas": "schemas", "reconciler.examples": "manifests"},
    package_data={
        "reconciler": ["py.typed", "model/*.yaml"],
        "reconciler.schemas": ["*.json"],
        "reconciler.examples": ["*/*.yaml"],
    },
)
