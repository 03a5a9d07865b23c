"""Provider discovery from installed packages: good, broken, duplicate, disabled and strict.

Every test here builds a fake site-packages folder (``*.dist-info`` folders plus modules, see
``core_support.FakeSite``) and reads it with a fresh ``ProviderRegistry()``, exactly as the
registry reads packages installed by pip.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from typing import Any

import pytest
from core_support import STANDARD_PROVIDERS, FakeSite, fake_modules_loaded, forget_fake_modules

from sandbox_core import ExecutionRequest, ExecutionResult, hookimpl
from sandbox_core.client import SandboxClient
from sandbox_core.errors import DuplicateProviderError, ProviderLoadError, ProviderNotFoundError
from sandbox_core.hookspecs import PLUGIN_GROUP
from sandbox_core.registry import ProviderRegistry, ProviderState


def execute(registry: ProviderRegistry, name: str, code: str, config: dict[str, Any] | None = None) -> ExecutionResult:
    caller = registry.hook(name, "sandbox_execute")
    return caller(request=ExecutionRequest(code=code), config=config or {"greeting": "hi"}, provider_name=name)


def calls(module: str) -> list[str]:
    return sys.modules[module].CALLS


class Spy:
    """A cross-cutting plugin: wraps every provider's execute hook and notes what it saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    @hookimpl(wrapper=True)
    def sandbox_execute(self, request: ExecutionRequest, provider_name: str) -> Generator[None, Any, Any]:
        result = yield
        self.seen.append((provider_name, request.code, result.stdout))
        return result


def test_names_come_from_metadata_without_importing_any_provider(standard_site: FakeSite) -> None:
    registry = ProviderRegistry()
    assert set(STANDARD_PROVIDERS) | {"twin"} <= set(registry.names())
    entry = registry.entry("alpha")
    assert (entry.package, entry.version, entry.summary) == ("fake-alpha", "1.2.3", "The alpha fake provider")
    rows = {row.name: row for row in registry.statuses(verify=False) if row.package.startswith("fake-")}
    assert rows["alpha"].state is ProviderState.AVAILABLE
    assert rows["too_new"].state is ProviderState.INCOMPATIBLE
    assert rows["twin"].state is ProviderState.DUPLICATE
    assert fake_modules_loaded() == set()


def test_a_good_provider_loads_and_executes_through_its_own_hook_caller(standard_site: FakeSite) -> None:
    registry = ProviderRegistry()
    result = execute(registry, "alpha", "print(1)", {"greeting": "hey"})
    assert result.stdout == "alpha:hey"
    assert calls("fakeprov_alpha") == ["print(1)"]
    assert fake_modules_loaded() == {"fakeprov_alpha"}
    client = SandboxClient(provider="alpha", config={"greeting": "yo"}, registry=registry)
    assert client.execute("x = 1").stdout == "alpha:yo"
    assert fake_modules_loaded() == {"fakeprov_alpha"}


def test_broken_providers_are_reported_by_name_package_version_and_error(standard_site: FakeSite) -> None:
    registry = ProviderRegistry()
    rows = {row.name: row for row in registry.statuses() if row.package.startswith("fake-")}
    for good in ("alpha", "beta", "typo"):
        assert rows[good].state is ProviderState.LOADED, rows[good]
        assert rows[good].error == ""
    expected = {
        "broken_import": ("fake-broken-import", "0.1", "fakeprov_this_module_does_not_exist"),
        "missing_hook": ("fake-missing-hook", "0.2", "sandbox_execute"),
        "bad_arg": ("fake-bad-arg", "0.3", "bogus_argument"),
    }
    for name, (package, version, clue) in expected.items():
        row = rows[name]
        assert (row.state, row.package, row.version) == (ProviderState.BROKEN, package, version), row
        assert clue in row.error, row
        failure = registry.failures()[name]
        assert isinstance(failure, ProviderLoadError)
        assert name in str(failure) and package in str(failure) and version in str(failure)
    assert "ModuleNotFoundError" in rows["broken_import"].error
    assert "PluginValidationError" in rows["bad_arg"].error
    incompatible = rows["too_new"]
    assert incompatible.state is ProviderState.INCOMPATIBLE
    assert "sandbox-core<0.0.1" in incompatible.error and incompatible.package == "fake-too-new"
    assert "fakeprov_too_new" not in fake_modules_loaded()
    # The others still work after all of that, each with its own config schema.
    assert execute(registry, "alpha", "a").stdout == "alpha:hi"
    assert execute(registry, "beta", "b").stdout == "beta:hi"
    with pytest.raises(ProviderLoadError) as caught:
        registry.load("broken_import")
    assert (caught.value.name, caught.value.package, caught.value.version) == ("broken_import", "fake-broken-import", "0.1")


def test_a_half_registered_provider_leaves_nothing_behind(standard_site: FakeSite) -> None:
    """bad_arg's schema hook is valid and its execute hook is not: none of it may stay registered."""
    registry = ProviderRegistry()
    registry.load("alpha")
    with pytest.raises(ProviderLoadError):
        registry.load("bad_arg")
    schema = registry.hook("alpha", "sandbox_config_schema")()
    assert [f.name for f in schema.fields] == ["greeting"]
    SandboxClient(provider="alpha", config={"greeting": "x"}, registry=registry).validate_config("alpha", {"greeting": "x"})


def test_an_incompatible_provider_is_refused_without_import(standard_site: FakeSite) -> None:
    registry = ProviderRegistry()
    with pytest.raises(ProviderLoadError, match=r"requires sandbox-core<0\.0\.1"):
        registry.load("too_new")
    assert "fakeprov_too_new" not in fake_modules_loaded()


def test_two_packages_with_the_same_provider_name(standard_site: FakeSite) -> None:
    registry = ProviderRegistry()
    with pytest.raises(DuplicateProviderError) as caught:
        registry.load("twin")
    assert "fake-twin-one 1.0" in str(caught.value) and "fake-twin-two 3.0" in str(caught.value)
    rows = [row for row in registry.statuses() if row.name == "twin"]
    assert {row.package for row in rows} == {"fake-twin-one", "fake-twin-two"}
    assert all(row.state is ProviderState.DUPLICATE for row in rows)
    assert all("fake-twin-one" in row.error and "fake-twin-two" in row.error for row in rows)
    assert not fake_modules_loaded() & {"fakeprov_twin_one", "fakeprov_twin_two"}
    assert execute(registry, "alpha", "still fine").stdout == "alpha:hi"


@pytest.mark.parametrize("how", ["environment", "argument"])
def test_a_disabled_provider_is_hidden_and_never_imported(
    standard_site: FakeSite, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "environment":
        monkeypatch.setenv("SANDBOX_DISABLED_PLUGINS", " beta ,broken_import")
        registry = ProviderRegistry()
    else:
        registry = ProviderRegistry(disabled=["beta", "broken_import"])
    assert "beta" not in registry.names() and "alpha" in registry.names()
    with pytest.raises(ProviderNotFoundError, match="choose one of: .*alpha"):
        registry.load("beta")
    rows = {row.name: row for row in registry.statuses()}
    assert rows["beta"].state is ProviderState.DISABLED
    assert rows["broken_import"].state is ProviderState.DISABLED
    assert not fake_modules_loaded() & {"fakeprov_beta", "fakeprov_broken_import"}


@pytest.mark.parametrize("how", ["environment", "argument"])
def test_strict_mode_raises_on_a_broken_provider(standard_site: FakeSite, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    if how == "environment":
        monkeypatch.setenv("SANDBOX_PLUGINS_STRICT", "1")
        registry = ProviderRegistry(disabled=["typo", "too_new"])
    else:
        registry = ProviderRegistry(strict=True, disabled=["typo", "too_new"])
    with pytest.raises(ProviderLoadError, match="broken_import"):
        registry.load("broken_import")
    with pytest.raises(ProviderLoadError) as caught:
        registry.statuses()
    assert caught.value.name in {"bad_arg", "broken_import", "missing_hook"}


@pytest.mark.parametrize("strict", [True, False])
def test_a_misspelled_hook_fails_only_in_strict_mode(standard_site: FakeSite, strict: bool) -> None:
    registry = ProviderRegistry(strict=strict)
    if strict:
        with pytest.raises(ProviderLoadError, match="sandbox_exeucte"):
            registry.load("typo")
        assert registry.hook("alpha", "sandbox_config_schema")().fields[0].name == "greeting"
    else:
        assert execute(registry, "typo", "t").stdout == "typo:hi"


def test_a_call_for_one_provider_reaches_only_that_provider(standard_site: FakeSite) -> None:
    registry = ProviderRegistry()
    registry.load("alpha")
    registry.load("beta")
    spy = Spy()
    registry.add_plugin(spy, "spy")
    assert execute(registry, "alpha", "for alpha").stdout == "alpha:hi"
    assert (calls("fakeprov_alpha"), calls("fakeprov_beta")) == (["for alpha"], [])
    assert execute(registry, "beta", "for beta").stdout == "beta:hi"
    assert (calls("fakeprov_alpha"), calls("fakeprov_beta")) == (["for alpha"], ["for beta"])
    assert spy.seen == [("alpha", "for alpha", "alpha:hi"), ("beta", "for beta", "beta:hi")]
    assert [f.name for f in registry.hook("alpha", "sandbox_config_schema")().fields] == ["greeting"]
    assert [f.name for f in registry.hook("beta", "sandbox_config_schema")().fields] == ["beta_only"]
    registry.remove_plugin("spy")
    execute(registry, "alpha", "after removal")
    assert len(spy.seen) == 2


def test_a_cross_cutting_plugin_may_not_implement_a_provider_hook(standard_site: FakeSite) -> None:
    class Rogue:
        @hookimpl
        def sandbox_execute(self, request: ExecutionRequest, config: Any, provider_name: str) -> ExecutionResult:
            return ExecutionResult(status="success", stdout="hijacked")

    registry = ProviderRegistry()
    with pytest.raises(TypeError, match="sandbox_execute directly"):
        registry.add_plugin(Rogue(), "rogue")
    assert execute(registry, "alpha", "x").stdout == "alpha:hi"


def test_installed_cross_cutting_plugins_wrap_and_a_rogue_one_is_reported(fake_site: FakeSite) -> None:
    from core_support import provider_module

    fake_site.add("fake-alpha", entry_points={"alpha": "fakeprov_alpha"}, modules={"fakeprov_alpha": provider_module("alpha")})
    fake_site.add(
        "fake-plugins",
        group=PLUGIN_GROUP,
        entry_points={"counter": "fakeprov_counter:Counter", "rogue": "fakeprov_rogue"},
        modules={
            "fakeprov_counter": (
                "from sandbox_core import hookimpl\nSEEN = []\n"
                "class Counter:\n"
                "    @hookimpl(wrapper=True)\n"
                "    def sandbox_execute(self, provider_name):\n"
                "        SEEN.append(provider_name)\n"
                "        return (yield)\n"
            ),
            "fakeprov_rogue": (
                "from sandbox_core import ExecutionResult, hookimpl\n"
                "@hookimpl\ndef sandbox_execute(request, config, provider_name):\n"
                "    return ExecutionResult(status='success', stdout='hijacked')\n"
            ),
        },
    )
    registry = ProviderRegistry()
    assert execute(registry, "alpha", "x").stdout == "alpha:hi"
    assert sys.modules["fakeprov_counter"].SEEN == ["alpha"]
    assert "sandbox_execute directly" in str(registry.failures()["plugin:rogue"])
    # Disabled plugins are not imported at all; strict mode refuses the rogue one.
    forget_fake_modules()
    quiet = ProviderRegistry(disabled=["rogue", "counter"])
    assert execute(quiet, "alpha", "y").stdout == "alpha:hi"
    assert "plugin:rogue" not in quiet.failures()
    assert not fake_modules_loaded() & {"fakeprov_rogue", "fakeprov_counter"}
    with pytest.raises(TypeError, match="sandbox_execute directly"):
        ProviderRegistry(strict=True).load("alpha")


def test_a_refused_in_process_provider_leaves_no_trace() -> None:
    class Incomplete:
        @hookimpl
        def sandbox_config_schema(self) -> None:
            return None

    class Complete(Incomplete):
        @hookimpl
        def sandbox_execute(self) -> ExecutionResult:
            return ExecutionResult(status="success", stdout="complete")

    registry = ProviderRegistry(discover=False)
    with pytest.raises(TypeError, match="sandbox_execute"):
        registry.register("mine", Incomplete())
    assert registry.names() == []
    with pytest.raises(ProviderNotFoundError):
        registry.load("mine")
    registry.register("mine", Complete())  # fixed, it registers under the same name
    assert registry.names() == ["mine"]
    assert execute(registry, "mine", "x").stdout == "complete"
    with pytest.raises(DuplicateProviderError, match="mine"):
        registry.register("mine", Complete())
    registry.unregister("mine")
    assert registry.names() == []


def test_a_provider_whose_info_hook_raises_is_listed_as_broken_and_others_still_listed() -> None:
    class Good:
        @hookimpl
        def sandbox_config_schema(self) -> None:
            return None

        @hookimpl
        def sandbox_execute(self) -> ExecutionResult:
            return ExecutionResult(status="success")

    class FailingInfo(Good):
        @hookimpl
        def sandbox_provider_info(self) -> None:
            raise RuntimeError("metadata service down")

    registry = ProviderRegistry(discover=False)
    registry.register("good", Good())
    registry.register("failing", FailingInfo())
    rows = {row.name: row for row in registry.statuses()}
    assert rows["good"].state is ProviderState.LOADED
    assert rows["failing"].state is ProviderState.BROKEN
    assert "RuntimeError: metadata service down" in rows["failing"].error
