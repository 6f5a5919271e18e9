"""The engine's event stream (`/events`): a bounded history plus live subscribers.

Docker keeps the last events in memory so that `since` can replay them; so do we. Each
event has Docker's shape: Type, Action, Actor{ID, Attributes}, scope, time, timeNano
(plus the legacy status/id/from fields for containers, which docker-py still reads).
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any, AsyncIterator

HISTORY = 1024


def matches(event: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    """Docker's /events filter semantics: every given key must match one of its values."""
    for key, wanted in filters.items():
        if not wanted:
            continue
        attrs = event["Actor"]["Attributes"]
        if key == "type":
            ok = event["Type"] in wanted
        elif key in ("event", "action"):
            ok = event["Action"] in wanted or event["Action"].split(":")[0] in wanted
        elif key in ("container", "network", "volume", "image"):
            ok = event["Type"] == key and (event["Actor"]["ID"] in wanted or attrs.get("name") in wanted
                                           or any(event["Actor"]["ID"].startswith(w) for w in wanted))
        elif key == "label":
            ok = any(attrs.get(w.split("=", 1)[0]) == w.split("=", 1)[1] if "=" in w else w in attrs
                     for w in wanted)
        else:
            ok = True
        if not ok:
            return False
    return True


class EventBus:
    """Publishes events to every live subscriber and keeps a short history for `since`."""

    def __init__(self) -> None:
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.subscribers: set[asyncio.Queue[dict[str, Any]]] = set()

    def emit(self, type_: str, action: str, actor_id: str, attributes: dict[str, str] | None = None) -> dict:
        """Record an event; never blocks (a slow subscriber's queue is unbounded but local)."""
        now = time.time_ns()
        event: dict[str, Any] = {
            "Type": type_, "Action": action,
            "Actor": {"ID": actor_id, "Attributes": dict(attributes or {})},
            "scope": "local", "time": now // 1_000_000_000, "timeNano": now,
        }
        if type_ == "container":
            event.update(status=action, id=actor_id, **({"from": attributes["image"]}
                                                         if attributes and "image" in attributes else {}))
        self.history.append(event)
        for queue in list(self.subscribers):
            queue.put_nowait(event)
        return event

    async def stream(self, since_ns: int | None, until_ns: int | None,
                     filters: dict[str, list[str]]) -> AsyncIterator[dict[str, Any]]:
        """Past events from `since`, then live ones until `until` (or forever)."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.subscribers.add(queue)
        try:
            if since_ns is not None:
                for event in list(self.history):
                    if event["timeNano"] >= since_ns and (until_ns is None or event["timeNano"] <= until_ns) \
                            and matches(event, filters):
                        yield event
            while True:
                timeout = None
                if until_ns is not None:
                    timeout = (until_ns - time.time_ns()) / 1e9
                    if timeout <= 0:
                        return
                try:
                    event = await asyncio.wait_for(queue.get(), timeout)
                except asyncio.TimeoutError:
                    return
                if since_ns is not None and event["timeNano"] < since_ns:
                    continue
                if matches(event, filters):
                    yield event
        finally:
            self.subscribers.discard(queue)
