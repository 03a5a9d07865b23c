"""Egress for self-managed sandboxes: named destinations through a filtering proxy, nothing else.

See ``docs/egress.md``. For the engine:

- :mod:`.allowlist` — the policy: ``host:port`` entries, name checks made before any lookup.
- :mod:`.addresses` — which resolved addresses may be connected to (public unicast only).
- :mod:`.proxy` — the host's CONNECT proxy: one Unix socket per sandbox, limits, attempt log.
- :mod:`.gateway` — what the engine wires into each sandbox (socket directory, shim, ``/etc/hosts``).
- :mod:`.shim` — runs inside the sandbox, standard library only (never imported by the executor).
"""
