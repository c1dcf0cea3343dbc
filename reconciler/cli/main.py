"""The ``reconciler`` command: argument parsing and rendering only.

Exit codes: 0 ok, 1 error; 2 "changes present" and 3 "changes blocked by a safety rule"
(``plan --detailed-exitcode``, ``reconcile --once``). Usage errors are 1, not click's 2.
"""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path

import click

from reconciler import __version__
from reconciler.cli.apply_commands import apply, force_unlock, history, show_run
from reconciler.cli.context import EXIT_BLOCKED, EXIT_CHANGES, EXIT_ERROR, EXIT_OK, Context
from reconciler.cli.doctor_command import doctor
from reconciler.cli.logs import configure as configure_logs
from reconciler.cli.plan_progress import plan_bar
from reconciler.cli.reconcile_commands import drift, reconcile
from reconciler.cli.render import plan_lines, review_lines
from reconciler.cli.render_markdown import plan_dot, plan_markdown
from reconciler.cli.resource_commands import demo, schema
from reconciler.cli.safe_text import visible
from reconciler.cli.sim_commands import sim
from reconciler.cli.worker_commands import schedule, worker, workers
from reconciler.engine.health import observed_conditions
from reconciler.manifest.errors import ManifestLoadError
from reconciler.manifest.gitsource import GitSourceError
from reconciler.manifest.load import load_paths
from reconciler.providers.base import ProviderError
from reconciler.providers.postgres import StateDatabaseError
from reconciler.runtime.apply import SigningKeyError, saved_plan_text, signing_key
from reconciler.runtime.journal import JournalError
from reconciler.runtime.review import GitReview, plan_git
from reconciler.runtime.workflow import observe as observe_estate
from reconciler.runtime.workflow import plan_paths


def _print_version(ctx: click.Context) -> None:
    from reconciler.providers.registry import versions

    click.echo(f"reconciler {__version__}")
    for name, version in versions().items():
        click.echo(f"provider {name} {version}")
    ctx.exit(EXIT_OK)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=lambda ctx, _param, value: _print_version(ctx) if value else None,
    help="Show the version of reconciler and of each installed provider, and exit.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="RECONCILER_STATE_DIR",
    default=".reconciler",
    show_default=True,
    help="Where the simulator world, journal and locks live (env RECONCILER_STATE_DIR).",
)
@click.option(
    "--state-url",
    envvar="RECONCILER_STATE_URL",
    default=None,
    metavar="URL",
    help="postgresql://... : keep the journal, locks, drift, plans and the simulated world "
    "in this database instead of --state-dir (env RECONCILER_STATE_URL).",
)
@click.option(
    "--provider",
    envvar="RECONCILER_PROVIDER",
    default="sim",
    show_default=True,
    help="Provider that observes and changes the estate (env RECONCILER_PROVIDER).",
)
@click.option(
    "--connections",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="RECONCILER_CONNECTIONS",
    default=None,
    help="hyperv provider: per cluster and node, the WinRM endpoints (YAML or JSON; env "
    "RECONCILER_CONNECTIONS).",
)
@click.option(
    "--log-format",
    type=click.Choice(["console", "json"]),
    default="console",
    show_default=True,
    help="json: structlog JSON events on stderr.",
)
@click.pass_context
def cli(
    ctx: click.Context,
    state_dir: Path,
    state_url: str | None,
    provider: str,
    connections: Path | None,
    log_format: str,
) -> None:
    """Declarative reconciler for Hyper-V failover clusters.

    Describe clusters, nodes, switches, volumes and VMs in YAML manifests; reconciler
    validates them, observes the estate through a provider (the embedded simulator by
    default), plans ordered safe actions and applies them.

    \b
    Exit codes:
      0  success (plan: no changes)
      1  error (invalid manifests, provider failure, usage error)
      2  changes present (plan --detailed-exitcode, reconcile --once)
      3  changes blocked by a safety rule
    """
    configure_logs(log_format)
    ctx.obj = Context(state_dir, provider, log_format, state_url, connections)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.pass_obj
def validate(obj: Context, paths: tuple[str, ...], fmt: str) -> None:
    """Check manifests: YAML syntax, schema, and rules across objects.

    PATHS are files or folders (every .yaml/.yml below them). All problems are reported,
    each as FILE:LINE:COL: Kind/name: field: what is wrong (what is allowed).
    """
    result = load_paths(list(paths), cache_dir=obj.cache_dir)
    problems = result.problems()
    warnings = [e for e in result.errors if e.severity == "warning"]
    if fmt == "json":
        counts: dict[str, int] = {}
        for kind, _name in result.sources:
            counts[kind] = counts.get(kind, 0) + 1
        click.echo(
            json.dumps(
                {
                    "valid": not problems,
                    "files": result.files,
                    "objects": dict(sorted(counts.items())),
                    "errors": [e.as_json() for e in problems],
                    "warnings": [e.as_json() for e in warnings],
                },
                indent=2,
            )
        )
    else:
        for err in result.errors:
            click.echo(str(err))
        if problems:
            obj.out.error(
                f"{len(problems)} error(s) in {len({e.file for e in problems})} file(s); "
                "nothing was changed"
            )
        else:
            obj.out.ok(f"{len(result.sources)} objects in {len(result.files)} file(s) are valid")
    if problems:
        raise SystemExit(EXIT_ERROR)


@cli.command()
@click.option(
    "--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True
)
@click.option(
    "--status/--no-status",
    default=False,
    show_default=True,
    help="Include observed-only facts (a world file); without them, manifests.",
)
@click.option(
    "--pin-vms",
    is_flag=True,
    help="Pin every VM to the node it runs on (by default placement is left free).",
)
@click.pass_obj
def observe(obj: Context, fmt: str, status: bool, pin_vms: bool) -> None:
    """Print the observed estate as manifests: also the way to adopt an existing estate."""
    from reconciler.manifest.dump import adoptable, to_documents, to_yaml

    provider = obj.provider_instance()
    bar = plan_bar(obj, text_output=fmt == "yaml")
    try:
        with bar or nullcontext():
            estate = observe_estate(provider, bar)
    finally:
        provider.close()
    conditions = [c.note() for c in observed_conditions(estate)]
    if not status and not pin_vms:
        estate = adoptable(estate)
    if fmt == "json":
        click.echo(json.dumps(to_documents(estate, status=status), indent=2))
        for line in conditions:
            click.echo(line, err=True)  # stderr: the JSON stays the documents
    else:
        # YAML comments: the output stays valid manifests.
        click.echo("".join(f"# {line}\n" for line in conditions), nl=False)
        click.echo(to_yaml(estate, status=status), nl=False)


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option(
    "--json", "as_json", is_flag=True, help="Print the plan as JSON (same as --format json)."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "markdown", "dot"]),
    default="text",
    show_default=True,
    help="markdown: a pull-request comment with pictures; dot: the dependency graph.",
)
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Save the plan (JSON) for a later 'apply --plan FILE'.",
)
@click.option("--target", help="Only this object (Kind/name) and what it needs.")
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 no changes, 1 error, 2 changes, 3 changes blocked by a safety rule.",
)
@click.option(
    "--git",
    "git_repo",
    metavar="REPO",
    help="Read the manifests from this git repository at --head, not from the working "
    "copy; PATHS are inside the repository (default: all of it).",
)
@click.option(
    "--base",
    metavar="REF",
    help="With --git: also list the manifest objects changed between REF and --head.",
)
@click.option("--head", metavar="REF", help="With --git: the commit to plan (default HEAD).")
@click.pass_obj
def plan(
    obj: Context,
    paths: tuple[str, ...],
    as_json: bool,
    fmt: str,
    out_file: Path | None,
    target: str | None,
    detailed_exitcode: bool,
    git_repo: str | None,
    base: str | None,
    head: str | None,
) -> None:
    """Show what apply would do: ordered actions, their disruption and duration, violations.

    Planning never changes anything: it only observes. With --git REPO --base REF --head REF
    it plans a pull request: the head commit's manifests, and which objects it changes.
    """
    if git_repo is None and (base is not None or head is not None):
        raise click.UsageError("--base and --head need --git REPO")
    if git_repo is None and not paths:
        raise click.UsageError("give manifest PATHS, or --git REPO")
    review: GitReview | None = None
    provider = obj.provider_instance()
    try:
        if git_repo is None:
            bar = plan_bar(obj, text_output=fmt == "text" and not as_json)
            with bar or nullcontext():
                planned = plan_paths(
                    list(paths), provider, target, obj.cache_dir, bar, obj.memo_dir
                )
        else:
            from_git = plan_git(git_repo, head or "HEAD", base, list(paths), provider, target)
            planned, review = from_git.planned, from_git.review
    except GitSourceError as exc:
        obj.out.error(f"cannot plan from git repository {git_repo}: {exc}")
        raise SystemExit(EXIT_ERROR) from exc
    finally:
        provider.close()
    result = planned.plan
    if target and not result.actions and target not in result.prior_state:
        obj.out.error(f"no object {target} in the observed estate (use Kind/name)")
        raise SystemExit(EXIT_ERROR)
    try:
        key = signing_key()
    except SigningKeyError as exc:
        obj.out.error(str(exc))
        raise SystemExit(EXIT_ERROR) from exc
    saved = saved_plan_text(result, {"git": review.as_json()} if review else None, key)
    if out_file is not None:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(saved)
    if as_json or fmt == "json":
        click.echo(saved, nl=False)
    elif fmt == "markdown":
        click.echo(plan_markdown(result, review=review), nl=False)
    elif fmt == "dot":
        click.echo(plan_dot(result), nl=False)
    else:
        for line in review_lines(review) if review is not None else []:
            obj.out.console.print(visible(line), markup=False, highlight=False)  # user text
        for line in plan_lines(result, colour=obj.out.interactive):
            obj.out.console.print(line, markup=obj.out.interactive, highlight=False)
        if out_file is not None:
            obj.out.console.print()  # a blank line of our own: note() escapes control characters
            obj.out.note(
                f"Saved the plan to {out_file}; apply it with: reconciler apply --plan {out_file}"
            )
    if detailed_exitcode:
        if result.blocked:
            raise SystemExit(EXIT_BLOCKED)
        raise SystemExit(EXIT_CHANGES if result.actions else EXIT_OK)


cli.add_command(sim)
cli.add_command(doctor)
cli.add_command(apply)
cli.add_command(history)
cli.add_command(show_run)
cli.add_command(force_unlock)
cli.add_command(reconcile)
cli.add_command(drift)
cli.add_command(schema)
cli.add_command(demo)
cli.add_command(worker)
cli.add_command(workers)
cli.add_command(schedule)


def main(argv: list[str] | None = None) -> None:
    try:
        code = cli.main(args=argv, prog_name="reconciler", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except (ProviderError, JournalError, StateDatabaseError) as exc:
        click.echo(visible(f"error: {exc}"), err=True)
        code = EXIT_ERROR
    except ManifestLoadError as exc:
        for err in exc.errors:
            click.echo(str(err), err=True)
        click.echo(f"error: {len(exc.errors)} manifest error(s); nothing was changed", err=True)
        code = EXIT_ERROR
    except click.ClickException as exc:
        exc.show()
        code = EXIT_ERROR
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        code = EXIT_ERROR
    sys.exit(code if isinstance(code, int) else EXIT_OK)
