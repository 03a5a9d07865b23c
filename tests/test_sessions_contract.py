"""The session contract: file names, SessionSpec, capability flags and the registry's typed boundary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from core_support import MinimalProvider

from sandbox_core import ExecutionRequest, hookimpl
from sandbox_core import files as file_rules
from sandbox_core.errors import NotSupportedError, ProviderContractError, SandboxError, SessionGoneError
from sandbox_core.hookspecs import PROVIDER_HOOKS, SESSION_HOOKS
from sandbox_core.model import ProviderInfo
from sandbox_core.registry import ProviderRegistry
from sandbox_core.sessions import FileInfo, SessionSpec


@pytest.mark.parametrize(
    "name",
    ["/etc/passwd", "a/../b", "..", "../x", "a\x00b", "a\nb", "tab\there", "", "a//b", "./a", "a/", "a\\b", "x" * 513,
     "y" * 256, "del\x7f"],
)
def test_bad_file_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="^files: "):
        ExecutionRequest(code="pass", files={name: b"x"})


@pytest.mark.parametrize("name", ["data.csv", "in/deep/nested.txt", "ünïcode ✓.txt", "..hidden", "a..b"])
def test_good_file_names_are_kept(name: str) -> None:
    request = ExecutionRequest(code="pass", files={name: b"content"})
    assert dict(request.files) == {name: b"content"}


def test_files_default_to_none_and_repr_hides_content() -> None:
    assert dict(ExecutionRequest(code="pass").files) == {}
    request = ExecutionRequest(code="pass", files={"secret.txt": b"do-not-show"})
    assert "do-not-show" not in repr(request) and "<11 bytes>" in repr(request)


def test_file_size_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(file_rules, "MAX_FILE_BYTES", 10)
    monkeypatch.setattr(file_rules, "MAX_TOTAL_BYTES", 15)
    monkeypatch.setattr(file_rules, "MAX_FILES", 3)
    with pytest.raises(ValueError, match="'big' has 11 bytes, more than the limit of 10"):
        ExecutionRequest(code="pass", files={"big": b"x" * 11})
    with pytest.raises(ValueError, match="16 bytes in all"):
        ExecutionRequest(code="pass", files={"a": b"x" * 8, "b": b"x" * 8})
    with pytest.raises(ValueError, match="4 files"):
        ExecutionRequest(code="pass", files={str(n): b"" for n in range(4)})


def test_files_must_be_bytes_and_not_clash_with_folders() -> None:
    with pytest.raises(ValueError, match="must be bytes, got str"):
        ExecutionRequest(code="pass", files={"a.txt": "text"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="'a' is both a file and a folder"):
        ExecutionRequest(code="pass", files={"a": b"", "a/b": b""})


def test_session_spec_checks_its_fields() -> None:
    spec = SessionSpec(language="py", idle_timeout=5, max_lifetime=60)
    assert (spec.language, spec.idle_timeout, spec.max_lifetime) == ("python", 5.0, 60.0)
    for field, value in [("idle_timeout", 0), ("idle_timeout", float("inf")), ("max_lifetime", -1), ("max_lifetime", 1e9)]:
        with pytest.raises(ValueError, match=f"^{field}: "):
            SessionSpec(**{field: value})
    with pytest.raises(ValueError, match="^language: "):
        SessionSpec(language="cobol")
    with pytest.raises(ValueError, match="^path: "):
        FileInfo(path="../x", size=1)


def test_capabilities_default_off_and_are_listed() -> None:
    info = ProviderInfo()
    assert (info.sessions, info.files) == (False, False)
    assert ProviderInfo(sessions=True, files=True).to_dict()["sessions"] is True


def test_errors() -> None:
    assert issubclass(SessionGoneError, SandboxError)
    error = NotSupportedError("plain", "sessions")
    assert "not supported by provider 'plain'" in str(error) and "sessions" in str(error)


def test_session_hooks_are_provider_hooks() -> None:
    assert set(SESSION_HOOKS) <= set(PROVIDER_HOOKS)
    assert len(SESSION_HOOKS) == 6


class _Sloppy(MinimalProvider):
    """Session hooks that return the wrong types, chosen by the test."""

    def __init__(self, handle: Any = "h", downloaded: Any = b"", listed: Any = (), closed: Any = None) -> None:
        self.handle, self.downloaded, self.listed, self.closed = handle, downloaded, listed, closed

    @hookimpl
    def sandbox_session_open(self, spec: SessionSpec) -> Any:
        return self.handle

    @hookimpl
    def sandbox_session_execute(self, handle: str, request: ExecutionRequest) -> Any:
        return {"status": "success"}

    @hookimpl
    def sandbox_session_upload(self, handle: str, path: str, data: bytes) -> Any:
        return None

    @hookimpl
    def sandbox_session_download(self, handle: str, path: str) -> Any:
        return self.downloaded

    @hookimpl
    def sandbox_session_list_files(self, handle: str) -> Any:
        return self.listed

    @hookimpl
    def sandbox_session_close(self, handle: str) -> Any:
        return self.closed


def _registry(plugin: object) -> ProviderRegistry:
    registry = ProviderRegistry(discover=False)
    registry.register("p", plugin)
    return registry


CONFIG: Mapping[str, Any] = {}


def test_provider_without_session_hooks_is_not_supported() -> None:
    registry = _registry(MinimalProvider())
    with pytest.raises(NotSupportedError, match="not supported by provider 'p': sessions"):
        registry.session_open("p", SessionSpec(), CONFIG)


@pytest.mark.parametrize("handle", ["", "x" * 513, "has space", "tab\t", "ünicode", 42, None])
def test_bad_handles_are_a_contract_error(handle: Any) -> None:
    with pytest.raises(ProviderContractError, match="from sandbox_session_open, expected a handle"):
        _registry(_Sloppy(handle=handle)).session_open("p", SessionSpec(), CONFIG)


def test_good_handle_passes() -> None:
    assert _registry(_Sloppy(handle="0/abc:def")).session_open("p", SessionSpec(), CONFIG) == "0/abc:def"


def test_other_session_results_are_checked() -> None:
    request = ExecutionRequest(code="pass")
    with pytest.raises(ProviderContractError, match="returned a dict from sandbox_session_execute, expected ExecutionResult"):
        _registry(_Sloppy()).session_execute("p", "h", request, CONFIG)
    with pytest.raises(ProviderContractError, match="returned a str from sandbox_session_download, expected bytes"):
        _registry(_Sloppy(downloaded="text")).session_download("p", "h", "a", CONFIG)
    assert _registry(_Sloppy(downloaded=bytearray(b"ok"))).session_download("p", "h", "a", CONFIG) == b"ok"
    with pytest.raises(ProviderContractError, match="expected a list of FileInfo"):
        _registry(_Sloppy(listed=[{"path": "a", "size": 1}])).session_list_files("p", "h", CONFIG)
    with pytest.raises(ProviderContractError, match="expected a list of FileInfo"):
        _registry(_Sloppy(listed="a.txt")).session_list_files("p", "h", CONFIG)
    with pytest.raises(ProviderContractError, match="from sandbox_session_close, expected None"):
        _registry(_Sloppy(closed=True)).session_close("p", "h", CONFIG)
    listed = [FileInfo("a.txt", 3)]
    assert _registry(_Sloppy(listed=listed)).session_list_files("p", "h", CONFIG) == listed


def test_cross_cutting_plugin_may_only_wrap_session_hooks() -> None:
    class Direct:
        @hookimpl
        def sandbox_session_execute(self, handle: str) -> None:
            return None

    with pytest.raises(TypeError, match="implements sandbox_session_execute directly"):
        ProviderRegistry(discover=False).add_plugin(Direct(), "direct")
