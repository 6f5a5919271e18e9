"""NetworkManager: the one entry point the engine uses for container networking.

It ties the pieces together (IPAM, bridges and veths, nftables, the embedded DNS) and
keeps everything in one persisted document (state.py), written *before* kernel objects
are made where a crash could otherwise leak them, so that ``recover()`` and
``cleanup_all()`` can always find what exists by name.
"""
from __future__ import annotations

import ipaddress
import logging
import threading
from pathlib import Path
from typing import Any

from pystack.errors import Conflict, NotFound, UserError

from . import ipam, links, nat, netns, ports
from .resolv import hosts_file as _hosts_file
from .resolv import resolv_conf as _resolv_conf
from .state import StateStore, host_lock
from .types import (EndpointRecord, EndpointSpec, IPAMPool, NetworkRecord, NetworkSpec, PortBinding,
                    PortSpec)

log = logging.getLogger(__name__)

OPT_MTU = "com.docker.network.driver.mtu"
OPT_BRIDGE = "com.docker.network.bridge.name"
OPT_MASQ = "com.docker.network.bridge.enable_ip_masquerade"
SUPPORTED_OPTS = {OPT_MTU, OPT_BRIDGE, OPT_MASQ}


def _masquerade(record: NetworkRecord) -> bool:
    """Docker's enable_ip_masquerade option (default true): outbound NAT for the subnet."""
    return str(record.options.get(OPT_MASQ, "true")).lower() not in ("false", "0", "no")


class NetworkManager:
    """Networks, sandboxes (netns), endpoints, published ports and DNS of one engine.

    ``state_dir`` keeps the persisted document; ``run_dir`` holds ``netns/<id>``.
    ``dns_upstreams``: resolvers for names the embedded DNS does not know (None: the
    host's /etc/resolv.conf). ``default_pools``: (base, prefixlen) candidates for
    networks without ``ipam.config`` (Docker's defaults when None). ``dns=False``
    runs no DNS server (for tools that only inspect or clean up). ``firewall``: "nft"
    or "iptables" (default: $PYSTACK_FIREWALL, else nft when installed); each network
    records the backend that made its rules, so they are removed the same way.
    """

    def __init__(self, state_dir: Path | str, run_dir: Path | str,
                 dns_upstreams: list[str] | None = None,
                 default_pools: list[tuple[str, int]] | None = None,
                 dns: bool = True, firewall: str | None = None) -> None:
        self.state = StateStore(Path(state_dir))
        self.run_dir = Path(run_dir)
        self.netns_dir = self.run_dir / "netns"
        self.dns_upstreams = dns_upstreams
        self.default_pools = default_pools or ipam.DEFAULT_POOLS
        self._dns_enabled = dns
        self.firewall = nat.firewall(firewall)
        self._reservations = ports.Reservations()
        self._dns = None
        self._dns_lock = threading.Lock()
        self._dns_ask_lock = threading.Lock()
        self._dns_asked = 0   # _sync_dns() calls so far
        self._dns_done = 0    # calls covered by the last rebuild

    # -- networks -----------------------------------------------------------------

    def create_network(self, spec: NetworkSpec) -> NetworkRecord:
        """Make the bridge, its rules and its DNS listener; Conflict if name/subnet taken."""
        if spec.driver not in ("bridge", "", None):
            raise UserError(f"network {spec.name}: driver {spec.driver!r} is not supported "
                            "(only bridge)")
        v4, v6 = self._split_ipam(spec)
        if v6 and not spec.enable_ipv6:
            raise UserError(f"network {spec.name}: an IPv6 ipam.config subnet needs enable_ipv6: true")
        if spec.enable_ipv6 and self.firewall.kind != "nft":
            raise UserError(f"network {spec.name}: enable_ipv6 needs nftables (the nft command)")
        unknown = set(spec.options) - SUPPORTED_OPTS
        if unknown:
            raise UserError(f"network {spec.name}: driver_opts {', '.join(sorted(unknown))} "
                            "not supported")
        mtu = self._mtu(spec)
        with host_lock():  # subnet choice and bridge creation, atomic host-wide
            with self.state.transaction() as st:
                for rec in st["networks"].values():
                    if rec["id"] == spec.id:
                        raise Conflict(f"network with id {spec.id} already exists")
                    if rec["name"] == spec.name:
                        raise Conflict(f"network with name {spec.name} already exists")
                bridge = spec.options.get(OPT_BRIDGE) or links.bridge_name(spec.id)
                if len(bridge) > 15 or not bridge.replace("-", "").replace("_", "").isalnum():
                    raise UserError(f"network {spec.name}: bridge name {bridge!r} is not a valid "
                                    "interface name (<= 15 letters, digits, - or _)")
                if any(r["bridge"] == bridge for r in st["networks"].values()) or links.link_exists(bridge):
                    raise Conflict(f"network {spec.name}: interface {bridge} already exists")
                record = self._plan_network(spec, bridge, mtu, st)
                # Intent first: a crash from here on leaves a record recover() can undo.
                st["networks"][spec.id] = {**record.to_dict(), "status": "creating"}
            made_bridge = False
            try:
                self._make_bridge(record)
                made_bridge = True
                self._fw(record).setup_network(spec.id, bridge, record.subnet, record.internal,
                                               _masquerade(record), record.subnet6)
                if not record.internal:
                    nat.enable_ip_forward()
            except BaseException:
                # never delete a bridge this call did not make (a name taken meanwhile)
                self._fw(record).teardown_network(record.id)
                if made_bridge:
                    links.delete_link(record.bridge)
                with self.state.transaction() as st:
                    st["networks"].pop(spec.id, None)
                raise
        with self.state.transaction() as st:
            st["networks"][spec.id] = record.to_dict()
        self._sync_dns()
        return record

    def _mtu(self, spec: NetworkSpec) -> int:
        raw = spec.options.get(OPT_MTU)
        if raw is None:
            return 1500
        try:
            mtu = int(raw)
        except ValueError:
            raise UserError(f"network {spec.name}: {OPT_MTU} {raw!r} is not a number") from None
        if not 68 <= mtu <= 65535:
            raise UserError(f"network {spec.name}: MTU {mtu} out of range 68-65535")
        return mtu

    @staticmethod
    def _split_ipam(spec: NetworkSpec) -> tuple[IPAMPool | None, IPAMPool | None]:
        """The IPv4 and the IPv6 ``ipam.config`` entries (at most one of each)."""
        v4: list[IPAMPool] = []
        v6: list[IPAMPool] = []
        for pool in spec.ipam:
            (v6 if pool.subnet and ":" in pool.subnet else v4).append(pool)
        if len(v4) > 1 or len(v6) > 1:
            raise UserError(f"network {spec.name}: only one ipam.config entry per IP version is supported")
        return (v4[0] if v4 else None), (v6[0] if v6 else None)

    def _plan_network(self, spec: NetworkSpec, bridge: str, mtu: int, st: dict[str, Any]) -> NetworkRecord:
        """Pick subnet/gateway/range (user-given ones validated) for a new network."""
        pool, pool6 = self._split_ipam(spec)
        ours = [ipaddress.ip_network(r["subnet"]) for r in st["networks"].values()]
        host = ipam.host_networks()
        if pool and pool.subnet:
            subnet = ipam.parse_net(pool.subnet, "subnet")
            ipam.check_subnet_free(subnet, ours, host)
        else:
            if pool and (pool.gateway or pool.ip_range):
                raise UserError(f"network {spec.name}: ipam gateway/ip_range need a subnet")
            subnet = ipam.choose_subnet(self.default_pools, ours + host)
        gateway, ip_range, aux = self._plan_pool(spec, pool, subnet, 4)
        record = NetworkRecord(id=spec.id, name=spec.name, bridge=bridge, subnet=str(subnet),
                               gateway=gateway, ip_range=ip_range, internal=spec.internal,
                               attachable=spec.attachable, labels=dict(spec.labels),
                               options=dict(spec.options), mtu=mtu, aux_addresses=aux,
                               driver="bridge", firewall=self.firewall.kind)
        if spec.enable_ipv6:
            ours6 = [ipaddress.ip_network(r["subnet6"]) for r in st["networks"].values() if r.get("subnet6")]
            host6 = ipam.host_networks(10)
            if pool6 and pool6.subnet:
                subnet6 = ipam.parse_net(pool6.subnet, "subnet", 6)
                ipam.check_subnet_free(subnet6, ours6, host6)
            else:
                subnet6 = ipam.ula_subnet(spec.id, ours6 + host6)
            gw6, range6, aux6 = self._plan_pool(spec, pool6, subnet6, 6)
            record.subnet6, record.gateway6, record.ip_range6 = str(subnet6), gw6, range6
            record.aux_addresses.update(aux6)
        return record

    @staticmethod
    def _plan_pool(spec: NetworkSpec, pool: IPAMPool | None, subnet, version: int
                   ) -> tuple[str, str | None, dict[str, str]]:
        """Gateway, ip_range and aux addresses of one ipam entry, checked against its subnet."""
        if pool and pool.gateway:
            gw = ipam.parse_ip(pool.gateway, "gateway", version)
            if gw not in subnet:
                raise UserError(f"network {spec.name}: gateway {gw} is not in subnet {subnet}")
            gateway = str(gw)
        else:
            gateway = str(next(subnet.hosts()))
        ip_range = None
        if pool and pool.ip_range:
            rng = ipam.parse_net(pool.ip_range, "ip_range", version)
            if not rng.subnet_of(subnet):
                raise UserError(f"network {spec.name}: ip_range {rng} is not inside subnet {subnet}")
            ip_range = str(rng)
        aux = {}
        for name, addr in (pool.aux_addresses if pool else {}).items():
            ip = ipam.parse_ip(addr, f"aux_addresses.{name}", version)
            if ip not in subnet:
                raise UserError(f"network {spec.name}: aux address {name}={ip} is not in {subnet}")
            aux[name] = str(ip)
        return gateway, ip_range, aux

    @staticmethod
    def _make_bridge(record: NetworkRecord) -> None:
        links.create_bridge(record.bridge, record.gateway, ipaddress.ip_network(record.subnet).prefixlen,
                            record.mtu, record.gateway6,
                            ipaddress.ip_network(record.subnet6).prefixlen if record.subnet6 else 0)

    def _fw(self, record: NetworkRecord) -> "nat.Firewall":
        """The backend that made (or makes) this network's rules."""
        return nat.firewall(record.firewall) if record.firewall else self.firewall

    def _teardown_network(self, record: NetworkRecord) -> None:
        """Remove a network's kernel objects, whichever of them exist."""
        self._fw(record).teardown_network(record.id)
        links.delete_link(record.bridge)

    def remove_network(self, id_or_name: str) -> None:
        """Remove bridge, rules and DNS listener; Conflict while containers are attached."""
        record = self.get_network(id_or_name)
        with self.state.transaction() as st:
            users = [cid for cid, eps in st["endpoints"].items() if record.id in eps]
            if users:
                raise Conflict(f"network {record.name} has active endpoints ({', '.join(sorted(users))})")
            st["networks"][record.id]["status"] = "removing"
        self._teardown_network(record)
        with self.state.transaction() as st:
            st["networks"].pop(record.id, None)
        self._sync_dns()

    def get_network(self, id_or_name: str) -> NetworkRecord:
        """By id, name or unique id prefix; NotFound otherwise."""
        return self._lookup(self.state.view()["networks"], id_or_name)

    @staticmethod
    def _lookup(nets: dict[str, Any], id_or_name: str) -> NetworkRecord:
        if id_or_name in nets:
            return NetworkRecord.from_dict(nets[id_or_name])
        for rec in nets.values():
            if rec["name"] == id_or_name:
                return NetworkRecord.from_dict(rec)
        prefixed = [r for r in nets.values() if r["id"].startswith(id_or_name)] if id_or_name else []
        if len(prefixed) == 1:
            return NetworkRecord.from_dict(prefixed[0])
        raise NotFound(f"network {id_or_name} not found")

    def list_networks(self) -> list[NetworkRecord]:
        return [NetworkRecord.from_dict(r) for r in self.state.view()["networks"].values()
                if r.get("status") is None]

    # -- sandboxes and endpoints --------------------------------------------------

    def sandbox_path(self, container_id: str) -> Path:
        """Where a container's netns is pinned (``network_mode: container:X`` joins it)."""
        return self.netns_dir / container_id

    def create_sandbox(self, container_id: str) -> Path:
        """A fresh network namespace for a container, only ``lo`` in it (up)."""
        if "/" in container_id or container_id in ("", ".", ".."):
            raise UserError(f"invalid container id {container_id!r}")
        path = self.sandbox_path(container_id)
        with self.state.transaction() as st:
            if container_id in st["sandboxes"]:
                raise Conflict(f"container {container_id} already has a network sandbox")
            st["sandboxes"][container_id] = {"path": str(path)}
        try:
            netns.create(path)
        except BaseException:
            with self.state.transaction() as st:
                st["sandboxes"].pop(container_id, None)
            raise
        return path

    def _sandbox(self, st: dict[str, Any], container_id: str) -> Path:
        sb = st["sandboxes"].get(container_id)
        if sb is None:
            raise NotFound(f"container {container_id} has no network sandbox")
        return Path(sb["path"])

    def connect(self, container_id: str, network_id: str, spec: EndpointSpec | None = None) -> EndpointRecord:
        """Plug a container (running or not) into a network: veth, address, routes, DNS.

        Interfaces are named eth0, eth1... in call order, so the engine connects networks
        in Compose's order (highest ``priority`` first, then by name). The first
        non-internal network gives the default route.
        """
        spec = spec or EndpointSpec()
        net = self.get_network(network_id)
        with self.state.transaction() as st:
            sandbox = self._sandbox(st, container_id)
            plan = self._plan_endpoint(st, container_id, net, spec)
        try:
            self._make_endpoint(sandbox, *plan)
        except BaseException:
            with self.state.transaction() as st:
                eps = st["endpoints"].get(container_id, {})
                eps.pop(net.id, None)
                if not eps:
                    st["endpoints"].pop(container_id, None)
            raise
        if container_id in self.state.view()["ports"]:
            with self.state.transaction() as st:
                self._retarget_ports(st, container_id)
        self._sync_dns()
        return plan[0]

    def _plan_endpoint(self, st: dict[str, Any], container_id: str, net: NetworkRecord, spec: EndpointSpec
                       ) -> tuple[EndpointRecord, NetworkRecord, str | None, str | None]:
        """Inside a transaction: the endpoint's address, interface and routes, recorded
        (before the veth exists: a crash leaves a record ``recover()`` drops, never a
        veth nobody knows of, and no one else can take the address meanwhile)."""
        eps = st["endpoints"].setdefault(container_id, {})
        if net.id in eps:
            raise Conflict(f"container {container_id} is already connected to network {net.name}")
        subnet = ipaddress.ip_network(net.subnet)
        reserved = {net.gateway, *net.aux_addresses.values()}
        for other in st["endpoints"].values():
            if net.id in other:
                reserved.add(other[net.id]["ip"])
        ip = ipam.allocate(subnet, net.ip_range, reserved, spec.ipv4_address)
        ip6, prefixlen6 = "", 0
        if net.subnet6:
            subnet6 = ipaddress.ip_network(net.subnet6)
            reserved6 = {net.gateway6, *net.aux_addresses.values()}
            reserved6 |= {o[net.id].get("ip6", "") for o in st["endpoints"].values() if net.id in o}
            ip6 = ipam.allocate(subnet6, net.ip_range6, reserved6, spec.ipv6_address)
            prefixlen6 = subnet6.prefixlen
        elif spec.ipv6_address:
            raise UserError(f"ipv6_address {spec.ipv6_address}: network {net.name} has no IPv6")
        mac = spec.mac_address or ipam.mac_for(ip)
        used = {int(e["ifname"][3:]) for e in eps.values()}
        index = next(i for i in range(len(used) + 1) if i not in used)
        outward = [st["networks"][e["network_id"]] for e in eps.values()
                   if e["network_id"] in st["networks"] and not st["networks"][e["network_id"]]["internal"]]
        gateway = None if net.internal or outward else net.gateway
        has_default6 = any(n.get("subnet6") for n in outward)
        gateway6 = None if net.internal or has_default6 or not ip6 else net.gateway6
        record = EndpointRecord(
            container_id=container_id, network_id=net.id, ip=ip,
            prefixlen=subnet.prefixlen, gateway=net.gateway, mac=mac,
            ifname=f"eth{index}", host_ifname=links.host_veth_name(container_id, index),
            names=list(dict.fromkeys(spec.names)), aliases=list(dict.fromkeys(spec.aliases)),
            links=dict(spec.links), dns=list(spec.dns),
            ip6=ip6, prefixlen6=prefixlen6, gateway6=net.gateway6 if ip6 else "")
        eps[net.id] = record.to_dict()
        return record, net, gateway, gateway6

    @staticmethod
    def _make_endpoint(sandbox: Path, record: EndpointRecord, net: NetworkRecord,
                       gateway: str | None, gateway6: str | None) -> None:
        """The kernel side of a planned endpoint (no lock held: veths of several
        containers are made at the same time); attach_veth removes the pair on failure."""
        links.attach_veth(sandbox, net.bridge, record.host_ifname, record.ifname, record.mac, record.ip,
                          record.prefixlen, net.mtu, gateway, record.ip6, record.prefixlen6, gateway6)

    def _retarget_ports(self, st: dict[str, Any], container_id: str) -> None:
        """Point a container's published ports at its first non-internal endpoint.

        Called when its endpoints change: a port must never keep DNATing to an address
        that was released (and may now belong to another container). With no usable
        endpoint left the rules go, but the host ports stay reserved for the container.
        """
        if container_id not in st["ports"]:
            return
        eps = sorted(st["endpoints"].get(container_id, {}).values(), key=lambda e: int(e["ifname"][3:]))
        usable = [e for e in eps if not st["networks"].get(e["network_id"], {}).get("internal", True)]
        target = usable[0]["ip"] if usable else None
        bindings = [PortBinding.from_dict(b) for b in st["ports"][container_id]]
        if target is not None and all(b.container_ip == target for b in bindings):
            return
        stale = [(b.container_ip, b.container_port) for b in bindings
                 if b.protocol == "udp" and b.container_ip and b.container_ip != target]
        for b in bindings:
            b.container_ip = target or ""
        kind = st.get("ports_firewall", {}).get(container_id)
        self._apply_ports(container_id, bindings if target else [], kind)
        st["ports"][container_id] = [b.to_dict() for b in bindings]
        self._forget_udp(stale)

    @staticmethod
    def _forget_udp(flows: list[tuple[str, int]]) -> None:
        """Drop conntrack entries of UDP flows to addresses a port no longer leads to."""
        by_ip: dict[str, list[int]] = {}
        for ip, port in flows:
            by_ip.setdefault(ip, []).append(port)
        for ip, port_list in by_ip.items():
            nat.forget_udp_flows(ip, port_list)

    def disconnect(self, container_id: str, network_id: str) -> None:
        """Unplug a container from a network; its names leave that network's DNS at once."""
        net = self.get_network(network_id)
        with self.state.transaction() as st:
            sandbox = self._sandbox(st, container_id)
            eps = st["endpoints"].get(container_id, {})
            ep = eps.get(net.id)
            if ep is None:
                raise NotFound(f"container {container_id} is not connected to network {net.name}")
            links.delete_link(ep["host_ifname"])
            del eps[net.id]
            if not eps:
                st["endpoints"].pop(container_id, None)
            if not net.internal and netns.is_mounted(sandbox):
                self._move_default_routes(st, sandbox, eps, v6=bool(ep.get("ip6")))
            self._retarget_ports(st, container_id)
        self._sync_dns()

    @staticmethod
    def _move_default_routes(st: dict[str, Any], sandbox: Path, eps: dict[str, Any], v6: bool) -> None:
        """After a disconnect: a default route that went with it moves to the next
        non-internal endpoint (IPv4, and IPv6 when the network had it)."""
        for family, gw_key, ip_key in ((2, "gateway", "ip"), (10, "gateway6", "ip6"))[: 2 if v6 else 1]:
            if links.default_gateway(sandbox, family) is not None:
                continue
            for other in sorted(eps.values(), key=lambda e: int(e["ifname"][3:])):
                onet = st["networks"].get(other["network_id"])
                if onet and not onet["internal"] and other.get(ip_key) and onet.get(gw_key):
                    links.set_default_route(sandbox, onet[gw_key], other["ifname"], family)
                    break

    def endpoints(self, container_id: str) -> list[EndpointRecord]:
        """A container's endpoints, in interface order."""
        eps = self.state.view()["endpoints"].get(container_id, {})
        return sorted((EndpointRecord.from_dict(e) for e in eps.values()), key=lambda e: int(e.ifname[3:]))

    def remove_sandbox(self, container_id: str) -> None:
        """Undo everything of a container: ports, endpoints, namespace. Idempotent."""
        current = self.state.view()
        if container_id in current["ports"]:
            self.unpublish(container_id)
        elif container_id in current.get("ports_firewall", {}):
            # rules a crash (or a failed publish) left between marking and recording them
            with self.state.transaction() as st:
                kind = st.get("ports_firewall", {}).pop(container_id, None)
                if kind:
                    self._apply_ports(container_id, [], kind)
        with self.state.transaction() as st:
            # Every host veth end of the container: its endpoints' (recorded before they
            # are made), and, by name, the next few indexes (left by an engine that made
            # veths before recording them). Their peers in the namespace go with them.
            eps = st["endpoints"].get(container_id, {}).values()
            names = {e["host_ifname"] for e in eps}
            top = max((int(e["ifname"][3:]) for e in eps), default=-1)
            names |= {links.host_veth_name(container_id, i) for i in range(top + 3)}
            links.delete_links(names)
            st["endpoints"].pop(container_id, None)
            sb = st["sandboxes"].pop(container_id, None)
            netns.remove(Path(sb["path"]) if sb else self.sandbox_path(container_id))
        self._sync_dns()

    def attach_container(self, container_id: str, endpoints: list[tuple[str, EndpointSpec]],
                         ports: list[PortSpec] | None = None
                         ) -> tuple[Path, list[EndpointRecord], list[PortBinding]]:
        """Everything a starting container needs, all or nothing: a sandbox, its networks
        and its published ports. Networks are joined in Compose's order (highest
        ``EndpointSpec.priority`` first, then by network name): the first is eth0 and
        gives the default route.

        One transaction records the sandbox and plans every endpoint (addresses,
        interfaces, routes); the namespace and veths are then made without holding the
        state lock, so containers starting together do their kernel work side by side.
        On any failure the sandbox and whatever was made for it are removed before the
        error propagates, so a container that fails to start leaks nothing.
        """
        if "/" in container_id or container_id in ("", ".", ".."):
            raise UserError(f"invalid container id {container_id!r}")
        nets = self.state.view()["networks"]
        named = [(self._lookup(nets, net_id), spec) for net_id, spec in endpoints]  # NotFound first
        named.sort(key=lambda item: (-item[1].priority, item[0].name))
        path = self.sandbox_path(container_id)
        with self.state.transaction() as st:
            if container_id in st["sandboxes"]:
                raise Conflict(f"container {container_id} already has a network sandbox")
            st["sandboxes"][container_id] = {"path": str(path)}
            plans = []
            try:
                for net, spec in named:
                    current = st["networks"].get(net.id)
                    if current is None or current.get("status") is not None:
                        raise NotFound(f"network {net.id} not found")
                    plans.append(self._plan_endpoint(st, container_id, NetworkRecord.from_dict(current), spec))
            except BaseException:
                st["sandboxes"].pop(container_id, None)
                st["endpoints"].pop(container_id, None)
                raise
        try:
            netns.create(path)
            for plan in plans:
                self._make_endpoint(path, *plan)
            bindings = self.publish(container_id, ports) if ports else []
        except BaseException:
            self.remove_sandbox(container_id)
            raise
        if plans:
            self._sync_dns()
        return path, [plan[0] for plan in plans], bindings

    # -- published ports -------------------------------------------------------------

    def publish(self, container_id: str, specs: list[PortSpec]) -> list[PortBinding]:
        """DNAT host ports to the container (added to what it already publishes).

        All or nothing: a clash raises Conflict before any rule is written. The target is
        the container's first non-internal endpoint; with none (only internal networks,
        or none yet) the host ports are reserved and reported but lead nowhere, as with
        Docker, until the container joins a non-internal network.
        """
        normalized = [ports.normalize(s) for s in specs]
        with self.state.transaction() as st:
            self._sandbox(st, container_id)
            eps = sorted(st["endpoints"].get(container_id, {}).values(), key=lambda e: int(e["ifname"][3:]))
            usable = [e for e in eps if not st["networks"].get(e["network_id"], {}).get("internal", True)]
            target = usable[0]["ip"] if usable else ""
            if not usable:
                log.warning("container %s has no non-internal network: its published ports "
                            "are reserved but not reachable", container_id)
            held = [PortBinding.from_dict(b) for bs in st["ports"].values() for b in bs]
            chosen = ports.choose(normalized, held)
            new = [PortBinding(container_id, spec.host_ip or "0.0.0.0", port, target,
                               spec.container_port, spec.protocol) for spec, port in chosen]
            mine = [PortBinding.from_dict(b) for b in st["ports"].get(container_id, [])] + new
            for b in mine:
                b.container_ip = target
            kind = st.setdefault("ports_firewall", {}).setdefault(container_id, self.firewall.kind)
            # on disk before the rules are loaded: remove_sandbox() cleans up rules only
            # for containers recorded here, so a crash in between must leave the mark
            self.state.write_now(st)
            self._reservations.reserve(container_id, new)
            try:
                self._apply_ports(container_id, mine, kind)
            except BaseException:
                self._reservations.release(container_id)
                if st["ports"].get(container_id):  # keep holding what was published before
                    self._reservations.reserve(container_id, [PortBinding.from_dict(b)
                                                              for b in st["ports"][container_id]])
                raise
            st["ports"][container_id] = [b.to_dict() for b in mine]
        return new

    def _apply_ports(self, container_id: str, bindings: list[PortBinding], kind: str | None = None) -> None:
        rules = [("" if b.host_ip == "0.0.0.0" else b.host_ip, b.host_port, b.container_ip,
                  b.container_port, b.protocol) for b in bindings if b.container_ip]
        fw = nat.firewall(kind) if kind and kind != self.firewall.kind else self.firewall
        fw.set_ports(container_id, rules)

    def unpublish(self, container_id: str) -> None:
        """Remove every published port of a container."""
        with self.state.transaction() as st:
            if container_id in st["ports"]:
                kind = st.get("ports_firewall", {}).pop(container_id, None)
                self._apply_ports(container_id, [], kind)
                gone = [PortBinding.from_dict(b) for b in st["ports"].pop(container_id)]
                self._forget_udp([(b.container_ip, b.container_port) for b in gone
                                  if b.protocol == "udp" and b.container_ip])
            self._reservations.release(container_id)

    def port_bindings(self, container_id: str) -> list[PortBinding]:
        """What ``pystack port`` / inspect report for a container."""
        return [PortBinding.from_dict(b) for b in self.state.view()["ports"].get(container_id, [])]

    # -- files for the container ------------------------------------------------------

    def resolv_conf(self, container_id: str, dns: list[str] | None = None,
                    search: list[str] | None = None, options: list[str] | None = None,
                    eps: list[EndpointRecord] | None = None) -> str:
        """/etc/resolv.conf: the embedded DNS of the first network (``dns`` become its
        upstreams for this container, see EndpointSpec.dns); without a network
        (``network_mode: none``/``host``) ``dns`` as given, else the host's nameservers.
        ``eps``: the container's endpoints when the caller has them already."""
        if eps is None:
            eps = self.endpoints(container_id)
        if eps:
            return _resolv_conf([eps[0].gateway], search, options)
        if not dns:
            from .dns import host_resolvers
            dns = host_resolvers()
        return _resolv_conf(list(dns), search, options)

    def hosts_file(self, container_id: str, hostname: str, domainname: str = "",
                   extra_hosts: list[str] | dict[str, str] | None = None,
                   eps: list[EndpointRecord] | None = None) -> str:
        """/etc/hosts with the container's addresses; ``host-gateway`` is its first gateway."""
        if eps is None:
            eps = self.endpoints(container_id)
        gw = eps[0].gateway if eps else None
        addresses = [e.ip for e in eps] + [e.ip6 for e in eps if e.ip6]
        return _hosts_file(hostname, domainname, addresses, extra_hosts, gw)

    # -- DNS ------------------------------------------------------------------------

    def _sync_dns(self) -> None:
        """Hand the DNS server the current networks and endpoints (starting it if needed)."""
        if not self._dns_enabled:
            return
        # Containers starting together share rebuilds: a caller returns once a rebuild
        # that read the state after its call has been applied (its own or a later
        # caller's), never before. The state is read under the lock, so an older
        # snapshot can never overwrite a newer one.
        with self._dns_ask_lock:
            self._dns_asked += 1
            mine = self._dns_asked
        with self._dns_lock:
            if self._dns_done >= mine:
                return
            covers = self._dns_asked
            st = self.state.view()
            nets = [NetworkRecord.from_dict(r) for r in st["networks"].values() if r.get("status") is None]
            eps = [EndpointRecord.from_dict(e) for c in st["endpoints"].values() for e in c.values()]
            if self._dns is None:
                if not nets:
                    self._dns_done = covers
                    return
                from .dns import DNSServer
                self._dns = DNSServer(self.dns_upstreams)
            try:
                self._dns.update(nets, eps)
            except OSError as exc:
                # The kernel objects are made and recorded; only name service is missing.
                # Say so loudly instead of failing a container start for it.
                log.warning("embedded DNS cannot listen on a gateway: %s", exc)
            self._dns_done = covers

    def close(self) -> None:
        """Stop the DNS thread and let go of the host-port reservations; kernel objects
        and state stay (the engine is stopping; ``recover()`` takes them up again)."""
        self._reservations.release_all()
        with self._dns_lock:
            if self._dns is not None:
                self._dns.close()
                self._dns = None

    def __enter__(self) -> "NetworkManager":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- crash recovery -----------------------------------------------------------------

    def recover(self) -> None:
        """After a crash or reboot: finish or undo half-done work, rebuild what is gone.

        Networks caught mid-create/remove are torn down; a missing bridge or rule table
        (reboot) is made again; sandboxes whose namespace is gone lose their endpoints
        and ports; then the DNS server starts answering from the persisted names.
        """
        st = self.state.read()
        for rec in list(st["networks"].values()):
            record = NetworkRecord.from_dict(rec)
            if rec.get("status") is not None:
                self._teardown_network(record)
                with self.state.transaction() as tx:
                    tx["networks"].pop(record.id, None)
                continue
            if not links.link_exists(record.bridge):
                self._make_bridge(record)
            self._fw(record).setup_network(record.id, record.bridge, record.subnet, record.internal,
                                            _masquerade(record), record.subnet6)
            if not record.internal:
                nat.enable_ip_forward()
        st = self.state.read()
        for cid, sb in list(st["sandboxes"].items()):
            if not netns.is_mounted(Path(sb["path"])):
                self.remove_sandbox(cid)
                continue
            for ep in st["endpoints"].get(cid, {}).values():
                net = st["networks"].get(ep["network_id"])
                if net is None or not links.link_exists(ep["host_ifname"]):
                    with self.state.transaction() as tx:
                        tx["endpoints"].get(cid, {}).pop(ep["network_id"], None)
                    continue
                links.enslave(ep["host_ifname"], net["bridge"])  # bridge re-made above
            if cid in st["ports"]:
                bindings = [PortBinding.from_dict(b) for b in st["ports"][cid]]
                self._apply_ports(cid, bindings, st.get("ports_firewall", {}).get(cid))
                self._reservations.release(cid)
                try:
                    self._reservations.reserve(cid, bindings)
                except Conflict as exc:  # someone took it meanwhile: DNAT still wins
                    log.warning("container %s: %s", cid, exc)
        self._sync_dns()

    def cleanup_all(self) -> None:
        """Remove every network, sandbox, veth, rule table this manager's state knows of."""
        st = self.state.read()
        for cid in list(st["sandboxes"]):
            self.remove_sandbox(cid)
        for cid in list(self.state.read()["ports"]):
            self.unpublish(cid)
        with self.state.transaction() as tx:
            tx["endpoints"].clear()
        for rec in list(self.state.read()["networks"].values()):
            self._teardown_network(NetworkRecord.from_dict(rec))
            with self.state.transaction() as tx:
                tx["networks"].pop(rec["id"], None)
        # namespaces pinned in our run dir without a record (crash between mount and save)
        if self.netns_dir.is_dir():
            for path in self.netns_dir.iterdir():
                netns.remove(path)
        self.close()
