"""How users meet the provider: a light entry point, and the ``sandbox`` command end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fake_agentrun import FakeAgentRun

SANDBOX = str(Path(sys.executable).with_name("sandbox"))


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)


def test_loading_the_provider_does_not_import_the_sdk() -> None:
    done = _python(
        "import sys\n"
        "from sandbox_core.registry import ProviderRegistry\n"
        "from sandbox_core.client import SandboxClient\n"
        "client = SandboxClient(registry=ProviderRegistry())\n"
        "schema = client.config_schema('aliyun_codeinterpreter')\n"
        "assert 'access_key_secret' in schema.secret_fields\n"
        "import sandbox_aliyun.provider\n"
        "heavy = ('agentrun', 'alibabacloud_tea_openapi', 'litellm', 'httpx')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout


def test_providers_listing_shows_it(tmp_path: Path) -> None:
    env = {**os.environ, "SANDBOX_DATABASE_URL": f"sqlite:///{tmp_path / 'settings.db'}"}
    done = subprocess.run([SANDBOX, "providers", "--json"], check=False, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    listed = {p["name"]: p for p in json.loads(done.stdout)}
    assert listed["aliyun_codeinterpreter"]["package"] == "sandbox-aliyun"


def test_config_from_env_then_execute_through_the_cli(fake_agentrun: FakeAgentRun, tmp_path: Path) -> None:
    credentials = fake_agentrun.credentials
    env = {
        **os.environ,
        "SANDBOX_DATABASE_URL": f"sqlite:///{tmp_path / 'settings.db'}",
        "AGENTRUN_ACCESS_KEY_ID": credentials.access_key_id,
        "AGENTRUN_ACCESS_KEY_SECRET": credentials.access_key_secret,
        "AGENTRUN_ACCOUNT_ID": credentials.account_id,
        "AGENTRUN_REGION": credentials.region,
        "AGENTRUN_TEMPLATE_NAME": credentials.template_name,
    }

    def sandbox(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SANDBOX, *args], check=False, capture_output=True, text=True, env=env, timeout=120)

    saved = sandbox("config", "set", "aliyun_codeinterpreter", "--from-env", f"endpoint={fake_agentrun.url}")
    assert saved.returncode == 0, saved.stderr
    shown = sandbox("config", "show", "aliyun_codeinterpreter", "--json")
    assert shown.returncode == 0, shown.stderr
    config = json.loads(shown.stdout)["config"]
    assert config["access_key_id"] == credentials.access_key_id
    assert config["account_id"] == credentials.account_id
    assert config["region"] == credentials.region
    assert config["template_name"] == credentials.template_name
    assert config["access_key_secret"] == "********"
    assert credentials.access_key_secret not in shown.stdout

    code = "def main(a, b):\n    return a + b\n"
    ran = sandbox("exec", "--provider", "aliyun_codeinterpreter", "-c", code, "--arg", "a=1", "--arg", "b=2", "--json")
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert result["status"] == "success" and result["value"] == 3, result
    assert result["provider"] == "aliyun_codeinterpreter"
    assert credentials.access_key_secret not in ran.stdout + ran.stderr
    # The command exited: its pooled sandbox was deleted on the way out.
    assert result["metadata"]["sandbox_id"] in fake_agentrun.store.deleted

    assert sandbox("config", "use", "aliyun_codeinterpreter").returncode == 0
    assert sandbox("health").returncode == 0
    again = sandbox("exec", "-c", code, "--arg", "a=2", "--arg", "b=3", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["value"] == 5, again.stderr
