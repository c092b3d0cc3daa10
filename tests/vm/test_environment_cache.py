"""The environment cache with real guests: the first session of an environment sets up and its
guest's disk is kept; the next one starts from it — what setup made is there, the setup script
does not run again, the new upstream commit is fetched, and it pushes with its own credential —
a changed setup script sets up afresh and replaces the cache, and dropped caches' files go."""

from __future__ import annotations

import pytest

from appliance.accounts.models import User
from appliance.environments.models import CacheState, Environment, EnvironmentCache
from appliance.models import Sandbox
from appliance.repos.models import Repository
from appliance.sessions import envcache
from appliance.sessions.models import Event, Session
from appliance.sessions.service import NewSession

from appliance_world import appliance_world, remove, state_dir, wait_idle
from gitserver import GitServer

pytestmark = [pytest.mark.vm, pytest.mark.root]

SETUP = "echo ran >> $HOME/setup-runs\nmkdir -p build\ndate +%s%N > build/artifact\n"
REPORT = ("cat build/artifact > report.txt; wc -l < $HOME/setup-runs >> report.txt; "
          "(test -f NEW.md && echo has-new || echo no-new) >> report.txt; git config user.email >> report.txt; "
          "cat /etc/machine-id >> report.txt")


def texts(sid: str) -> list[str]:
    return [e.data.get("text", "") for e in Event.select().where((Event.session == sid) & (Event.kind == "log"))]


def test_the_next_session_of_an_environment_starts_from_its_cache(hv):
    state = state_dir("envcache")
    upstream = GitServer(state / "upstream").start()
    upstream.create_repo("acme/app", {"README.md": "v1\n", ".gitignore": "build/\nreport.txt\n"})
    try:
        with appliance_world(hv, state, bridge="apltestc", subnet="10.237.0.0/24", tap_prefix="aplc",
                             egress_table="applcache", memory_mb=768, idle_guest_timeout=3600.0,
                             max_running_sessions=1) as w:
            w.engine.start()
            user = User.create(username="alice")
            Repository.create(name="acme/app", url=upstream.url("acme/app"), credential_kind="token",
                              credential_secret=upstream.token, credential_username="x-access-token")
            env = Environment.create(owner=user, name="dev", setup_script=SETUP, variables="A=1\n", is_default=True)

            def run(prompt: str) -> tuple[str, list[str]]:
                sid = w.engine.service.create(user, NewSession("acme/app", prompt, agent="command",
                                                               command=REPORT + "; git add -f report.txt")).id
                s = wait_idle(w.engine, sid)
                assert s.status == "idle", s.status_detail
                return sid, upstream.read_file("acme/app", s.work_branch, "report.txt").split("\n")

            # -- the first session sets up, and its guest's disk is kept ---------------------------------
            s1, report1 = run("one")
            [cache] = EnvironmentCache.select().where(EnvironmentCache.state == CacheState.READY)
            assert (cache.source_session, cache.environment_id) == (s1, env.id)
            assert any("kept this guest's disk as the environment's cache" in t for t in texts(s1))
            assert report1[1:3] == ["1", "no-new"]

            # -- the next one starts from it --------------------------------------------------------------
            upstream.commit("acme/app", "main", {"NEW.md": "new\n"})
            s2, report2 = run("two")
            guest2 = Sandbox.get_by_id(Session.get_by_id(s2).sandbox_id)
            assert guest2.env_cache_id == cache.id
            log2 = texts(s2)
            assert any(t.startswith(f"starting from the environment cache {cache.id}") for t in log2)
            assert any("setup script ran when its cache was made" in t for t in log2)
            assert report2[0] == report1[0], "what setup made is there"
            assert report2[1] == "1", "the setup script did not run again"
            assert report2[2] == "has-new", "the new upstream commit was fetched"
            assert report2[3] == f"agent@{s2}.appliance", "the checkout is this session's"
            assert report2[4] != report1[4], "a machine-id of its own"
            assert EnvironmentCache.get_by_id(cache.id).uses == 1

            # -- a changed setup script: the cache does not fit; a fresh setup replaces it ---------------
            env.setup_script = SETUP + "echo v2 > build/v2\n"
            env.save()
            s3, report3 = run("three")
            assert Sandbox.get_by_id(Session.get_by_id(s3).sandbox_id).env_cache_id is None
            assert report3[1] == "1" and report3[0] != report1[0], "set up afresh"
            assert EnvironmentCache.get_by_id(cache.id).state == CacheState.DROPPED
            [newer] = EnvironmentCache.select().where(EnvironmentCache.state == CacheState.READY)
            assert newer.source_session == s3

            # -- a dropped cache's files stay while a guest is backed by them, then go -------------------
            caches = w.engine.runner.env_caches
            assert cache.id not in caches.sweep() and caches.disk(cache).exists(), "session two's guest uses it"
            w.sandboxes.destroy(guest2.id)
            assert cache.id in caches.sweep() and not caches.disk(cache).exists()
            envcache.drop_cache(newer.id)
            assert newer.id in caches.sweep() and not caches.disk(newer).exists()
    finally:
        upstream.close()
        remove(state)
