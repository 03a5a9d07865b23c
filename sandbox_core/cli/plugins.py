"""``sandbox plugins``: the cross-cutting plugins (audit, metrics, policy) and whether they work."""

from __future__ import annotations

import click

from sandbox_core.cli.common import EXIT_OK, EXIT_PROVIDER, print_json, set_exit_code
from sandbox_core.cli.providers import headline
from sandbox_core.registry import REQUIRED_PLUGINS_ENV, ProviderState, get_registry


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def plugins(as_json: bool) -> None:
    """List installed cross-cutting plugins: name, package, version, status (loaded, broken, disabled).

    A broken plugin is left out of executions, which go on without it, unless it is named in
    SANDBOX_REQUIRED_PLUGINS: then every execution is refused until it works (exit code 4 here).
    """
    registry = get_registry()
    rows = registry.plugin_statuses()
    data = [{**row.to_dict(), "required": row.name in registry.required_plugins} for row in rows]
    missing = sorted(registry.required_plugins - {row.name for row in rows})
    if as_json:
        print_json(data)
    elif not data:
        click.echo("No cross-cutting plugins are installed.")
    else:
        width = max(len(r["name"]) for r in data)
        pwidth = max(len(f"{r['package']} {r['version']}") for r in data)
        for row in data:
            package = f"{row['package']} {row['version']}"
            line = f"  {row['name']:<{width}}  {package:<{pwidth}}  {row['status']}{' (required)' if row['required'] else ''}"
            if row["error"]:
                line += f": {headline(row['error'])}"
            click.echo(line)
    for name in missing:
        click.echo(f"warning: plugin {name!r} is required by {REQUIRED_PLUGINS_ENV} but not installed", err=True)
    unusable = [r for r in rows if r.name in registry.required_plugins and r.state is not ProviderState.LOADED]
    set_exit_code(EXIT_PROVIDER if missing or unusable else EXIT_OK)
