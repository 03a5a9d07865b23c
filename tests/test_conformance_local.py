"""The conformance kit, as a provider author uses it, against the unsandboxed local provider."""

import pytest

from sandbox_core.testing import ProviderConformance, SessionConformance, UnsandboxedSubprocessProvider


class TestLocalProvider(ProviderConformance, SessionConformance):
    supports_javascript = supports_timeout = supports_output_limit = supports_artifacts = True
    supports_sessions = True

    @pytest.fixture
    def provider_name(self):
        return "local"

    @pytest.fixture
    def provider_plugin(self):
        return UnsandboxedSubprocessProvider()

    @pytest.fixture
    def live_sessions(self, provider_plugin):
        return provider_plugin.sessions.count

    @pytest.fixture
    def provider_config(self):
        return {"max_output_bytes": 4096}

    @pytest.fixture
    def output_limit_bytes(self):
        return 4096

    @pytest.fixture
    def invalid_configs(self):
        return [({"max_output_bytes": 1}, "max_output_bytes"), ({"python": "/no/such/python3"}, "python")]

    @pytest.fixture
    def unreachable_config(self):
        pytest.skip("the local provider has no backend to lose: it runs local interpreters")
