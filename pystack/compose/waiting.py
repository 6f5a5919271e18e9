"""Waiting on containers: depends_on conditions and ``up --wait``.

``service_healthy`` polls the dependency's health (Compose polls every 500 ms; we poll
faster, as each poll is one inspect on a local socket, so a health-gated chain costs
about its healthcheck intervals and little more). An unhealthy or exited dependency fails
at once, with a message that names it.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from pystack.errors import UserError

POLL = 0.1


class DependencyError(UserError):
    """A dependency failed; the message names the dependency, not its dependent."""


def wait_healthy(client: Any, cid: str, name: str, deadline: float | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
    """Until container ``cid`` is healthy; raises when it is unhealthy, exited or has no check."""
    while True:
        info = client.inspect(cid)
        state = info.get("State") or {}
        health = (state.get("Health") or {}).get("Status")
        hc = (info.get("Config") or {}).get("Healthcheck") or {}
        if not hc or hc.get("Test") in (["NONE"], None):
            if not health:
                raise DependencyError(f"dependency failed to start: container {name} has no healthcheck configured")
        if health == "healthy":
            return
        if health == "unhealthy":
            raise DependencyError(f"dependency failed to start: container {name} is unhealthy")
        if state.get("Status") in ("exited", "dead") or (not state.get("Running") and state.get("Status") != "created"):
            raise DependencyError(f"dependency failed to start: container {name} exited ({state.get('ExitCode')})")
        if deadline is not None and time.monotonic() > deadline:
            raise DependencyError(f"container {name} not healthy before the timeout")
        sleep(POLL)


def wait_completed(client: Any, cid: str, service: str, deadline: float | None = None) -> None:
    """Until container ``cid`` exits; raises unless its exit code is 0."""
    while True:
        state = client.inspect(cid).get("State") or {}
        if state.get("Status") in ("exited", "dead"):
            code = state.get("ExitCode", -1)
            if code != 0:
                raise DependencyError(f'service "{service}" didn\'t complete successfully: exit {code}')
            return
        if deadline is not None and time.monotonic() > deadline:
            raise DependencyError(f'service "{service}" did not complete before the timeout')
        time.sleep(POLL)


def wait_stack(client: Any, containers: list[tuple[str, str, str]], timeout: float | None,
               on_state: Callable[[str, str], None]) -> None:
    """``up --wait``: every container running (and healthy if it has a check) or exited 0.

    ``containers`` holds (service, name, id). A one-shot container that exited 0 is done,
    not failed (Docker Compose counts it a failure: docker/compose#10596).
    """
    deadline = time.monotonic() + timeout if timeout else None
    # Every round looks at every container again until all are done in the same round: a
    # container seen running once and failing while another is still getting healthy is
    # reported, not missed. Exited-0 one-shots stay done.
    finished: set[str] = set()
    reported: dict[str, str] = {}
    while True:
        pending = []
        for service, name, cid in containers:
            if cid in finished:
                continue
            info = client.inspect(cid)
            state = info.get("State") or {}
            health = (state.get("Health") or {}).get("Status")
            if state.get("Status") in ("exited", "dead"):
                code = state.get("ExitCode", -1)
                if code == 0:
                    finished.add(cid)
                    on_state(name, "Exited")
                    continue
                raise UserError(f"service {service!r}: container {name} exited with code {code}")
            if health == "unhealthy":
                raise UserError(f"service {service!r}: container {name} is unhealthy")
            if state.get("Running") and health in (None, "", "healthy"):
                label = "Healthy" if health == "healthy" else "Running"
                if reported.get(cid) != label:
                    reported[cid] = label
                    on_state(name, label)
                continue
            pending.append(name)
        if not pending:
            return
        if deadline is not None and time.monotonic() > deadline:
            raise UserError(f"application not healthy after {timeout:g}s: {', '.join(pending)}")
        time.sleep(POLL)
