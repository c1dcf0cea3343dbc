"""`reconciler sim serve-winrm`: serves the world, writes the connections file, stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from reconciler.providers.sim.generate import generate_estate, write_generated

ROOT = Path(__file__).resolve().parents[1]


def test_serve_writes_connections_and_stops_on_sigterm(tmp_path: Path) -> None:
    write_generated(generate_estate(1, 2, 1, 0.0, 3, "2019"), tmp_path / "gen")
    env = {**os.environ, "RECONCILER_HYPERV_USER": "u", "RECONCILER_HYPERV_PASSWORD": "pw-serve"}
    conn = tmp_path / "hv.yaml"
    peer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reconciler",
            "--state-dir",
            str(tmp_path / "s"),
            "sim",
            "serve-winrm",
            str(tmp_path / "gen" / "world.yaml"),
            "--port",
            "0",
            "--write-connections",
            str(conn),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert peer.stdout is not None
    lines = [peer.stdout.readline() for _ in range(2)]  # the world note, then "serving"
    line = lines[-1]
    try:
        assert lines[0].startswith("created a world in"), lines
        assert line.startswith("serving 2 node(s) of 1 cluster(s) at http://127.0.0.1:"), line
        doc = yaml.safe_load(conn.read_text())
        assert doc["defaults"] == {"auth": "basic", "encryption": "never"}
        urls = [n["url"] for n in doc["clusters"]["c001"]["nodes"].values()]
        assert sorted(doc["clusters"]["c001"]["nodes"]) == ["c001-n01", "c001-n02"]
        assert all(u.startswith("http://127.0.0.1:") and u.endswith("/wsman") for u in urls)
        assert "pw-serve" not in conn.read_text()
    finally:
        peer.send_signal(signal.SIGTERM)
        _out, err = peer.communicate(timeout=30)
    assert peer.returncode == 0, err
    assert "Traceback" not in err


def test_serve_needs_the_credentials(tmp_path: Path) -> None:
    write_generated(generate_estate(1, 2, 1, 0.0, 3, "2019"), tmp_path / "gen")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_HYPERV_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "--state-dir",
            str(tmp_path / "s"),
            "sim",
            "serve-winrm",
            str(tmp_path / "gen" / "world.yaml"),
            "--port",
            "0",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "RECONCILER_HYPERV_USER" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
