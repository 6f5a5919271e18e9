"""Healthchecks: Config.Healthcheck run through ``runtime.exec`` inside the container.

Docker's rules (moby daemon/health.go): ``Test`` is ``["NONE"]`` (disabled),
``["CMD", arg...]`` or ``["CMD-SHELL", "command"]`` (``/bin/sh -c``); durations are
nanoseconds (0 = default: interval 30 s, timeout 30 s, start interval 5 s, retries 3).
The status starts at ``starting``; a success makes it ``healthy`` and resets the failing
streak; a failure after the start period raises the streak and ``retries`` failures in a
row make it ``unhealthy`` (failures inside the start period do not count). The last five
results are kept in ``State.Health.Log``; each status change emits a
``health_status: healthy|unhealthy`` event. A probe that outlives its timeout is killed and
counts as a failure (exit code -1).
"""
from __future__ import annotations

import asyncio
import logging
import os
import select
import time
from typing import Any

from pystack.engine.records import now_rfc3339

log = logging.getLogger("pystackd.health")

NS = 1_000_000_000
DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_START_INTERVAL = 5.0
DEFAULT_RETRIES = 3
MAX_LOG = 5
MAX_OUTPUT = 4096


def probe_argv(test: list[str] | None) -> list[str] | None:
    """The argv of a healthcheck ``Test`` (None when disabled or empty)."""
    if not test:
        return None
    kind = test[0]
    if kind == "NONE":
        return None
    if kind == "CMD":
        return list(test[1:]) or None
    if kind == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])] if len(test) > 1 else None
    return ["/bin/sh", "-c", " ".join(test)]  # an old image's plain string form


def _seconds(value: Any, default: float) -> float:
    try:
        v = int(value or 0)
    except (TypeError, ValueError):
        return default
    return v / NS if v > 0 else default


class HealthMonitor:
    """One task per running container with a healthcheck."""

    def __init__(self, manager, rec, argv: list[str], hc: dict) -> None:
        self.manager = manager
        self.rec = rec
        self.argv = argv
        self.interval = _seconds(hc.get("Interval"), DEFAULT_INTERVAL)
        self.timeout = _seconds(hc.get("Timeout"), DEFAULT_TIMEOUT)
        self.start_period = _seconds(hc.get("StartPeriod"), 0.0)
        self.start_interval = _seconds(hc.get("StartInterval"), DEFAULT_START_INTERVAL)
        self.retries = int(hc.get("Retries") or 0) or DEFAULT_RETRIES
        self.started = time.monotonic()
        rec.state["Health"] = {"Status": "starting", "FailingStreak": 0, "Log": []}
        self.task = asyncio.ensure_future(self._loop())

    def stop(self) -> None:
        self.task.cancel()

    def _in_start_period(self) -> bool:
        return time.monotonic() - self.started < self.start_period

    async def _loop(self) -> None:
        try:
            while True:
                health = self.rec.state.get("Health") or {}
                starting = health.get("Status") == "starting" and self._in_start_period()
                await asyncio.sleep(self.start_interval if starting else self.interval)
                if self.manager.status(self.rec) != "running":
                    continue  # paused: no probe (it could not run), no verdict
                result = await asyncio.to_thread(self._probe)
                self._record(result)
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # noqa: BLE001 - a monitor never kills the engine
            log.warning("healthcheck of %s stopped: %s", self.rec.id, exc)

    def _probe(self) -> dict:
        start = now_rfc3339()
        rt = self.manager.engine.runtime
        try:
            proc = rt.exec(self.rec.id, {"args": self.argv})
        except Exception as exc:  # noqa: BLE001 - program missing, container gone
            return {"Start": start, "End": now_rfc3339(), "ExitCode": getattr(exc, "exit_code", None) or 1,
                    "Output": str(exc)}
        output = b""
        deadline = time.monotonic() + self.timeout
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            streams = [s for s in (proc.stdout, proc.stderr) if s is not None]
            while streams:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                ready, _, _ = select.select(streams, [], [], left)
                for s in ready:
                    chunk = os.read(s.fileno(), 65536)
                    if not chunk:
                        streams.remove(s)
                    elif len(output) < MAX_OUTPUT:
                        output += chunk
            left = deadline - time.monotonic()
            try:
                code = proc.wait(max(left, 0.01))
            except TimeoutError:
                proc.kill()
                try:
                    proc.wait(5)
                except Exception:  # noqa: BLE001
                    pass
                return {"Start": start, "End": now_rfc3339(), "ExitCode": -1,
                        "Output": f"Health check exceeded timeout ({self.timeout:g}s)"}
        finally:
            proc.close()
        return {"Start": start, "End": now_rfc3339(), "ExitCode": code,
                "Output": output[:MAX_OUTPUT].decode("utf-8", "replace")}

    def _record(self, result: dict) -> None:
        rec = self.rec
        if not self.manager.is_running(rec):
            return
        health = rec.state.setdefault("Health", {"Status": "starting", "FailingStreak": 0, "Log": []})
        before = health.get("Status")
        entries = list(health.get("Log") or []) + [result]
        health["Log"] = entries[-MAX_LOG:]
        if result["ExitCode"] == 0:
            health["FailingStreak"] = 0
            health["Status"] = "healthy"
        elif not (self._in_start_period() and before == "starting"):
            health["FailingStreak"] = int(health.get("FailingStreak") or 0) + 1
            if health["FailingStreak"] >= self.retries:
                health["Status"] = "unhealthy"
        try:
            self.manager.records.save(rec)
        except Exception:  # noqa: BLE001 - removed meanwhile
            return
        if health["Status"] != before:
            self.manager.emit(rec, f"health_status: {health['Status']}")


def start_monitor(manager, rec) -> HealthMonitor | None:
    """Start the healthcheck of a just-started container (None when it has none)."""
    hc = rec.config.get("Healthcheck") or {}
    argv = probe_argv(hc.get("Test"))
    if argv is None:
        rec.state.pop("Health", None)
        return None
    return HealthMonitor(manager, rec, argv, hc)
