"""A private pystackd per test: its own root, run dir, socket, cgroup parent and default bridge.

Fixtures for every engine test module:

- ``engine``: a running private pystackd (``EngineProcess``), no images;
- ``busybox_engine``: the same with ``busybox:latest`` imported (straight into the engine's
  image store before the daemon starts);
- ``api``: an ``EngineAPI`` for ``busybox_engine`` — raw Engine API calls with exact shapes:
  ``api.get(path)``, ``api.post(path, body)``, ``api.delete(path)`` -> ``(status, json|bytes)``;
  ``api.run(cmd, **config) -> id`` (create + start), ``api.create(cmd, **config) -> id``;
- ``EngineProcess.kill9()`` / ``.start()`` (a new daemon on the same root: recovery tests).

Each engine gets ``PYSTACK_CGROUP_PARENT=pystack-t<hex>`` and default bridge candidates
``PYSTACK_BRIDGE_SUBNET=10.211.<128..254>.0/24,...`` (the engine test range; networks that tests
create themselves should use ``10.211.0.0/17``, e.g. ``engine_subnet()``).
"""

from __future__ import annotations

import pytest

from engine_support import EngineAPI, EngineProcess, engine_subnet  # noqa: F401 (re-exported)


@pytest.fixture
def engine(tmp_path_factory) -> EngineProcess:
    proc = EngineProcess(tmp_path_factory.mktemp("engine"))
    yield proc
    proc.cleanup()


@pytest.fixture
def busybox_engine(tmp_path_factory, busybox_rootfs) -> EngineProcess:
    """A private engine with busybox:latest in its image store."""
    proc = EngineProcess(tmp_path_factory.mktemp("engine"), start=False)
    proc.import_busybox(busybox_rootfs)
    proc.start()
    yield proc
    proc.cleanup()


@pytest.fixture
def api(busybox_engine) -> EngineAPI:
    return busybox_engine.api()
