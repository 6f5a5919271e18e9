"""pystack.compose — the Compose front: Engine API client, reconciler, logs and progress.

It drives an engine only through the Docker Engine API, so the same code runs against
pystackd and a real dockerd (see docs/contracts.md, "compose front").
"""
