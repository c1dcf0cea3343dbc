"""``reconciler schema`` and ``reconciler demo``: the files a wheel carries, written out.

An installed reconciler has no source tree next to it: editors get the JSON schemas from
``schema --out DIR``, and a first hour gets the demo estate from ``demo [DIR]``.
"""

from __future__ import annotations

from importlib.resources.abc import Traversable
from pathlib import Path

import click

from reconciler import resources
from reconciler.cli.context import EXIT_ERROR
from reconciler.manifest.schema import SCHEMA_FILES

# What `schema KIND` accepts: each kind, "manifest" (any kind, for multi-kind files), "plan".
SCHEMA_CHOICES = {**SCHEMA_FILES, "manifest": "manifest.schema.json", "plan": "plan.schema.json"}
MODELINE = "# yaml-language-server: $schema={path}"


def _schema_file(kind: str) -> str:
    by_lower = {k.lower(): v for k, v in SCHEMA_CHOICES.items()}
    return by_lower[kind.lower()]


@click.command()
@click.argument(
    "kind", required=False, type=click.Choice(sorted(SCHEMA_CHOICES), case_sensitive=False)
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the schema files into this folder (all of them without KIND).",
)
def schema(kind: str | None, out_dir: Path | None) -> None:
    """The JSON Schemas of the manifests and of the plan, for editors and other tools.

    \b
    reconciler schema                 list them
    reconciler schema Cluster         print one (JSON) on stdout
    reconciler schema --out schemas   write them all; then start each manifest with
        # yaml-language-server: $schema=schemas/manifest.schema.json
    """
    folder = resources.schemas()
    if out_dir is None and kind is None:
        for name in sorted(SCHEMA_CHOICES, key=str.lower):
            click.echo(f"{name:<20} {SCHEMA_CHOICES[name]}")
        click.echo("\nPrint one with 'reconciler schema KIND', write all with --out DIR.")
        return
    if out_dir is None:
        assert kind is not None
        click.echo((folder / _schema_file(kind)).read_text(), nl=False)
        return
    # manifest.schema.json refers to each kind's file by name: it never goes alone.
    names = (
        resources.schema_names()
        if kind is None or kind.lower() == "manifest"
        else [_schema_file(kind)]
    )
    _write(out_dir, [(name, folder / name) for name in names])
    target = out_dir / ("manifest.schema.json" if kind is None else _schema_file(kind))
    click.echo(f"Wrote {len(names)} schema file(s) to {out_dir}. First line of a manifest:")
    click.echo(MODELINE.format(path=target.resolve().as_posix()))
    click.echo("(or the path from the manifest's folder, e.g. ../../schemas/manifest.schema.json)")


@click.command()
@click.argument("directory", default="manifests", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite files that are already there.")
def demo(directory: Path, force: bool) -> None:
    """Write the demo estate into DIRECTORY (default: manifests).

    DIRECTORY/demo holds the desired manifests (one 2008 R2 cluster, twenty VMs) and
    DIRECTORY/worlds/demo.yaml a simulated world that differs from them, as in the quick start.
    """
    examples = resources.examples()
    files: list[tuple[str, Traversable]] = []
    for sub in sorted(examples.iterdir(), key=lambda t: t.name):
        if sub.is_dir() and not sub.name.startswith(("_", ".")):
            files += [
                (f"{sub.name}/{f.name}", f)
                for f in sorted(sub.iterdir(), key=lambda t: t.name)
                if f.name.endswith(".yaml")
            ]
    existing = [name for name, _ in files if (directory / name).exists()]
    if existing and not force:
        click.echo(
            f"error: {directory} already has {', '.join(existing)}; "
            "choose another folder, or --force to overwrite",
            err=True,
        )
        raise SystemExit(EXIT_ERROR)
    _write(directory, files)
    world = (directory / "worlds" / "demo.yaml").as_posix()
    desired = (directory / "demo").as_posix()
    click.echo(f"Wrote the demo estate to {directory} ({len(files)} files). Next:")
    click.echo(f"  reconciler validate {desired}")
    click.echo(f"  reconciler sim init {world}")
    click.echo(f"  reconciler plan {desired}")
    click.echo(f"  reconciler apply {desired}")
    schemas = (directory.parent / "schemas").as_posix()
    click.echo(f"Their first lines point editors at {schemas}: reconciler schema --out {schemas}")


def _write(directory: Path, files: list[tuple[str, Traversable]]) -> None:
    try:
        for name, source in files:
            target = directory / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    except OSError as exc:
        click.echo(f"error: cannot write to {directory}: {exc.strerror or exc}", err=True)
        raise SystemExit(EXIT_ERROR) from exc
