import sys
import types

import peewee
import pytest

from appliance import db as db_mod
from appliance.models import Sandbox, SandboxState


def test_migrations_apply_once_and_are_recorded(cfg):
    database = db_mod.open_database(cfg.database_url)
    with database.connection_context():
        names = [m.name for m in db_mod.SchemaMigration.select()]
        assert names == db_mod.migration_names()
        assert db_mod.migrate(database) == [], "a second run applies nothing"
        if cfg.database_url.startswith("sqlite"):  # our pragmas (PostgreSQL has neither setting)
            assert database.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert database.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1


def test_failed_migration_leaves_no_trace(cfg, monkeypatch):
    database = db_mod.open_database(cfg.database_url)
    broken = types.ModuleType("appliance.migrations.m9999_broken")

    def apply(db):
        db.execute_sql("CREATE TABLE half (x INTEGER)")
        raise RuntimeError("boom")

    broken.apply = apply
    monkeypatch.setitem(sys.modules, broken.__name__, broken)
    monkeypatch.setattr(db_mod, "migration_names", lambda: ["m0001_sandboxes", "m9999_broken"])
    with pytest.raises(RuntimeError):
        db_mod.migrate(database)
    with database.connection_context():
        assert "half" not in database.get_tables()
        assert "m9999_broken" not in {m.name for m in db_mod.SchemaMigration.select()}


def _sandbox(**kw):
    values = dict(profile="minimal", image_dir="/x", vcpus=1, memory_mb=512, disk_gb=4, address="10.0.0.2", tap="t1")
    values.update(kw)
    return Sandbox(**values)


def test_an_address_belongs_to_one_live_sandbox(db):
    _sandbox().save(force_insert=True)
    with pytest.raises(peewee.IntegrityError):
        with db.atomic():
            _sandbox(tap="t2").save(force_insert=True)
    # once the first is gone, the address may be reused
    Sandbox.update(state=SandboxState.DESTROYED).execute()
    _sandbox(tap="t3").save(force_insert=True)
    assert Sandbox.select().where(Sandbox.state.in_(SandboxState.LIVE)).count() == 1
