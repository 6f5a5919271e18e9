"""Container records survive a new RecordStore (a restarted engine) and resolve like Docker's."""
from __future__ import annotations

import pytest

from pystack.engine.records import ContainerRecord, RecordStore, new_id, now_rfc3339
from pystack.errors import Conflict, NotFound, UserError


def make(name: str) -> ContainerRecord:
    return ContainerRecord(id=new_id(), name=name, created=now_rfc3339(), image="busybox",
                           image_id="sha256:" + "0" * 64, config={"Labels": {"a": "b"}}, host_config={})


def test_records_persist_and_resolve(tmp_path) -> None:
    store = RecordStore(tmp_path)
    rec = make("web-1")
    store.add(rec)
    again = RecordStore(tmp_path)
    assert again.get(rec.id).name == "web-1"
    assert again.get("/web-1").id == rec.id
    assert again.get(rec.id[:12]).id == rec.id
    assert again.get("web-1").labels == {"a": "b"}


def test_name_conflict_and_bad_names(tmp_path) -> None:
    store = RecordStore(tmp_path)
    store.add(make("db"))
    with pytest.raises(Conflict):
        store.add(make("db"))
    with pytest.raises(UserError):
        store.add(make("../escape"))
    with pytest.raises(NotFound):
        store.get("nope")
    with pytest.raises(UserError):
        store.dir("../../etc")


def test_half_written_record_is_ignored(tmp_path) -> None:
    store = RecordStore(tmp_path)
    rec = make("xy")
    store.add(rec)
    (tmp_path / new_id()).mkdir()                     # a crash before the first record was renamed
    (tmp_path / rec.id / "record.json.tmp").write_text("{")
    assert [r.id for r in RecordStore(tmp_path)] == [rec.id]
