"""sandbox-aliyun: the ``aliyun_codeinterpreter`` provider, on Alibaba Cloud AgentRun's code interpreter.

Which module is for whom:

- :mod:`sandbox_aliyun.provider` — the provider hooks sandbox-core loads (entry point
  ``aliyun_codeinterpreter``) and the config schema; light, it does not import agentrun-sdk.
- :mod:`sandbox_aliyun.execution` — one execution or health probe, from config to result.
- :mod:`sandbox_aliyun.session` — one sandbox's lifecycle through agentrun-sdk (the only module
  importing the SDK) and the translation of SDK errors (:mod:`sandbox_aliyun.errors`).
- :mod:`sandbox_aliyun.sessions` — stateful sessions: a sandbox with one persistent context,
  files through AgentRun's file API.
- :mod:`sandbox_aliyun.remote` and :mod:`sandbox_aliyun.bootstrap` — the code sent into the
  interpreter to run sandbox-core's runner, and reading its result back.
- :mod:`sandbox_aliyun.state` — the process-wide pools, pending deletions and credential variables,
  shared by the hooks and the modules above (none of which imports the entry-point module).
- :mod:`sandbox_aliyun.limits` — the service's 30-second limit and the budgets derived from it.
"""

from __future__ import annotations

__version__ = "0.1.0"

PROVIDER_NAME = "aliyun_codeinterpreter"
RUNTIME_NAME = "aliyun-agentrun"
