"""The admin FastAPI app: the JSON API under ``/api/v1/sandbox/`` and the settings page at ``/``.

Every ``/api/`` request, the OpenAPI document included, needs ``Authorization: Bearer <token>``;
the check runs in a middleware, before routing and body parsing, so nothing about the API is
revealed without the token. The page's static files are public and hold no data: the page asks
for the token and sends it with each API call.

Errors always use a 4xx/5xx status with an :class:`~sandbox_core.admin.models.ErrorBody`:
400 unreadable body, 401 token, 404 unknown provider, 409 edit conflict, 413 body over the size
limit, 422 invalid request or config (one entry per field; JSON types are strict: ``"yes"`` is no
boolean), 503 broken provider or unavailable settings database. No response carries a stack trace
or a secret.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from sandbox_core.admin.auth import TOKEN_ENV, token_matches
from sandbox_core.admin.limits import DEFAULT_MAX_BODY_BYTES, BodyLimit
from sandbox_core.admin.models import (
    ConfigOut,
    ErrorBody,
    FieldError,
    HealthOut,
    ProviderList,
    SaveConfigIn,
    SavedConfig,
    TestConnectionIn,
    TestConnectionOut,
)
from sandbox_core.admin.service import Actor, AdminService
from sandbox_core.errors import (
    ConfigConflictError,
    ConfigValidationError,
    ProviderNotFoundError,
    SandboxError,
)
from sandbox_core.registry import ProviderRegistry, get_registry
from sandbox_core.settings import SettingsStore

logger = logging.getLogger("sandbox_core.admin")

API_PREFIX = "/api/v1/sandbox"
STATIC_DIR = FilePath(__file__).parent / "static"
PROVIDER_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_-]*$"

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
}

ProviderName = Annotated[
    str,
    Path(pattern=PROVIDER_NAME_PATTERN, max_length=64, description="The provider's entry-point name.", examples=["self_managed"]),
]


def _error(status: int, detail: str, errors: list[dict[str, str]] | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(detail=detail, errors=[FieldError(**error) for error in errors or ()])
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    meaning = {
        400: "The request body is not valid JSON.",
        401: "Missing or wrong admin token.",
        404: "No provider of that name is installed.",
        409: "The saved config changed since it was read (etag mismatch).",
        413: "The request body is larger than the server's limit (1 MiB by default).",
        422: "The request or the config is invalid; `errors` names each field.",
        503: "The provider is broken or the settings database is unavailable.",
    }
    return {code: {"model": ErrorBody, "description": meaning[code]} for code in codes}


_bearer = HTTPBearer(auto_error=False, description=f"The admin token ({TOKEN_ENV}).")


def _require_token(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    # The middleware has already refused bad tokens; this declares the scheme in OpenAPI and
    # keeps the routes safe if they are ever mounted without the middleware.
    if credentials is None or not token_matches(credentials.credentials, request.app.state.admin_token):
        raise StarletteHTTPException(401, "missing or wrong admin token", headers={"WWW-Authenticate": "Bearer"})


def _service(request: Request) -> AdminService:
    service: AdminService = request.app.state.service
    return service


Service = Annotated[AdminService, Depends(_service)]


def _build_router() -> APIRouter:
    router = APIRouter(prefix=API_PREFIX, dependencies=[Depends(_require_token)], tags=["sandbox"])

    @router.get("/providers", response_model=ProviderList, responses=_responses(401, 503), summary="List installed providers")
    def list_providers(service: Service) -> dict[str, Any]:
        """Every installed provider with its package, version and status (broken ones with their
        error), description, tags, languages and whether it is the active one."""
        return service.providers()

    @router.get(
        "/providers/{name}/schema",
        response_model=dict[str, Any],
        responses=_responses(401, 404, 422, 503),
        summary="A provider's config schema",
    )
    def provider_schema(name: ProviderName, service: Service) -> dict[str, Any]:
        """The JSON Schema (draft 2020-12) of the provider's config; secret fields carry
        ``"x-secret": true`` and ``"writeOnly": true``."""
        return service.json_schema(name)

    @router.get(
        "/providers/{name}/config",
        response_model=ConfigOut,
        responses=_responses(401, 404, 422, 503),
        summary="A provider's saved config, secrets masked",
    )
    def read_config(name: ProviderName, service: Service) -> dict[str, Any]:
        """The config saved for the provider (``{}`` when none is), each set secret shown as ``********``."""
        return service.read_config(name)

    @router.put(
        "/providers/{name}/config",
        response_model=SavedConfig,
        responses=_responses(400, 401, 404, 409, 413, 422, 503),
        summary="Save a provider's config",
    )
    def save_config(name: ProviderName, body: SaveConfigIn, request: Request, service: Service) -> dict[str, Any]:
        """Validate the whole config (schema, then the provider's own checks) and save it, and
        optionally make the provider active, in one transaction: a refused save changes nothing.
        A secret sent back as ``********`` keeps the saved one."""
        actor = Actor(address=request.client.host if request.client else None)
        return service.save_config(name, body.config, activate=body.activate, etag=body.etag, actor=actor)

    @router.post(
        "/providers/{name}/test",
        response_model=TestConnectionOut,
        responses=_responses(400, 401, 404, 413, 422, 503),
        summary="Test a config with a real probe execution",
    )
    def test_connection(name: ProviderName, body: TestConnectionIn, service: Service) -> dict[str, Any]:
        """Run a small probe program through the provider with the given, unsaved config.

        The answer is 200 whenever the probe could be attempted: ``success`` says whether it ran
        and exited 0, and ``message``, ``exit_code``, ``stdout`` and ``stderr`` say what happened.
        """
        outcome = service.test_connection(name, body.config)
        result = outcome.result
        return {
            "success": outcome.success,
            "status": result.status.value,
            "message": outcome.message,
            "exit_code": result.exit_code,
            "execution_time": round(result.execution_time, 4),
            "stdout": result.stdout,
            "stderr": result.stderr,
            "language": outcome.language,
        }

    @router.get("/health", response_model=HealthOut, responses=_responses(401, 503), summary="The active provider's health")
    def health(service: Service) -> dict[str, Any]:
        """Whether the active provider can execute now, and the runtimes (package sets) it
        reports: language, packages with versions, preloaded modules and how warm sandboxes are made."""
        return service.health()

    return router


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SandboxError)
    async def sandbox_error(_request: Request, exc: SandboxError) -> JSONResponse:
        if isinstance(exc, ConfigValidationError):
            errors = [{"field": p.field, "message": p.message} for p in exc.problems]
            return _error(422, str(exc), errors)
        if isinstance(exc, ProviderNotFoundError):
            return _error(404, str(exc))
        if isinstance(exc, ConfigConflictError):
            return _error(409, str(exc))
        # ProviderError (broken, duplicate, unreachable) and ConfigurationError (database
        # unavailable, unreadable row, secret that cannot be decrypted): the server's state is at fault.
        logger.warning("admin request failed: %s", exc)
        return _error(503, str(exc))

    @app.exception_handler(RequestValidationError)
    async def request_invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return _error(400, "the request body is not valid JSON")
        # Only locations and messages: pydantic's "input" would echo what was sent, secrets included.
        errors = [
            {"field": ".".join(str(part) for part in p.get("loc", ())[1:] if part != "body"), "message": str(p.get("msg", ""))}
            for p in problems
        ]
        return _error(422, "invalid request: " + "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors), errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        logger.error("unexpected error in the admin API: %s", type(exc).__name__, exc_info=exc)
        return _error(500, "internal error; the server log has the details")


def create_app(
    *,
    token: str,
    settings: SettingsStore | None = None,
    registry: ProviderRegistry | None = None,
    probe_timeout: float = 30.0,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """The admin app, requiring ``token`` on every API call.

    :param settings: the store to read and write; by default one on ``SANDBOX_DATABASE_URL``,
        opened at startup and closed at shutdown. A store passed in stays the caller's to close.
    :param registry: where providers come from; the process-wide registry by default.
    :param probe_timeout: the time limit, in seconds, of a connection test's probe.
    :param max_body_bytes: the largest request body accepted; larger ones are answered 413.
    """
    if not token:
        raise ValueError("the admin app needs a token")
    etag_key = hashlib.sha256(b"sandbox-core admin etag\0" + token.encode("utf-8")).digest()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = None
        if getattr(app.state, "service", None) is None:
            owned = SettingsStore()
            app.state.service = AdminService(owned, registry or get_registry(), probe_timeout=probe_timeout, etag_key=etag_key)
        try:
            yield
        finally:
            # Connection tests may have left warm sandboxes in the providers' pools.
            app.state.service.registry.shutdown()
            if owned is not None:
                owned.close()
                app.state.service = None

    try:
        version = importlib.metadata.version("sandbox-core")
    except importlib.metadata.PackageNotFoundError:
        version = "0"
    app = FastAPI(
        title="sandbox-core admin API",
        version=version,
        description="Configure sandbox providers. Every call needs `Authorization: Bearer <SANDBOX_ADMIN_TOKEN>`.",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.admin_token = token
    app.state.service = (
        AdminService(settings, registry or get_registry(), probe_timeout=probe_timeout, etag_key=etag_key) if settings is not None else None
    )

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        api = request.url.path.startswith("/api/")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if api and (scheme.lower() != "bearer" or not token_matches(given.strip(), token)):
            response: Response = _error(
                401,
                "missing or wrong admin token: send the header 'Authorization: Bearer <SANDBOX_ADMIN_TOKEN>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        else:
            response = await call_next(request)
        for header, value in SECURITY_HEADERS.items():
            response.headers.setdefault(header, value)
        if api:
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    # Added after the guard, so it runs first: no body is held beyond the limit, token or not.
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    _install_error_handlers(app)
    app.include_router(_build_router())

    @app.get(f"{API_PREFIX}/openapi.json", include_in_schema=False, dependencies=[Depends(_require_token)])
    def openapi_document() -> dict[str, Any]:
        return app.openapi()

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
