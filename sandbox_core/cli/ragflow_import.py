"""``sandbox config import-ragflow``: copy RAGFlow's sandbox settings into sandbox-core's database, once.

RAGFlow keeps them in its own ``system_settings`` table, whose timestamp columns differ from ours,
so sandbox-core never shares that table: this reads RAGFlow's ``sandbox.*`` rows with plain SQL,
lets each installed provider translate its row (hook ``sandbox_upgrade_config``), validates the
result and saves it in the database named by ``SANDBOX_DATABASE_URL``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from sandbox_core.errors import ConfigurationError, ConfigValidationError, ProviderError
from sandbox_core.published import PUBLISHED_PROVIDERS
from sandbox_core.redaction import mask_secrets, mask_url
from sandbox_core.settings.keys import PROVIDER_TYPE

SOURCE = "ragflow"
SAVED_SOURCE = "ragflow-import"
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# RAGFlow's own schemas do not always flag secrets the way ours do; never print these either.
_SECRET_KEY_WORDS = ("secret", "token", "password", "api_key")


@attrs.frozen
class ImportOutcome:
    """What happened to one ``sandbox.<provider>`` row."""

    provider: str
    status: str  # "imported", "skipped", "invalid"
    config: dict[str, Any] = attrs.field(factory=dict)  # masked, for display
    notes: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


@attrs.frozen
class ImportReport:
    outcomes: tuple[ImportOutcome, ...]
    ragflow_active: str | None
    activated: str | None
    activation_note: str = ""

    @property
    def any_invalid(self) -> bool:
        return any(o.status == "invalid" for o in self.outcomes)


def read_ragflow_rows(url: str, table: str = "system_settings") -> dict[str, str]:
    """RAGFlow's ``sandbox.*`` rows (name → raw value) from the database at ``url``."""
    from sandbox_core.settings import database_from_url

    if not _TABLE_NAME.match(table):
        raise ConfigurationError(f"--table {table!r} is not a plain table name")
    if url.startswith("sqlite:///") and not os.path.isfile(url[len("sqlite:///"):].split("?")[0]):
        # Opening a missing SQLite file would create an empty one next to RAGFlow's.
        raise ConfigurationError(f"RAGFlow's database {mask_url(url)} does not exist")
    database = database_from_url(url)
    try:
        sql = f"SELECT name, value FROM {table} WHERE name LIKE 'sandbox.%'"
        cursor = database.execute_sql(sql)  # type: ignore[no-untyped-call]  # unannotated in peewee's stubs
        return {str(name): "" if value is None else str(value) for name, value in cursor.fetchall()}
    except Exception as exc:
        raise ConfigurationError(
            f"could not read table {table!r} of RAGFlow's database {mask_url(url)}: {type(exc).__name__}"
        ) from None
    finally:
        database.close()


def _provider_type(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return value.strip() or None if isinstance(value, str) else None


def _secret_fields(config: Mapping[str, Any], secret_fields: Iterable[str]) -> list[str]:
    """The schema's secret fields and any key that looks like one (RAGFlow's rows are not typed)."""
    return sorted(set(secret_fields) | {key for key in config if any(word in key.lower() for word in _SECRET_KEY_WORDS)})


def _secret_values(config: Mapping[str, Any], secret_fields: Iterable[str]) -> list[str]:
    return [value for key in _secret_fields(config, secret_fields) if isinstance(value := config.get(key), str) and value]


def import_ragflow(
    rows: Mapping[str, str], store: Any, *, dry_run: bool = False, activate: bool = True
) -> tuple[ImportReport, list[str]]:
    """Translate, validate and (unless ``dry_run``) save RAGFlow's rows into ``store``.

    Returns the report and every secret value met, so the caller can scrub whatever it prints.
    """
    from sandbox_core.audit import default_actor
    from sandbox_core.client import SandboxClient
    from sandbox_core.registry import get_registry
    from sandbox_core.saving import prepare_change, save_change
    from sandbox_core.settings.keys import provider_of_row

    registry = get_registry()
    installed = set(registry.names())
    client = SandboxClient(settings=store, registry=registry)
    outcomes: list[ImportOutcome] = []
    secrets: list[str] = []
    valid: set[str] = set()
    for name in sorted(rows):
        if name == PROVIDER_TYPE:
            continue
        provider = provider_of_row(name)
        if provider is None:
            continue
        try:
            raw = json.loads(rows[name] or "{}")
        except ValueError as exc:
            detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            outcomes.append(ImportOutcome(provider, "invalid", problems=(f"value is not JSON: {detail}",)))
            continue
        if not isinstance(raw, dict):
            outcomes.append(ImportOutcome(provider, "invalid", problems=("value is not a JSON object",)))
            continue
        secrets += _secret_values(raw, ())
        if provider not in installed:
            hint = PUBLISHED_PROVIDERS.get(provider, f"a package providing {provider!r}")
            outcomes.append(ImportOutcome(provider, "skipped", notes=(f"provider not installed: install {hint}",)))
            continue
        try:
            schema = client.config_schema(provider)
            upgraded, notes = registry.upgrade_config(provider, raw, SOURCE) or (raw, [])
        except ProviderError as exc:
            outcomes.append(ImportOutcome(provider, "invalid", problems=(str(exc),)))
            continue
        secrets += _secret_values(upgraded, schema.secret_fields)
        shown = mask_secrets(upgraded, _secret_fields(upgraded, schema.secret_fields))
        try:
            change = prepare_change(client, provider, upgraded)
        except ConfigValidationError as exc:
            problems = tuple(str(p) for p in exc.problems)
            outcomes.append(ImportOutcome(provider, "invalid", shown, tuple(notes), problems))
            continue
        valid.add(provider)
        if not dry_run:
            save_change(store, change, source=SAVED_SOURCE, actor=default_actor(), client=SAVED_SOURCE)
        outcomes.append(ImportOutcome(provider, "imported", shown, tuple(notes)))

    ragflow_active = _provider_type(rows.get(PROVIDER_TYPE))
    activated, note = None, ""
    if ragflow_active is None:
        note = "RAGFlow had no active provider"
    elif not activate:
        note = f"RAGFlow's active provider {ragflow_active} not activated (--no-activate)"
    elif ragflow_active not in valid:
        note = f"RAGFlow's active provider {ragflow_active} not activated: its config was not imported"
    else:
        activated = ragflow_active
        if not dry_run:
            store.set_active_provider(ragflow_active, source=SAVED_SOURCE)
    return ImportReport(tuple(outcomes), ragflow_active, activated, note), secrets


def report_data(report: ImportReport, *, dry_run: bool) -> dict[str, Any]:
    """The report as JSON data for ``--json`` (secrets already masked in configs)."""
    return {
        "dry_run": dry_run,
        "providers": [
            {
                "provider": outcome.provider,
                "status": outcome.status,
                "config": outcome.config,
                "notes": list(outcome.notes),
                "problems": list(outcome.problems),
            }
            for outcome in report.outcomes
        ],
        "ragflow_active": report.ragflow_active,
        "activated": report.activated,
        "activation_note": report.activation_note or None,
    }


def report_lines(report: ImportReport, *, dry_run: bool) -> list[str]:
    """The human-readable report, one line per fact (secrets already masked in configs)."""
    lines: list[str] = []
    verb = "would import" if dry_run else "imported"
    for outcome in report.outcomes:
        if outcome.status == "imported":
            lines.append(f"{outcome.provider}: {verb}")
        elif outcome.status == "skipped":
            lines.append(f"{outcome.provider}: skipped")
        else:
            lines.append(f"{outcome.provider}: invalid")
        lines += [f"  problem: {problem}" for problem in outcome.problems]
        lines += [f"  note: {note}" for note in outcome.notes]
        if dry_run and outcome.config:
            lines.append(f"  config: {json.dumps(outcome.config, ensure_ascii=False, sort_keys=True)}")
    if not report.outcomes:
        lines.append("no sandbox.<provider> rows found")
    if report.activated:
        lines.append(f"active provider: {report.activated}" + (" (would be set)" if dry_run else ""))
    elif report.activation_note:
        lines.append(report.activation_note)
    if dry_run:
        lines.append("dry run: nothing saved")
    return lines
