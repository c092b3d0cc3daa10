"""Archiving and deleting sessions (console, API, the retention job), each with who may: the owner
and admins; a team mate who can read it gets 403, an outsider 404, anonymous 401 or the sign-in
page. Delete removes every row of the session and its stored transcript; the branch is not touched."""

from __future__ import annotations

import datetime as dt

import pytest
from test_console_pages import make_session, world  # noqa: F401 - the console's world fixture

from appliance.gitproxy import tokens as git_tokens
from appliance.gitproxy.tokens import GitToken
from appliance.models import Sandbox, SandboxState
from appliance.sessions import removal, transcripts
from appliance.sessions.models import Comment, DiffFile, Event, Session, Status, Turn
from appliance.sessions.stream import emit

from helpers import api_caller, make_config


def rich(world, visibility="private") -> str:  # noqa: F811
    """An idle session with everything delete must remove: events, a diff, a comment, a git token,
    a stored transcript."""
    sid = make_session(world, visibility=visibility)
    session = Session.get_by_id(sid)
    emit(session, "log", {"stream": "appliance", "text": "hello"})
    Comment.create(session=sid, author=world["users"]["alice"], path="app.py", line=2, body="why?")
    git_tokens.issue(sid, "acme-api", session.work_branch, sandbox_id="sb-gone")
    transcripts.store(world["cfg"].state_dir, sid, b'{"type":"user"}\n', guest_path="/home/agent/.claude/x.jsonl")
    return sid


def leftovers(sid: str) -> dict:
    return {"session": Session.select().where(Session.id == sid).count(),
            "turns": Turn.select().where(Turn.session == sid).count(),
            "events": Event.select().where(Event.session == sid).count(),
            "diffs": DiffFile.select().where(DiffFile.session == sid).count(),
            "comments": Comment.select().where(Comment.session == sid).count(),
            "git_tokens": GitToken.select().where(GitToken.session_id == sid).count()}


def api(world, who):  # noqa: F811
    return api_caller(world["app"], world["users"][who] if who else None)


# --- archive ---------------------------------------------------------------------------------------

def test_archive_hides_from_the_default_lists_and_comes_back(world):  # noqa: F811
    sid = rich(world)
    alice = api(world, "alice")
    assert alice("post", f"/sessions/{sid}/archive").json["archived_at"]
    assert sid not in [s["id"] for s in alice("get", "/sessions").json["sessions"]]
    assert [s["id"] for s in alice("get", "/sessions?archived=1").json["sessions"]] == [sid]
    assert sid in [s["id"] for s in alice("get", "/sessions?archived=all").json["sessions"]]
    browser = world["as_"]("alice")
    assert sid not in browser.get("/").get_data(as_text=True)
    assert sid in browser.get("/?scope=archived").get_data(as_text=True)
    page = browser.get(f"/sessions/{sid}").get_data(as_text=True)  # still reachable by its link
    assert 'id="archived"' in page and "Unarchive" in page
    assert browser.post(f"/sessions/{sid}/archive", {"archived": "0"}).status_code == 302
    assert Session.get_by_id(sid).archived_at is None
    assert sid in browser.get("/").get_data(as_text=True)
    assert leftovers(sid)["events"] > 0  # archiving deletes nothing


def test_archive_by_others_is_refused(world):  # noqa: F811
    sid = rich(world, visibility="team")  # bob (team mate) may read it, eve may not see it
    assert api(world, "bob")("post", f"/sessions/{sid}/archive").status_code == 403
    assert api(world, "eve")("post", f"/sessions/{sid}/archive").status_code == 404
    assert api(world, None)("post", f"/sessions/{sid}/archive").status_code == 401
    assert world["as_"]("bob").post(f"/sessions/{sid}/archive", {"archived": "1"}).status_code == 403
    assert world["as_"]("eve").post(f"/sessions/{sid}/archive", {"archived": "1"}).status_code == 404
    anon = world["app"].test_client()
    assert anon.post(f"/sessions/{sid}/archive").status_code == 400  # no CSRF token without a sign-in
    assert Session.get_by_id(sid).archived_at is None
    # an admin may
    assert api(world, "admin")("post", f"/sessions/{sid}/archive").status_code == 200


# --- delete ----------------------------------------------------------------------------------------

def test_delete_removes_everything_of_the_session(world):  # noqa: F811
    sid = rich(world)
    other = rich(world)  # another session of the same owner keeps everything
    path = transcripts.stored_path(world["cfg"].state_dir, sid)
    assert path.exists() and path.with_suffix(".where").exists()
    assert all(leftovers(sid).values())
    r = api(world, "alice")("delete", f"/sessions/{sid}")
    assert r.status_code == 200 and r.json == {"deleted": sid}
    assert leftovers(sid) == dict.fromkeys(leftovers(sid), 0)
    assert not path.exists() and not path.with_suffix(".where").exists()
    assert all(leftovers(other).values())
    assert transcripts.stored_path(world["cfg"].state_dir, other).exists()
    assert api(world, "alice")("get", f"/sessions/{sid}").status_code == 404


def test_delete_in_the_console(world):  # noqa: F811
    sid = rich(world)
    browser = world["as_"]("alice")
    assert 'id="delete"' in browser.get(f"/sessions/{sid}").get_data(as_text=True)
    r = browser.post(f"/sessions/{sid}/delete")
    assert r.status_code == 302 and r.headers["Location"].endswith("/")
    assert leftovers(sid)["session"] == 0
    assert browser.get(f"/sessions/{sid}").status_code == 404


@pytest.mark.parametrize("status", Status.ACTIVE)
def test_delete_is_refused_while_a_turn_runs_or_waits(world, status):  # noqa: F811
    sid = rich(world)
    Session.update(status=status).where(Session.id == sid).execute()
    r = api(world, "alice")("delete", f"/sessions/{sid}")
    assert r.status_code == 409
    assert "a turn is running or waiting" in r.json["error"] and f"appliance cancel {sid}" in r.json["hint"]
    page = world["as_"]("alice").post(f"/sessions/{sid}/delete")
    assert page.status_code == 409 and "was not deleted" in page.get_data(as_text=True)
    assert all(leftovers(sid).values())  # nothing lost


def test_delete_waits_for_a_cancelled_turn_to_stop(world):  # noqa: F811
    """Just after a cancel the session is final but its runner may still be stopping the turn."""
    sid = rich(world)
    Session.update(status=Status.CANCELLED).where(Session.id == sid).execute()
    Turn.update(status="running").where(Turn.session == sid).execute()
    r = api(world, "alice")("delete", f"/sessions/{sid}")
    assert r.status_code == 409 and "was not deleted" in r.json["error"]
    Turn.update(status="cancelled").where(Turn.session == sid).execute()
    assert api(world, "alice")("delete", f"/sessions/{sid}").status_code == 200


def test_delete_of_an_idle_session_with_a_live_guest_destroys_it_first(world):  # noqa: F811
    sid = rich(world)
    Sandbox.create(id="sb-live1", profile="minimal", image_dir="/x", state=SandboxState.RUNNING, vcpus=1,
                   memory_mb=512, disk_gb=4, purpose="session", session_id=sid)
    Session.update(sandbox_id="sb-live1").where(Session.id == sid).execute()

    class Sandboxes:  # the only part of the SandboxManager delete uses (its own tests cover destroy)
        destroyed = []

        def destroy(self, sandbox_id):
            self.destroyed.append(sandbox_id)

    with pytest.raises(removal.Conflict, match="still has a running guest"):
        removal.delete(world["users"]["alice"], sid, world["cfg"].state_dir, sandboxes=None)
    assert leftovers(sid)["session"] == 1
    removal.delete(world["users"]["alice"], sid, world["cfg"].state_dir, sandboxes=Sandboxes())
    assert Sandboxes.destroyed == ["sb-live1"] and leftovers(sid)["session"] == 0


def test_delete_by_others_is_refused(world):  # noqa: F811
    sid = rich(world, visibility="team")
    assert api(world, "bob")("delete", f"/sessions/{sid}").status_code == 403
    assert api(world, "eve")("delete", f"/sessions/{sid}").status_code == 404
    assert api(world, None)("delete", f"/sessions/{sid}").status_code == 401
    assert world["as_"]("bob").post(f"/sessions/{sid}/delete").status_code == 403
    assert world["as_"]("eve").post(f"/sessions/{sid}/delete").status_code == 404
    assert world["app"].test_client().post(f"/sessions/{sid}/delete").status_code == 400  # CSRF, not signed in
    assert all(leftovers(sid).values())
    assert api(world, "admin")("delete", f"/sessions/{sid}").status_code == 200


# --- retention -------------------------------------------------------------------------------------

def test_retention_deletes_sessions_archived_longer_than_the_setting(world, tmp_path):  # noqa: F811
    old, recent, kept, busy = (rich(world) for _ in range(4))
    now = dt.datetime(2030, 1, 10)
    for sid, archived in ((old, now - dt.timedelta(days=8)), (recent, now - dt.timedelta(days=2)),
                          (busy, now - dt.timedelta(days=30))):
        Session.update(archived_at=archived).where(Session.id == sid).execute()
    Session.update(status=Status.RUNNING).where(Session.id == busy).execute()
    state = world["cfg"].state_dir
    assert removal.purge_archived(make_config(state), now=now) == []  # 0 (the default): kept forever
    cfg = make_config(state, archived_session_retention_days=7)
    assert removal.purge_archived(cfg, now=now) == [old]
    assert leftovers(old)["session"] == 0 and not transcripts.stored_path(state, old).exists()
    for sid in (recent, kept, busy):  # too recent, not archived, running a turn (deleted at a later pass)
        assert leftovers(sid)["session"] == 1

