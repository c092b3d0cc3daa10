"""Shared fixtures: a fresh configuration and database per test."""

from __future__ import annotations

import os

import pytest

from appliance.db import open_database

from helpers import make_config
from postgres import PostgresCluster


@pytest.fixture
def cfg(request, tmp_path):
    """APPLIANCE_TEST_DATABASE=postgresql: the test's database is a fresh one in the throw-away
    PostgreSQL cluster instead of SQLite under its state dir."""
    if os.environ.get("APPLIANCE_TEST_DATABASE") == "postgresql":
        return make_config(tmp_path / "state", database_url=request.getfixturevalue("pg_url"))
    return make_config(tmp_path / "state")


@pytest.fixture
def db(cfg):
    database = open_database(cfg.database_url)
    database.connect(reuse_if_open=True)
    yield database
    database.close()


@pytest.fixture(scope="session")
def postgres():
    """A throw-away PostgreSQL cluster for the whole run (started on first use)."""
    cluster = PostgresCluster()
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(postgres):
    """A fresh PostgreSQL database for one test."""
    return postgres.new_database()
