"""``sandbox provider new``: generate a provider package from the template shipped with sandbox-core."""

from __future__ import annotations

from pathlib import Path

import click

from sandbox_core.cli.common import EXIT_USAGE, fail


@click.group("provider")
def provider() -> None:
    """Create provider packages (`sandbox providers` lists the installed ones)."""


@provider.command("new")
@click.argument("name")
@click.option(
    "--directory",
    "-d",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to create the package (default: ./<package name>); must not exist or be empty.",
)
@click.option("--package-name", help="Distribution name (default: sandbox-<name>); the import package is derived from it.")
def new(name: str, directory: Path | None, package_name: str | None) -> None:
    """Generate the package of a new provider NAME (a lowercase identifier, e.g. my_cloud).

    The package declares NAME in the sandbox_core.providers entry-point group, implements the hooks
    with the runner protocol and runs the conformance kit in tests/. As generated, it executes code
    in a local child process that ISOLATES NOTHING: replace that with your backend.
    """
    from sandbox_core.scaffold import ScaffoldError, new_provider

    try:
        package = new_provider(name, directory=directory, distribution=package_name)
    except ScaffoldError as exc:
        fail(str(exc), EXIT_USAGE)
    names = package.names
    click.echo(f"created provider {names.name!r} (package {names.distribution}, module {names.module}) in {package.directory}:")
    for path in package.files:
        click.echo(f"  {path.relative_to(package.directory)}")
    click.echo(
        "next: cd into it, `pip install -e '.[test]'`, run `pytest`, then replace the local-subprocess "
        f"starter in src/{names.module}/provider.py with your backend"
    )
