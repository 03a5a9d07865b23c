"""The service's limits and the time budgets derived from them (seconds unless said otherwise)."""

from __future__ import annotations

HARD_TIMEOUT = 30.0
"""AgentRun's code interpreter stops any single execution after this long."""
REPORT_MARGIN = 1.5
"""A run asking for the full hard limit is stopped this much earlier, so its partial output still gets back."""
SERVICE_MARGIN = 2.0
"""Added to the code's time for the service-side timeout of the execute request (capped at HARD_TIMEOUT)."""
READY_TIMEOUT = 60.0
"""How long a new sandbox may take to answer its health check (the SDK's own wait is 60 s too)."""
DEFAULT_IDLE_TIMEOUT = 120
"""Seconds after which the service reclaims a sandbox nobody uses: the safety net if a delete fails
or the process dies; longer than the pool's own idle timeout, so the pool normally deletes first."""
SANDBOX_HTTP_TIMEOUT = 60.0
"""Limit of each HTTP request to a sandbox (an execution's request waits for up to 30 s of code)."""
DEFAULT_MAX_OUTPUT_BYTES = 1 << 20
MAX_OUTPUT_BYTES = 16 << 20
"""Upper bound of ``max_output_bytes``: the whole output travels back inside one JSON reply."""
THROTTLE_ATTEMPTS = 4
"""Tries of a request the service throttles (HTTP 429) before giving up."""
THROTTLE_BASE_DELAY = 0.5
"""Seconds before the first retry of a throttled request; doubled for each later one (with jitter)."""
DEFAULT_POOL_SIZE = 2
MAX_POOL_SIZE = 16
