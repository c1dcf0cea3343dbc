"""``reconciler doctor``: check every node of the connections file before the first plan."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from reconciler.cli.context import EXIT_ERROR, EXIT_OK

if TYPE_CHECKING:
    from reconciler.cli.context import Context


@click.command()
@click.option(
    "--connections",
    "connections_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The connections file (default: the global --connections / RECONCILER_CONNECTIONS).",
)
@click.pass_obj
def doctor(obj: Context, connections_file: Path | None) -> None:
    """Per node: reachability, TLS, authentication, encryption, delegation, modules, platform.

    One PASS/FAIL line each, every failure with its fix. Nodes are checked through their own
    endpoints, never through a cluster name. Exit 0 when every check passes, else 1.
    """
    from reconciler.providers.base import ProviderError
    from reconciler.providers.hyperv.connections import load_connections
    from reconciler.providers.hyperv.doctor import run_doctor

    path = connections_file or obj.connections
    if path is None:
        obj.out.error("give --connections FILE (or set RECONCILER_CONNECTIONS)")
        raise SystemExit(EXIT_ERROR)
    try:
        checks = run_doctor(load_connections(path))
    except ProviderError as exc:
        obj.out.error(str(exc))
        raise SystemExit(EXIT_ERROR) from exc
    for check in checks:
        click.echo(check.line())
    failed = [c for c in checks if not c.ok]
    click.echo(f"{len(checks) - len(failed)} passed, {len(failed)} failed")
    raise SystemExit(EXIT_ERROR if failed else EXIT_OK)
