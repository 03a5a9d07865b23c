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
from core_support import BROKEN, STANDARD_PROVIDERS, FakeSite, fake_modules_loaded, forget_fake_modules

from sandbox_core import ExecutionRequest, ExecutionResult, HealthStatus, hookimpl
from sandbox_core.client import SandboxClient
from sandbox_core.errors import (
    DuplicateProviderError,
    ProviderContractError,
    ProviderLoadError,
    ProviderNotFoundError,
    RequiredPluginError,
)
from sandbox_core.hookspecs import PLUGIN_GROUP
from sandbox_core.registry import ProviderRegistry, ProviderState


def execute(registry: ProviderRegistry, name: str, code: str, config: dict[str, Any] | None = None) -> ExecutionResult:
    caller = registry.hook(name, "sandbox_execute")
    return caller(request=ExecutionRequest(code=code), config=config or {"greeting": "hi"}, provider_name=name, on_output=None)


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
    with pytest.raises(ProviderNotFoundError) as caught:
        registry.load("beta")
    by = "SANDBOX_DISABLED_PLUGINS" if how == "environment" else "the registry's disabled list"
    assert str(caught.value).startswith(f"sandbox provider 'beta' is disabled by {by}; remove it from there")
    assert "alpha" in str(caught.value) and "installed?" not in str(caught.value)
    rows = {row.name: row for row in registry.statuses()}
    assert rows["beta"].state is ProviderState.DISABLED
    assert rows["broken_import"].state is ProviderState.DISABLED
    assert not fake_modules_loaded() & {"fakeprov_beta", "fakeprov_broken_import"}


@pytest.mark.parametrize("how", ["environment", "argument"])
def test_strict_mode_marks_the_one_sloppy_provider_broken_and_lists_the_rest(
    standard_site: FakeSite, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "environment":
        monkeypatch.setenv("SANDBOX_PLUGINS_STRICT", "1")
        registry = ProviderRegistry()
    else:
        registry = ProviderRegistry(strict=True)
    with pytest.raises(ProviderLoadError, match="broken_import"):
        registry.load("broken_import")
    rows = {row.name: row for row in registry.statuses() if row.package.startswith("fake-")}
    assert {name for name, row in rows.items() if row.state is ProviderState.BROKEN} == BROKEN | {"typo"}
    assert "sandbox_exeucte" in rows["typo"].error and "SANDBOX_PLUGINS_STRICT" in rows["typo"].error
    assert rows["alpha"].state is rows["beta"].state is ProviderState.LOADED
    assert execute(registry, "alpha", "still runs").stdout == "alpha:hi"


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
    with pytest.raises(RequiredPluginError, match="sandbox_execute directly"):
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


# -- the contract, checked with pluggy's own markers (issue 13, item 1) ---------------------------

SCHEMA_HOOK = (
    "from sandbox_core import ExecutionResult, HealthStatus, hookimpl\n"
    "from sandbox_core.schema import ConfigSchema\n\n"
    "@hookimpl\ndef sandbox_config_schema():\n    return ConfigSchema([])\n\n"
)
EXECUTE_HOOK = "@hookimpl\ndef sandbox_execute(request):\n    return ExecutionResult(status='success', stdout='ran')\n\n"


def add_provider(site: FakeSite, name: str, source: str) -> None:
    site.add(f"fake-{name.replace('_', '-')}", "1.0", entry_points={name: f"fakeprov_{name}"}, modules={f"fakeprov_{name}": source})


def test_a_required_hook_without_the_marker_is_missing(fake_site: FakeSite) -> None:
    add_provider(fake_site, "unmarked", SCHEMA_HOOK + "def sandbox_execute(request):\n    return None\n")
    rows = {row.name: row for row in ProviderRegistry().statuses()}
    assert rows["unmarked"].state is ProviderState.BROKEN
    assert "sandbox_execute is defined but not marked @hookimpl" in rows["unmarked"].error


@pytest.mark.parametrize("strict", [True, False])
def test_an_optional_hook_without_the_marker_is_never_called(fake_site: FakeSite, strict: bool, caplog: pytest.LogCaptureFixture) -> None:
    add_provider(fake_site, "nohealth", SCHEMA_HOOK + EXECUTE_HOOK + "def sandbox_health(config):\n    return HealthStatus(healthy=True)\n")
    registry = ProviderRegistry(strict=strict)
    if strict:
        with pytest.raises(ProviderLoadError, match="sandbox_health is not marked @hookimpl"):
            registry.load("nohealth")
        return
    assert not registry.has_hook("nohealth", "sandbox_health")
    assert "sandbox_health is not marked @hookimpl" in caplog.text
    status = SandboxClient(provider="nohealth", config={}, registry=registry).health()
    assert isinstance(status, HealthStatus) and not status.healthy
    assert status.message == "provider 'nohealth' has no health check"


def test_strict_mode_accepts_a_provider_that_imports_sandbox_core_modules(fake_site: FakeSite) -> None:
    add_provider(fake_site, "importer", "import sandbox_core.schema\n" + SCHEMA_HOOK + EXECUTE_HOOK)
    assert execute(ProviderRegistry(strict=True), "importer", "x").stdout == "ran"


def test_a_misspelt_required_hook_is_named(fake_site: FakeSite) -> None:
    add_provider(fake_site, "misspelt", SCHEMA_HOOK + "@hookimpl\ndef sandbox_exceute(request):\n    return None\n")
    with pytest.raises(ProviderLoadError) as caught:
        ProviderRegistry().load("misspelt")
    assert "the required hook sandbox_execute (sandbox_exceute looks like a misspelling of it)" in str(caught.value)


def test_a_misspelt_unmarked_optional_hook_is_named_in_strict_mode(fake_site: FakeSite) -> None:
    add_provider(fake_site, "helthy", SCHEMA_HOOK + EXECUTE_HOOK + "def sandbox_helth(config):\n    return None\n")
    with pytest.raises(ProviderLoadError, match=r"sandbox_helth is not a hook \(did you mean sandbox_health\?\)"):
        ProviderRegistry(strict=True).load("helthy")


def test_a_load_error_is_one_line_that_says_what_is_wrong(standard_site: FakeSite) -> None:
    rows = {row.name: row for row in ProviderRegistry().statuses()}
    error = rows["bad_arg"].error
    assert "\n" not in error
    assert "can not be found in the hookspec" in error and "sandbox_execute(request, config, bogus_argument)" in error


# -- typed calls: each hook's result checked once, at the boundary (item 2) -----------------------


class WrongTypes:
    @hookimpl
    def sandbox_config_schema(self) -> Any:
        from sandbox_core.schema import ConfigSchema

        return ConfigSchema([])

    @hookimpl
    def sandbox_execute(self) -> Any:
        return {"status": "success"}

    @hookimpl
    def sandbox_health(self) -> Any:
        return {"healthy": True}

    @hookimpl
    def sandbox_provider_info(self) -> Any:
        return "a description"

    @hookimpl
    def sandbox_upgrade_config(self) -> Any:
        return {"endpoint": "http://x"}


class WrongValidation(WrongTypes):
    @hookimpl
    def sandbox_validate_config(self) -> Any:
        return "looks fine"


def test_a_hook_returning_the_wrong_type_is_named_at_the_boundary() -> None:
    registry = ProviderRegistry(discover=False)
    registry.register("sloppy", WrongTypes())
    registry.register("sloppier", WrongValidation())
    for call, hook, expected in [
        (lambda: registry.health("sloppy", {}), "sandbox_health", "HealthStatus"),
        (lambda: registry.execute("sloppy", ExecutionRequest(code="x"), {}), "sandbox_execute", "ExecutionResult"),
        (lambda: registry.provider_info("sloppy"), "sandbox_provider_info", "ProviderInfo"),
        (lambda: registry.validate_config("sloppier", {}), "sandbox_validate_config", "a list of FieldProblem"),
        (lambda: registry.upgrade_config("sloppy", {}, "ragflow"), "sandbox_upgrade_config",
         "None or a (config dict, list of notes) pair"),
    ]:
        with pytest.raises(ProviderContractError) as caught:
            call()
        assert str(caught.value).startswith("provider 'slopp")
        assert str(caught.value).endswith(f" from {hook}, expected {expected}")
    client = SandboxClient(provider="sloppy", config={}, registry=registry)
    status = client.health()
    assert not status.healthy and status.message == "provider 'sloppy' returned a dict from sandbox_health, expected HealthStatus"
    # The client reads the provider's info first (capabilities, timeouts): a broken one makes the
    # execution a provider_error naming it, never an exception in the caller's face.
    result = client.execute("x = 1")
    assert result.status.value == "provider_error"
    assert result.error is not None and "returned a str from sandbox_provider_info, expected ProviderInfo" in result.error.message


# -- broken cross-cutting plugins are logged, listed, and may be required (item 4) ----------------


def add_plugins(site: FakeSite) -> None:
    site.add("fake-alpha", entry_points={"alpha": "fakeprov_alpha"}, modules={"fakeprov_alpha": provider_module_source("alpha")})
    site.add(
        "fake-policy",
        "2.1",
        group=PLUGIN_GROUP,
        entry_points={"policy": "fakeprov_policy", "meter": "fakeprov_meter:Meter"},
        modules={
            "fakeprov_policy": "raise ImportError('policy rules file is missing')\n",
            "fakeprov_meter": (
                "from sandbox_core import hookimpl\n"
                "class Meter:\n"
                "    @hookimpl(wrapper=True)\n"
                "    def sandbox_execute(self):\n"
                "        return (yield)\n"
            ),
        },
    )


def provider_module_source(tag: str) -> str:
    from core_support import provider_module

    return provider_module(tag)


def test_a_broken_cross_cutting_plugin_is_logged_and_listed(fake_site: FakeSite, caplog: pytest.LogCaptureFixture) -> None:
    add_plugins(fake_site)
    registry = ProviderRegistry()
    with caplog.at_level("WARNING", logger="sandbox_core.registry"):
        assert execute(registry, "alpha", "x").stdout == "alpha:hi"
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    broken = "sandbox plugin 'policy' from fake-policy 2.1 is broken: ImportError: policy rules file is missing"
    assert any(broken in r.getMessage() for r in warnings)
    rows = {row.name: row for row in registry.plugin_statuses()}
    assert (rows["policy"].state, rows["policy"].package, rows["policy"].version) == (ProviderState.BROKEN, "fake-policy", "2.1")
    assert "policy rules file is missing" in rows["policy"].error
    assert rows["meter"].state is ProviderState.LOADED


@pytest.mark.parametrize("how", ["environment", "argument"])
def test_a_required_plugin_that_is_broken_refuses_every_execution(
    fake_site: FakeSite, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    add_plugins(fake_site)
    if how == "environment":
        monkeypatch.setenv("SANDBOX_REQUIRED_PLUGINS", "policy")
        registry = ProviderRegistry()
    else:
        registry = ProviderRegistry(required_plugins=["policy"])
    with pytest.raises(RequiredPluginError, match="required sandbox plugin 'policy' is broken: ImportError"):
        execute(registry, "alpha", "x")
    with pytest.raises(RequiredPluginError, match="executions are refused until it works"):
        SandboxClient(provider="alpha", config={}, registry=registry).execute("print(1)")
    assert "fakeprov_alpha" not in sys.modules
    with pytest.raises(RequiredPluginError, match="'audit' is not installed"):
        ProviderRegistry(required_plugins=["audit"]).load("alpha")


# -- messages (item 5) ----------------------------------------------------------------------------


def test_an_incompatible_provider_has_one_wording_in_listing_and_use(standard_site: FakeSite) -> None:
    registry = ProviderRegistry()
    row = next(row for row in registry.statuses() if row.name == "too_new")
    with pytest.raises(ProviderLoadError) as caught:
        registry.load("too_new")
    assert str(caught.value) == f"sandbox provider 'too_new' from fake-too-new 0.4 is incompatible: {row.error}"
    assert row.error.startswith("it requires sandbox-core<0.0.1, but sandbox-core ")


def test_providers_release_their_sandboxes_even_while_executions_are_refused() -> None:
    class Pooled(WrongTypes):
        released = 0

        @hookimpl
        def sandbox_shutdown(self) -> None:
            Pooled.released += 1

    class Policy:
        @hookimpl(wrapper=True)
        def sandbox_execute(self) -> Generator[None, Any, Any]:
            return (yield)

    registry = ProviderRegistry(discover=False, required_plugins=["policy"])
    registry.add_plugin(Policy(), "policy")
    registry.register("pooled", Pooled())
    registry.load("pooled")
    registry.remove_plugin("policy")
    with pytest.raises(RequiredPluginError, match="'policy' is not installed"):
        registry.load("pooled")
    registry.shutdown()
    assert Pooled.released == 1
