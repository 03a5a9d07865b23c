"""``sandbox providers`` and ``sandbox health``."""

from __future__ import annotations

from typing import Any

import click

from sandbox_core.cli.common import EXIT_OK, EXIT_PROVIDER, active_or_none, open_store, print_json, set_exit_code
from sandbox_core.registry import ProviderState, get_registry


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@click.option("--no-verify", is_flag=True, help="Read package metadata only; do not import providers to check them.")
def providers(as_json: bool, no_verify: bool) -> None:
    """List installed providers: name, package, version, status, and which one is active.

    Each provider is imported on its own to check it; a broken one is shown with its error and
    does not affect the others. A selected provider that is not installed is listed too, with
    status ``not_installed``. Broken cross-cutting plugins are named on stderr (see ``sandbox plugins``).
    """
    registry = get_registry()
    rows = registry.statuses(verify=not no_verify)
    with open_store() as store:
        active = active_or_none(store)
    data = [{**row.to_dict(), "active": row.name == active} for row in rows]
    if active and active not in {r["name"] for r in data}:
        data.append(_not_installed(active))
    broken_plugins = [] if no_verify else [p for p in registry.plugin_statuses() if p.state is ProviderState.BROKEN]
    for plugin in broken_plugins:
        where = f"{plugin.package} {plugin.version}"
        click.echo(f"warning: plugin {plugin.name!r} ({where}) is broken: {headline(plugin.error)}", err=True)
    if as_json:
        print_json(data)
    elif not data:
        click.echo("No sandbox providers are installed. Install one, e.g. `pip install sandbox-selfmanaged`.")
    else:
        width = max(len(r["name"]) for r in data)
        packages = [f"{r['package']} {r['version']}" if r["package"] else "-" for r in data]
        pwidth = max(len(p) for p in packages)
        for row, package in zip(data, packages):
            mark = "*" if row["active"] else " "
            line = f"{mark} {row['name']:<{width}}  {package:<{pwidth}}  {row['status']}"
            if row["error"]:
                line += f": {headline(row['error'])}"
            click.echo(line)
        if active and data[-1]["status"] == "not_installed":
            click.echo(f"warning: the active provider {active!r} is not installed", err=True)


def _not_installed(name: str) -> dict[str, Any]:
    """The listing row of a provider the settings select but no installed package provides."""
    return {
        "name": name,
        "package": None,
        "version": None,
        "status": ProviderState.NOT_INSTALLED.value,
        "error": f"the active provider {name!r} is not installed; install its package or select another "
        "with `sandbox config use NAME`",
        "description": "",
        "languages": [],
        "tags": [],
        "active": True,
    }


def headline(error: str) -> str:
    """The line of a (possibly multi-line) error that says what is wrong, for one table row.

    Python puts the exception's type and message last, after context lines and tracebacks.
    """
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    return lines[-1] if lines else ""


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the health status as JSON.")
def health(as_json: bool) -> None:
    """Check the active provider's real ability to execute code (exit code 4 when unhealthy)."""
    from sandbox_core.client import SandboxClient

    client = SandboxClient(settings=open_store())
    try:
        status = client.health()
        provider = client.provider
    finally:
        client.close()
    if as_json:
        print_json({"provider": provider, **status.to_dict()})
    else:
        state = "healthy" if status.healthy else "UNHEALTHY"
        latency = f" ({status.latency * 1000:.0f} ms)" if status.latency is not None else ""
        click.echo(f"{provider}: {state}{latency}: {status.message}")
        for name, runtime in sorted((status.details.get("runtimes") or {}).items()):
            packages = ", ".join(f"{k} {v}" for k, v in sorted((runtime.get("packages") or {}).items()))
            problem = "" if runtime.get("available", True) else f" UNAVAILABLE: {runtime.get('error')}"
            click.echo(f"  runtime {name} ({runtime.get('language') or '?'}){problem}{': ' + packages if packages else ''}")
    set_exit_code(EXIT_OK if status.healthy else EXIT_PROVIDER)
