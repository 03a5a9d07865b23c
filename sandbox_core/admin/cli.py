"""``sandbox admin``: serve the admin API and settings page (needs the ``admin`` extra)."""

from __future__ import annotations

import click

from sandbox_core.cli.common import EXIT_CONFIG, fail


@click.command("admin")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8800, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
def admin(host: str, port: int) -> None:
    """Serve the admin API (under /api/v1/sandbox/) and the settings page (at /).

    Every API call needs the admin token: SANDBOX_ADMIN_TOKEN, or on a loopback address a random
    token generated now and printed once. On any other address the command refuses to start
    without SANDBOX_ADMIN_TOKEN. Set SANDBOX_SECRET_KEY (a Fernet key) to store secrets encrypted.
    """
    try:
        import uvicorn

        from sandbox_core.admin.app import create_app
    except ImportError as exc:
        fail(f"the admin server needs the 'admin' extra ({exc.name} is missing): pip install 'sandbox-core[admin]'", EXIT_CONFIG)
    from sandbox_core.admin.auth import TOKEN_ENV, resolve_token
    from sandbox_core.settings.secrets import encryption_enabled

    token, generated = resolve_token(host)
    if generated:
        click.echo(f"admin token (generated for this run; set {TOKEN_ENV} to choose one): {token}", err=True)
    if not encryption_enabled():
        click.echo("note: SANDBOX_SECRET_KEY is not set, so saved secrets are stored unencrypted", err=True)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"sandbox admin page: http://{shown}:{port}/", err=True)
    uvicorn.run(create_app(token=token), host=host, port=port, log_level="info", server_header=False)
