"""Choosing and checking host ports for published ports.

Publishing is kernel DNAT (see nat.py), which binds no socket, so clashes are found
here: a port another pystack container holds (from the persisted bindings) or one a
host process listens on (a trial ``bind``) is refused with ``Conflict`` before any rule
is written. An ephemeral port is whatever the kernel hands a ``bind`` to port 0 (the
same 32768-60999 range Docker uses), skipping ports pystack already holds.
"""
from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Iterable

from pystack.errors import Conflict, UserError

from .types import PortBinding, PortSpec

ANY = ("", "0.0.0.0")


def _overlaps(ip_a: str, ip_b: str) -> bool:
    return ip_a in ANY or ip_b in ANY or ip_a == ip_b


def normalize(spec: PortSpec) -> PortSpec:
    """Validate one port spec; ``host_ip`` "0.0.0.0" becomes ""."""
    proto = (spec.protocol or "tcp").lower()
    if proto not in ("tcp", "udp"):
        raise UserError(f"published port {spec.container_port}/{proto}: only tcp and udp are supported")
    host_ip = spec.host_ip or ""
    if host_ip in ("0.0.0.0",):
        host_ip = ""
    if host_ip:
        try:
            ip = ipaddress.ip_address(host_ip.strip("[]"))
        except ValueError:
            raise UserError(f"published port: invalid host_ip {host_ip!r}") from None
        if ip.version == 6:
            if ip == ipaddress.ip_address("::"):
                host_ip = ""  # "[::]" means all addresses; IPv4 ones are what exists here
            else:
                raise UserError(f"published port on {host_ip}: IPv6 is not supported yet")
    for port, what in ((spec.container_port, "container port"), (spec.host_port, "host port"),
                       (spec.host_port_end, "host port")):
        if port is not None and not 0 < int(port) < 65536:
            raise UserError(f"published port: {what} {port} is out of range 1-65535")
    end = int(spec.host_port_end) if spec.host_port_end else None
    if end is not None and (not spec.host_port or end < int(spec.host_port)):
        raise UserError(f"published port: invalid host port range {spec.host_port}-{end}")
    if end == spec.host_port:
        end = None
    return PortSpec(int(spec.container_port), int(spec.host_port) if spec.host_port else None,
                    host_ip, proto, end)


def _trial_bind(host_ip: str, port: int, proto: str) -> int:
    """Bind and release ``host_ip:port`` (0: any free one); returns the port bound."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host_ip or "0.0.0.0", port))
        return s.getsockname()[1]


def _first_free(spec: PortSpec, taken: list[tuple[str, int, str]]) -> int:
    """The first port of the spec's host range nobody holds (Docker's rule for a range)."""
    assert spec.host_port and spec.host_port_end
    for port in range(spec.host_port, spec.host_port_end + 1):
        if any(p == port and proto == spec.protocol and _overlaps(ip, spec.host_ip) for ip, p, proto in taken):
            continue
        try:
            _trial_bind(spec.host_ip, port, spec.protocol)
        except OSError:
            continue
        return port
    raise Conflict(f"bind for {spec.host_ip or '0.0.0.0'}:{spec.host_port}-{spec.host_port_end}/"
                   f"{spec.protocol} failed: every port of the range is already allocated")


def choose(specs: Iterable[PortSpec], held: list[PortBinding]) -> list[tuple[PortSpec, int]]:
    """Give every spec a host port, or raise Conflict naming the first clash."""
    taken = [(b.host_ip, b.host_port, b.protocol) for b in held]
    out: list[tuple[PortSpec, int]] = []
    for spec in specs:
        if spec.host_port and spec.host_port_end:
            port = _first_free(spec, taken)
        elif spec.host_port:
            port = spec.host_port
            for ip, p, proto in taken:
                if p == port and proto == spec.protocol and _overlaps(ip, spec.host_ip):
                    raise Conflict(f"bind for {spec.host_ip or '0.0.0.0'}:{port}/{spec.protocol} "
                                   "failed: port is already allocated")
            try:
                _trial_bind(spec.host_ip, port, spec.protocol)
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL:
                    raise UserError(f"cannot publish on {spec.host_ip}: not an address of this host") from None
                raise Conflict(f"bind for {spec.host_ip or '0.0.0.0'}:{port}/{spec.protocol} "
                               f"failed: port is already in use ({exc.strerror})") from None
        else:
            for _ in range(64):
                try:
                    port = _trial_bind(spec.host_ip, 0, spec.protocol)
                except OSError as exc:
                    raise UserError(f"cannot publish on {spec.host_ip}: {exc.strerror}") from None
                if not any(p == port and proto == spec.protocol and _overlaps(ip, spec.host_ip)
                           for ip, p, proto in taken):
                    break
            else:
                raise Conflict("no free ephemeral host port found")
        taken.append((spec.host_ip, port, spec.protocol))
        out.append((spec, port))
    return out


class Reservations:
    """Host ports held open (bound, never listening) for as long as they are published.

    DNAT takes the traffic before any socket could, so these sockets never see a packet;
    they exist so that a host program binding a published port later fails with
    "address in use" instead of silently never receiving anything (what Docker does too).
    Held by the process that owns the manager; ``recover()`` takes them again.
    """

    def __init__(self) -> None:
        self._held: dict[str, list[socket.socket]] = {}

    def reserve(self, container_id: str, bindings: Iterable[PortBinding]) -> None:
        """Bind every binding's host port, or none of them (Conflict on the first failure)."""
        made: list[socket.socket] = []
        try:
            for b in bindings:
                kind = socket.SOCK_STREAM if b.protocol == "tcp" else socket.SOCK_DGRAM
                s = socket.socket(socket.AF_INET, kind)
                made.append(s)
                try:
                    s.bind((b.host_ip if b.host_ip not in ANY else "0.0.0.0", b.host_port))
                except OSError as exc:
                    raise Conflict(f"bind for {b.host_ip}:{b.host_port}/{b.protocol} failed: "
                                   f"port is already in use ({exc.strerror})") from None
        except BaseException:
            for s in made:
                s.close()
            raise
        self._held.setdefault(container_id, []).extend(made)

    def release(self, container_id: str) -> None:
        for s in self._held.pop(container_id, []):
            s.close()

    def release_all(self) -> None:
        for cid in list(self._held):
            self.release(cid)

    def held(self, container_id: str) -> int:
        return len(self._held.get(container_id, []))
