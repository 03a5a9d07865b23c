"""The admin bearer token: where it comes from, when the server may start, how it is checked."""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets

from sandbox_core.errors import ConfigurationError

TOKEN_ENV = "SANDBOX_ADMIN_TOKEN"
MIN_TOKEN_LENGTH = 16


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_token(host: str, configured: str | None = None) -> tuple[str, bool]:
    """The token the server will require, and whether it was generated here (to print it once).

    ``configured`` defaults to ``$SANDBOX_ADMIN_TOKEN``. Without one, a random token is generated,
    but only for a loopback host: anything reachable from elsewhere must be given a token the
    operator chose, so the server refuses to start.
    """
    token = (os.environ.get(TOKEN_ENV) if configured is None else configured) or ""
    token = token.strip()
    if token:
        if len(token) < MIN_TOKEN_LENGTH:
            raise ConfigurationError(
                f"{TOKEN_ENV} must be at least {MIN_TOKEN_LENGTH} characters long; generate one with "
                '`python -c "import secrets; print(secrets.token_urlsafe(32))"`'
            )
        return token, False
    if not is_loopback(host):
        raise ConfigurationError(
            f"refusing to serve the admin API on {host!r}, which other machines can reach, without "
            f"{TOKEN_ENV}: set it to a long random value (and put TLS in front of the server)"
        )
    return secrets.token_urlsafe(32), True


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison, so response timing reveals nothing about the token."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
