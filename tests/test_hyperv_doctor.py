"""reconciler doctor against the peer: one line per check and node, each failure with a fix."""

from __future__ import annotations

import socket
from pathlib import Path

import yaml
from click.testing import CliRunner
from hyperv_world import make_world

from reconciler.cli.main import cli
from reconciler.providers.sim.winrm.cmdlets import HyperVPeer
from reconciler.providers.sim.winrm.transport import WinRMServer

CHECKS = [
    "reachability",
    "tls",
    "encryption",
    "delegation",
    "authentication",
    "platform",
    "modules",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_doctor_over_the_peer(tmp_path: Path) -> None:
    gen = make_world(tmp_path / "w", nodes=2, vms=1)
    peer = HyperVPeer(tmp_path / "w")
    with WinRMServer(peer, sorted(gen.world.nodes), username="u", password="pw", port=0) as srv:
        nodes = {n: {"url": srv.url(n)} for n in sorted(gen.world.nodes)}
        nodes["c001-gone"] = {"url": f"http://127.0.0.1:{_free_port()}/x/wsman"}
        conn = tmp_path / "c.yaml"
        conn.write_text(
            yaml.safe_dump(
                {
                    "defaults": {"auth": "basic", "encryption": "never"},
                    "clusters": {"c001": {"nodes": nodes}},
                }
            )
        )
        ok = CliRunner().invoke(
            cli,
            ["doctor", "--connections", str(conn)],
            env={"RECONCILER_HYPERV_USER": "u", "RECONCILER_HYPERV_PASSWORD": "pw"},
        )
        bad = CliRunner().invoke(
            cli,
            ["doctor", "--connections", str(conn)],
            env={"RECONCILER_HYPERV_USER": "u", "RECONCILER_HYPERV_PASSWORD": "no"},
        )
    peer.close()
    assert ok.exit_code == 1  # basic auth cannot delegate, and one node is gone
    lines = ok.output.splitlines()
    for node in ("c001-n01", "c001-n02"):
        mine = [line.split()[2] for line in lines if line.split()[1:2] == [node]]
        assert mine == CHECKS
        assert any(
            line.startswith("FAIL") and node in line and "delegation" in line and "fix: " in line
            for line in lines
        )
        assert all(
            line.startswith("PASS") for line in lines if node in line and "delegation" not in line
        )
    gone = [line for line in lines if "c001-gone" in line]
    assert len(gone) == 1 and gone[0].startswith("FAIL") and "reachability" in gone[0]
    auth = [line for line in bad.output.splitlines() if "authentication" in line]
    assert auth and all(line.startswith("FAIL") and "fix: " in line for line in auth)
    assert "no" not in " ".join(auth).split("fix:")[0].split()  # the password is not echoed
