"""The /volumes endpoint functions return Docker's shapes and errors."""
from __future__ import annotations

import json

import pytest

from pystack.errors import Conflict, NotFound, UserError
from pystack.volumes import api


def test_create_list_inspect_remove(store) -> None:
    vol = api.create_volume(store, {"Name": "web_data", "Labels": {"a": "b"}, "DriverOpts": {}})
    assert set(vol) == {"CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options", "Scope"}
    anon = api.create_volume(store, {})
    assert len(anon["Name"]) == 64
    listed = api.list_volumes(store, {"filters": json.dumps({"label": ["a=b"]})})
    assert [v["Name"] for v in listed["Volumes"]] == ["web_data"] and listed["Warnings"] is None
    old_style = api.list_volumes(store, {"filters": json.dumps({"dangling": {"true": True}})})
    assert len(old_style["Volumes"]) == 2
    assert api.inspect_volume(store, "web_data")["Labels"] == {"a": "b"}
    store.acquire("web_data", "c1")
    with pytest.raises(Conflict):
        api.remove_volume(store, "web_data", {"force": "1"})
    store.release("web_data", "c1")
    api.remove_volume(store, "web_data")
    with pytest.raises(NotFound):
        api.inspect_volume(store, "web_data")
    api.remove_volume(store, "web_data", {"force": "true"})


def test_prune_all_filter(store) -> None:
    api.create_volume(store, {"Name": "named"})
    anon = api.create_volume(store, {})["Name"]
    assert api.prune_volumes(store, {})["VolumesDeleted"] == [anon]
    assert api.prune_volumes(store, {"filters": json.dumps({"all": ["true"]})})["VolumesDeleted"] == ["named"]


def test_bad_requests(store) -> None:
    assert api.create_volume(store, {"Name": "x1", "Colour": "red"})["Labels"] is None  # ignored, as dockerd
    with pytest.raises(UserError, match="invalid filters"):
        api.list_volumes(store, {"filters": "{not json"})
    with pytest.raises(UserError, match="Swarm"):
        api.create_volume(store, {"Name": "x1", "ClusterVolumeSpec": {"Group": "g"}})
