"""The conformance kit's session tests (added in 0.2): see :class:`SessionConformance`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from sandbox_core.client import SandboxClient
from sandbox_core.errors import NotSupportedError, SessionGoneError
from sandbox_core.model import ExecutionStatus
from sandbox_core.registry import ProviderRegistry
from sandbox_core.sessions import Session
from sandbox_core.testing.conformance import ProviderFixtures, check, expect


class SessionConformance(ProviderFixtures):
    """Session tests (added in 0.2), for providers whose ``ProviderInfo`` declares ``sessions=True``.

    Mix it into the provider's conformance class and switch :attr:`supports_sessions` on::

        class TestMyProvider(ProviderConformance, SessionConformance):
            supports_sessions = True

            @pytest.fixture
            def live_sessions(self):
                return lambda: my_fake_backend.count_live_sessions()

    ``live_sessions`` returns a function counting the sessions alive on the backend (from the
    provider's fake or its own accounting), so the kit can check that ``close()`` frees them.
    """

    supports_sessions: bool = False
    """The provider implements the ``sandbox_session_*`` hooks."""
    session_timeout_seconds: float = 2.0
    """The timeout the session timeout test asks for."""

    @pytest.fixture
    def live_sessions(self) -> Callable[[], int]:
        """A function counting the sessions alive on the provider's backend right now."""
        pytest.fail("define a `live_sessions` fixture returning a function that counts live sessions")

    @pytest.fixture
    def session(self, sandbox_client: SandboxClient) -> Iterator[Session]:
        if not self.supports_sessions:
            pytest.skip(f"{type(self).__name__}.supports_sessions is off")
        with sandbox_client.session(idle_timeout=120, max_lifetime=600) as opened:
            yield opened

    def test_session_capability_declared(self, sandbox_client: SandboxClient, provider_registry: ProviderRegistry,
                                         provider_name: str) -> None:
        declared = provider_registry.provider_info(provider_name).sessions
        assert declared == self.supports_sessions, (
            f"ProviderInfo.sessions is {declared} but {type(self).__name__}.supports_sessions is {self.supports_sessions}"
        )
        if not declared:
            with pytest.raises(NotSupportedError, match="not supported by provider"):
                sandbox_client.session()

    def test_session_state_persists(self, session: Session) -> None:
        first = session.execute("import math\ncounter = 41\n")
        expect(first, "status", ExecutionStatus.SUCCESS)
        second = session.execute("counter += 1\nprint(counter, math.pi > 3)\n")
        expect(second, "stdout", "42 True\n")

    def test_session_main_with_arguments(self, session: Session) -> None:
        session.execute("base = 10\n")
        result = session.execute("def main(n, flag):\n    return {'n': base + n, 'flag': flag}\n", arguments={"n": 5, "flag": None})
        expect(result, "value", {"n": 15, "flag": None})
        again = session.execute("print('no new main')\n")
        expect(again, "value", None)

    def test_sessions_are_isolated(self, sandbox_client: SandboxClient, session: Session) -> None:
        session.execute("secret_name = 'first'\n")
        session.upload("only-first.txt", b"first")
        with sandbox_client.session(idle_timeout=120) as other:
            result = other.execute("print('secret_name' in globals())\nimport os\nprint(os.path.exists('only-first.txt'))\n")
            expect(result, "stdout", "False\nFalse\n")
            assert [f.path for f in other.list_files()] == [], "a new session's working folder must start empty"

    def test_session_files_both_ways(self, session: Session) -> None:
        session.upload("data/input.csv", b"a,b\n1,2\n3,4\n")
        result = session.execute(
            "def main():\n"
            "    rows = open('data/input.csv').read().split()\n"
            "    open('report.txt', 'w').write(str(len(rows)))\n"
            "    return len(rows)\n"
        )
        expect(result, "value", 3)
        assert session.download("report.txt") == b"3"
        listed = {f.path: f.size for f in session.list_files()}
        assert listed.get("data/input.csv") == 12 and listed.get("report.txt") == 1, f"list_files gave {listed}"
        with pytest.raises(FileNotFoundError):
            session.download("missing.txt")

    def test_session_execute_files(self, session: Session) -> None:
        result = session.execute("def main():\n    return open('given.txt').read()\n", files={"given.txt": "héllo".encode()})
        expect(result, "value", "héllo")

    def test_session_timeout_restarts_interpreter(self, session: Session) -> None:
        session.execute("kept = 1\n")
        session.upload("kept.txt", b"file survives")
        result = session.execute("import time\nprint('started', flush=True)\ntime.sleep(60)\n", timeout=self.session_timeout_seconds)
        expect(result, "status", ExecutionStatus.TIMEOUT)
        check(result, "stdout", "started" in result.stdout, "the output printed before the timeout")
        check(result, "metadata", result.metadata.get("session_restarted") is True, "session_restarted=True")
        after = session.execute("print('kept' in globals())\nprint(open('kept.txt').read())\n")
        expect(after, "stdout", "False\nfile survives\n")

    def test_session_close_frees_backend(self, sandbox_client: SandboxClient, live_sessions: Callable[[], int]) -> None:
        if not self.supports_sessions:
            pytest.skip(f"{type(self).__name__}.supports_sessions is off")
        before = live_sessions()
        opened = sandbox_client.session(idle_timeout=120)
        opened.execute("x = 1\n")
        assert live_sessions() == before + 1
        opened.close()
        opened.close()  # idempotent
        assert live_sessions() == before
        with pytest.raises(SessionGoneError):
            opened.execute("x\n")

    def test_session_attach_from_second_client(
        self, session: Session, provider_name: str, provider_config: Mapping[str, Any], provider_registry: ProviderRegistry
    ) -> None:
        session.execute("shared = 'from the first client'\n")
        # Not closed: closing a client shuts its providers down in this process, sessions included.
        second = SandboxClient(provider=provider_name, config=provider_config, registry=provider_registry)
        attached = second.attach_session(session.id)
        expect(attached.execute("print(shared)\n"), "stdout", "from the first client\n")
        expect(session.execute("print(shared)\n"), "stdout", "from the first client\n")

    def test_session_gone_after_close_via_attach(
        self, sandbox_client: SandboxClient, provider_name: str, provider_config: Mapping[str, Any],
        provider_registry: ProviderRegistry,
    ) -> None:
        if not self.supports_sessions:
            pytest.skip(f"{type(self).__name__}.supports_sessions is off")
        opened = sandbox_client.session(idle_timeout=120)
        opened.close()
        stale = sandbox_client.attach_session(opened.id)
        with pytest.raises(SessionGoneError):
            stale.execute("1\n")
        stale.close()  # closing a gone session is fine
