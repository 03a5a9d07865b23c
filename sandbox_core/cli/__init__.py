"""The ``sandbox`` command: list providers, configure them, check health, execute code.

Exit codes scripts can rely on (also listed in ``sandbox --help``):
0 success; 1 the code ran but did not succeed (see the result's status); 2 usage error;
3 configuration error (no provider selected, unknown provider, invalid config);
4 the provider or its backend failed (provider_error, unhealthy, broken plugin).
"""

from __future__ import annotations

import sys

import click

from sandbox_core.admin.cli import admin
from sandbox_core.cli.common import EXIT_CODES_HELP, run_guarded
from sandbox_core.cli.config import config
from sandbox_core.cli.execute import exec_command
from sandbox_core.cli.isolation import check_isolation_command
from sandbox_core.cli.plugins import plugins
from sandbox_core.cli.providers import health, providers
from sandbox_core.cli.scaffold import provider
from sandbox_core.cli.session import repl, session_group


@click.group(epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sandbox-core", prog_name="sandbox")
def cli() -> None:
    """Run untrusted code through pluggable sandbox providers, and configure them.

    Settings live in the database named by SANDBOX_DATABASE_URL: sqlite:///path/to/settings.db,
    mysql://user:password@host:3306/db or postgresql://user:password@host:5432/db (unset: an
    SQLite file in your user data directory).
    """


cli.add_command(providers)
cli.add_command(plugins)
cli.add_command(health)
cli.add_command(config)
cli.add_command(exec_command)
cli.add_command(admin)
cli.add_command(provider)
cli.add_command(check_isolation_command)
cli.add_command(session_group)
cli.add_command(repl)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sandbox`` console script."""
    return run_guarded(cli, argv if argv is not None else sys.argv[1:])


__all__ = ["cli", "main"]
