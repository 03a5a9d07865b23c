"""Helpers shared by the core's tests: fake installed provider distributions (see conftest.py), and
the smallest provider there can be."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from sandbox_core import ExecutionRequest, ExecutionResult, hookimpl
from sandbox_core.hookspecs import PROVIDER_GROUP
from sandbox_core.schema import ConfigSchema

FAKE_PREFIX = "fakeprov_"
"""Every module of a fake provider distribution starts with this, so tests can check sys.modules."""


class FakeSite:
    """A folder that looks like site-packages: ``*.dist-info`` folders plus the modules they declare.

    This is what ``pip install`` leaves behind, so ``importlib.metadata`` (and thus the registry)
    sees these packages exactly as it sees real ones.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def add(
        self,
        package: str,
        version: str = "1.0",
        *,
        entry_points: Mapping[str, str],
        modules: Mapping[str, str] = {},
        requires: tuple[str, ...] = (),
        summary: str = "",
        group: str = PROVIDER_GROUP,
    ) -> None:
        dist_info = self.root / f"{package.replace('-', '_')}-{version}.dist-info"
        dist_info.mkdir()
        metadata = ["Metadata-Version: 2.1", f"Name: {package}", f"Version: {version}"]
        if summary:
            metadata.append(f"Summary: {summary}")
        metadata += [f"Requires-Dist: {requirement}" for requirement in requires]
        (dist_info / "METADATA").write_text("\n".join(metadata) + "\n", encoding="utf-8")
        lines = [f"[{group}]"] + [f"{name} = {target}" for name, target in entry_points.items()]
        (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        for module, source in modules.items():
            (self.root / f"{module}.py").write_text(source, encoding="utf-8")


def provider_module(tag: str, *, fields: str = '[ConfigField("greeting", "string", default="hi")]') -> str:
    """Source of a working provider module that records each execute call in ``CALLS``."""
    return f'''
from sandbox_core import ExecutionResult, HealthStatus, hookimpl
from sandbox_core.schema import ConfigField, ConfigSchema

CALLS = []

@hookimpl
def sandbox_config_schema():
    return ConfigSchema({fields})

@hookimpl
def sandbox_execute(request, config, provider_name):
    CALLS.append(request.code)
    return ExecutionResult(status="success", stdout="{tag}:" + str(config.get("greeting")), exit_code=0)

@hookimpl
def sandbox_health(config):
    return HealthStatus(healthy=True, message="{tag} ready")
'''


STANDARD_PROVIDERS = {
    # name: (package, version, module, source, requires)
    "alpha": ("fake-alpha", "1.2.3", "fakeprov_alpha", provider_module("alpha"), ("sandbox-core>=0.1",)),
    "beta": (
        "fake-beta",
        "2.0",
        "fakeprov_beta",
        provider_module("beta", fields='[ConfigField("beta_only", "integer", default=5)]'),
        (),
    ),
    "broken_import": (
        "fake-broken-import",
        "0.1",
        "fakeprov_broken_import",
        "import fakeprov_this_module_does_not_exist\n",
        (),
    ),
    "missing_hook": (
        "fake-missing-hook",
        "0.2",
        "fakeprov_missing_hook",
        "from sandbox_core import hookimpl\nfrom sandbox_core.schema import ConfigSchema\n\n"
        "@hookimpl\ndef sandbox_config_schema():\n    return ConfigSchema([])\n",
        (),
    ),
    # Its config schema hook is fine; its execute hook asks for an argument no hookspec offers.
    "bad_arg": (
        "fake-bad-arg",
        "0.3",
        "fakeprov_bad_arg",
        "from sandbox_core import hookimpl\nfrom sandbox_core.schema import ConfigField, ConfigSchema\n\n"
        '@hookimpl\ndef sandbox_config_schema():\n    return ConfigSchema([ConfigField("bad_arg_field", "string")])\n\n'
        "@hookimpl\ndef sandbox_execute(request, config, bogus_argument):\n    raise AssertionError('never called')\n",
        (),
    ),
    "too_new": ("fake-too-new", "0.4", "fakeprov_too_new", provider_module("too_new"), ("sandbox-core<0.0.1",)),
    "typo": (
        "fake-typo",
        "0.5",
        "fakeprov_typo",
        provider_module("typo") + "\n@hookimpl\ndef sandbox_exeucte(request, config):\n    return None\n",
        (),
    ),
}
"""The standard fake site: two good providers and one of each way a provider can be broken."""

BROKEN = {"broken_import", "missing_hook", "bad_arg"}



def fake_modules_loaded() -> set[str]:
    """The fake providers' modules imported so far in this process."""
    return {m for m in sys.modules if m.startswith(FAKE_PREFIX)}


def forget_fake_modules() -> None:
    for module in fake_modules_loaded():
        del sys.modules[module]


class MinimalProvider:
    """A provider with only the two hooks every provider must have: an empty config schema, and an
    execution that always succeeds. It implements none of the optional hooks (no sessions, no
    streaming, no health)."""

    @hookimpl
    def sandbox_config_schema(self) -> ConfigSchema:
        return ConfigSchema([])

    @hookimpl
    def sandbox_execute(self, request: ExecutionRequest) -> ExecutionResult:
        return ExecutionResult(status="success")
