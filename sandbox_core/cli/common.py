"""What every ``sandbox`` subcommand shares: exit codes, error reporting, JSON output, the store."""

from __future__ import annotations

import json
import math
import sys
from typing import Any, NoReturn

import click

from sandbox_core.errors import (
    ConfigurationError,
    ProviderError,
    ProviderNotFoundError,
    SandboxError,
)

EXIT_OK = 0
EXIT_NOT_SUCCESSFUL = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_PROVIDER = 4

EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 the code ran but did not succeed; 2 usage error; "
    "3 configuration error; 4 provider or backend failure."
)


class CommandFailed(click.ClickException):
    """An error to print as ``error: …`` with a chosen exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        # click annotates exit_code as a ClassVar but reads it from the instance (e.exit_code).
        self.exit_code = exit_code  # type: ignore[misc]

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def finite_seconds(_ctx: click.Context, _param: click.Parameter, value: float | None) -> float | None:
    """Option callback: a finite, positive number of seconds, or None when the option is not given
    (``inf``, ``nan``, ``1e400`` and ``0`` are usage errors, which click's float type alone lets through)."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"{value!r} is not a finite, positive number of seconds")
    return value


def fail(message: str, exit_code: int) -> NoReturn:
    raise CommandFailed(message, exit_code)


def exit_code_for(error: SandboxError) -> int:
    # An unknown provider name is a setting to fix, although the error is a ProviderError.
    if isinstance(error, ProviderNotFoundError):
        return EXIT_CONFIG
    if isinstance(error, ProviderError):
        return EXIT_PROVIDER
    if isinstance(error, ConfigurationError):
        return EXIT_CONFIG
    return EXIT_PROVIDER


def run_guarded(command: click.Command, argv: list[str]) -> int:
    """Run the click command, turning SandboxErrors into a one-line message and an exit code."""
    try:
        command.main(args=argv, prog_name="sandbox", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return EXIT_USAGE
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except SandboxError as exc:
        click.echo(f"error: {exc}", err=True)
        return exit_code_for(exc)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return _last_exit_code()


_exit_code = EXIT_OK


def set_exit_code(code: int) -> None:
    """Record the exit code a command finished with (without raising)."""
    global _exit_code
    _exit_code = code


def _last_exit_code() -> int:
    global _exit_code
    code, _exit_code = _exit_code, EXIT_OK
    return code


def json_object_option(text: str, option: str) -> dict[str, Any]:
    """Parse the JSON object given to ``option``, or fail with a usage error naming the option."""
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        fail(f"{option} is not valid JSON: {exc}", EXIT_USAGE)
    if not isinstance(parsed, dict):
        fail(f"{option} must be a JSON object", EXIT_USAGE)
    return parsed


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False, sort_keys=False)
    sys.stdout.write("\n")


def open_store() -> Any:
    """The settings store named by SANDBOX_DATABASE_URL (or the default SQLite file)."""
    from sandbox_core.settings import SettingsStore

    return SettingsStore()


def active_or_none(store: Any) -> str | None:
    """The active provider's name, or None when none is selected (for listings, not execution)."""
    value = store.get("sandbox.provider_type")
    return value or None
