"""The ``sandbox`` command, run in process through ``sandbox_core.cli.main`` (and once for real)."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from core_support import FakeSite, fake_modules_loaded

from sandbox_core import ExecutionRequest, ExecutionResult, HealthStatus, hookimpl
from sandbox_core.cli import main
from sandbox_core.errors import FieldProblem
from sandbox_core.registry import ProviderRegistry
from sandbox_core.schema import ConfigField, ConfigSchema
from sandbox_core.settings import SettingsStore
from sandbox_core.testing import UnsandboxedSubprocessProvider

SECRET = "vault-S3CRET-4f9a0c"
ADD = 'def main(a, b):\n    return {"sum": a + b, "flag": True}\n'


class VaultProvider:
    """An in-test provider with a secret: it says whether it got the right token, never the token."""

    @hookimpl
    def sandbox_config_schema(self) -> ConfigSchema:
        return ConfigSchema(
            [
                ConfigField("endpoint", "url", required=True, env="VAULT_ENDPOINT"),
                ConfigField("token", "secret", required=True, minimum=8, env="VAULT_TOKEN"),
                ConfigField("retries", "integer", default=2, minimum=0),
            ]
        )

    @hookimpl
    def sandbox_validate_config(self, config: Mapping[str, Any]) -> list[FieldProblem]:
        token = config["token"].reveal()
        return [FieldProblem("token", f"{token} was revoked")] if token.startswith("revoked-") else []

    @hookimpl
    def sandbox_execute(self, request: ExecutionRequest, config: Mapping[str, Any]) -> ExecutionResult:
        token = config["token"].reveal()
        if request.code == "crash":
            raise ConnectionError(f"{config['endpoint']} refused token {token}")
        return ExecutionResult(status="success", value={"token_ok": token == SECRET, "retries": config["retries"]}, exit_code=0)

    @hookimpl
    def sandbox_health(self, config: Mapping[str, Any]) -> HealthStatus:
        if config["retries"] == 0:
            return HealthStatus(healthy=False, message=f"cannot reach {config['endpoint']}")
        return HealthStatus(healthy=True, message="reachable", latency=0.001)


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def sandbox(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    """``sandbox(*args, stdin=None)`` → (exit code, stdout, stderr)."""

    def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def store(sandbox_settings: SettingsStore, register_provider: Callable[[str, object], object]) -> SettingsStore:
    register_provider("local", UnsandboxedSubprocessProvider())
    register_provider("vault", VaultProvider())
    return sandbox_settings


@pytest.fixture
def local(store: SettingsStore, sandbox: Run) -> SettingsStore:
    code, out, _ = sandbox("config", "set", "local", "max_output_bytes=4096", "--activate")
    assert code == 0 and "now active" in out
    return store


# -- exec -----------------------------------------------------------------------------------------


def test_exec_with_arguments_as_json(local: SettingsStore, sandbox: Run) -> None:
    code, out, _ = sandbox("exec", "-c", ADD, "--arg", "a=1", "--arg", "b=2", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["value"] == {"sum": 3, "flag": True}
    assert '"flag": true' in out
    assert (result["status"], result["provider"], result["exit_code"]) == ("success", "local", 0)


def test_exec_args_json_file_and_stdin(local: SettingsStore, sandbox: Run, tmp_path: Path) -> None:
    code, out, _ = sandbox("exec", "-c", ADD, "--args-json", '{"a": 10, "b": -4}', "--json")
    assert (code, json.loads(out)["value"]) == (0, {"sum": 6, "flag": True})
    script = tmp_path / "add.py"
    script.write_text(ADD, encoding="utf-8")
    code, out, _ = sandbox("exec", str(script), "--args-json", '{"a": 1}', "--arg", "b=[2]", "--json")
    assert code == 1 and json.loads(out)["error"]["type"] == "TypeError"  # 1 + [2]
    code, out, _ = sandbox("exec", str(script), "--arg", "a=0.5", "--arg", "b=2", "--json")
    assert json.loads(out)["value"]["sum"] == 2.5
    code, out, _ = sandbox("exec", "-", "--arg", "a=x", "--arg", "b=y", "--json", stdin=ADD)
    assert (code, json.loads(out)["value"]["sum"]) == (0, "xy")  # not JSON, so passed as strings


def test_exec_plain_output(local: SettingsStore, sandbox: Run) -> None:
    code, out, err = sandbox("exec", "-c", 'print("hi")\ndef main():\n    return [1, None]\n')
    assert code == 0
    assert out == "hi\n[1, null]\n"
    assert "[success in " in err and "via local]" in err


def test_exec_javascript(local: SettingsStore, sandbox: Run) -> None:
    code, out, _ = sandbox("exec", "--language", "javascript", "-c", "function main(a) { return a.x * 2; }", "--arg", "x=21", "--json")
    assert (code, json.loads(out)["value"]) == (0, 42)


def test_exec_user_error_exits_1(local: SettingsStore, sandbox: Run) -> None:
    code, out, err = sandbox("exec", "-c", "print('partial')\nraise ValueError('boom')\n")
    assert code == 1
    assert out == "partial\n"
    assert "ValueError: boom" in err and "[error in" in err
    code, out, _ = sandbox("exec", "-c", "import sys; sys.exit(9)", "--json")
    assert (code, json.loads(out)["exit_code"]) == (1, 9)


def test_exec_timeout_exits_1(local: SettingsStore, sandbox: Run) -> None:
    code, out, err = sandbox("exec", "-c", "import time\nprint('started', flush=True)\ntime.sleep(30)\n", "--timeout", "0.5")
    assert code == 1
    assert "started" in out and "[timeout in" in err


def test_exec_without_timeout_takes_the_providers_default(local: SettingsStore, sandbox: Run) -> None:
    assert sandbox("config", "set", "local", "max_timeout=20")[0] == 0
    code, out, _ = sandbox("exec", "-c", "print(1)", "--json")
    assert code == 0
    assert json.loads(out)["metadata"]["timeout"] == 20  # the local provider's default, lowered to its maximum
    code, out, _ = sandbox("exec", "-c", "print(1)", "--timeout", "25", "--json")
    clamped = {"requested": 25, "applied": 20, "reason": "the provider's max_timeout setting is 20s"}
    assert json.loads(out)["metadata"]["timeout_clamped"] == clamped
    assert "default: the provider's" in sandbox("exec", "--help")[1]


@pytest.mark.parametrize(
    "args",
    [
        ["exec", "file.py", "-c", "print(1)"],
        ["exec", "-c", "print(1)", "--arg", "novalue"],
        ["exec", "-c", "print(1)", "--args-json", "[1, 2]"],
        ["exec", "-c", "print(1)", "--args-json", "{oops"],
        ["exec", "-c", "print(1)", "--timeout", "0"],
        ["exec", "-c", "print(1)", "--language", "cobol"],
        ["exec", "-c", "print(1)", "--bogus"],
        ["exec", "/no/such/file.py"],
        ["exec", "-c", "def main(): pass", "--arg", "not-an-identifier=1"],
        ["config", "set", "local", "no_equals_sign"],
        ["config", "set", "local", "--json", "[1]"],
        ["config", "set", "local"],
        ["nosuchcommand"],
    ],
)
def test_usage_errors_exit_2(local: SettingsStore, sandbox: Run, args: list[str]) -> None:
    code, out, err = sandbox(*args)
    assert code == 2, (out, err)
    assert err.strip()


def test_no_provider_selected_exits_3_and_says_how_to_select_one(store: SettingsStore, sandbox: Run) -> None:
    store.set("sandbox.provider_type", "")
    for args in (["exec", "-c", "print(1)"], ["health"], ["config", "show"], ["config", "validate"]):
        code, out, err = sandbox(*args)
        assert code == 3, (args, out, err)
        assert "sandbox config use" in err
        assert "local" in err and "vault" in err  # the installed providers to choose from


@pytest.mark.parametrize("how", ["--provider", "active"])
def test_an_unknown_provider_exits_3_and_lists_the_installed_ones(local: SettingsStore, sandbox: Run, how: str) -> None:
    if how == "active":
        local.set_active_provider("not_installed")
        args = ["exec", "-c", "print(1)"]
    else:
        args = ["exec", "--provider", "not_installed", "-c", "print(1)"]
    code, _, err = sandbox(*args)
    assert code == 3
    assert "choose one of: local, vault; is the package that provides it installed?" in err


# -- config ---------------------------------------------------------------------------------------


def test_config_set_show_use_validate(store: SettingsStore, sandbox: Run) -> None:
    code, out, _ = sandbox("config", "set", "local", "max_output_bytes=4096", "--activate")
    assert code == 0 and "changed: max_output_bytes" in out
    assert store.active_provider() == "local"
    assert store.provider_config("local") == {"max_output_bytes": 4096}  # converted, defaults not frozen in
    code, out, _ = sandbox("config", "show", "--json")
    shown = json.loads(out)
    assert (code, shown["provider"], shown["active"], shown["config"]) == (0, "local", True, {"max_output_bytes": 4096})
    assert "settings.db" in shown["database"]
    code, out, _ = sandbox("config", "show", "local")
    assert "provider: local (active)" in out and "max_output_bytes = 4096" in out and "(default)" in out
    code, out, _ = sandbox("config", "validate")
    assert (code, out) == (0, "local: config is valid\n")
    code, out, err = sandbox("config", "set", "local", "max_output_bytes=abc")
    assert code == 3 and "max_output_bytes" in err
    assert store.provider_config("local") == {"max_output_bytes": 4096}
    code, out, _ = sandbox("config", "set", "local", "--json", '{"max_timeout": 60}')
    assert code == 0 and store.provider_config("local") == {"max_output_bytes": 4096, "max_timeout": 60}
    code, _, err = sandbox("config", "use", "vault")  # its saved config is missing required fields
    assert code == 3 and "endpoint" in err and "token" in err
    assert store.active_provider() == "local"
    assert sandbox("config", "set", "vault", "endpoint=http://v:1", f"token={SECRET}")[0] == 0
    assert store.active_provider() == "local"
    code, out, _ = sandbox("config", "use", "vault")
    assert (code, out, store.active_provider()) == (0, "active provider: vault\n", "vault")
    code, _, err = sandbox("config", "use", "not_installed")
    assert code == 3 and "choose one of" in err and store.active_provider() == "vault"


def test_config_validate_reports_a_broken_saved_config(local: SettingsStore, sandbox: Run) -> None:
    local.save_provider_config("local", {"max_output_bytes": 1, "colour": "red"})
    code, _, err = sandbox("config", "validate", "local")
    assert code == 3 and "max_output_bytes" in err and "colour" in err


def test_secrets_never_appear_in_any_output(store: SettingsStore, sandbox: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    outputs: list[str] = []

    def run(*args: str) -> tuple[int, str, str]:
        code, out, err = sandbox(*args)
        outputs.extend([out, err])
        return code, out, err

    code, _, err = run("config", "set", "vault", "endpoint=http://vault.local:8200", f"token={SECRET}", "--activate")
    assert code == 0, err
    code, out, _ = run("config", "show", "--json")
    assert json.loads(out)["config"] == {"endpoint": "http://vault.local:8200", "token": "********"}
    assert run("config", "show", "vault")[0] == 0
    assert run("config", "validate", "vault")[0] == 0
    # Changing another field, or sending the mask back (as a form does), keeps the stored secret.
    assert run("config", "set", "vault", "retries=5")[0] == 0
    assert run("config", "set", "vault", "token=********")[0] == 0
    code, out, _ = run("exec", "-c", "x", "--json")
    assert json.loads(out)["value"] == {"token_ok": True, "retries": 5}
    # Errors: a secret that is too short, an unknown field, a provider failure, an unhealthy backend.
    code, _, err = run("config", "set", "vault", f"token={SECRET[:6]}", "retries=-1")
    assert code == 3 and "token" in err and "retries" in err
    code, _, err = run("config", "set", "vault", f"tokn={SECRET}")
    assert code == 3 and "tokn" in err
    code, out, _ = run("exec", "-c", "crash", "--json")
    assert code == 4 and json.loads(out)["status"] == "provider_error"
    code, _, err = run("exec", "-c", "crash")
    assert code == 4 and "refused token" in err
    run("config", "set", "vault", "retries=0")
    assert run("health", "--json")[0] == 4
    monkeypatch.setenv("VAULT_TOKEN", SECRET)
    assert run("config", "set", "vault", "--from-env")[0] == 0
    assert run("providers", "--json")[0] == 0
    everything = "".join(outputs)
    assert SECRET not in everything and SECRET[:6] not in everything
    assert "********" in everything


def test_config_set_masks_a_secret_quoted_in_the_providers_validation_message(store: SettingsStore, sandbox: Run) -> None:
    revoked = "revoked-" + SECRET
    code, out, err = sandbox("config", "set", "vault", "endpoint=http://vault.local:8200", f"token={revoked}")
    assert code == 3 and "token: ******** was revoked" in err, err
    assert SECRET not in out + err
    store.save_provider_config("vault", {"endpoint": "http://vault.local:8200", "token": revoked})
    for command in (("config", "validate", "vault"), ("config", "use", "vault")):
        code, out, err = sandbox(*command)
        assert code == 3 and "******** was revoked" in err and SECRET not in out + err, command


def test_config_set_from_env(store: SettingsStore, sandbox: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = sandbox("config", "set", "vault", "--from-env")
    assert code == 3 and "VAULT_ENDPOINT" in err and "VAULT_TOKEN" in err
    monkeypatch.setenv("VAULT_ENDPOINT", "http://from-env:1")
    monkeypatch.setenv("VAULT_TOKEN", SECRET)
    code, out, err = sandbox("config", "set", "vault", "--from-env", "--activate")
    assert code == 0, err
    assert "endpoint" in out and "token" in out and SECRET not in out
    code, out, _ = sandbox("config", "show", "--json")
    assert json.loads(out)["config"] == {"endpoint": "http://from-env:1", "token": "********"}
    code, out, _ = sandbox("exec", "-c", "x", "--json")
    assert json.loads(out)["value"]["token_ok"] is True


def test_config_changes_from_the_cli_are_audited(
    store: SettingsStore, sandbox: Run, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    audit_file = tmp_path / "audit.log"
    assert sandbox("config", "audit", "on", "--path", str(audit_file))[0] == 0
    caplog.set_level(logging.INFO, logger="sandbox_core.audit")
    assert sandbox("config", "set", "vault", "endpoint=http://vault.local:8200", f"token={SECRET}")[0] == 0
    assert sandbox("config", "set", "vault", "retries=4")[0] == 0
    assert sandbox("config", "use", "vault")[0] == 0

    records = [json.loads(line) for line in audit_file.read_text().splitlines()]
    assert [(r["event"], r["client"], r["provider"]) for r in records] == [("config_change", "cli", "vault")] * 3
    assert [r["changed"] for r in records] == [["endpoint", "token"], ["retries"], []]
    assert [r["activated"] for r in records] == [False, False, True]
    assert all(r["actor"] for r in records)
    assert len([r for r in caplog.records if r.name == "sandbox_core.audit"]) == 3
    assert SECRET not in audit_file.read_text() + caplog.text


# -- providers and health -------------------------------------------------------------------------


def test_providers_lists_the_registered_ones_and_the_active_one(local: SettingsStore, sandbox: Run) -> None:
    code, out, _ = sandbox("providers", "--json")
    rows = {row["name"]: row for row in json.loads(out)}
    assert code == 0 and set(rows) == {"local", "vault"}
    assert rows["local"]["active"] is True and rows["vault"]["active"] is False
    assert rows["local"]["status"] == "loaded"
    assert {"name", "package", "version", "status", "active", "error"} <= set(rows["local"])
    code, out, _ = sandbox("providers")
    assert "* local" in out and "  vault" in out


def test_providers_shows_a_broken_provider_with_its_error(
    standard_site: FakeSite, sandbox_settings: SettingsStore, sandbox: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sandbox_core import registry

    monkeypatch.setattr(registry, "_default_registry", ProviderRegistry())
    sandbox_settings.set_active_provider("alpha")
    code, out, _ = sandbox("providers", "--no-verify", "--json")
    listed = {row["name"]: row["status"] for row in json.loads(out) if row["package"].startswith("fake-")}
    assert listed["alpha"] == listed["broken_import"] == "available" and listed["too_new"] == "incompatible"
    assert fake_modules_loaded() == set()
    code, out, _ = sandbox("providers", "--json")
    assert code == 0
    rows = {(row["name"], row["package"]): row for row in json.loads(out) if row["package"].startswith("fake-")}
    alpha = rows["alpha", "fake-alpha"]
    assert (alpha["status"], alpha["version"], alpha["active"], alpha["error"]) == ("loaded", "1.2.3", True, None)
    broken = rows["broken_import", "fake-broken-import"]
    assert broken["status"] == "broken" and "fakeprov_this_module_does_not_exist" in broken["error"]
    assert broken["version"] == "0.1" and broken["active"] is False
    assert rows["bad_arg", "fake-bad-arg"]["status"] == "broken"
    assert rows["too_new", "fake-too-new"]["status"] == "incompatible"
    assert {rows["twin", "fake-twin-one"]["status"], rows["twin", "fake-twin-two"]["status"]} == {"duplicate"}
    # The broken ones do not stop the good one from running.
    code, out, _ = sandbox("exec", "-c", "print(1)", "--json")
    assert (code, json.loads(out)["stdout"]) == (0, "alpha:hi")
    code, out, _ = sandbox("providers")
    assert "broken_import" in out and "broken: ModuleNotFoundError" in out


def test_health(local: SettingsStore, sandbox: Run) -> None:
    code, out, _ = sandbox("health", "--json")
    status = json.loads(out)
    assert (code, status["provider"], status["healthy"]) == (0, "local", True)
    assert status["latency"] > 0
    code, out, _ = sandbox("health")
    assert code == 0 and out.startswith("local: healthy")


def test_health_exits_4_when_unhealthy(store: SettingsStore, sandbox: Run) -> None:
    code, _, err = sandbox("config", "set", "vault", "endpoint=http://down:1", f"token={SECRET}", "retries=0", "--activate")
    assert code == 0, err
    code, out, _ = sandbox("health", "--json")
    status = json.loads(out)
    assert (code, status["healthy"], status["message"]) == (4, False, "cannot reach http://down:1")
    code, out, _ = sandbox("health")
    assert code == 4 and "UNHEALTHY" in out


def test_help_lists_the_exit_codes(sandbox: Run) -> None:
    code, out, _ = sandbox("--help")
    out = " ".join(out.split())
    assert code == 0 and "3 configuration error" in out and "4 provider or backend failure" in out
    for command in ("exec", "config", "providers", "health"):
        assert command in out


# -- the installed console script -----------------------------------------------------------------


def test_the_sandbox_console_script(fake_site: FakeSite, tmp_path: Path) -> None:
    """The real ``sandbox`` executable, with the local provider installed as a package would be."""
    fake_site.add("fake-local", "0.9", entry_points={"local": "sandbox_core.testing.local:UnsandboxedSubprocessProvider"})
    script = Path(sys.executable).with_name("sandbox")
    assert script.is_file(), f"the sandbox console script is not installed next to {sys.executable}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("SANDBOX_")}
    env.update(PYTHONPATH=str(fake_site.root), SANDBOX_DATABASE_URL=f"sqlite:///{tmp_path / 'cli.db'}")

    def sandbox(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(script), *args], capture_output=True, text=True, env=env, timeout=60)

    done = sandbox("config", "set", "local", "max_output_bytes=4096", "--activate")
    assert done.returncode == 0, done.stderr
    done = sandbox("exec", "-c", ADD, "--arg", "a=1", "--arg", "b=2", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["value"] == {"sum": 3, "flag": True}
    done = sandbox("providers", "--json")
    row = next(row for row in json.loads(done.stdout) if row["name"] == "local")
    assert (row["package"], row["version"], row["status"], row["active"]) == ("fake-local", "0.9", "loaded", True)
    done = sandbox("exec", "-c", "raise SystemExit(3)")
    assert done.returncode == 1


def test_exec_network_is_refused_by_a_provider_that_cannot_enforce_it(local: SettingsStore, sandbox: Run) -> None:
    code, out, err = sandbox("exec", "-c", "print('never runs')", "--allow", "api.example.com:443")
    assert (code, out) == (2, "")
    assert "network: provider 'local' cannot enforce a network allowlist" in err
