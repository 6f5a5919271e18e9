"""The container manager: the one owner of container state inside pystackd.

A container is a record on disk (``records.py``) plus, while it runs, a runtime container
of the same id (its shim outlives the engine). The manager turns Engine API requests into
calls of the four libraries:

- create: name, image, merged Config, volumes (``volumes.lifecycle.prepare``), record;
  nothing is left behind on failure (an ``intent`` file marks multi-step work so that
  recovery after a crash finishes or rolls it back);
- start: network sandbox + endpoints + published ports (``networks.attach_container``),
  /etc/hostname, /etc/hosts, /etc/resolv.conf, the OCI bundle, ``runtime.create`` with the
  image's layers as overlay lowerdirs, ``runtime.start``; a watcher thread per running
  container waits for its exit;
- exit: State updated, network torn down, runtime state deleted, ``die`` event, restart
  policy (Docker's back-off: 100 ms doubling, reset after 10 s of running, at most 1 min);
- stop/kill/restart/pause/unpause/rename/remove/wait, healthchecks (``health.py``);
- recover(): adopt running containers after an engine restart, restart policy containers
  that died meanwhile, finish/roll back half-done create/remove, remove leftovers.

Every operation that changes one container holds ``lock(id)``; blocking library calls
run in threads, never on the event loop.
"""
from __future__ import annotations

from pystack.humanize import human_duration  # noqa: F401 - also re-exported

import asyncio
import calendar
import contextlib
import errno as errno_mod
import functools
import inspect as inspect_mod
import json
import logging
import os
import random
import re
import shutil
import signal as signal_mod
import threading
import time
from pathlib import Path
from typing import Any

from pystack.engine.api import BadRequest
from pystack.engine.records import ContainerRecord, NAME_RE, ID_RE, new_id, now_rfc3339
from pystack.engine.records import write_file as _write_file
from pystack.errors import Conflict, NotFound, UserError

log = logging.getLogger("pystackd.containers")

ZERO_TIME = "0001-01-01T00:00:00Z"
DEFAULT_BRIDGE = "bridge"
BRIDGE_CANDIDATES = ["172.17.0.0/16", "172.18.0.0/16", "172.19.0.0/16", "172.20.0.0/16",
                     "10.200.0.0/16", "192.168.200.0/24"]
MAX_BACKOFF = 60.0
MIN_BACKOFF = 0.1

_ADJ = ["admiring", "brave", "clever", "dazzling", "eager", "focused", "gallant", "happy",
        "jolly", "keen", "lucid", "modest", "nifty", "optimistic", "pensive", "quirky",
        "relaxed", "serene", "tender", "upbeat", "vibrant", "wizardly", "youthful", "zealous"]
_NAMES = ["babbage", "curie", "darwin", "euclid", "fermat", "galileo", "hopper", "hypatia",
          "kepler", "lovelace", "meitner", "newton", "noether", "pascal", "ritchie", "shannon",
          "tesla", "thompson", "turing", "wozniak"]


def random_name() -> str:
    return f"{random.choice(_ADJ)}_{random.choice(_NAMES)}"


_TS_RE = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?")


@functools.lru_cache(maxsize=8192)
def parse_rfc3339(text: str) -> float | None:
    """Seconds since the epoch of a Docker/runc UTC timestamp (nanosecond digits allowed)."""
    if not text or text.startswith("0001-"):
        return None
    m = _TS_RE.match(text)
    if not m:
        return None
    base = calendar.timegm(tuple(int(x) for x in m.groups()[:6]) + (0, 0, 0))
    frac = float("0." + m.group(7)) if m.group(7) else 0.0
    return base + frac




def parse_signal(sig: str | int | None, default: int = signal_mod.SIGTERM) -> int:
    """"SIGTERM", "TERM", "15" or 15 -> 15; a clear 400 otherwise."""
    if sig is None or sig == "":
        return int(default)
    if isinstance(sig, int) or str(sig).isdigit():
        num = int(sig)
        if not 0 < num < 65:
            raise BadRequest(f"Invalid signal: {sig}")
        return num
    name = str(sig).upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(getattr(signal_mod.Signals, name))
    except AttributeError:
        m = re.fullmatch(r"SIGRTMIN\+(\d+)", name)
        if m:
            return int(signal_mod.SIGRTMIN) + int(m.group(1))
        raise BadRequest(f"Invalid signal: {sig}") from None


def restart_policy(host_config: dict) -> tuple[str, int]:
    pol = host_config.get("RestartPolicy") or {}
    name = pol.get("Name") or "no"
    return name, int(pol.get("MaximumRetryCount") or 0)


class Live:
    """In-memory bookkeeping of one container (locks, waiters, watcher, tasks)."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.gen = 0                      # incremented at each start: stale watchers are ignored
        self.exited = asyncio.Event()     # set while the container is not running
        self.exited.set()
        self.exit_task: asyncio.Task | None = None
        self.next_exit: list[asyncio.Future] = []
        self.removed: list[asyncio.Future] = []
        self.restart_task: asyncio.Task | None = None
        self.health: Any = None           # health.HealthMonitor
        self.backoff = 0.0
        self.started_mono = 0.0
        self.readers = 0                  # attach/logs streams following the log file
        self.readers_idle = asyncio.Event()
        self.readers_idle.set()


class ContainerManager:
    """Create/start/stop/kill/wait/pause/remove/rename containers; restart policies; recovery."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.records = engine.records
        self._live: dict[str, Live] = {}
        self._creating: set[str] = set()
        self.records.keep_files = self._no_shared_netns
        self._bridge_lock = threading.Lock()
        self._closing = False

    def _no_shared_netns(self) -> bool:
        """No container joins another's network namespace (and bind-mounts its hosts,
        hostname and resolv.conf): a removed container's may then be reused."""
        return not any(str(r.host_config.get("NetworkMode") or "").startswith("container:")
                       for r in self.records)

    # -- lookup ----------------------------------------------------------------------------

    def live(self, cid: str) -> Live:
        lv = self._live.get(cid)
        if lv is None:
            lv = self._live[cid] = Live()
        return lv

    def get(self, ref: str) -> ContainerRecord:
        """By id, unique id prefix or name (with or without '/'); NotFound otherwise."""
        if not ref or len(ref) > 256:
            raise NotFound(f"No such container: {ref}")
        try:
            rec = self.records.get(ref)
        except UserError as exc:
            if isinstance(exc, NotFound):
                raise
            raise BadRequest(str(exc)) from None
        if rec.id in self._creating:
            raise NotFound(f"No such container: {ref}")
        return rec

    def lock(self, container_id: str) -> asyncio.Lock:
        return self.live(container_id).lock

    def status(self, rec: ContainerRecord) -> str:
        return rec.state.get("Status") or "created"

    def is_running(self, rec: ContainerRecord) -> bool:
        return self.status(rec) in ("running", "paused")

    def all(self) -> list[ContainerRecord]:
        return [r for r in self.records if r.id not in self._creating]

    def cdir(self, cid: str) -> Path:
        return self.records.dir(cid)

    # -- events ----------------------------------------------------------------------------

    def emit(self, rec: ContainerRecord, action: str, **extra: str) -> None:
        attrs = {**rec.labels, "image": rec.image, "name": rec.name, **{k: str(v) for k, v in extra.items()}}
        self.engine.events.emit("container", action, rec.id, attrs)

    def emit_network(self, action: str, rec: ContainerRecord, net_id: str, net_name: str) -> None:
        self.engine.events.emit("network", action, net_id,
                                {"container": rec.id, "name": net_name, "type": "bridge"})

    # -- create ----------------------------------------------------------------------------

    async def create(self, body: dict, name: str | None, platform: str | None = None) -> dict:
        """POST /containers/create -> {"Id", "Warnings"}."""
        if not isinstance(body, dict):
            raise BadRequest("container config must be a JSON object")
        specgen = _specgen()
        if specgen is not None:
            specgen.check_create_body(body)
        else:
            _check_unsupported(body.get("HostConfig") or {})
        host_config = dict(body.get("HostConfig") or {})
        networking = dict(body.get("NetworkingConfig") or {})
        config = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
        ref = config.get("Image") or ""
        if not ref:
            raise BadRequest("Config.Image: an image is required")
        _check_host_config(host_config)
        try:
            image = await asyncio.to_thread(self.engine.images.resolve, ref)
        except NotFound:
            raise NotFound(f"No such image: {ref}") from None
        except UserError as exc:
            raise BadRequest(str(exc)) from None
        image_cfg = dict(image.container_config or {})
        merged = specgen.merge_image_config(config, image_cfg) if specgen is not None \
            else _merge_image_config(config, image_cfg)
        merged["Image"] = ref
        if not merged.get("Entrypoint") and not merged.get("Cmd"):
            raise BadRequest("No command specified")
        host_config = _host_config_defaults(host_config)
        networks = await asyncio.to_thread(self._desired_networks, host_config, networking)

        if name:
            name = name.lstrip("/") if name.startswith("/") else name
            if not NAME_RE.match(name):
                raise BadRequest(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        else:
            taken = {r.name for r in self.records}
            name = random_name()
            while name in taken:
                name = random_name() + str(random.randint(0, 99))
        cid = new_id()
        d = self.cdir(cid)
        rec = ContainerRecord(id=cid, name=name, created=now_rfc3339(), image=ref, image_id=image.id,
                              config=merged, host_config=host_config, networking_config=networking,
                              state={"Status": "created"})
        rec.extra.update({
            "log_path": str(d / f"{cid}-json.log"), "upper": str(d / "upper"), "work": str(d / "work"),
            # the container's folder is its OCI bundle (config.json, rootfs/): one
            # folder fewer to make per container than a bundle/ of its own
            "bundle": str(d), "stdin": bool(merged.get("OpenStdin")),
            "networks": networks, "lowerdirs": [],
        })
        # name reservation and the intent marker happen before the first await: two
        # concurrent creates with one name cannot both pass
        recycled = self.records.make_dir(cid)
        rec.extra["_recycled"] = recycled
        self.records.sync_later(_write_intent(d, "create"))
        self._creating.add(cid)
        try:
            self.records.add(rec, save=False)  # the name only: the record is saved once, complete
        except BaseException:
            self._creating.discard(cid)
            shutil.rmtree(d, ignore_errors=True)
            raise
        try:
            await asyncio.to_thread(self._create_blocking, rec, image)
        except BaseException:
            await asyncio.to_thread(self._rollback_create, cid)
            self._creating.discard(cid)
            raise
        self.records.save(rec, first=True)
        _clear_intent(d)
        self._creating.discard(cid)
        self.live(cid)
        self.emit(rec, "create")
        return {"Id": cid, "Warnings": []}

    def _create_blocking(self, rec: ContainerRecord, image) -> None:
        d = str(self.cdir(rec.id))
        if not rec.extra.pop("_recycled", False):  # a spare folder has them
            for sub in ("upper", "work", "rootfs"):
                os.mkdir(f"{d}/{sub}", 0o755)  # a new folder: none of them exists yet
        lowerdirs = [str(p) for p in self.engine.images.prepare(image)]
        rec.extra["lowerdirs"] = lowerdirs
        from pystack.volumes import lifecycle
        storage = lifecycle.prepare(
            rec.id, rec.host_config, rec.config, self.engine.volumes,
            image_rootfs=[Path(p) for p in lowerdirs], mounts_of=lambda ref: self.get(ref).mounts,
            pin=False)
        try:
            rec.mounts = list(storage.points)
            rec.extra["oci_mounts"] = storage.oci_mounts
        finally:
            storage.close()

    def _rollback_create(self, cid: str) -> None:
        """Undo a create cut half-way (an error, or a crash found by recover())."""
        try:
            from pystack.volumes import lifecycle
            lifecycle.release(cid, self.engine.volumes, remove_anonymous=True)
        except Exception as exc:  # noqa: BLE001
            log.warning("rollback of %s: volumes: %s", cid, exc)
        self._teardown_runtime(cid)
        self.records.remove(cid)

    def _desired_networks(self, host_config: dict, networking: dict) -> dict[str, dict]:
        """Network name -> endpoint config the container joins at start (ids checked now)."""
        mode = host_config.get("NetworkMode") or "bridge"
        eps = dict((networking.get("EndpointsConfig") or {}))
        if mode in ("host", "none") or mode.startswith("container:"):
            if eps:
                raise BadRequest(f"HostConfig.NetworkMode {mode}: a container in this mode cannot join networks")
            if mode.startswith("container:"):
                self.get(mode.split(":", 1)[1])
            return {}
        if "default" in eps:  # the docker CLI names the default network "default"
            eps = {("bridge" if k == "default" else k): v for k, v in eps.items()}
        out: dict[str, dict] = {}
        if mode not in eps and not any(self._net_matches(k, mode) for k in eps):
            eps = {mode: {}, **eps}
        for key, cfg in eps.items():
            net = self._network(key)
            cfg = dict(cfg or {})
            cfg["NetworkID"] = net.id
            out[net.name] = cfg
        return out

    def _net_matches(self, key: str, mode: str) -> bool:
        try:
            return self.engine.networks.get_network(key).id == self._network(mode).id
        except NotFound:
            return False

    def _network(self, ref: str):
        if ref == DEFAULT_BRIDGE:
            return self.default_bridge()
        try:
            return self.engine.networks.get_network(ref)
        except NotFound:
            raise NotFound(f"network {ref} not found") from None

    def default_bridge(self):
        """The network named "bridge" (Docker's default), created on first use with the
        subnet of PYSTACK_BRIDGE_SUBNET or the first candidate clashing with no host route."""
        with self._bridge_lock:
            try:
                return self.engine.networks.get_network(DEFAULT_BRIDGE)
            except NotFound:
                pass
            from pystack.networking.types import IPAMPool, NetworkSpec
            wanted = [s.strip() for s in (os.environ.get("PYSTACK_BRIDGE_SUBNET") or "").split(",") if s.strip()]
            candidates = wanted or [_free_subnet()]
            for i, subnet in enumerate(candidates):
                spec = NetworkSpec(id=new_id(), name=DEFAULT_BRIDGE, ipam=[IPAMPool(subnet=subnet)])
                try:
                    return self.engine.networks.create_network(spec)
                except Conflict:
                    # routed meanwhile (another engine): the next candidate of the list
                    if i == len(candidates) - 1:
                        raise
            raise UserError("no subnet for the default bridge")  # pragma: no cover

    # -- start -----------------------------------------------------------------------------

    async def start(self, ref: str) -> bool:
        """Start a container; False when it already runs (HTTP 304)."""
        rec = self.get(ref)
        lv = self.live(rec.id)
        async with lv.lock:
            await self._settle(lv)
            status = self.status(rec)
            if status == "paused":
                raise Conflict("cannot start a paused container, try unpause instead")
            if status == "running":
                return False
            if status in ("removing", "dead"):
                raise Conflict(f"container {rec.id} is marked for removal and cannot be started")
            if lv.restart_task is not None:
                lv.restart_task.cancel()
                lv.restart_task = None
            rec.extra["manually_stopped"] = False
            rec.restart_count = 0  # moby: a manual start resets the restart manager
            lv.backoff = 0.0
            await self._start_locked(rec, lv)
            return True

    async def _settle(self, lv: Live) -> None:
        """Let a pending exit finish its cleanup before changing the container again."""
        task = lv.exit_task
        if task is not None and not task.done():
            await asyncio.shield(task)

    async def _start_locked(self, rec: ContainerRecord, lv: Live) -> None:
        try:
            info = await asyncio.to_thread(self._start_blocking, rec)
        except BaseException as exc:
            rec.state.update(Status="exited" if rec.state.get("StartedAt") else "created",
                             Error=str(exc), Running=False, Pid=0,
                             ExitCode=getattr(exc, "exit_code", None) or 128)
            if not rec.state.get("StartedAt"):
                rec.state["Status"] = "created"
            self.records.save(rec)
            if rec.host_config.get("AutoRemove"):  # as dockerd: `docker run --rm` waits for the removal
                asyncio.ensure_future(self._auto_remove(rec.id))
            raise
        lv.gen += 1
        lv.exited.clear()
        lv.started_mono = time.monotonic()
        rec.state.update(Status="running", Running=True, Paused=False, Restarting=False, OOMKilled=False,
                         Dead=False, Pid=info["pid"], ExitCode=0, Error="", StartedAt=info["startedAt"],
                         FinishedAt=rec.state.get("FinishedAt") or ZERO_TIME)
        self._start_health(rec, lv)
        self.records.save(rec)
        for net_name, settings in rec.network_settings.get("Networks", {}).items():
            self.emit_network("connect", rec, settings.get("NetworkID", ""), net_name)
        self.emit(rec, "start")
        self._watch(rec.id, lv.gen)

    def _start_blocking(self, rec: ContainerRecord) -> dict:
        cid = rec.id
        rt = self.engine.runtime
        self._teardown_runtime(cid)
        netns, ns_files = self._attach(rec)
        try:
            files = ns_files or self._write_files(rec)
            image_cfg_lower = rec.extra.get("lowerdirs") or []
            if not all(os.path.isdir(p) for p in image_cfg_lower):
                image_cfg_lower = [str(p) for p in self.engine.images.prepare(rec.image_id)]
                rec.extra["lowerdirs"] = image_cfg_lower
            spec = self._build_spec(rec, netns, files)
            bundle = rec.extra["bundle"]
            for sub in (f"{bundle}/rootfs", rec.extra["upper"], rec.extra["work"]):
                if not os.path.isdir(sub):  # made at create; only a damaged folder lacks one
                    os.makedirs(sub, mode=0o755, exist_ok=True)
            # written in place, not through a temp file and a rename (a new inode each
            # start): the runtime reads it only in the create below, and a start cut by
            # a crash is started again, which writes it again
            _write_file(f"{bundle}/config.json", _spec_json(spec))
            _ensure_workdir(rec.config.get("WorkingDir") or "", rec.extra["upper"], image_cfg_lower)
            log_cfg = rec.host_config.get("LogConfig") or {}
            log_opts = {k: v for k, v in (log_cfg.get("Config") or {}).items() if k in ("max-size", "max-file")}
            rt.create(cid, bundle, log_path=rec.extra["log_path"], log_opts=log_opts or None,
                      stdin=bool(rec.config.get("OpenStdin")), rootfs_lowerdirs=image_cfg_lower,
                      rootfs_upper=rec.extra["upper"], rootfs_work=rec.extra["work"],
                      init=bool(rec.host_config.get("Init")) or None)
            rt.start(cid)
            st = rt.state(cid)
        except BaseException:
            self._teardown_runtime(cid)
            self._teardown_network(rec)
            raise
        return {"pid": st.get("pid") or 0, "startedAt": st.get("startedAt") or now_rfc3339()}

    def _attach(self, rec: ContainerRecord) -> tuple[str | None, dict | None]:
        """Network sandbox, endpoints and ports for a starting container.

        Returns the netns path (None: the host's) and, for container:X, X's files."""
        mode = rec.host_config.get("NetworkMode") or "bridge"
        nm = self.engine.networks
        if mode == "host":
            rec.network_settings = {"Networks": {"host": _empty_endpoint()}, "Ports": {}, "SandboxKey": ""}
            return None, None
        if mode.startswith("container:"):
            other = self.get(mode.split(":", 1)[1])
            if not self.is_running(other):
                raise Conflict(f"cannot join network of a non running container: {other.id}")
            od = self.cdir(other.id)
            files = {"/etc/hosts": str(od / "hosts"), "/etc/resolv.conf": str(od / "resolv.conf"),
                     "/etc/hostname": str(od / "hostname")}
            path = other.network_settings.get("SandboxKey") or str(nm.sandbox_path(other.id))
            rec.network_settings = {"Networks": {}, "Ports": {}, "SandboxKey": path}
            return path, files
        if mode == "none":
            path = nm.create_sandbox(rec.id)
            rec.network_settings = {"Networks": {"none": _empty_endpoint()}, "Ports": {}, "SandboxKey": str(path)}
            return str(path), None
        from pystack.networking import docker_json
        from pystack.networking.types import PortSpec
        wanted = rec.extra.get("networks") or {}
        endpoints = []
        names_by_id = {}
        for net_name, cfg in wanted.items():
            net = self._network(cfg.get("NetworkID") or net_name) if net_name != DEFAULT_BRIDGE \
                else self.default_bridge()
            names_by_id[net.id] = net
            dns_names = [rec.name, rec.id[:12]]
            hostname = rec.config.get("Hostname")
            if hostname and hostname not in dns_names:
                dns_names.append(hostname)
            endpoints.append((net.id, docker_json.endpoint_spec_from_api(
                cfg, dns_names, rec.host_config.get("Dns") or [])))
        ports = docker_json.port_specs_from_api(rec.host_config.get("PortBindings"))
        if rec.host_config.get("PublishAllPorts"):
            bound = {(p.container_port, p.protocol) for p in ports}
            for key in rec.config.get("ExposedPorts") or {}:
                port, _, proto = key.partition("/")
                if (int(port), proto or "tcp") not in bound:
                    ports.append(PortSpec(container_port=int(port), protocol=proto or "tcp"))
        path, eps, bindings = nm.attach_container(rec.id, endpoints, ports)
        nets = {}
        by_id = {cfg.get("NetworkID"): n for n, cfg in wanted.items()}
        for ep in eps:
            net = names_by_id[ep.network_id]
            nets[by_id.get(net.id, net.name)] = docker_json.endpoint_json(ep, net)
        ports_json = {k: None for k in (rec.config.get("ExposedPorts") or {})}
        ports_json.update(docker_json.ports_json(bindings))
        rec.network_settings = {"Networks": nets, "Ports": ports_json, "SandboxKey": str(path)}
        return str(path), None

    def _write_files(self, rec: ContainerRecord) -> dict[str, str]:
        d = self.cdir(rec.id)
        nm = self.engine.networks
        hc = rec.host_config
        mode = hc.get("NetworkMode") or "bridge"
        hostname = rec.config.get("Hostname") or (os.uname().nodename if mode == "host" else rec.id[:12])
        files = {"/etc/hostname": f"{d}/hostname", "/etc/hosts": f"{d}/hosts", "/etc/resolv.conf": f"{d}/resolv.conf"}
        eps = nm.endpoints(rec.id)  # one read of the networking state for both files
        _write_file(files["/etc/hostname"], (hostname + "\n").encode())
        _write_file(files["/etc/hosts"], nm.hosts_file(rec.id, hostname, rec.config.get("Domainname") or "",
                                                       hc.get("ExtraHosts") or None, eps=eps).encode())
        _write_file(files["/etc/resolv.conf"], nm.resolv_conf(rec.id, hc.get("Dns") or None,
                                                              hc.get("DnsSearch") or None,
                                                              hc.get("DnsOptions") or None, eps=eps).encode())
        return files

    def _build_spec(self, rec: ContainerRecord, netns: str | None, files: dict[str, str]) -> dict:
        mounts = list(rec.extra.get("oci_mounts") or [])
        parent = os.environ.get("PYSTACK_CGROUP_PARENT", "pystack").strip("/") or "pystack"
        specgen = _specgen()
        if specgen is not None:
            kwargs: dict[str, Any] = {}
            if _takes_rootfs(specgen.build_spec):
                kwargs["rootfs"] = [p for p in [rec.extra.get("upper", ""), *(rec.extra.get("lowerdirs") or [])] if p]
            spec = specgen.build_spec(rec.id, rec.config, rec.host_config, mounts=mounts, netns=netns,
                                      files=files, cgroup_parent=parent, **kwargs)
        else:
            spec = _fallback_spec(rec, mounts, netns, files, parent)
        mode = rec.host_config.get("NetworkMode") or "bridge"
        has_uts = any(n.get("type") == "uts" and not n.get("path")
                      for n in (spec.get("linux") or {}).get("namespaces") or [])
        if not has_uts:
            spec.pop("hostname", None)  # never set the host's (or another container's) name
        elif mode == "host":
            spec["hostname"] = os.uname().nodename
        elif not spec.get("hostname"):
            spec["hostname"] = rec.config.get("Hostname") or rec.id[:12]
        return spec

    # -- exit ------------------------------------------------------------------------------

    def _watch(self, cid: str, gen: int) -> None:
        loop = asyncio.get_running_loop()

        def run() -> None:
            try:
                code = self.engine.runtime.wait(cid)
            except Exception:  # noqa: BLE001 - gone: treat as exited
                code = 255
            try:
                loop.call_soon_threadsafe(self._exited, cid, gen, code)
            except RuntimeError:  # loop closed: engine stopping
                pass

        threading.Thread(target=run, name=f"watch-{cid[:12]}", daemon=True).start()

    def _exited(self, cid: str, gen: int, code: int) -> None:
        lv = self._live.get(cid)
        if lv is None or lv.gen != gen or self._closing:
            return
        lv.exit_task = asyncio.ensure_future(self._handle_exit(cid, lv, code))

    async def _handle_exit(self, cid: str, lv: Live, code: int) -> None:
        try:
            rec = self.records.get(cid)
        except NotFound:
            lv.exited.set()
            return
        self._stop_health(lv)
        try:
            st = await asyncio.to_thread(self.engine.runtime.state, cid)
        except Exception:  # noqa: BLE001
            st = {}
        oom = bool(st.get("oomKilled"))
        rec.state.update(Status="exited", Running=False, Paused=False, Restarting=False, Pid=0,
                         ExitCode=code, OOMKilled=oom, FinishedAt=st.get("finishedAt") or now_rfc3339())
        self.records.save(rec)  # the exit status first: a crash during cleanup keeps it
        await asyncio.to_thread(self._cleanup_after_exit, rec)
        self.records.save(rec)
        if oom:
            self.emit(rec, "oom")
        for net_name, net_id in rec.extra.pop("_disconnected", None) or []:
            self.emit_network("disconnect", rec, net_id, net_name)
        self.emit(rec, "die", exitCode=code)
        lv.exited.set()
        for fut in lv.next_exit:
            if not fut.done():
                fut.set_result(code)
        lv.next_exit.clear()
        if rec.host_config.get("AutoRemove"):
            asyncio.ensure_future(self._auto_remove(cid))
            return
        self._maybe_restart(rec, lv, code)

    @contextlib.contextmanager
    def reading(self, cid: str):
        """Around an attach/logs stream that follows the container's log: an AutoRemove
        waits for it (at most 5 s) before deleting the log, so that ``docker run --rm``
        gets the output of a container that exits at once (it lost it now and then)."""
        lv = self.live(cid)
        lv.readers += 1
        lv.readers_idle.clear()
        try:
            yield
        finally:
            lv.readers -= 1
            if lv.readers <= 0:
                lv.readers_idle.set()

    async def _auto_remove(self, cid: str) -> None:
        lv = self._live.get(cid)
        if lv is not None and lv.readers:
            try:
                await asyncio.wait_for(lv.readers_idle.wait(), 5)
            except asyncio.TimeoutError:
                pass
        try:
            await self.remove(cid, force=True, volumes=True)
        except (NotFound, Conflict):
            pass
        except Exception as exc:  # noqa: BLE001
            log.warning("auto-remove of %s: %s", cid, exc)

    def _cleanup_after_exit(self, rec: ContainerRecord) -> None:
        self._teardown_runtime(rec.id)
        self._teardown_network(rec)

    def _teardown_runtime(self, cid: str) -> None:
        rt = self.engine.runtime
        try:
            if rt.states.exists(cid) or rt.states.path(cid).exists():
                if rt.states.exists(cid):
                    rt.delete(cid, force=True)
                else:
                    shutil.rmtree(rt.states.path(cid), ignore_errors=True)
        except NotFound:
            pass
        except Exception as exc:  # noqa: BLE001
            log.warning("runtime delete %s: %s", cid, exc)

    def _teardown_network(self, rec: ContainerRecord) -> None:
        mode = rec.host_config.get("NetworkMode") or "bridge"
        nets = (rec.network_settings or {}).get("Networks") or {}
        if mode != "host" and not mode.startswith("container:") and (rec.network_settings or {}).get("SandboxKey"):
            # (a sandbox a crash left unrecorded is swept by recover())
            try:
                self.engine.networks.remove_sandbox(rec.id)
            except Exception as exc:  # noqa: BLE001
                log.warning("network teardown %s: %s", rec.id, exc)
        had = [(n, s.get("NetworkID", "")) for n, s in nets.items() if s.get("IPAddress")]
        for n, s in nets.items():
            for key in ("IPAddress", "Gateway", "MacAddress", "EndpointID", "GlobalIPv6Address", "IPv6Gateway"):
                if key in s:
                    s[key] = ""
            if "IPPrefixLen" in s:
                s["IPPrefixLen"] = 0
        if rec.network_settings:
            rec.network_settings["Ports"] = {}
            rec.network_settings["SandboxKey"] = ""
        rec.extra["_disconnected"] = had

    def _maybe_restart(self, rec: ContainerRecord, lv: Live, code: int) -> None:
        name, max_retry = restart_policy(rec.host_config)
        ran = time.monotonic() - lv.started_mono
        if ran >= 10:
            lv.backoff = 0.0
        if rec.extra.get("manually_stopped") or self._closing or rec.state.get("Status") == "removing":
            return
        if name == "no" or not name:
            return
        if name == "on-failure" and (code == 0 or (max_retry and rec.restart_count >= max_retry)):
            return
        lv.backoff = MIN_BACKOFF if lv.backoff == 0 else min(lv.backoff * 2, MAX_BACKOFF)
        rec.state.update(Status="restarting", Restarting=True)
        self.records.save(rec)
        lv.restart_task = asyncio.ensure_future(self._restart_later(rec.id, lv, lv.backoff))

    async def _restart_later(self, cid: str, lv: Live, delay: float) -> None:
        await asyncio.sleep(delay)
        async with lv.lock:
            if lv.restart_task is not asyncio.current_task():
                return
            lv.restart_task = None
            try:
                rec = self.records.get(cid)
            except NotFound:
                return
            if rec.extra.get("manually_stopped") or self.status(rec) != "restarting":
                return
            rec.restart_count += 1
            try:
                await self._start_locked(rec, lv)
            except Exception as exc:  # noqa: BLE001
                log.warning("restart of %s failed: %s", cid, exc)
                rec.state.update(Status="exited", Restarting=False, Error=str(exc))
                self.records.save(rec)
                self._maybe_restart(rec, lv, 128)

    # -- stop / kill / restart / pause ------------------------------------------------------

    async def stop(self, ref: str, t: int | None = None, sig: str | None = None) -> bool:
        """Stop with the stop signal, then SIGKILL after ``t`` seconds; False if not running."""
        rec = self.get(ref)
        lv = self.live(rec.id)
        async with lv.lock:
            await self._settle(lv)
            rec.extra["manually_stopped"] = True
            self.records.save(rec)
            if lv.restart_task is not None:
                lv.restart_task.cancel()
                lv.restart_task = None
                if self.status(rec) == "restarting":
                    rec.state.update(Status="exited", Restarting=False)
                    self.records.save(rec)
                    self.emit(rec, "stop")
                    return True
            if not self.is_running(rec):
                return False
            await self._stop_locked(rec, lv, t, sig)
            self.emit(rec, "stop")
            return True

    async def _stop_locked(self, rec: ContainerRecord, lv: Live, t: int | None, sig: str | None) -> None:
        signum = parse_signal(sig or rec.config.get("StopSignal"), signal_mod.SIGTERM)
        if t is None:
            t = rec.config.get("StopTimeout")
            t = 10 if t is None else int(t)
        rt = self.engine.runtime
        if self.status(rec) == "paused":
            await asyncio.to_thread(_quiet, rt.resume, rec.id)
        self.emit(rec, "kill", signal=signum)
        await asyncio.to_thread(_quiet, rt.kill, rec.id, signum)
        if t < 0:
            await lv.exited.wait()
        else:
            try:
                await asyncio.wait_for(lv.exited.wait(), t)
            except asyncio.TimeoutError:
                self.emit(rec, "kill", signal=int(signal_mod.SIGKILL))
                await asyncio.to_thread(_quiet, rt.kill, rec.id, signal_mod.SIGKILL, True)
                try:
                    await asyncio.wait_for(lv.exited.wait(), 30)
                except asyncio.TimeoutError:
                    raise UserError(f"container {rec.id} did not stop after SIGKILL") from None
        await self._settle(lv)

    async def kill(self, ref: str, sig: str | None = None) -> None:
        """Signal the container. No lock: a kill must get through while a stop waits out
        its grace period (Compose's second Ctrl-C), as with dockerd."""
        rec = self.get(ref)
        lv = self.live(rec.id)
        signum = parse_signal(sig, signal_mod.SIGKILL)
        if not self.is_running(rec):
            raise Conflict(f"Container {rec.id} is not running")
        if signum in (signal_mod.SIGKILL, parse_signal(rec.config.get("StopSignal"), signal_mod.SIGTERM)):
            rec.extra["manually_stopped"] = True  # moby: a kill stops the restart policy
            self.records.save(rec)
        if self.status(rec) == "paused" and signum == signal_mod.SIGKILL:
            await asyncio.to_thread(_quiet, self.engine.runtime.resume, rec.id)
        try:
            await asyncio.to_thread(self.engine.runtime.kill, rec.id, signum)
        except (Conflict, NotFound):
            raise Conflict(f"Container {rec.id} is not running") from None
        self.emit(rec, "kill", signal=signum)
        if signum == signal_mod.SIGKILL:
            try:
                await asyncio.wait_for(asyncio.shield(lv.exited.wait()), 10)
                await self._settle(lv)
            except asyncio.TimeoutError:
                pass

    async def restart(self, ref: str, t: int | None = None, sig: str | None = None) -> None:
        rec = self.get(ref)
        lv = self.live(rec.id)
        async with lv.lock:
            await self._settle(lv)
            if lv.restart_task is not None:
                lv.restart_task.cancel()
                lv.restart_task = None
            if self.is_running(rec):
                rec.extra["manually_stopped"] = True  # no policy restart racing us
                await self._stop_locked(rec, lv, t, sig)
            rec.extra["manually_stopped"] = False
            await self._start_locked(rec, lv)
            self.emit(rec, "restart")

    async def pause(self, ref: str) -> None:
        rec = self.get(ref)
        async with self.lock(rec.id):
            st = self.status(rec)
            if st == "paused":
                raise Conflict(f"Container {rec.id} is already paused")
            if st != "running":
                raise Conflict(f"Container {rec.id} is not running")
            await asyncio.to_thread(self.engine.runtime.pause, rec.id)
            rec.state.update(Status="paused", Paused=True)
            self.records.save(rec)
            self.emit(rec, "pause")

    async def unpause(self, ref: str) -> None:
        rec = self.get(ref)
        async with self.lock(rec.id):
            if self.status(rec) != "paused":
                raise Conflict(f"Container {rec.id} is not paused")
            await asyncio.to_thread(self.engine.runtime.resume, rec.id)
            rec.state.update(Status="running", Paused=False)
            self.records.save(rec)
            self.emit(rec, "unpause")

    async def rename(self, ref: str, new_name: str) -> None:
        rec = self.get(ref)
        if not new_name:
            raise BadRequest("Neither old nor new names may be empty")
        async with self.lock(rec.id):
            old = rec.name
            if new_name.lstrip("/") == old:
                raise Conflict(f"Renaming a container with the same name as its current name")
            if not NAME_RE.match(new_name):
                raise BadRequest(f"Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
            self.records.rename(rec, new_name)
            self.emit(rec, "rename", oldName="/" + old)

    # -- wait ------------------------------------------------------------------------------

    async def wait(self, ref: str, condition: str = "not-running") -> dict:
        """{"StatusCode", "Error"} once the condition holds (Docker's three conditions)."""
        condition = condition or "not-running"
        if condition not in ("not-running", "next-exit", "removed"):
            raise BadRequest(f"invalid condition: {condition!r}")
        rec = self.get(ref)
        lv = self.live(rec.id)
        loop = asyncio.get_running_loop()
        if condition == "removed":
            fut = loop.create_future()
            lv.removed.append(fut)
            code = await fut
        elif condition == "next-exit" or self.is_running(rec) or self.status(rec) == "restarting":
            fut = loop.create_future()
            lv.next_exit.append(fut)
            code = await fut
        else:
            code = int(rec.state.get("ExitCode") or 0)
        err = rec.state.get("Error") or ""
        return {"StatusCode": code, "Error": {"Message": err} if err else None}

    # -- remove ----------------------------------------------------------------------------

    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        rec = self.get(ref)
        lv = self.live(rec.id)
        async with lv.lock:
            await self._settle(lv)
            if self.is_running(rec) and not force:
                what = "paused" if self.status(rec) == "paused" else "running"
                raise Conflict(f"You cannot remove a {what} container {rec.id}. Stop the container "
                               f"before attempting removal or force remove")
            if self.status(rec) == "removing":
                raise Conflict(f"removal of container {rec.id} is already in progress")
            if lv.restart_task is not None:
                lv.restart_task.cancel()
                lv.restart_task = None
            d = self.cdir(rec.id)
            self.records.sync_later(_write_intent(d, "remove-v" if volumes else "remove"))
            rec.state["Status"] = "removing"
            self.records.save(rec)
            if self.is_running(rec) or rec.state.get("Running"):
                rec.extra["manually_stopped"] = True
                await asyncio.to_thread(_quiet, self.engine.runtime.kill, rec.id, signal_mod.SIGKILL, True)
                try:
                    await asyncio.wait_for(lv.exited.wait(), 15)
                except asyncio.TimeoutError:
                    pass
                await self._settle(lv)
                rec.state["Status"] = "removing"
            self._stop_health(lv)
            await asyncio.to_thread(self._finish_remove, rec, volumes)
            self.emit(rec, "destroy")
            lv.gen += 1
            code = int(rec.state.get("ExitCode") or 0)
            for fut in lv.removed + lv.next_exit:
                if not fut.done():
                    fut.set_result(code)
        self._live.pop(rec.id, None)

    def _finish_remove(self, rec: ContainerRecord, volumes: bool) -> None:
        self._teardown_runtime(rec.id)
        self._teardown_network(rec)
        try:
            from pystack.volumes import lifecycle
            lifecycle.release(rec.id, self.engine.volumes, remove_anonymous=volumes)
        except Exception as exc:  # noqa: BLE001
            log.warning("remove %s: volumes: %s", rec.id, exc)
        if volumes:
            self._remove_unused_anonymous(rec)
        self.records.remove(rec.id)

    def _remove_unused_anonymous(self, rec: ContainerRecord) -> None:
        """rm -v finished after a crash: the container's anonymous volumes that nobody uses
        any more (a kill between releasing a volume and removing it left them)."""
        vs = self.engine.volumes
        for m in rec.mounts:
            name = m.get("Name")
            if m.get("Type") != "volume" or not name:
                continue
            try:
                v = vs.get(name)
                if v.anonymous and not v.users:
                    vs.remove(name)
            except Exception:  # noqa: BLE001 - gone already, or used again
                continue

    # -- networks (used by the network routes) ----------------------------------------------

    async def connect_network(self, ref: str, network: str, endpoint_config: dict | None = None) -> None:
        rec = self.get(ref)
        lv = self.live(rec.id)
        async with lv.lock:
            mode = rec.host_config.get("NetworkMode") or "bridge"
            if mode in ("host", "none") or mode.startswith("container:"):
                raise BadRequest(f"container sharing network namespace with another container or host "
                                 f"cannot be connected to any other network")
            net = await asyncio.to_thread(self._network, network)
            wanted = rec.extra.setdefault("networks", {})
            if any(cfg.get("NetworkID") == net.id for cfg in wanted.values()):
                raise Conflict(f"endpoint with name {rec.name} already exists in network {net.name}")
            cfg = dict(endpoint_config or {})
            cfg["NetworkID"] = net.id
            if self.is_running(rec):
                from pystack.networking import docker_json
                spec = docker_json.endpoint_spec_from_api(cfg, [rec.name, rec.id[:12]],
                                                          rec.host_config.get("Dns") or [])
                ep = await asyncio.to_thread(self.engine.networks.connect, rec.id, net.id, spec)
                rec.network_settings.setdefault("Networks", {})[net.name] = docker_json.endpoint_json(ep, net)
                await asyncio.to_thread(self._refresh_hosts, rec)
                self.emit_network("connect", rec, net.id, net.name)
            else:
                rec.network_settings.setdefault("Networks", {})[net.name] = {
                    **_empty_endpoint(), "NetworkID": net.id, "Aliases": cfg.get("Aliases")}
            wanted[net.name] = cfg
            self.records.save(rec)

    async def disconnect_network(self, ref: str, network: str, force: bool = False) -> None:
        rec = self.get(ref)
        lv = self.live(rec.id)
        async with lv.lock:
            try:
                net = await asyncio.to_thread(self._network, network)
                net_id, net_name = net.id, net.name
            except NotFound:
                if not force:
                    raise
                net_id, net_name = network, network
            wanted = rec.extra.setdefault("networks", {})
            key = next((k for k, c in wanted.items() if c.get("NetworkID") == net_id or k == net_name), None)
            if key is None:
                raise BadRequest(f"container {rec.id} is not connected to network {network}")
            if self.is_running(rec):
                try:
                    await asyncio.to_thread(self.engine.networks.disconnect, rec.id, net_id)
                except NotFound:
                    if not force:
                        raise
                self.emit_network("disconnect", rec, net_id, net_name)
            wanted.pop(key, None)
            rec.network_settings.get("Networks", {}).pop(key, None)
            self.records.save(rec)

    def _refresh_hosts(self, rec: ContainerRecord) -> None:
        mode = rec.host_config.get("NetworkMode") or "bridge"
        if mode == "host" or mode.startswith("container:"):
            return
        d = self.cdir(rec.id)
        hostname = rec.config.get("Hostname") or rec.id[:12]
        try:
            (d / "hosts").write_text(self.engine.networks.hosts_file(
                rec.id, hostname, rec.config.get("Domainname") or "", rec.host_config.get("ExtraHosts") or None))
        except OSError:
            pass

    # -- health ----------------------------------------------------------------------------

    def _start_health(self, rec: ContainerRecord, lv: Live) -> None:
        from pystack.engine import health
        lv.health = health.start_monitor(self, rec)

    def _stop_health(self, lv: Live) -> None:
        if lv.health is not None:
            lv.health.stop()
            lv.health = None

    # -- JSON views ------------------------------------------------------------------------

    def state_json(self, rec: ContainerRecord) -> dict:
        s = rec.state
        status = self.status(rec)
        out = {
            "Status": status, "Running": status in ("running", "paused"), "Paused": status == "paused",
            "Restarting": status == "restarting", "OOMKilled": bool(s.get("OOMKilled")),
            "Dead": status == "dead", "Pid": int(s.get("Pid") or 0) if status in ("running", "paused") else 0,
            "ExitCode": int(s.get("ExitCode") or 0), "Error": s.get("Error") or "",
            "StartedAt": s.get("StartedAt") or ZERO_TIME, "FinishedAt": s.get("FinishedAt") or ZERO_TIME,
        }
        if s.get("Health"):
            h = s["Health"]
            out["Health"] = {"Status": h.get("Status", "starting"), "FailingStreak": int(h.get("FailingStreak", 0)),
                             "Log": list(h.get("Log") or [])}
        return out

    def inspect(self, rec: ContainerRecord, size: bool = False) -> dict:
        d = self.cdir(rec.id)
        cfg = dict(rec.config)
        for key, default in (("Hostname", rec.id[:12]), ("Domainname", ""), ("User", ""),
                             ("AttachStdin", False), ("AttachStdout", False), ("AttachStderr", False),
                             ("Tty", False), ("OpenStdin", False), ("StdinOnce", False), ("Env", []),
                             ("Cmd", None), ("Image", rec.image), ("Volumes", None), ("WorkingDir", ""),
                             ("Entrypoint", None), ("OnBuild", None), ("Labels", {})):
            if cfg.get(key) is None and default is not None:
                cfg[key] = default
            cfg.setdefault(key, default)
        entry = cfg.get("Entrypoint") or []
        cmd = cfg.get("Cmd") or []
        argv = list(entry) + list(cmd)
        ns = rec.network_settings or {}
        networks = ns.get("Networks") or {}
        first = next(iter(networks.values()), {}) if networks else {}
        lower = rec.extra.get("lowerdirs") or []
        out = {
            "Id": rec.id, "Created": rec.created, "Path": argv[0] if argv else "", "Args": argv[1:],
            "State": self.state_json(rec), "Image": rec.image_id,
            "ResolvConfPath": str(d / "resolv.conf"), "HostnamePath": str(d / "hostname"),
            "HostsPath": str(d / "hosts"), "LogPath": rec.extra.get("log_path", ""),
            "Name": "/" + rec.name, "RestartCount": rec.restart_count, "Driver": "overlay",
            "Platform": "linux", "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "",
            "ExecIDs": list(rec.extra.get("exec_ids") or []) or None,
            "HostConfig": {**HOST_CONFIG_DEFAULTS, **_path_defaults(rec.host_config), **rec.host_config},
            "GraphDriver": {"Name": "overlay", "Data": {
                "LowerDir": ":".join(lower), "UpperDir": rec.extra.get("upper", ""),
                "WorkDir": rec.extra.get("work", ""), "MergedDir": ""}},
            "Mounts": list(rec.mounts),
            "Config": cfg,
            "NetworkSettings": {
                "Bridge": "", "SandboxID": ns.get("SandboxKey") and rec.id or "", "HairpinMode": False,
                "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
                "Ports": ns.get("Ports") if self.is_running(rec) else {},
                "SandboxKey": ns.get("SandboxKey", ""), "SecondaryIPAddresses": None,
                "SecondaryIPv6Addresses": None, "EndpointID": first.get("EndpointID", ""),
                "Gateway": first.get("Gateway", ""), "GlobalIPv6Address": first.get("GlobalIPv6Address", ""),
                "GlobalIPv6PrefixLen": first.get("GlobalIPv6PrefixLen", 0), "IPAddress": first.get("IPAddress", ""),
                "IPPrefixLen": first.get("IPPrefixLen", 0), "IPv6Gateway": first.get("IPv6Gateway", ""),
                "MacAddress": first.get("MacAddress", ""), "Networks": networks,
            },
        }
        if size:
            out["SizeRw"] = _du(rec.extra.get("upper", ""))
            out["SizeRootFs"] = out["SizeRw"] + sum(_du(p) for p in lower)
        return out

    def list_json(self, rec: ContainerRecord) -> dict:
        entry = rec.config.get("Entrypoint") or []
        cmd = rec.config.get("Cmd") or []
        ns = rec.network_settings or {}
        ports = []
        if self.is_running(rec):
            for key, binds in (ns.get("Ports") or {}).items():
                port, _, proto = key.partition("/")
                if not binds:
                    ports.append({"PrivatePort": int(port), "Type": proto or "tcp"})
                for b in binds or []:
                    ports.append({"IP": b.get("HostIp") or "0.0.0.0", "PrivatePort": int(port),
                                  "PublicPort": int(b["HostPort"]), "Type": proto or "tcp"})
        created = parse_rfc3339(rec.created) or 0
        return {
            "Id": rec.id, "Names": ["/" + rec.name], "Image": rec.image, "ImageID": rec.image_id,
            "Command": " ".join(list(entry) + list(cmd)), "Created": int(created), "Ports": ports,
            "Labels": rec.labels, "State": self.status(rec), "Status": self.status_text(rec),
            "HostConfig": {"NetworkMode": rec.host_config.get("NetworkMode") or "bridge"},
            "NetworkSettings": {"Networks": ns.get("Networks") or {}},
            "Mounts": list(rec.mounts),
        }

    def status_text(self, rec: ContainerRecord) -> str:
        status = self.status(rec)
        now = time.time()
        if status in ("running", "paused"):
            started = parse_rfc3339(rec.state.get("StartedAt", "")) or now
            text = "Up " + human_duration(now - started)
            health = (rec.state.get("Health") or {}).get("Status")
            if health == "starting":
                text += " (health: starting)"
            elif health:
                text += f" ({health})"
            if status == "paused":
                text += " (Paused)"
            return text
        if status == "restarting":
            fin = parse_rfc3339(rec.state.get("FinishedAt", "")) or now
            return f"Restarting ({int(rec.state.get('ExitCode') or 0)}) {human_duration(now - fin)} ago"
        if status == "removing":
            return "Removal In Progress"
        if status == "dead":
            return "Dead"
        if status == "exited":
            fin = parse_rfc3339(rec.state.get("FinishedAt", "")) or now
            return f"Exited ({int(rec.state.get('ExitCode') or 0)}) {human_duration(now - fin)} ago"
        return "Created"

    def list(self, all_: bool = False, limit: int = -1, filters: dict[str, list[str]] | None = None) -> list[dict]:
        filters = filters or {}
        known = {"label", "name", "id", "status", "ancestor", "exited", "network", "volume", "health",
                 "before", "since", "is-task", "publish", "expose"}
        for key in filters:
            if key not in known:
                raise BadRequest(f"invalid filter '{key}'")
        for st in filters.get("status", []):
            if st not in ("created", "restarting", "running", "removing", "paused", "exited", "dead"):
                raise BadRequest(f"invalid filter 'status={st}'")
        recs = self.all()
        if limit is not None and limit > 0:
            all_ = True
        out = []
        for rec in recs:
            if not all_ and not filters.get("status") and self.status(rec) not in ("running", "paused", "restarting"):
                continue
            if not self._matches(rec, filters):
                continue
            out.append(rec)
        if limit is not None and limit > 0:
            out = out[:limit]
        return [self.list_json(r) for r in out]

    def _matches(self, rec: ContainerRecord, f: dict[str, list[str]]) -> bool:
        labels = rec.labels
        for want in f.get("label", []):
            k, eq, v = want.partition("=")
            if k not in labels or (eq and labels[k] != v):
                return False
        if f.get("name") and not any(re.search(n.lstrip("/"), rec.name) or re.search(n, "/" + rec.name)
                                     for n in f["name"]):
            return False
        if f.get("id") and not any(rec.id.startswith(i) for i in f["id"]):
            return False
        if f.get("status") and self.status(rec) not in f["status"]:
            return False
        if f.get("exited"):
            if self.status(rec) != "exited" or str(rec.state.get("ExitCode") or 0) not in f["exited"]:
                return False
        if f.get("health"):
            h = (rec.state.get("Health") or {}).get("Status") or "none"
            if h not in f["health"]:
                return False
        if f.get("ancestor"):
            ok = False
            for a in f["ancestor"]:
                if a in (rec.image, rec.image_id) or rec.image_id.removeprefix("sha256:").startswith(a.removeprefix("sha256:")):
                    ok = True
                elif ":" not in a and rec.image in (a, a + ":latest"):
                    ok = True
                else:
                    try:
                        ok = self.engine.images.resolve(a).id == rec.image_id
                    except Exception:  # noqa: BLE001
                        ok = False
                if ok:
                    break
            if not ok:
                return False
        if f.get("network"):
            nets = (rec.network_settings or {}).get("Networks") or {}
            wanted = rec.extra.get("networks") or {}
            ids = {c.get("NetworkID") for c in wanted.values()} | {s.get("NetworkID") for s in nets.values()}
            names = set(nets) | set(wanted)
            if not any(n in names or n in ids or any(i and i.startswith(n) for i in ids) for n in f["network"]):
                return False
        for key, newer in (("since", True), ("before", False)):
            for ref in f.get(key, []):
                try:
                    other = self.get(ref)
                except NotFound:
                    raise BadRequest(f"No such container: {ref}") from None
                if (rec.created <= other.created) if newer else (rec.created >= other.created):
                    return False
        if f.get("volume"):
            if not any(any(m.get("Name") == v or m.get("Destination") == v or m.get("Source") == v
                           for m in rec.mounts) for v in f["volume"]):
                return False
        return True

    def top(self, rec: ContainerRecord, ps_args: str | None) -> dict:
        import subprocess
        if not self.is_running(rec):
            raise Conflict(f"Container {rec.id} is not running")
        pids = set(self.engine.runtime.ps(rec.id))
        args = (ps_args or "-ef").split()
        out = subprocess.run(["ps", *args], capture_output=True, text=True)
        if out.returncode != 0:
            raise BadRequest(f"Error running ps: {out.stderr.strip()}")
        lines = out.stdout.splitlines()
        if not lines:
            return {"Titles": [], "Processes": []}
        titles = lines[0].split()
        try:
            pid_col = titles.index("PID")
        except ValueError:
            raise BadRequest(f"Couldn't find PID field in ps output") from None
        procs = []
        for line in lines[1:]:
            fields = line.split(None, len(titles) - 1)
            if len(fields) > pid_col and fields[pid_col].isdigit() and int(fields[pid_col]) in pids:
                procs.append(fields)
        return {"Titles": titles, "Processes": procs}

    # -- recovery and shutdown --------------------------------------------------------------

    async def recover(self) -> None:
        """At engine start: finish or roll back interrupted work, adopt running containers,
        restart policy containers, remove leftovers of containers that no longer exist."""
        root = self.records.root
        known = {r.id for r in self.records}
        for d in sorted(root.iterdir()) if root.is_dir() else []:
            if not ID_RE.match(d.name):
                continue
            intent = _read_intent(d)
            if intent == "create":
                since = _intent_since(d)
                log.info("recovery: rolling back the interrupted create of %s", d.name)
                await asyncio.to_thread(self._rollback_create, d.name)
                if since is not None:
                    await asyncio.to_thread(self._drop_orphan_anonymous_volumes, since)
            elif intent and intent.startswith("remove"):
                log.info("recovery: finishing the interrupted removal of %s", d.name)
                await asyncio.to_thread(self._remove_by_id, d.name, intent == "remove-v")
            elif d.name not in known:  # no record, or one a crash cut before its first rename
                log.info("recovery: removing %s (no readable record)", d.name)
                await asyncio.to_thread(self._remove_by_id, d.name, True)
        restart: list[ContainerRecord] = []
        for rec in list(self.records):
            st = await asyncio.to_thread(self._runtime_state, rec.id)
            rstatus = (st or {}).get("status")
            was = self.status(rec)
            lv = self.live(rec.id)
            if rstatus in ("running", "paused"):
                rec.state.update(Status=rstatus, Running=True, Paused=rstatus == "paused", Restarting=False,
                                 Pid=st.get("pid") or 0, StartedAt=st.get("startedAt") or rec.state.get("StartedAt"))
                if was not in ("running", "paused") or not (rec.network_settings or {}).get("Networks"):
                    await asyncio.to_thread(self._refresh_network_settings, rec)
                lv.gen += 1
                lv.exited.clear()
                lv.started_mono = time.monotonic()
                self._start_health(rec, lv)
                self.records.save(rec)
                self._watch(rec.id, lv.gen)
                continue
            if st is not None or was in ("running", "paused", "restarting"):
                # it died (or never got past start) while no engine watched it
                log.info("recovery: %s (%s) is no longer running", rec.id, was)
                code = (st or {}).get("exitCode")
                if rstatus == "created" or code is None:
                    code = 255 if was in ("running", "paused") else \
                        int(rec.state.get("ExitCode") or 0) if was == "restarting" else 128
                rec.state.update(Status="exited", Running=False, Paused=False, Restarting=False, Pid=0,
                                 ExitCode=int(code), FinishedAt=(st or {}).get("finishedAt") or now_rfc3339())
                if rstatus == "created" and not rec.state.get("StartedAt"):
                    rec.state["Status"] = "created"
                await asyncio.to_thread(self._cleanup_after_exit, rec)
                rec.extra.pop("_disconnected", None)
                self.records.save(rec)
                if was in ("running", "paused"):
                    self.emit(rec, "die", exitCode=int(code))
            elif (rec.network_settings or {}).get("SandboxKey"):  # cut between exit and cleanup
                await asyncio.to_thread(self._cleanup_after_exit, rec)
                rec.extra.pop("_disconnected", None)
                self.records.save(rec)
            name, max_retry = restart_policy(rec.host_config)
            if self.status(rec) != "exited":
                continue
            if name == "always" or (name == "unless-stopped" and not rec.extra.get("manually_stopped")) or (
                    name == "on-failure" and not rec.extra.get("manually_stopped") and rec.state.get("ExitCode")
                    and (not max_retry or rec.restart_count < max_retry)):
                restart.append(rec)
        await asyncio.to_thread(self._sweep_leftovers)
        for rec in restart:
            lv = self.live(rec.id)
            async with lv.lock:
                try:
                    rec.extra["manually_stopped"] = False
                    await self._start_locked(rec, lv)
                except Exception as exc:  # noqa: BLE001
                    log.warning("restart of %s at engine start failed: %s", rec.id, exc)

    def _drop_orphan_anonymous_volumes(self, since: float) -> None:
        """Workaround: the volume store makes a new volume visible before it records its
        user, so a kill in between leaves an anonymous volume no rollback can attribute.
        Remove the unused anonymous volumes created since the interrupted create began."""
        from datetime import datetime
        vs = self.engine.volumes
        try:
            vols = vs.list()
        except Exception:  # noqa: BLE001
            return
        for v in vols:
            if not v.anonymous or v.users:
                continue
            try:
                created = datetime.fromisoformat(str(v.created_at).replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
            if created >= int(since):
                try:
                    vs.remove(v.name)
                except Exception as exc:  # noqa: BLE001
                    log.warning("orphan volume %s: %s", v.name, exc)

    def _remove_by_id(self, cid: str, volumes: bool) -> None:
        """Finish a removal a crash interrupted (the record may be gone or unreadable)."""
        try:
            rec = self.records.get(cid)
        except (NotFound, UserError):
            rec = None
        self._teardown_runtime(cid)
        if rec is not None:
            self._teardown_network(rec)
        else:
            try:
                self.engine.networks.remove_sandbox(cid)
            except Exception as exc:  # noqa: BLE001
                log.warning("sandbox of %s: %s", cid, exc)
        try:
            from pystack.volumes import lifecycle
            lifecycle.release(cid, self.engine.volumes, remove_anonymous=volumes)
        except Exception as exc:  # noqa: BLE001
            log.warning("remove %s: volumes: %s", cid, exc)
        if rec is not None and volumes:
            self._remove_unused_anonymous(rec)
        self.records.remove(cid)
        if rec is not None:
            self.emit(rec, "destroy")

    def _runtime_state(self, cid: str) -> dict | None:
        try:
            return self.engine.runtime.state(cid)
        except (NotFound, ValueError, OSError):
            return None
        except UserError:
            return None

    def _refresh_network_settings(self, rec: ContainerRecord) -> None:
        from pystack.networking import docker_json
        nets = {}
        for ep in self.engine.networks.endpoints(rec.id):
            try:
                net = self.engine.networks.get_network(ep.network_id)
            except NotFound:
                continue
            nets[net.name] = docker_json.endpoint_json(ep, net)
        rec.network_settings = {"Networks": nets, "SandboxKey": str(self.engine.networks.sandbox_path(rec.id)),
                                "Ports": docker_json.ports_json(self.engine.networks.port_bindings(rec.id))}

    def _sweep_leftovers(self) -> None:
        """Runtime states, sandboxes, cgroups and volume uses of containers that no longer
        exist (or no longer run). Only this engine's own objects: ids from its runtime
        state dir and its records (several engines may share a cgroup parent)."""
        known = {r.id for r in self.records}
        running_ids = {r.id for r in self.records if self.is_running(r)}
        rt = self.engine.runtime
        state_root = rt.states.root
        ours = set(known)
        if state_root.is_dir():
            for d in state_root.iterdir():
                ours.add(d.name)
                if d.name not in running_ids:
                    self._teardown_runtime(d.name)
        try:
            sandboxes = set(self.engine.networks.state.read().get("sandboxes", {}))
        except Exception:  # noqa: BLE001
            sandboxes = set()
        netns_dir = self.engine.networks.sandbox_path("x").parent
        if netns_dir.is_dir():
            sandboxes |= {p.name for p in netns_dir.iterdir()}
        for cid in sandboxes - running_ids:
            try:
                self.engine.networks.remove_sandbox(cid)
            except Exception as exc:  # noqa: BLE001
                log.warning("leftover sandbox %s: %s", cid, exc)
        try:
            from pystack.runtime import cgroups
            parent = cgroups.default_parent()
            for name in (cgroups.list_cgroups(parent) & ours) - running_ids:
                cg = cgroups.Cgroup.find(parent, name)
                if cg is not None:
                    cg.kill_all(signal_mod.SIGKILL)
                    cg.destroy()
        except Exception as exc:  # noqa: BLE001
            log.warning("leftover cgroups: %s", exc)
        try:
            self.engine.volumes.sync_users(known)
        except Exception as exc:  # noqa: BLE001
            log.warning("volume users: %s", exc)

    async def close(self) -> None:
        """Engine stopping: containers keep running under their shims (a new engine adopts
        them); only the manager's tasks stop."""
        self._closing = True
        for lv in self._live.values():
            self._stop_health(lv)
            if lv.restart_task is not None:
                lv.restart_task.cancel()
            for fut in lv.next_exit + lv.removed:
                if not fut.done():
                    fut.cancel()


# -- helpers -------------------------------------------------------------------------------

def _specgen():
    try:
        from pystack.engine import specgen
    except ImportError:
        return None
    if not all(hasattr(specgen, n) for n in ("check_create_body", "merge_image_config", "build_spec")):
        return None
    return specgen


@functools.lru_cache(maxsize=4)
def _takes_rootfs(fn) -> bool:
    return "rootfs" in inspect_mod.signature(fn).parameters


def _quiet(fn, *args) -> None:
    try:
        fn(*args)
    except (Conflict, NotFound):
        pass


def _empty_endpoint() -> dict:
    return {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "NetworkID": "",
            "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DriverOpts": None, "DNSNames": None}


def _ensure_workdir(workdir: str, upper: str, lowers: list[str]) -> None:
    """Docker creates a missing WorkingDir (root-owned, 0755). Made in the overlay's upper
    dir, only when no layer has a symlink or non-directory on the way (those are left to
    the runtime, which resolves them inside the container)."""
    parts = [p for p in workdir.split("/") if p and p != "."]
    if not workdir.startswith("/") or ".." in parts or not parts:
        return
    layers = [upper, *lowers]
    rel = ""
    for part in parts:
        rel = f"{rel}/{part}"
        found_dir = False
        for layer in layers:
            p = layer + rel
            if os.path.islink(p) or (os.path.lexists(p) and not os.path.isdir(p)):
                return
            if os.path.isdir(p):
                found_dir = True
                break
        if not found_dir:
            break
    else:
        return  # it exists
    os.makedirs(upper + "/" + "/".join(parts), mode=0o755, exist_ok=True)


INTENT_XATTR = "user.pystack.intent"


def _write_intent(d: Path, what: str) -> Path:
    """Mark multi-step work on a container folder; returns the path to have fsynced
    (the caller does it off the event loop).

    The mark is an extended attribute of the folder ("<what> <time>"): set in one step
    (a killed engine leaves it or not), and no new inode, which ext4 makes slowly when
    files come and go fast. Where the file system has no user xattrs (tmpfs before
    Linux 6.6), an ``intent`` file, written and renamed, as before."""
    try:
        os.setxattr(d, INTENT_XATTR, f"{what} {time.time():.6f}".encode())
        return d
    except OSError as exc:
        if exc.errno not in (errno_mod.ENOTSUP, errno_mod.EOPNOTSUPP, errno_mod.EPERM):
            raise
    tmp = d / "intent.tmp"
    with open(tmp, "w") as fh:
        fh.write(what)
    os.replace(tmp, d / "intent")
    return d / "intent"


def _clear_intent(d: Path) -> None:
    try:
        os.removexattr(d, INTENT_XATTR)
        return
    except OSError as exc:
        if exc.errno == errno_mod.ENOENT:
            return
        # ENODATA: no xattr, so perhaps an intent file (no xattrs here, or an older engine)
    try:
        (d / "intent").unlink()
    except FileNotFoundError:
        pass


def _intent_xattr(d: Path) -> str | None:
    try:
        return os.getxattr(d, INTENT_XATTR).decode(errors="replace").strip() or None
    except OSError:
        return None


def _read_intent(d: Path) -> str | None:
    mark = _intent_xattr(d)
    if mark:
        return mark.split()[0]
    try:
        return (d / "intent").read_text().strip() or None
    except (FileNotFoundError, OSError):
        return None


def _intent_since(d: Path) -> float | None:
    """When the marked work began (the mark's time; an intent file's mtime)."""
    mark = _intent_xattr(d)
    if mark:
        parts = mark.split()
        try:
            return float(parts[1])
        except (IndexError, ValueError):
            pass
    try:
        return (d / "intent").stat().st_mtime
    except OSError:
        return None


_SPLICE = f"@@pystack-seccomp-{os.urandom(8).hex()}@@"  # never in a real spec
_SECTION_TEXT: dict[int, tuple[dict, str]] = {}


def _spec_json(spec: dict) -> bytes:
    """``json.dumps(spec)``; a seccomp section the spec generator shares between specs
    (Docker's default profile, 2/3 of the text) is encoded once, not at every start."""
    linux = spec.get("linux")
    section = linux.get("seccomp") if isinstance(linux, dict) else None
    specgen = _specgen()
    shared = getattr(specgen, "is_shared_seccomp", None)
    if section is None or shared is None or not shared(section):
        return json.dumps(spec).encode()
    held = _SECTION_TEXT.get(id(section))
    if held is None or held[0] is not section:
        held = (section, json.dumps(section))
        _SECTION_TEXT[id(section)] = held
    linux["seccomp"] = _SPLICE
    try:
        text = json.dumps(spec)
    finally:
        linux["seccomp"] = section
    return text.replace(f'"{_SPLICE}"', held[1], 1).encode()


def _du(path: str) -> int:
    total = 0
    if not path:
        return 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def _free_subnet() -> str:
    """The first of Docker's usual default-bridge subnets that overlaps no host route."""
    import ipaddress
    import subprocess
    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    used = []
    for line in routes.splitlines():
        first = line.split()[0] if line.split() else ""
        if first in ("default", "broadcast", "local", "unreachable") and len(line.split()) > 1:
            first = line.split()[1]
        try:
            net = ipaddress.ip_network(first, strict=False)
        except ValueError:
            continue
        if net.prefixlen > 0:
            used.append(net)
    for cand in BRIDGE_CANDIDATES:
        c = ipaddress.ip_network(cand)
        if not any(c.overlaps(u) for u in used):
            return cand
    raise UserError("no free subnet for the default bridge: set PYSTACK_BRIDGE_SUBNET")


_HC_SUPPORTED_LOG = ("json-file", "local", "")

# what dockerd's inspect shows for HostConfig fields a create body did not set
HOST_CONFIG_DEFAULTS: dict[str, Any] = {
    "BlkioDeviceReadBps": None, "BlkioDeviceReadIOps": None, "BlkioDeviceWriteBps": None,
    "BlkioDeviceWriteIOps": None, "BlkioWeight": 0, "BlkioWeightDevice": None, "Cgroup": "",
    "CgroupParent": "", "CgroupnsMode": "host", "ConsoleSize": [0, 0], "ContainerIDFile": "", "CpuCount": 0,
    "CpuPercent": 0, "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0,
    "CpuShares": 0, "CpusetCpus": "", "CpusetMems": "", "DeviceCgroupRules": None, "DeviceRequests": None,
    "Devices": None, "GroupAdd": None, "IOMaximumBandwidth": 0, "IOMaximumIOps": 0, "IpcMode": "private",
    "Isolation": "", "KernelMemory": 0, "KernelMemoryTCP": 0, "Links": None, "Memory": 0,
    "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": None, "NanoCpus": 0, "OomKillDisable": False,
    "OomScoreAdj": 0, "PidMode": "", "PidsLimit": None, "Runtime": "pystack", "SecurityOpt": None,
    "ShmSize": 67108864, "UTSMode": "", "Ulimits": None, "UsernsMode": "", "VolumeDriver": "",
    "VolumesFrom": None,
}


def _path_defaults(hc: dict) -> dict:
    """MaskedPaths/ReadonlyPaths as dockerd shows them (none for privileged containers)."""
    if hc.get("Privileged"):
        return {"MaskedPaths": None, "ReadonlyPaths": None}
    try:
        from pystack.runtime.spec import MASKED_PATHS, READONLY_PATHS
        return {"MaskedPaths": list(MASKED_PATHS), "ReadonlyPaths": list(READONLY_PATHS)}
    except ImportError:
        return {}


_UNSUPPORTED_UNLESS = {
    # HostConfig field -> values that mean "not used" (anything else: 400 naming the field)
    "Devices": (None, []), "DeviceRequests": (None, []), "DeviceCgroupRules": (None, []),
    "UsernsMode": (None, "", "host"), "VolumeDriver": (None, "", "local"),
    "Runtime": (None, "", "runc", "pystack"), "Isolation": (None, "", "default"),
    "BlkioWeight": (None, 0), "BlkioWeightDevice": (None, []), "BlkioDeviceReadBps": (None, []),
    "BlkioDeviceWriteBps": (None, []), "BlkioDeviceReadIOps": (None, []), "BlkioDeviceWriteIOps": (None, []),
    "CpuRealtimePeriod": (None, 0), "CpuRealtimeRuntime": (None, 0), "KernelMemory": (None, 0),
    "KernelMemoryTCP": (None, 0), "OomKillDisable": (None, False), "CgroupParent": (None, ""),
    "CpuCount": (None, 0), "CpuPercent": (None, 0), "IOMaximumIOps": (None, 0), "IOMaximumBandwidth": (None, 0),
}


def _check_unsupported(hc: dict) -> None:
    """A clear 400 naming a HostConfig field pystack would otherwise ignore (used until
    specgen.check_create_body exists)."""
    for key, unused in _UNSUPPORTED_UNLESS.items():
        if key in hc and hc[key] not in unused:
            raise BadRequest(f"HostConfig.{key}: not supported by pystack (got {hc[key]!r})")
    for key, allowed in (("PidMode", ("", "host")), ("IpcMode", ("", "private", "shareable", "host")),
                         ("UTSMode", ("", "host")), ("CgroupnsMode", ("", "host", "private"))):
        if (hc.get(key) or "") not in allowed:
            raise BadRequest(f"HostConfig.{key}: {hc[key]!r} is not supported by pystack "
                             f"(supported: {', '.join(repr(a) for a in allowed)})")


def _check_host_config(hc: dict) -> None:
    log_type = (hc.get("LogConfig") or {}).get("Type") or ""
    if log_type not in _HC_SUPPORTED_LOG:
        raise BadRequest(f"HostConfig.LogConfig.Type: log driver {log_type!r} is not supported (json-file only)")
    name, count = restart_policy(hc)
    if name not in ("no", "always", "on-failure", "unless-stopped"):
        raise BadRequest(f"HostConfig.RestartPolicy.Name: invalid restart policy {name!r}")
    if count and name != "on-failure":
        raise BadRequest(f"HostConfig.RestartPolicy.MaximumRetryCount: maximum retry count cannot be used "
                         f"with restart policy '{name}'")
    if count < 0:
        raise BadRequest("HostConfig.RestartPolicy.MaximumRetryCount: must not be negative")
    if hc.get("AutoRemove") and name != "no":
        raise BadRequest("HostConfig.AutoRemove: can't create 'AutoRemove' container with restart policy")


def _host_config_defaults(hc: dict) -> dict:
    hc = dict(hc)
    mode = hc.get("NetworkMode") or "default"
    hc["NetworkMode"] = "bridge" if mode == "default" else mode
    pol = hc.get("RestartPolicy") or {}
    hc["RestartPolicy"] = {"Name": pol.get("Name") or "", "MaximumRetryCount": int(pol.get("MaximumRetryCount") or 0)}
    lc = hc.get("LogConfig") or {}
    hc["LogConfig"] = {"Type": lc.get("Type") or "json-file", "Config": dict(lc.get("Config") or {})}
    for key, default in (("Binds", None), ("PortBindings", {}), ("AutoRemove", False), ("Privileged", False),
                         ("PublishAllPorts", False), ("ReadonlyRootfs", False), ("Dns", []), ("DnsOptions", []),
                         ("DnsSearch", []), ("ExtraHosts", None), ("CapAdd", None), ("CapDrop", None)):
        hc.setdefault(key, default)
    return hc


def _merge_image_config(config: dict, image: dict) -> dict:
    """Docker's rules (used until specgen.merge_image_config exists)."""
    out = dict(config)
    env = {}
    for item in list(image.get("Env") or []) + list(config.get("Env") or []):
        k = item.split("=", 1)[0]
        env[k] = item
    out["Env"] = list(env.values())
    if config.get("Entrypoint"):
        out["Entrypoint"] = config["Entrypoint"]
        out["Cmd"] = config.get("Cmd") or None
    else:
        out["Entrypoint"] = image.get("Entrypoint")
        out["Cmd"] = config.get("Cmd") or image.get("Cmd")
    for key in ("WorkingDir", "User", "StopSignal"):
        out[key] = config.get(key) or image.get(key) or ("" if key != "StopSignal" else None)
    if out.get("StopSignal") is None:
        out.pop("StopSignal")
    out["Labels"] = {**(image.get("Labels") or {}), **(config.get("Labels") or {})}
    exposed = {**(image.get("ExposedPorts") or {}), **(config.get("ExposedPorts") or {})}
    if exposed:
        out["ExposedPorts"] = exposed
    vols = {**(image.get("Volumes") or {}), **(config.get("Volumes") or {})}
    out["Volumes"] = vols or None
    if not config.get("Healthcheck") and image.get("Healthcheck"):
        out["Healthcheck"] = image["Healthcheck"]
    return out


def _fallback_spec(rec: ContainerRecord, mounts: list, netns: str | None, files: dict, parent: str) -> dict:
    """A minimal OCI spec (used until specgen.build_spec exists)."""
    from pystack.runtime.spec import default_spec
    cfg = rec.config
    argv = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
    if not argv:
        raise BadRequest("No command specified")
    spec = default_spec(argv, terminal=bool(cfg.get("Tty")))
    proc = spec["process"]
    env = {e.split("=", 1)[0]: e for e in proc["env"]}
    for e in cfg.get("Env") or []:
        env[e.split("=", 1)[0]] = e
    if "HOSTNAME" not in env:
        env["HOSTNAME"] = "HOSTNAME=" + (cfg.get("Hostname") or rec.id[:12])
    proc["env"] = list(env.values())
    proc["cwd"] = cfg.get("WorkingDir") or "/"
    user = cfg.get("User") or ""
    hc = rec.host_config
    if user or hc.get("GroupAdd"):
        from pystack.runtime.userdb import resolve_user
        lowers = rec.extra.get("lowerdirs") or []
        etc = next((p for p in [rec.extra.get("upper", "")] + lowers if p and os.path.exists(os.path.join(p, "etc/passwd"))), None)
        u, _, g = user.partition(":")
        if etc is None and (u.isdigit() or not u) and (not g or g.isdigit()):
            proc["user"] = {"uid": int(u or 0), "gid": int(g) if g else int(u or 0)}
        elif etc is None:
            raise BadRequest(f"unable to find user {u}: no /etc/passwd in the image")
        else:
            proc["user"] = resolve_user(etc, user, hc.get("GroupAdd") or ()).to_oci()
    if hc.get("Privileged"):
        from pystack.runtime.spec import make_privileged
        make_privileged(spec)
    elif hc.get("CapAdd") or hc.get("CapDrop"):
        from pystack.runtime.caps import tweak
        caps = tweak(proc["capabilities"]["bounding"], hc.get("CapAdd") or (), hc.get("CapDrop") or ())
        proc["capabilities"] = {"bounding": caps[:], "effective": caps[:], "permitted": caps[:]}
    if hc.get("ReadonlyRootfs"):
        spec["root"]["readonly"] = True
    if hc.get("Sysctls"):
        spec["linux"].setdefault("sysctl", {}).update(hc["Sysctls"])
    for ns in spec["linux"]["namespaces"]:
        if ns["type"] == "network":
            if netns:
                ns["path"] = netns
    if netns is None:
        spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "network"]
        spec["linux"]["sysctl"] = {k: v for k, v in (spec["linux"].get("sysctl") or {}).items()
                                   if not k.startswith("net.")}
    spec["linux"]["cgroupsPath"] = f"/{parent}/{rec.id}"
    res = spec["linux"]["resources"]
    if hc.get("Memory"):
        res["memory"] = {"limit": int(hc["Memory"])}
        if hc.get("MemorySwap"):
            res["memory"]["swap"] = int(hc["MemorySwap"])
    if hc.get("MemoryReservation"):
        res.setdefault("memory", {})["reservation"] = int(hc["MemoryReservation"])
    cpu: dict = {}
    if hc.get("NanoCpus"):
        cpu.update(period=100000, quota=int(hc["NanoCpus"]) * 100000 // 1_000_000_000)
    if hc.get("CpuQuota"):
        cpu.update(quota=int(hc["CpuQuota"]), period=int(hc.get("CpuPeriod") or 100000))
    if hc.get("CpuShares"):
        cpu["shares"] = int(hc["CpuShares"])
    if hc.get("CpusetCpus"):
        cpu["cpus"] = hc["CpusetCpus"]
    if cpu:
        res["cpu"] = cpu
    if hc.get("PidsLimit"):
        res["pids"] = {"limit": int(hc["PidsLimit"])}
    if hc.get("Ulimits"):
        proc["rlimits"] = [{"type": "RLIMIT_" + u["Name"].upper(), "hard": int(u["Hard"]), "soft": int(u["Soft"])}
                           for u in hc["Ulimits"]]
    if hc.get("OomScoreAdj"):
        proc["oomScoreAdj"] = int(hc["OomScoreAdj"])
    if hc.get("ShmSize"):
        for m in spec["mounts"]:
            if m["destination"] == "/dev/shm":
                m["options"] = [o for o in m.get("options", []) if not o.startswith("size=")] + \
                    [f"size={int(hc['ShmSize']) // 1024}k"]
    for opt in hc.get("SecurityOpt") or []:
        if opt in ("no-new-privileges", "no-new-privileges:true", "no-new-privileges=true"):
            proc["noNewPrivileges"] = True
        elif opt in ("seccomp=unconfined", "seccomp:unconfined"):
            spec["linux"].pop("seccomp", None)
    if hc.get("PidMode") == "host":
        spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "pid"]
    if hc.get("UTSMode") == "host":
        spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "uts"]
        spec.pop("hostname", None)
    if hc.get("IpcMode") == "host":
        spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "ipc"]
    spec["mounts"] = spec["mounts"] + list(mounts) + [
        {"destination": dst, "type": "bind", "source": src, "options": ["rbind", "rprivate"]}
        for dst, src in files.items()]
    spec["annotations"] = {"org.pystack.init": "true"} if rec.host_config.get("Init") else {}
    return spec
