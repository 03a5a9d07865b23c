"""Egress for self-managed sandboxes: named destinations through a filtering proxy, nothing else.

- :mod:`.allowlist` — the policy: ``host:port`` entries, name checks made before any lookup.
- :mod:`.addresses` — which resolved addresses may be connected to (public unicast only).
"""
