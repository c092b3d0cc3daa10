import datetime as dt

import pytest

from netpolicy import audit


@pytest.fixture
def adb(cfg):
    from appliance.db import open_database

    database = open_database(cfg.database_url)
    yield database
    database.close()


def _row(**kw):
    base = dict(sandbox_id="sb-1", session_id="s-1", client="10.213.0.10", source="proxy", host="pypi.org",
                port=443, method="CONNECT", verdict="allow", reason="ok", policy="limited")  # fmt: skip
    base.update(kw)
    return base


def test_migration_creates_the_table(adb):
    assert "egress_event" in adb.get_tables()
    cols = {c.name for c in adb.get_columns("egress_event")}
    assert set(audit.FIELDS) <= cols


def test_record_and_query_by_sandbox_or_session(adb):
    audit.record(**_row(path="/a"))
    audit.record(**_row(path="/b", verdict="deny", reason="no"))
    audit.record(**_row(sandbox_id="sb-2", session_id="s-2", path="/c"))
    assert [r.path for r in audit.query("sb-1")] == ["/a", "/b"]
    assert [r.path for r in audit.query("s-1")] == ["/a", "/b"]
    assert [r.path for r in audit.query("s-1", limit=1)] == ["/b"]  # the newest, oldest first
    assert audit.query("nobody") == []
    d = audit.query("s-2")[0].as_dict()
    assert d["host"] == "pypi.org" and d["time"].endswith("Z")


def test_prune_by_age_and_count(adb):
    now = dt.datetime(2030, 1, 10)
    for day in range(10):
        audit.record(**_row(time=now - dt.timedelta(days=day), path=f"/{day}"))
    assert audit.prune(retention_days=5, now=now) == 4  # days 6..9 are older than 5 days
    assert audit.prune(retention_days=0, max_rows=3) == 3
    assert sorted(r.path for r in audit.query("sb-1")) == ["/0", "/1", "/2"]


def test_writer_batches_in_the_background(adb, cfg):
    w = audit.AuditWriter(cfg.database_url).start()
    for i in range(500):
        w.submit(**_row(path=f"/{i}", reason="x" * 3000))
    assert w.flush()
    w.close()
    rows = audit.query("sb-1", limit=1000)
    assert len(rows) == 500 and w.written == 500 and w.dropped == 0
    assert len(rows[0].reason) == 2000  # long texts are cut
