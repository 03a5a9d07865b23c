"""The ``sandbox`` command on providers and plugins that break the contract or are not there."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from core_support import FakeSite, provider_module

from sandbox_core import registry as registry_module
from sandbox_core.cli import main
from sandbox_core.hookspecs import PLUGIN_GROUP
from sandbox_core.registry import ProviderRegistry
from sandbox_core.settings import SettingsStore

SECRET = "gone-S3CRET-77aa"

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def sandbox(capsys: pytest.CaptureFixture[str]) -> Run:
    """``sandbox(*args)`` → (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def site(fake_site: FakeSite, sandbox_settings: SettingsStore, monkeypatch: pytest.MonkeyPatch) -> FakeSite:
    """One good provider, one whose health hook lacks @hookimpl, one broken plugin, a fresh registry."""
    fake_site.add("fake-alpha", "1.0", entry_points={"alpha": "fakeprov_alpha"}, modules={"fakeprov_alpha": provider_module("alpha")})
    unmarked = provider_module("nohealth").replace("@hookimpl\ndef sandbox_health", "def sandbox_health")
    fake_site.add("fake-nohealth", "1.0", entry_points={"nohealth": "fakeprov_nohealth"}, modules={"fakeprov_nohealth": unmarked})
    fake_site.add(
        "fake-policy",
        "2.1",
        group=PLUGIN_GROUP,
        entry_points={"policy": "fakeprov_policy"},
        modules={"fakeprov_policy": "raise ImportError('policy rules file is missing')\n"},
    )
    monkeypatch.setattr(registry_module, "_default_registry", ProviderRegistry())
    return fake_site


def test_health_of_a_provider_whose_health_hook_is_unmarked_reports_instead_of_crashing(
    site: FakeSite, sandbox_settings: SettingsStore, sandbox: Run
) -> None:
    sandbox_settings.set_active_provider("nohealth")
    code, out, err = sandbox("health")
    assert (code, out.strip()) == (4, "nohealth: UNHEALTHY: provider 'nohealth' has no health check"), err


def test_providers_json_lists_a_selected_provider_that_is_not_installed(
    site: FakeSite, sandbox_settings: SettingsStore, sandbox: Run
) -> None:
    sandbox_settings.set_active_provider("vanished")
    code, out, err = sandbox("providers", "--json")
    rows = {row["name"]: row for row in json.loads(out)}
    assert code == 0 and rows["vanished"]["active"] is True
    assert rows["vanished"]["status"] == "not_installed" and "'vanished' is not installed" in rows["vanished"]["error"]
    assert rows["alpha"]["active"] is False
    code, out, err = sandbox("providers")
    assert "* vanished" in out and "not_installed" in out


def test_a_broken_plugin_is_listed_by_sandbox_plugins_and_named_by_sandbox_providers(
    site: FakeSite, sandbox: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = sandbox("plugins", "--json")
    (row,) = [row for row in json.loads(out) if row["name"] == "policy"]
    assert (code, row["name"], row["package"], row["version"], row["status"]) == (0, "policy", "fake-policy", "2.1", "broken")
    assert "ImportError: policy rules file is missing" in row["error"] and row["required"] is False
    code, out, err = sandbox("plugins")
    (line,) = [line.split() for line in out.splitlines() if line.split()[0] == "policy"]
    assert " ".join(line) == "policy fake-policy 2.1 broken: ImportError: policy rules file is missing"
    code, out, err = sandbox("providers")
    assert "warning: plugin 'policy' (fake-policy 2.1) is broken: ImportError: policy rules file is missing" in err
    monkeypatch.setenv("SANDBOX_REQUIRED_PLUGINS", "policy")
    monkeypatch.setattr(registry_module, "_default_registry", ProviderRegistry())
    code, out, err = sandbox("plugins")
    assert code == 4 and "broken (required)" in out


def test_the_table_shows_the_line_of_a_load_error_that_says_what_is_wrong(
    fake_site: FakeSite, sandbox_settings: SettingsStore, sandbox: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = "raise RuntimeError('while reading the settings file\\nValueError: endpoint must be a URL')\n"
    fake_site.add("fake-multi", "1.0", entry_points={"multi": "fakeprov_multi"}, modules={"fakeprov_multi": source})
    monkeypatch.setattr(registry_module, "_default_registry", ProviderRegistry())
    code, out, err = sandbox("providers")
    (line,) = [line for line in out.splitlines() if "multi" in line]
    assert line.endswith("broken: ValueError: endpoint must be a URL")


def test_config_show_masks_the_saved_config_of_a_provider_no_longer_installed(
    site: FakeSite, sandbox_settings: SettingsStore, sandbox: Run
) -> None:
    sandbox_settings.save_provider_config("vanished", {"endpoint": "http://backend:1", "token": SECRET}, activate=True)
    code, out, err = sandbox("config", "show", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["provider"] == "vanished" and set(shown["config"]) == {"endpoint", "token"}
    assert "not installed" in shown["problem"] or "unknown sandbox provider" in shown["problem"]
    code, out, err = sandbox("config", "show", "vanished")
    assert code == 0 and "  token = " in out and "not set" not in out
    assert SECRET not in out + err


def test_help_shows_the_database_url_format_and_the_plugins_command(sandbox: Run) -> None:
    code, out, _ = sandbox("--help")
    out = " ".join(out.split())
    assert code == 0 and "SANDBOX_DATABASE_URL: sqlite:///path/to/settings.db" in out
    assert "postgresql://user:password@host:5432/db" in out and "mysql://user:password@host:3306/db" in out
    assert "plugins" in out
