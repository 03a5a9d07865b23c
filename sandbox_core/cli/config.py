"""``sandbox config show|set|use|validate``: read and change provider settings."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import click

from sandbox_core.cli.common import (
    EXIT_CONFIG,
    EXIT_USAGE,
    active_or_none,
    fail,
    json_object_option,
    open_store,
    print_json,
    set_exit_code,
)
from sandbox_core.errors import NoProviderSelectedError, ProviderNotFoundError
from sandbox_core.registry import get_registry
from sandbox_core.schema import ConfigSchema

if TYPE_CHECKING:
    from sandbox_core.client import SandboxClient
    from sandbox_core.settings import SettingsStore


def _parse_assignments(pairs: tuple[str, ...]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            fail(f"expected key=value, got {pair!r}", EXIT_USAGE)
        values[key.strip()] = value
    return values


def _schema(client: SandboxClient, name: str) -> ConfigSchema:
    return client.config_schema(name)


@click.group()
def config() -> None:
    """Show, change and check provider configs stored in the settings database."""


@config.command("show")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(name: str | None, as_json: bool) -> None:
    """Show a provider's saved config (the active provider's by default), secrets masked."""
    from sandbox_core.client import SandboxClient

    with open_store() as store:
        active = active_or_none(store)
        if name is None:
            if active is None:
                raise NoProviderSelectedError(get_registry().names())
            name = active
        client = SandboxClient(settings=store)
        try:
            schema = _schema(client, name)
        except ProviderNotFoundError as exc:
            # Uninstalled or disabled: without its schema every saved value may be a secret.
            saved = store.provider_config(name)
            if not saved:
                raise
            masked, database = store.masked_provider_config(name, saved), store.describe()
            problem = f"{exc}; without its schema every value is masked"
            if as_json:
                about = {"provider": name, "active": name == active, "config": masked, "database": database}
                print_json({**about, "problem": problem})
                return
            click.echo(f"provider: {name}{' (active)' if name == active else ''}")
            click.echo(f"database: {database}")
            click.echo(f"warning: {problem}", err=True)
            for key in sorted(masked):
                click.echo(f"  {key} = {json.dumps(masked[key])}")
            return
        masked = schema.mask(store.provider_config(name))
        database = store.describe()
    if as_json:
        print_json({"provider": name, "active": name == active, "config": masked, "database": database})
        return
    click.echo(f"provider: {name}{' (active)' if name == active else ''}")
    click.echo(f"database: {database}")
    for field in schema.fields:
        if field.name in masked:
            shown = json.dumps(masked[field.name], ensure_ascii=False)
        elif field.default is not None:
            shown = f"{json.dumps(field.default)} (default)"
        else:
            shown = "(not set)"
        click.echo(f"  {field.name} = {shown}")
    for extra in sorted(set(masked) - {f.name for f in schema.fields}):
        click.echo(f"  {extra} = {json.dumps(masked[extra])} (unknown field)")


@config.command("set")
@click.argument("name")
@click.argument("assignments", nargs=-1)
@click.option("--json", "json_text", metavar="JSON", help="Values as a JSON object, e.g. '{\"endpoints\": [\"http://…\"]}'.")
@click.option("--from-env", is_flag=True, help="Take values from the environment variables the provider's schema names.")
@click.option("--activate", is_flag=True, help="Also make NAME the active provider.")
@click.option("--replace", is_flag=True, help="Replace the saved config instead of updating it.")
def set_config(
    name: str, assignments: tuple[str, ...], json_text: str | None, from_env: bool, activate: bool, replace: bool
) -> None:
    """Change NAME's config: key=value pairs, --json and/or --from-env, validated before saving."""
    from sandbox_core.client import SandboxClient

    updates: dict[str, Any] = {}
    with open_store() as store:
        client = SandboxClient(settings=store)
        schema = _schema(client, name)
        if from_env:
            found = {f.name: os.environ[f.env] for f in schema.fields if f.env and os.environ.get(f.env)}
            if not found:
                wanted = ", ".join(f.env for f in schema.fields if f.env) or "none"
                fail(f"none of the environment variables of provider {name!r} are set (it reads: {wanted})", EXIT_CONFIG)
            updates.update(found)
        if json_text:
            updates.update(json_object_option(json_text, "--json"))
        updates.update(_parse_assignments(assignments))
        if not updates and not activate:
            fail("nothing to set: give key=value pairs, --json or --from-env", EXIT_USAGE)
        from sandbox_core.audit import default_actor
        from sandbox_core.saving import prepare_change, save_change

        change = prepare_change(client, name, updates, update=not replace)
        save_change(store, change, source="cli", actor=default_actor(), client="cli", activate=activate)
    changed = ", ".join(sorted(updates)) or "nothing"
    click.echo(f"saved {name} config (changed: {changed}){'; now active' if activate else ''}")


def _audit_change(store: SettingsStore, name: str, changed: list[str], activated: bool) -> None:
    from sandbox_core.audit import default_actor, record_config_change

    record_config_change(
        store.audit_settings(), actor=default_actor(), client="cli", provider=name, changed=changed, activated=activated
    )


@config.command("use")
@click.argument("name")
def use(name: str) -> None:
    """Make NAME the active provider (its saved config must be valid)."""
    from sandbox_core.client import SandboxClient

    with open_store() as store:
        client = SandboxClient(settings=store)
        client.validate_config(name, client.stored_config(name))
        was_active = active_or_none(store) == name
        store.set_active_provider(name, source="cli")
        _audit_change(store, name, [], not was_active)
    click.echo(f"active provider: {name}")


@config.command("validate")
@click.argument("name", required=False)
def validate(name: str | None) -> None:
    """Check NAME's saved config (the active provider's by default) without contacting anything."""
    from sandbox_core.client import SandboxClient

    with open_store() as store:
        if name is None:
            name = store.active_provider(installed=get_registry().names())
        client = SandboxClient(settings=store)
        client.validate_config(name, client.stored_config(name))
    click.echo(f"{name}: config is valid")


@config.command("audit")
@click.argument("state", type=click.Choice(["on", "off"]))
@click.option("--path", "path", metavar="FILE", help="Also append audit lines to FILE.")
def audit(state: str, path: str | None) -> None:
    """Switch the audit log of executions on or off for every client using these settings."""
    with open_store() as store:
        store.set_json("sandbox.audit", {"enabled": state == "on", "path": os.path.abspath(path) if path else None}, source="cli")
    click.echo(f"audit log {state}" + (f" (file: {os.path.abspath(path)})" if path and state == "on" else ""))


@config.command("import-ragflow")
@click.option("--from", "source_url", required=True, metavar="URL", help="RAGFlow's database (sqlite:///…, mysql://…, postgresql://…).")
@click.option("--table", default="system_settings", show_default=True, help="RAGFlow's settings table.")
@click.option("--dry-run", is_flag=True, help="Show the translated configs (secrets masked); save nothing.")
@click.option("--activate/--no-activate", default=True, help="Make RAGFlow's active provider active here too (default: on).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def import_ragflow_command(source_url: str, table: str, dry_run: bool, activate: bool, as_json: bool) -> None:
    """Copy RAGFlow's sandbox settings into this settings database, once.

    Each sandbox.<provider> row of an installed provider is translated to its current shape,
    validated and saved; sandbox.provider_type then selects the active provider.
    """
    from sandbox_core.cli import ragflow_import
    from sandbox_core.redaction import mask_url, scrubber
    from sandbox_core.settings.database import url_password

    password = url_password(source_url)
    rows = ragflow_import.read_ragflow_rows(source_url, table)
    with open_store() as store:
        report, secrets = ragflow_import.import_ragflow(rows, store, dry_run=dry_run, activate=activate)
    scrub = scrubber([*secrets, password] if password else secrets)
    if as_json:
        data = {"source": mask_url(source_url), "table": table, **ragflow_import.report_data(report, dry_run=dry_run)}
        click.echo(scrub(json.dumps(data, indent=2, ensure_ascii=False)))
    else:
        click.echo(f"reading from: {mask_url(source_url)} (table {table})")
        for line in ragflow_import.report_lines(report, dry_run=dry_run):
            click.echo(scrub(line))
    if report.any_invalid:
        set_exit_code(EXIT_CONFIG)
