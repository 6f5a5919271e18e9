"""Pydantic models of a project in canonical form (the shape ``docker compose config
--format json`` prints), for the code that acts on a project: reconciler, engine calls.

Attribute names are the Compose keys. Only what consumers read is typed; every other
key is kept as an extra (``model_extra``), so ``Project.to_config_dict()`` gives back
exactly the dict it was built from. Helpers turn Compose's strings into numbers where
a consumer needs them (durations in seconds, byte sizes as ints, replicas).
"""
from __future__ import annotations

from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from .validate import parse_bytes, parse_duration

__all__ = ["Project", "Service", "Port", "ServiceVolume", "Dependency", "Healthcheck",
           "Network", "Volume", "Secret", "Config", "BuildConfig", "ServiceNetwork",
           "FileReference", "Deploy", "Logging", "Ulimit", "parse_duration", "parse_bytes"]


class _Model(BaseModel):
    """Base: unknown keys kept, values assignable, no coercion surprises on round trip."""

    model_config = ConfigDict(extra="allow", validate_assignment=False,
                              populate_by_name=True, protected_namespaces=())

    def to_dict(self) -> dict[str, Any]:
        """The Compose dict this model stands for (only keys that were given)."""
        return self.model_dump(mode="json", exclude_unset=True, by_alias=True)


def _seconds(value: Any) -> Optional[float]:
    return None if value is None else parse_duration(value)


# --------------------------------------------------------------------- services

class Port(_Model):
    """One published or exposed port (``ports[]`` long form)."""

    target: int = 0  # Compose prints a long-syntax target 0 without the key
    published: Optional[str] = None
    host_ip: Optional[str] = None
    protocol: Optional[str] = None
    mode: Optional[str] = None
    app_protocol: Optional[str] = None
    name: Optional[str] = None

    def published_range(self) -> Optional[tuple[int, int]]:
        """``"8080"`` -> (8080, 8080), ``"8080-8081"`` -> (8080, 8081); None if unpublished
        (the engine then picks an ephemeral port)."""
        if not self.published:
            return None
        from pystack.errors import UserError

        lo, _, hi = str(self.published).partition("-")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError:
            first = last = -1
        if not 0 <= first <= last <= 65535:
            raise UserError(f'invalid published port "{self.published}" for container port '
                            f"{self.target}")
        return first, last


class ServiceVolume(_Model):
    """One mount of a service (``volumes[]`` long form): volume, bind, tmpfs, image..."""

    type: str
    source: Optional[str] = None
    target: str
    read_only: Optional[bool] = None
    consistency: Optional[str] = None
    bind: Optional[dict[str, Any]] = None
    volume: Optional[dict[str, Any]] = None
    tmpfs: Optional[dict[str, Any]] = None
    image: Optional[dict[str, Any]] = None

    def tmpfs_size_bytes(self) -> Optional[int]:
        size = (self.tmpfs or {}).get("size")
        return None if size is None else parse_bytes(size)


class Dependency(_Model):
    """One ``depends_on`` entry: when the dependent may start, and what follows a restart."""

    condition: str = "service_started"
    required: bool = True
    restart: Optional[bool] = None


class Healthcheck(_Model):
    """``healthcheck``: durations stay strings as Compose prints them; *_seconds helpers."""

    test: Optional[list[str]] = None
    interval: Optional[str] = None
    timeout: Optional[str] = None
    retries: Optional[int] = None
    start_period: Optional[str] = None
    start_interval: Optional[str] = None
    disable: Optional[bool] = None

    @property
    def interval_seconds(self) -> float:
        return _seconds(self.interval) if self.interval is not None else 30.0

    @property
    def timeout_seconds(self) -> float:
        return _seconds(self.timeout) if self.timeout is not None else 30.0

    @property
    def start_period_seconds(self) -> float:
        return _seconds(self.start_period) if self.start_period is not None else 0.0

    @property
    def start_interval_seconds(self) -> float:
        return _seconds(self.start_interval) if self.start_interval is not None else 5.0

    @property
    def effective_retries(self) -> int:
        return self.retries if self.retries is not None else 3

    @property
    def disabled(self) -> bool:
        """True for ``disable: true`` and for ``test: ["NONE"]``."""
        return bool(self.disable) or bool(self.test and self.test[0] == "NONE")


class BuildConfig(_Model):
    """``build`` (context resolved to an absolute path by the loader)."""

    context: Optional[str] = None
    dockerfile: Optional[str] = None
    dockerfile_inline: Optional[str] = None
    args: Optional[dict[str, Optional[str]]] = None
    target: Optional[str] = None
    tags: Optional[list[str]] = None
    platforms: Optional[list[str]] = None
    labels: Optional[dict[str, str]] = None


class ServiceNetwork(_Model):
    """A service's attachment to one network (``networks.<name>``)."""

    aliases: Optional[list[str]] = None
    ipv4_address: Optional[str] = None
    ipv6_address: Optional[str] = None
    mac_address: Optional[str] = None
    priority: Optional[int] = None
    gw_priority: Optional[int] = None
    interface_name: Optional[str] = None
    driver_opts: Optional[dict[str, Any]] = None
    link_local_ips: Optional[list[str]] = None


class FileReference(_Model):
    """A service's use of a secret or config (``secrets[]`` / ``configs[]``)."""

    source: str
    target: Optional[str] = None
    uid: Optional[str] = None
    gid: Optional[str] = None
    mode: Optional[Union[int, str]] = None


class Deploy(_Model):
    """``deploy``: the parts a single-host engine uses; the rest is kept as extras."""

    mode: Optional[str] = None
    replicas: Optional[int] = None
    resources: Optional[dict[str, Any]] = None
    restart_policy: Optional[dict[str, Any]] = None
    labels: Optional[dict[str, str]] = None


class Logging(_Model):
    driver: Optional[str] = None
    options: Optional[dict[str, Optional[str]]] = None


class Ulimit(_Model):
    # Go's zero values: ``ulimits: {nofile: 0}`` prints (and models) as ``nofile: {}``
    soft: int = 0
    hard: int = 0


class Service(_Model):
    """One service in canonical form. ``name`` is filled in from its key in ``services``
    and is not part of the Compose dict."""

    image: Optional[str] = None
    build: Optional[BuildConfig] = None
    command: Optional[list[str]] = None
    entrypoint: Optional[list[str]] = None
    environment: Optional[dict[str, Optional[str]]] = None
    labels: Optional[dict[str, str]] = None
    ports: Optional[list[Port]] = None
    expose: Optional[list[str]] = None
    volumes: Optional[list[ServiceVolume]] = None
    volumes_from: Optional[list[str]] = None
    tmpfs: Optional[list[str]] = None
    depends_on: Optional[dict[str, Dependency]] = None
    links: Optional[list[str]] = None
    networks: Optional[dict[str, Optional[ServiceNetwork]]] = None
    network_mode: Optional[str] = None
    healthcheck: Optional[Healthcheck] = None
    deploy: Optional[Deploy] = None
    scale: Optional[int] = None
    restart: Optional[str] = None
    container_name: Optional[str] = None
    hostname: Optional[str] = None
    user: Optional[str] = None
    working_dir: Optional[str] = None
    stop_signal: Optional[str] = None
    stop_grace_period: Optional[str] = None
    init: Optional[bool] = None
    privileged: Optional[bool] = None
    read_only: Optional[bool] = None
    tty: Optional[bool] = None
    stdin_open: Optional[bool] = None
    profiles: Optional[list[str]] = None
    secrets: Optional[list[FileReference]] = None
    configs: Optional[list[FileReference]] = None
    logging: Optional[Logging] = None
    ulimits: Optional[dict[str, Union[int, Ulimit]]] = None
    pull_policy: Optional[str] = None
    platform: Optional[str] = None
    mem_limit: Optional[str] = None
    shm_size: Optional[str] = None

    name: str = Field(default="", exclude=True)

    @property
    def replicas(self) -> int:
        """How many containers: ``scale``, else ``deploy.replicas``, else 1."""
        if self.scale is not None:
            return self.scale
        if self.deploy is not None and self.deploy.replicas is not None:
            return self.deploy.replicas
        return 1

    def image_name(self, project_name: str) -> str:
        """The image to run: ``image``, else what ``build`` tags (``<project>-<service>``),
        as Compose's GetImageNameOrDefault."""
        return self.image or f"{project_name}-{self.name}"

    @property
    def stop_grace_seconds(self) -> float:
        """``stop_grace_period`` in seconds (Docker's default 10 s)."""
        return parse_duration(self.stop_grace_period) if self.stop_grace_period else 10.0

    @property
    def mem_limit_bytes(self) -> Optional[int]:
        return parse_bytes(self.mem_limit) if self.mem_limit is not None else None

    @property
    def shm_size_bytes(self) -> Optional[int]:
        return parse_bytes(self.shm_size) if self.shm_size is not None else None

    def dependencies(self) -> dict[str, Dependency]:
        return dict(self.depends_on or {})


# ------------------------------------------------------------------ top level

class Network(_Model):
    name: Optional[str] = None
    driver: Optional[str] = None
    driver_opts: Optional[dict[str, Any]] = None
    external: Optional[bool] = None
    internal: Optional[bool] = None
    attachable: Optional[bool] = None
    enable_ipv6: Optional[bool] = None
    ipam: Optional[dict[str, Any]] = None
    labels: Optional[dict[str, str]] = None


class Volume(_Model):
    name: Optional[str] = None
    driver: Optional[str] = None
    driver_opts: Optional[dict[str, Any]] = None
    external: Optional[bool] = None
    labels: Optional[dict[str, str]] = None


class Secret(_Model):
    name: Optional[str] = None
    file: Optional[str] = None
    environment: Optional[str] = None
    external: Optional[bool] = None
    labels: Optional[dict[str, str]] = None


class Config(Secret):
    content: Optional[str] = None


_NOT_IN_CONFIG = {"working_dir", "environment", "config_files"}


class Project(_Model):
    """A loaded project. ``to_config_dict()`` is what ``pystack config --format json``
    prints; ``working_dir``, ``environment`` (the interpolation environment) and
    ``config_files`` describe where it came from and are not part of that dict."""

    name: str
    services: dict[str, Service] = Field(default_factory=dict)
    networks: Optional[dict[str, Network]] = None
    volumes: Optional[dict[str, Volume]] = None
    secrets: Optional[dict[str, Secret]] = None
    configs: Optional[dict[str, Config]] = None

    working_dir: str = ""
    environment: dict[str, str] = Field(default_factory=dict)
    config_files: list[str] = Field(default_factory=list)

    @classmethod
    def from_config(cls, config: dict[str, Any], *, working_dir: str = "",
                    environment: Optional[dict[str, str]] = None,
                    config_files: Optional[list[str]] = None) -> "Project":
        """Build from a canonical config dict (``LoadedConfig.config``)."""
        project = cls.model_validate(config)
        project.working_dir = working_dir
        project.environment = dict(environment or {})
        project.config_files = list(config_files or [])
        for name, service in project.services.items():
            service.name = name
        return project

    def to_config_dict(self) -> dict[str, Any]:
        """Exactly the canonical dict this project was built from."""
        return self.model_dump(mode="json", exclude_unset=True, by_alias=True,
                               exclude=_NOT_IN_CONFIG)

    def service(self, name: str) -> Service:
        """The service called ``name``; UserError naming it when absent."""
        from pystack.errors import NotFound

        try:
            return self.services[name]
        except KeyError:
            raise NotFound(f"no such service: {name}") from None

    def service_names(self) -> list[str]:
        return sorted(self.services)

    def graph(self) -> Any:
        """The dependency DiGraph (see stack.graph)."""
        from .graph import build_graph

        return build_graph(self.to_config_dict())

    def config_hash(self, service: str) -> str:
        """Compose's config hash of one service (the ``config-hash`` label)."""
        from .hash import service_hash

        return service_hash(self.to_config_dict()["services"][service])
