"""Mirror bookkeeping that needs no upstream: the per-mirror lock, staleness, crash leftovers."""

from __future__ import annotations

import os
import threading
import time

import pytest

from appliance.gitproxy.git import Git
from appliance.gitproxy.mirror import MirrorBusy, MirrorStore


@pytest.fixture
def store(tmp_path):
    return MirrorStore(tmp_path / "mirrors", Git(tmp_path / "git"), refresh_interval=10)


def test_lock_is_exclusive_per_mirror(store):
    held, release = threading.Event(), threading.Event()

    def holder():
        with store.lock("acme/api"):
            held.set()
            release.wait(5)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(5)
    try:
        with pytest.raises(MirrorBusy):
            with store.lock("acme/api", timeout=0.05):
                pass
        with store.lock("acme/other", timeout=0.05):  # other mirrors are not blocked
            pass
    finally:
        release.set()
        t.join()
    with store.lock("acme/api", timeout=1):
        pass


def test_paths_staleness_and_cleanup(store):
    assert store.path("acme/api").name == "acme~api.git"
    assert store.age("acme/api") is None
    store.path("acme/api").mkdir(parents=True)
    (store.path("acme/api") / "appliance-refreshed").touch()
    assert store.age("acme/api") < 5
    store.mark_stale("acme/api")
    assert store.age("acme/api") is None

    old = store.root / ".incoming" / "acme~api-dead"
    old.mkdir(parents=True)
    fresh = store.root / ".new-acme~api-1234.git"
    fresh.mkdir()
    past = time.time() - 7200
    os.utime(old, (past, past))
    assert store.cleanup() == 1
    assert not old.exists() and fresh.exists()
