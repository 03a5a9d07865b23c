"""One AgentRun code-interpreter sandbox, owned from creation to deletion, through agentrun-sdk.

This is the only module that imports the SDK (it takes seconds to import), and it is imported only
when an execution or a health check needs it. It uses the SDK's data-plane calls only:

- ``SandboxClient.create_sandbox`` — ``POST {data endpoint}/sandboxes`` with the template name;
- ``Sandbox.connect(..., template_type=CODE_INTERPRETER)`` and ``check_health`` —
  ``GET /sandboxes/{id}`` and ``GET /sandboxes/{id}/health`` until the interpreter is ready;
- ``data_api.create_context`` / ``context.delete`` — ``POST /sandboxes/{id}/contexts`` and
  ``DELETE /sandboxes/{id}/contexts/{context}``: a fresh interpreter context per execution;
- ``context.execute`` — ``POST /sandboxes/{id}/contexts/execute`` with Python code;
- ``data_api.upload_file`` / ``download_file`` / ``list_directory`` — AgentRun's file API,
  ``POST /sandboxes/{id}/filesystem/upload`` (multipart), ``GET .../filesystem/download`` and
  ``GET .../filesystem``, for sessions' files; ``data_api.list_contexts`` — ``GET .../contexts``;
- ``Sandbox.delete_by_id`` — ``DELETE /sandboxes/{id}``.

Every request is signed by the SDK (``Agentrun-Authorization: AGENTRUN4-HMAC-SHA256 ...``) with the
configured access key. A request the service throttles (HTTP 429) did no work, so it is retried
with exponential backoff and jitter (:func:`with_retries`). SDK exceptions are translated into
:mod:`sandbox_aliyun.errors` here, with the access key secret scrubbed from every message.
"""

from __future__ import annotations

import logging
import math
import os
import random
import tempfile
import time
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

from sandbox_aliyun.errors import (
    AccessKeyRejectedError,
    AliyunProviderError,
    BackendRefusedError,
    BackendUnreachableError,
    ResourceGoneError,
    TemplateNotFoundError,
    ThrottledError,
)
from sandbox_aliyun.limits import THROTTLE_ATTEMPTS, THROTTLE_BASE_DELAY
from sandbox_aliyun.state import PENDING_DELETES
from sandbox_core.redaction import scrub
from sandbox_core.schema import Secret

# The SDK prints a multi-line "pin this version" banner on import, meant for its developers;
# in a server it is noise in every process. An operator who wants it sets the variable to 0.
os.environ.setdefault("DISABLE_BREAKING_CHANGES_WARNING", "1")

import httpx  # noqa: E402  (after the variable above, like the SDK imports below)
from agentrun.sandbox import CodeLanguage, Sandbox, SandboxClient, TemplateType  # noqa: E402
from agentrun.utils.config import Config  # noqa: E402
from agentrun.utils.exception import AgentRunError, HTTPError, ResourceNotExistError  # noqa: E402

log = logging.getLogger(__name__)
T = TypeVar("T")

READY_POLL_SECONDS = 0.25
DEFAULT_DATA_ENDPOINT = "https://{account_id}.agentrun-data.{region}.aliyuncs.com"


@attrs.frozen
class Connection:
    """What the SDK needs to reach AgentRun, taken from a validated provider config."""

    access_key_id: str
    access_key_secret: Secret = attrs.field(repr=False)
    account_id: str
    region: str
    template_name: str
    endpoint: str | None
    idle_timeout: int
    key_id_from: str = "config"
    """Where ``access_key_id`` came from: ``config`` or ``environment`` (named in auth errors)."""
    secret_from: str = "config"
    """Where ``access_key_secret`` came from: ``config`` or ``environment``."""

    @property
    def data_endpoint(self) -> str:
        """The data-plane base URL requests go to (shown in messages; holds no credential)."""
        return self.endpoint or DEFAULT_DATA_ENDPOINT.format(account_id=self.account_id, region=self.region)

    def sdk_config(self, http_timeout: float) -> Config:
        """An SDK ``Config`` with every value explicit, so no AGENTRUN_* variable overrides the settings."""
        return Config(
            access_key_id=self.access_key_id,
            access_key_secret=self.access_key_secret.reveal(),
            # "" rather than None: the SDK would otherwise pick AGENTRUN_SECURITY_TOKEN from the environment.
            security_token="",
            account_id=self.account_id,
            region_id=self.region,
            data_endpoint=self.endpoint or "",
            timeout=max(1, math.ceil(http_timeout)),
        )

    def credentials_to_check(self) -> str:
        """Where to fix a rejected key: the config's fields or the variables, whichever supplied each half."""
        if self.key_id_from == self.secret_from == "config":
            return "the config's access_key_id and access_key_secret"
        if self.key_id_from == self.secret_from == "environment":
            return (
                "AGENTRUN_ACCESS_KEY_ID and AGENTRUN_ACCESS_KEY_SECRET in the environment "
                "(the config leaves them empty)"
            )
        return " and ".join(
            f"the config's {field}"
            if source == "config"
            else f"{variable} in the environment (the config's {field} is empty)"
            for field, variable, source in (
                ("access_key_id", "AGENTRUN_ACCESS_KEY_ID", self.key_id_from),
                ("access_key_secret", "AGENTRUN_ACCESS_KEY_SECRET", self.secret_from),
            )
        )

    def scrub(self, text: str) -> str:
        """``text`` with the access key secret masked, for any message that may reach a user or a log."""
        return scrub(text, [self.access_key_secret.reveal()])


def translate(
    exc: BaseException, connection: Connection, action: str, attempts: int = THROTTLE_ATTEMPTS
) -> AliyunProviderError:
    """An SDK (or HTTP) exception as one of this provider's errors, with an actionable message."""
    where = f"{connection.data_endpoint} (region {connection.region})"
    if isinstance(exc, httpx.RequestError) or isinstance(exc.__cause__, httpx.RequestError):
        cause = exc if isinstance(exc, httpx.RequestError) else exc.__cause__
        return BackendUnreachableError(
            connection.scrub(f"cannot reach AgentRun at {where} while {action}: {type(cause).__name__}: {cause}")
        )
    if isinstance(exc, HTTPError):
        code = f" ({exc.error_code})" if exc.error_code else ""
        if exc.status_code in (401, 403):
            source = "the config" if connection.key_id_from == "config" else "AGENTRUN_ACCESS_KEY_ID"
            return AccessKeyRejectedError(
                connection.scrub(
                    f"Aliyun rejected the access key {connection.access_key_id} (from {source}) for account "
                    f"{connection.account_id} at {where}{code}: check {connection.credentials_to_check()}, "
                    "and the key's AgentRun permissions"
                )
            )
        if exc.status_code == 429 or (exc.error_code or "").startswith("Throttling"):
            return ThrottledError(
                connection.scrub(
                    f"AgentRun is throttling this account at {where}{code} while {action}, after "
                    f"{attempts} attempt{'s' if attempts > 1 else ''}: run fewer executions at once, "
                    "or ask Aliyun for a higher quota"
                )
            )
        if exc.status_code == 404 and action == "creating a sandbox":
            return TemplateNotFoundError(
                connection.scrub(
                    f"template {connection.template_name!r} was not found at {where}{code}: create a "
                    "code-interpreter template in the AgentRun console and set template_name to it"
                )
            )
        refused = ResourceGoneError if exc.status_code == 404 else BackendRefusedError
        return refused(
            connection.scrub(f"AgentRun refused {action} at {where}: HTTP {exc.status_code}{code}: {exc.message}")
        )
    if isinstance(exc, ResourceNotExistError):
        return ResourceGoneError(connection.scrub(f"AgentRun has no such resource while {action} at {where}: {exc}"))
    if isinstance(exc, (AgentRunError, ValueError)):
        return BackendRefusedError(connection.scrub(f"AgentRun failed while {action} at {where}: {exc}"))
    return BackendRefusedError(connection.scrub(f"unexpected error while {action} at {where}: {type(exc).__name__}: {exc}"))


def is_throttled(exc: BaseException) -> bool:
    """Whether the service refused a request under flow control (it did no work: safe to retry)."""
    return isinstance(exc, HTTPError) and (exc.status_code == 429 or (exc.error_code or "").startswith("Throttling"))


def with_retries(
    call: Callable[[], T],
    connection: Connection,
    action: str,
    on_retry: Callable[[], None] | None = None,
    attempts: int = THROTTLE_ATTEMPTS,
) -> T:
    """``call()``, retried with exponential backoff and jitter while the service throttles it.

    Any other failure, and throttling after ``attempts`` attempts, is raised as one of this
    provider's errors. ``on_retry`` is called before each retry (to count them).
    """
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as exc:
            if not is_throttled(exc) or attempt == attempts:
                raise translate(exc, connection, action, attempts) from None
            delay = THROTTLE_BASE_DELAY * 2 ** (attempt - 1) * random.uniform(0.8, 1.2)
            log.info("AgentRun throttled %s (attempt %d of %d); retrying in %.2fs", action, attempt, attempts, delay)
            if on_retry is not None:
                on_retry()
            time.sleep(delay)
    raise AssertionError("unreachable")  # the loop either returns or raises


class InterpreterSandbox:
    """One live code-interpreter sandbox: :meth:`open` creates it, :meth:`release` deletes it.

    Between the two it may serve several executions (a warm pool), each in a context of its own
    (:meth:`new_context`, :meth:`execute_python`, :meth:`delete_context`). ``released`` tells
    whether the deletion was acknowledged; ``throttle_retries`` counts the requests retried because
    the service throttled them (one execution at a time uses a sandbox, so the difference before and
    after an execution is that execution's).
    """

    def __init__(self, connection: Connection, http_timeout: float) -> None:
        self.connection = connection
        self.config = connection.sdk_config(http_timeout)
        self.sandbox_id: str | None = None
        self.released = False
        self.throttle_retries = 0
        self._sandbox: Any = None

    def _retried(self) -> None:
        self.throttle_retries += 1

    def _call(self, call: Callable[[], T], action: str, attempts: int = THROTTLE_ATTEMPTS) -> T:
        return with_retries(call, self.connection, action, on_retry=self._retried, attempts=attempts)

    @classmethod
    def open(cls, connection: Connection, http_timeout: float, ready_deadline: float) -> InterpreterSandbox:
        """Create a sandbox and wait until its interpreter answers; nothing is left behind on failure."""
        sandbox = cls(connection, http_timeout)
        try:
            sandbox._create()
            sandbox.wait_ready(ready_deadline)
        except BaseException:
            sandbox.release()
            raise
        return sandbox

    def _create(self) -> None:
        created = self._call(
            lambda: SandboxClient(config=self.config).create_sandbox(
                template_name=self.connection.template_name,
                sandbox_idle_timeout_seconds=self.connection.idle_timeout,
                config=self.config,
            ),
            "creating a sandbox",
        )
        self.sandbox_id = created.sandbox_id
        if not self.sandbox_id:
            raise BackendRefusedError("AgentRun created a sandbox but returned no sandbox id")
        self._sandbox = self._call(
            lambda: Sandbox.connect(self.sandbox_id, template_type=TemplateType.CODE_INTERPRETER, config=self.config),
            f"connecting to sandbox {self.sandbox_id}",
        )

    @classmethod
    def attach(cls, connection: Connection, http_timeout: float, sandbox_id: str) -> InterpreterSandbox:
        """The live sandbox ``sandbox_id`` (made by another process, say); :class:`ResourceGoneError` when gone."""
        sandbox = cls(connection, http_timeout)
        sandbox._sandbox = sandbox._call(
            lambda: Sandbox.connect(sandbox_id, template_type=TemplateType.CODE_INTERPRETER, config=sandbox.config),
            f"connecting to sandbox {sandbox_id}",
        )
        sandbox.sandbox_id = sandbox_id
        return sandbox

    def wait_ready(self, deadline: float) -> None:
        """Poll the interpreter's health endpoint until it answers ``ok`` or the deadline passes."""
        last = "no answer"
        while True:
            try:
                health = self._sandbox.check_health()
                if isinstance(health, dict) and health.get("status") == "ok":
                    return
                last = f"status {health.get('status') if isinstance(health, dict) else health!r}"
            except Exception as exc:
                error = translate(exc, self.connection, f"waiting for sandbox {self.sandbox_id}")
                if not isinstance(error, (BackendRefusedError, ThrottledError)):
                    raise error from None
                last = str(error)
            if time.monotonic() + READY_POLL_SECONDS >= deadline:
                raise BackendRefusedError(f"sandbox {self.sandbox_id} did not become ready in time ({last})")
            time.sleep(READY_POLL_SECONDS)

    def new_context(self) -> str:
        """A fresh Python interpreter context in this sandbox; its id.

        The reply is read here rather than by the SDK's ``context.create``, which reports a reply
        of another shape as a made-up "HTTP 500": the error then names the keys that came instead.
        """
        reply = self._call(
            lambda: self._sandbox.data_api.create_context(language=CodeLanguage.PYTHON),
            f"creating a context in sandbox {self.sandbox_id}",
        )
        context_id = reply.get("id") if isinstance(reply, dict) else None
        if not context_id or not isinstance(context_id, str):
            keys = ", ".join(sorted(map(str, reply))) if isinstance(reply, dict) else type(reply).__name__
            raise BackendRefusedError(
                f"AgentRun's reply to creating a context in sandbox {self.sandbox_id} has no context 'id' "
                f"(it held: {keys or 'nothing'}): AgentRun's reply format may have changed"
            )
        return context_id

    def execute_python(self, code: str, context_id: str, service_timeout: int) -> Any:
        """Run ``code`` in context ``context_id``; the raw reply (``{"results": [...]}``).

        Retried only when throttled: a throttled request never started the code.
        """
        return self._call(
            lambda: self._sandbox.context.execute(code=code, context_id=context_id, timeout=service_timeout),
            f"executing in sandbox {self.sandbox_id}",
        )

    def delete_context(self, context_id: str) -> bool:
        """End context ``context_id`` (its interpreter state goes with it); whether the service agreed."""
        try:
            self._call(
                lambda: self._sandbox.context.delete(context_id=context_id),
                f"deleting context {context_id} of sandbox {self.sandbox_id}",
            )
        except AliyunProviderError as exc:
            log.warning("%s; the sandbox will not be reused", exc)
            return False
        return True

    def contexts(self) -> list[str]:
        """The ids of the sandbox's live contexts."""
        reply = self._call(lambda: self._sandbox.data_api.list_contexts(), f"listing the contexts of sandbox {self.sandbox_id}")
        items = reply if isinstance(reply, list) else []
        return [str(item["id"]) for item in items if isinstance(item, dict) and item.get("id")]

    def upload(self, path: str, data: bytes) -> None:
        """Write ``data`` to the absolute sandbox ``path`` through AgentRun's file API (folders are made)."""
        with tempfile.TemporaryDirectory(prefix="sandbox-aliyun-") as folder:
            local = os.path.join(folder, "upload")
            with open(local, "wb") as handle:
                handle.write(data)
            self._call(
                lambda: self._sandbox.data_api.upload_file(local_file_path=local, target_file_path=path),
                f"uploading {path} to sandbox {self.sandbox_id}",
            )

    def download(self, path: str) -> bytes:
        """The bytes of the absolute sandbox ``path``; :class:`ResourceGoneError` when there is no such file."""
        with tempfile.TemporaryDirectory(prefix="sandbox-aliyun-") as folder:
            local = os.path.join(folder, "download")
            self._call(
                lambda: self._sandbox.data_api.download_file(path=path, save_path=local),
                f"downloading {path} from sandbox {self.sandbox_id}",
            )
            with open(local, "rb") as handle:
                return handle.read()

    def list_files(self, folder: str, depth: int) -> list[tuple[str, int]]:
        """The regular files under ``folder`` (absolute), as paths relative to it and sizes.

        The listing is read here rather than trusted blindly: ``{"entries": [{"path", "type",
        "size"}, ...]}`` (or the bare list); a reply of another shape is an error naming the keys
        that came instead.
        """
        reply = self._call(
            lambda: self._sandbox.data_api.list_directory(path=folder, depth=depth),
            f"listing {folder} in sandbox {self.sandbox_id}",
        )
        entries = reply.get("entries") if isinstance(reply, dict) else reply
        if not isinstance(entries, list):
            keys = ", ".join(sorted(map(str, reply))) if isinstance(reply, dict) else type(reply).__name__
            raise BackendRefusedError(
                f"AgentRun's listing of {folder} in sandbox {self.sandbox_id} has no 'entries' list (it held: "
                f"{keys or 'nothing'}): AgentRun's reply format may have changed"
            )
        prefix = folder.rstrip("/") + "/"
        return [
            (str(entry["path"])[len(prefix) :], int(entry.get("size") or 0))
            for entry in entries
            if isinstance(entry, dict)
            and entry.get("type") == "file"
            and str(entry.get("path", "")).startswith(prefix)
        ]

    def release(self) -> None:
        """Delete the sandbox; if the service refuses, it goes on the provider's retry list.

        The list (:data:`sandbox_aliyun.state.PENDING_DELETES`) retries in the background for
        up to the sandbox's ``sandbox_idle_timeout``, after which the service reclaims it anyway.
        """
        if self.sandbox_id is None or self.released:
            return
        try:
            self.delete()
        except AliyunProviderError as exc:
            log.warning(
                "could not delete AgentRun sandbox %s: %s; retrying in the background for up to %ss "
                "(after that the service reclaims it as idle)",
                self.sandbox_id,
                exc,
                self.connection.idle_timeout,
            )
            PENDING_DELETES.add(self, give_up_after=self.connection.idle_timeout)

    def delete(self, attempts: int = THROTTLE_ATTEMPTS) -> None:
        """Delete the sandbox now (one already gone counts as deleted); raises when the service refuses."""
        if self.sandbox_id is None or self.released:
            return

        def delete() -> None:
            try:
                Sandbox.delete_by_id(self.sandbox_id, config=self.config)
            except ResourceNotExistError:
                pass  # already gone: nothing of it is left to leak

        self._call(delete, f"deleting sandbox {self.sandbox_id}", attempts)
        self.released = True
