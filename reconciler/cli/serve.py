"""``reconciler sim serve-winrm``: the simulator's world behind a real WS-Management endpoint."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click
import yaml

from reconciler.cli.context import EXIT_ERROR, EXIT_OK
from reconciler.manifest.load import load_paths
from reconciler.providers.hyperv.connections import connections_document
from reconciler.providers.sim.provider import SimProvider

if TYPE_CHECKING:
    from reconciler.cli.context import Context

USER_ENV = "RECONCILER_HYPERV_USER"
PASSWORD_ENV = "RECONCILER_HYPERV_PASSWORD"


def _prepare_world(obj: Context, world: Path, reset: bool) -> SimProvider | None:
    sim = SimProvider(state_dir=obj.state_dir)
    if not reset and sim.store.exists and sim.store.meta("source") == str(world):
        obj.out.note(f"serving the world already in {obj.state_dir} (from {world})")
        return sim
    result = load_paths([str(world)], world=True)
    for err in result.errors:
        click.echo(str(err), err=True)
    if result.estate is None:
        obj.out.error(f"{len(result.problems())} error(s) in the world file; nothing served")
        sim.close()
        return None
    sim.init_world(result.estate, str(world))
    obj.out.note(f"created a world in {obj.state_dir} from {world}")
    return sim


def write_connections(
    path: Path, clusters: Mapping[str, tuple[str | None, Mapping[str, str]]]
) -> None:
    doc = connections_document(clusters, auth="basic", encryption="never")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, indent=2) + "\n" if path.suffix == ".json" else yaml.safe_dump(doc)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)  # a reader never sees half a file


def serve_winrm(
    obj: Context, world: Path, port: int, connections_file: Path | None, reset: bool
) -> int:
    user, password = os.environ.get(USER_ENV), os.environ.get(PASSWORD_ENV)
    if not user or not password:
        obj.out.error(f"set {USER_ENV} and {PASSWORD_ENV}: the peer accepts only those credentials")
        return EXIT_ERROR
    sim = _prepare_world(obj, world, reset)
    if sim is None:
        return EXIT_ERROR
    estate = sim.observe()
    sim.close()
    from reconciler.providers.sim.winrm.cmdlets import HyperVPeer
    from reconciler.providers.sim.winrm.transport import WinRMServer

    peer = HyperVPeer(obj.state_dir)
    try:
        server = WinRMServer(
            peer, sorted(estate.nodes), username=user, password=password, port=port
        )
    except OSError as exc:
        obj.out.error(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}")
        return EXIT_ERROR
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    try:
        if connections_file is not None:
            clusters = {
                name: (name, {n.name: server.url(n.name) for n in estate.nodes_of(name)})
                for name in estate.clusters
            }
            write_connections(connections_file, clusters)
        where = f"; connections in {connections_file}" if connections_file else ""
        # One line, flushed at once: scripts wait for it before they connect.
        print(
            f"serving {len(estate.nodes)} node(s) of {len(estate.clusters)} cluster(s) at "
            f"http://127.0.0.1:{server.port}/<node>/wsman{where}",
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    finally:
        server.close()
    obj.out.note("stopped")
    return EXIT_OK
