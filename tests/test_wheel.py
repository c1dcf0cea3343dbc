"""The wheel as a user gets it: built from this tree, installed into a fresh virtualenv, run
from an empty folder far from the source tree.

The fresh venv has no pip and no copy of the source; its dependencies come from the test
environment through a .pth line (installing them from the registry would take longer than the
whole test). The wheel itself is installed by pip with --no-deps, console script and all.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What a source checkout holds that a build must not see (stale build/ output, venvs, state).
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".reconciler", ".*_cache"
)

pytestmark = pytest.mark.packaging


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src") / "reconciler"
    shutil.copytree(ROOT, src, ignore=NOT_SOURCE)
    out = tmp_path_factory.mktemp("wheel")
    # The build tools come from the test extras: no download, no isolated build env.
    _run(
        sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
        "--no-index", "-w", out, src, cwd=out,
    )  # fmt: skip
    (built,) = out.glob("reconciler-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    env_dir = tmp_path_factory.mktemp("venv") / "env"
    _run(sys.executable, "-m", "venv", "--without-pip", env_dir, cwd=env_dir.parent)
    python = env_dir / "bin" / "python"
    _run(
        sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps",
        "--no-index", wheel, cwd=env_dir.parent,
    )  # fmt: skip
    site = _run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=env_dir)
    # Dependencies only: that folder's own .pth files (an editable reconciler) are not run.
    deps = sysconfig.get_path("purelib")
    Path(site.strip(), "test-dependencies.pth").write_text(deps + "\n")
    return env_dir


@pytest.fixture
def user_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "RECONCILER_"))}
    env["HOME"] = str(tmp_path)
    return env


def test_wheel_carries_the_files_read_at_run_time(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for schema in (ROOT / "schemas").glob("*.json"):
        assert f"reconciler/schemas/{schema.name}" in names
    for manifest in (ROOT / "manifests").rglob("*.yaml"):
        assert f"reconciler/examples/{manifest.relative_to(ROOT / 'manifests')}" in names
    assert "reconciler/model/platforms.yaml" in names
    assert "reconciler/py.typed" in names
    # One copy: the schemas are not also shipped at the top level of site-packages.
    assert not any(n.startswith(("schemas/", "manifests/")) for n in names)


def test_installed_copy_is_the_one_that_runs(
    venv: Path, tmp_path: Path, user_env: dict[str, str]
) -> None:
    out = _run(
        venv / "bin" / "python",
        "-c",
        "import reconciler, reconciler.resources as r; "
        "print(reconciler.__file__); print(r.schemas()); print(r.examples())",
        cwd=tmp_path,
        env=user_env,
    )
    for line in out.splitlines():
        assert line.startswith(str(venv)), out


def test_quick_start_from_an_empty_folder(
    venv: Path, tmp_path: Path, user_env: dict[str, str]
) -> None:
    shutil.copytree(ROOT / "manifests", tmp_path / "m")
    reconciler = venv / "bin" / "reconciler"
    out = _run(reconciler, "validate", "m/demo", cwd=tmp_path, env=user_env)
    assert "are valid" in out
    _run(reconciler, "sim", "init", "m/worlds/demo.yaml", cwd=tmp_path, env=user_env)
    assert (tmp_path / ".reconciler" / "world.db").is_file()
    proc = subprocess.run(
        [reconciler, "plan", "m/demo", "--detailed-exitcode"],
        cwd=tmp_path,
        env=user_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Plan: " in proc.stdout
    assert "Traceback" not in proc.stderr


def test_version_comes_from_the_metadata(
    venv: Path, tmp_path: Path, user_env: dict[str, str]
) -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    version = pyproject.split('\nversion = "', 1)[1].split('"', 1)[0]
    out = _run(venv / "bin" / "reconciler", "--version", cwd=tmp_path, env=user_env)
    assert out.splitlines() == [
        f"reconciler {version}",
        f"provider hyperv {version} (reconciler)",
        f"provider sim {version} (reconciler)",
    ]


def test_demo_and_schemas_come_out_of_the_installed_package(
    venv: Path, tmp_path: Path, user_env: dict[str, str]
) -> None:
    reconciler = venv / "bin" / "reconciler"
    _run(reconciler, "demo", cwd=tmp_path, env=user_env)
    for source in (ROOT / "manifests").rglob("*.yaml"):
        copied = tmp_path / "manifests" / source.relative_to(ROOT / "manifests")
        assert copied.read_bytes() == source.read_bytes()
    assert "are valid" in _run(reconciler, "validate", "manifests/demo", cwd=tmp_path, env=user_env)
    _run(reconciler, "schema", "--out", "schemas", cwd=tmp_path, env=user_env)
    for schema in (ROOT / "schemas").glob("*.json"):
        assert (tmp_path / "schemas" / schema.name).read_bytes() == schema.read_bytes()
