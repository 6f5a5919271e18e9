"""The service config hash of Docker Compose (label ``com.docker.compose.config-hash``).

Compose (``pkg/compose/hash.go`` ``ServiceHash``) hashes ``json.Marshal`` of the Go
``ServiceConfig`` with ``build``, ``pull_policy``, ``scale``, ``depends_on``,
``profiles`` and ``deploy.replicas`` cleared: sha256 of compact JSON whose struct
fields come in Go declaration order and whose maps come sorted. ``pystack config
--hash`` and the reconciler must print the same hash for the same service, so this
module re-creates that byte stream from the canonical service dict: the key order of
Go's structs is in :data:`GO_ORDER` (recorded from Docker Compose v2.40.3's own output),
every other mapping is sorted, and strings are escaped as Go escapes them.

Known gap: Compose hashes a service whose ``env_file`` has not been read into
``environment``; the canonical dict that the loader gives has it read, so a service
with ``env_file`` hashes differently from Compose's (the reconciler compares pystack's
hashes with pystack's, so recreate decisions are unaffected).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~4 ms to import: annotations only
    from typing import Any

__all__ = ["service_hash", "go_json", "GO_ORDER"]

# service-relative path pattern (``[]`` = any list item, ``*`` = any map key) -> the Go
# struct's field order. Paths not listed are Go maps: sorted keys.
GO_ORDER = {
    '': (
        'profiles', 'annotations', 'attach', 'build', 'develop', 'blkio_config', 'cap_add',
        'cap_drop', 'cgroup_parent', 'cgroup', 'cpu_count', 'cpu_percent', 'cpu_period',
        'cpu_quota', 'cpu_rt_period', 'cpu_rt_runtime', 'cpus', 'cpuset', 'cpu_shares',
        'command', 'configs', 'container_name', 'credential_spec', 'depends_on', 'deploy',
        'device_cgroup_rules', 'devices', 'dns', 'dns_opt', 'dns_search', 'domainname',
        'entrypoint', 'provider', 'environment', 'env_file', 'expose', 'external_links',
        'extra_hosts', 'group_add', 'gpus', 'hostname', 'healthcheck', 'image', 'init', 'ipc',
        'isolation', 'labels', 'label_file', 'links', 'logging', 'mem_limit',
        'mem_reservation', 'memswap_limit', 'mem_swappiness', 'mac_address', 'models',
        'network_mode', 'networks', 'oom_kill_disable', 'oom_score_adj', 'pid', 'pids_limit',
        'platform', 'ports', 'privileged', 'pull_policy', 'read_only', 'restart', 'runtime',
        'scale', 'secrets', 'security_opt', 'shm_size', 'stdin_open', 'stop_grace_period',
        'stop_signal', 'storage_opt', 'sysctls', 'tmpfs', 'tty', 'ulimits', 'use_api_socket',
        'user', 'userns_mode', 'uts', 'volumes', 'volumes_from', 'working_dir', 'post_start',
        'pre_stop',
    ),
    '.build': (
        'context', 'dockerfile', 'dockerfile_inline', 'entitlements', 'args', 'ssh', 'labels',
        'cache_from',
        'cache_to', 'no_cache', 'additional_contexts', 'pull', 'extra_hosts', 'isolation',
        'network', 'target', 'secrets', 'shm_size', 'tags', 'ulimits', 'platforms',
        'privileged',
    ),
    '.build.ulimits.*': ('soft', 'hard'),
    '.develop.watch[]': (
        'path', 'action', 'target', 'exec', 'include', 'ignore', 'initial_sync',
    ),
    '.blkio_config': (
        'weight', 'weight_device', 'device_read_bps', 'device_read_iops', 'device_write_bps',
        'device_write_iops',
    ),
    '.blkio_config.weight_device[]': ('Path', 'Weight'),
    '.blkio_config.device_read_bps[]': ('Path', 'Rate'),
    '.blkio_config.device_read_iops[]': ('Path', 'Rate'),
    '.blkio_config.device_write_bps[]': ('Path', 'Rate'),
    '.blkio_config.device_write_iops[]': ('Path', 'Rate'),
    '.configs[]': ('source', 'target', 'uid', 'gid', 'mode'),
    '.depends_on.*': ('condition', 'restart', 'required'),
    '.deploy': (
        'mode', 'replicas', 'labels', 'update_config', 'rollback_config', 'resources',
        'restart_policy', 'placement', 'endpoint_mode',
    ),
    '.deploy.update_config': (
        'parallelism', 'delay', 'failure_action', 'monitor', 'max_failure_ratio', 'order',
    ),
    '.deploy.rollback_config': (
        'parallelism', 'delay', 'failure_action', 'monitor', 'max_failure_ratio', 'order',
    ),
    '.deploy.resources': ('limits', 'reservations'),
    '.deploy.resources.limits': ('cpus', 'memory', 'pids'),
    '.deploy.resources.reservations': ('cpus', 'memory', 'devices', 'generic_resources'),
    '.deploy.resources.reservations.devices[]': (
        'capabilities', 'driver', 'count', 'device_ids', 'options',
    ),
    '.deploy.restart_policy': ('condition', 'delay', 'max_attempts', 'window'),
    '.deploy.placement': ('constraints', 'preferences', 'max_replicas_per_node'),
    '.devices[]': ('source', 'target', 'permissions'),
    '.provider': ('type', 'options'),
    '.gpus[]': ('capabilities', 'driver', 'count', 'device_ids', 'options'),
    '.healthcheck': (
        'test', 'timeout', 'interval', 'retries', 'start_period', 'start_interval', 'disable',
    ),
    '.logging': ('driver', 'options'),
    '.models.*': ('endpoint_var', 'model_var'),
    '.networks.*': (
        'aliases', 'driver_opts', 'gw_priority', 'interface_name', 'ipv4_address',
        'ipv6_address', 'link_local_ips', 'mac_address', 'priority',
    ),
    '.ports[]': ('name', 'mode', 'host_ip', 'target', 'published', 'protocol', 'app_protocol'),
    '.secrets[]': ('source', 'target', 'uid', 'gid', 'mode'),
    '.ulimits.*': ('soft', 'hard'),
    '.volumes[]': (
        'type', 'source', 'target', 'read_only', 'consistency', 'bind', 'volume', 'tmpfs',
        'image',
    ),
    '.volumes[].bind': ('selinux', 'propagation', 'create_host_path', 'recursive'),
    '.volumes[].volume': ('labels', 'nocopy', 'subpath'),
    '.volumes[].tmpfs': ('size', 'mode'),
    '.pre_stop[]': ('command', 'user', 'privileged', 'working_dir', 'environment'),
    '.post_start[]': ('command', 'user', 'privileged', 'working_dir', 'environment'),
}

# path segments under which keys are names (Go maps of structs)
_NAMED = {"depends_on", "networks", "ulimits", "models"}
_HASH_DROPPED = ("build", "pull_policy", "scale", "depends_on", "profiles")


def _ordered(value: Any, pattern: str, parent: str, ints: bool = True) -> Any:
    """``value`` with every mapping's keys in the order Go's json.Marshal writes them
    (and whole floats as integers, as Go's JSON prints them, unless not ``ints``)."""
    if isinstance(value, Mapping):
        named = parent in _NAMED
        order = None if named else GO_ORDER.get(pattern)
        if order is None:
            keys = sorted(value)
        else:
            rank = {k: i for i, k in enumerate(order)}
            keys = sorted(value, key=lambda k: (rank.get(k, len(rank)), k))
        out = {}
        for key in keys:
            child = "*" if named else key
            out[key] = _ordered(value[key], f"{pattern}.{child}", child, ints)
        return out
    if isinstance(value, list):
        return [_ordered(v, pattern + "[]", parent, ints) for v in value]
    if ints and isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)  # Go prints 2.0 as 2
    return value


def go_json(value: Any) -> str:
    """Compact JSON escaped as Go's encoding/json does (HTML-safe, U+2028/9 escaped)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def service_hash(service: Mapping[str, Any]) -> str:
    """Compose's config hash of one service given in canonical (``config --format
    json``) form: 64 hex digits."""
    svc = {k: v for k, v in service.items() if k not in _HASH_DROPPED}
    deploy = svc.get("deploy")
    if isinstance(deploy, Mapping):
        svc["deploy"] = {k: v for k, v in deploy.items() if k != "replicas"}
    return _sha256()(go_json(_ordered(svc, "", "")).encode("utf-8")).hexdigest()


_SHA256: Any = None


def _sha256() -> Any:
    """CPython's own sha256 when it has one (hashlib loads OpenSSL: ~3 ms per command);
    the digest is the same."""
    global _SHA256
    if _SHA256 is None:
        import sys

        name = "_sha2" if sys.version_info >= (3, 12) else "_sha256"
        try:
            _SHA256 = __import__(name).sha256
        except (ImportError, AttributeError):
            from hashlib import sha256

            _SHA256 = sha256
    return _SHA256
