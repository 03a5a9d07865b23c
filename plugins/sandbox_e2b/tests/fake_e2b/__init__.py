"""A local stand-in for E2B, so the provider's tests drive the real SDK without the cloud.

It speaks the two protocols the SDK uses, as far as the provider needs them: the control-plane
REST API (:mod:`~fake_e2b.control`) and envd's file and process APIs (:mod:`~fake_e2b.envd`,
Connect framing in :mod:`~fake_e2b.connect`). A "sandbox" is a folder and its commands are local
child processes (:mod:`~fake_e2b.state`): it isolates nothing, and the tests only send it the
conformance kit's benign code.
"""

from __future__ import annotations

from fake_e2b.server import TEST_API_KEY, FakeE2BServer, free_port

__all__ = ["TEST_API_KEY", "FakeE2BServer", "free_port"]
