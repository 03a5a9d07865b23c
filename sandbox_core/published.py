"""The providers this project publishes, by provider name: the one place the core names them.

Nothing needs this to use them (providers are found through their entry points). It serves what
entry-point metadata cannot say about a provider that is *not* installed: which package to install
(the RAGFlow import), and that a new provider must not take one of these names, which RAGFlow's
settings already use (the scaffold). A packaging test keeps it equal to the plugins' entry points.
"""

from __future__ import annotations

PUBLISHED_PROVIDERS = {
    "self_managed": "sandbox-selfmanaged",
    "aliyun_codeinterpreter": "sandbox-aliyun",
    "e2b": "sandbox-e2b",
}
"""Provider name → the distribution that provides it."""
