"""Waiting on containers: depends_on conditions and ``up --wait``.

``service_healthy`` and ``service_completed_successfully`` look at the dependency again
as soon as the engine reports an event of it (its ``/events`` stream, filtered by
container: ``health_status``, ``die``...), and every ``POLL`` seconds anyway (Compose polls
every 500 ms, without events): a health-gated chain costs its healthcheck intervals and
little more. An unhealthy or exited dependency fails at once, with a message that names it.
"""
from __future__ import annotations

import time
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~4 ms to import: annotations only
    from typing import Any, Callable

from pystack.errors import UserError

POLL = 0.1          # without an event stream
EVENT_POLL = 0.5    # with one: a safety net only


class Watch:
    """Wake-ups from the engine's events of some containers (any event: the caller
    inspects again); plain sleeping when the engine cannot stream events.

    The stream starts a second in the past (``since``), so an event that happened while
    it was being opened is replayed rather than missed; extra wake-ups cost an inspect.
    """

    def __init__(self, client: Any, ids: list[str]) -> None:
        self.resp = None
        stream = getattr(client, "stream", None)
        if stream is None or not ids:
            return
        try:
            self.resp = stream("GET", "/events", params={
                "since": f"{time.time() - 1:.6f}",
                "filters": {"type": ["container"], "container": list(ids)}})
        except Exception:  # noqa: BLE001 - no events: poll
            self.resp = None

    def wait(self, timeout: float) -> None:
        """Until an event arrives (it is consumed) or ``timeout`` seconds pass."""
        import select

        resp = self.resp
        if resp is None:
            time.sleep(min(timeout, POLL))
            return
        timeout = min(timeout, EVENT_POLL)
        conn = resp.conn
        try:
            if not conn.buf:
                ready, _, _ = select.select([conn.sock], [], [], max(timeout, 0))
                if not ready:
                    return
            if not resp.read1(65536):
                raise OSError("event stream ended")
        except (OSError, ValueError, AttributeError):
            self.close()

    def close(self) -> None:
        if self.resp is not None:
            try:
                self.resp.close()
            except OSError:
                pass
            self.resp = None

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DependencyError(UserError):
    """A dependency failed; the message names the dependency, not its dependent."""


def wait_healthy(client: Any, cid: str, name: str, deadline: float | None = None,
                 sleep: Callable[[float], None] | None = None) -> None:
    """Until container ``cid`` is healthy; raises when it is unhealthy, exited or has no check."""
    with Watch(client, [cid] if sleep is None else []) as watch:
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
            if sleep is not None:
                sleep(POLL)
            else:
                watch.wait(EVENT_POLL if deadline is None else max(0.0, min(EVENT_POLL, deadline - time.monotonic())))


def wait_completed(client: Any, cid: str, service: str, deadline: float | None = None) -> None:
    """Until container ``cid`` exits; raises unless its exit code is 0."""
    with Watch(client, [cid]) as watch:
        while True:
            state = client.inspect(cid).get("State") or {}
            if state.get("Status") in ("exited", "dead"):
                code = state.get("ExitCode", -1)
                if code != 0:
                    raise DependencyError(f'service "{service}" didn\'t complete successfully: exit {code}')
                return
            if deadline is not None and time.monotonic() > deadline:
                raise DependencyError(f'service "{service}" did not complete before the timeout')
            watch.wait(EVENT_POLL if deadline is None else max(0.0, min(EVENT_POLL, deadline - time.monotonic())))


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
    with Watch(client, [cid for _, _, cid in containers]) as watch:
        _wait_stack(client, containers, timeout, deadline, on_state, finished, reported, watch)


def _wait_stack(client: Any, containers: list[tuple[str, str, str]], timeout: float | None,
                deadline: float | None, on_state: Callable[[str, str], None], finished: set[str],
                reported: dict[str, str], watch: Watch) -> None:
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
        watch.wait(EVENT_POLL if deadline is None else max(0.0, min(EVENT_POLL, deadline - time.monotonic())))
