"""pystackd: the engine daemon, speaking the Docker Engine API on a UNIX socket.

One long-running process owns images, containers, networks and volumes; every client —
pystack's own CLI included — talks to it over HTTP (see DESIGN.md, docs/contracts.md).
"""
