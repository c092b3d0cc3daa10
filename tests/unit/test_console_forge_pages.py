"""The console's side of the pull-request loop: the repository's forge page (webhook URL and secret,
auto-fix default, forge logins) for admins only; the PR form prefilled from the session; the PR's
state on the session page; the `appliance tasks` column."""

from __future__ import annotations

import re

import pytest
from test_console_pages import build_world, make_session

from appliance.cli.remote_cmd import pr_column
from appliance.prloop.models import ForgeLogin, PrCheck, PrReviewComment
from appliance.repos.models import Repository
from appliance.sessions.models import Event, Session
from appliance.sessions.stream import emit


@pytest.fixture
def world(db, cfg):
    return build_world(cfg)


def github_repo(world):
    Repository.update(forge="github", forge_project="acme/api").where(Repository.id == world["repo"].id).execute()
    return Repository.get_by_id(world["repo"].id)


def test_only_admins_see_a_repositorys_webhook_url_and_secret(world):
    repo = github_repo(world)
    path = f"/admin/repositories/{repo.id}/forge"
    assert world["as_"](None).get(path).status_code == 302
    assert world["as_"]("alice").get(path).status_code == 404
    page = world["as_"]("admin").get(path).get_data(as_text=True)
    secret = Repository.get_by_id(repo.id).webhook_secret
    assert len(secret) >= 32 and f'id="webhook-secret" value="{secret}"' in page
    assert re.search(rf'id="webhook-url" value="http://[^"]+/hooks/forge/github/{repo.id}"', page)
    assert secret not in world["as_"]("admin").get("/admin/repositories").get_data(as_text=True)


def test_admins_map_forge_logins_set_the_auto_fix_default_and_rotate_the_secret(world):
    repo = github_repo(world)
    admin, path = world["as_"]("admin"), f"/admin/repositories/{repo.id}/forge"
    admin.get(path)  # the secret is made when first shown
    old = Repository.get_by_id(repo.id).webhook_secret
    assert admin.post(path, {"action": "add_login", "login": "alice-gh", "username": "alice"}).status_code == 302
    assert ForgeLogin.get(ForgeLogin.login == "alice-gh").user.username == "alice"
    taken = admin.post(path, {"action": "add_login", "login": "alice-gh", "username": "bob"})
    assert taken.status_code == 400 and "is already alice" in taken.get_data(as_text=True)
    assert admin.post(path, {"action": "autofix", "autofix_default": "1"}).status_code == 302
    assert Repository.get_by_id(repo.id).autofix_default is True
    assert admin.post(path, {"action": "rotate"}).status_code == 302
    assert Repository.get_by_id(repo.id).webhook_secret not in ("", old)
    # not an admin: nothing changes
    assert world["as_"]("alice").post(path, {"action": "rotate"}).status_code == 404


def test_the_pr_form_starts_from_the_agents_summary_and_the_diffstat_and_takes_edits(world):
    sid = make_session(world)
    emit(sid, "turn_result", {"ok": True, "summary": "Fixed add(): it subtracted."})
    page = world["as_"]("alice").get(f"/sessions/{sid}/diff").get_data(as_text=True)
    body = re.search(r'<textarea name="body" id="pr-body"[^>]*>(.*?)</textarea>', page, re.S).group(1)
    assert "Fixed add(): it subtracted." in body and "app.py | +1 −1" in body and "1 files changed" in body
    r = world["as_"]("alice").post(f"/sessions/{sid}/pr", {"title": "Make add() add", "body": "Edited.",
                                                          "autofix": "1"})
    assert r.status_code == 302
    assert world["prs"].requests[-1] | {} == {"head": Session.get_by_id(sid).work_branch, "base": "main",
                                              "title": "Make add() add", "body": "Edited."}
    s = Session.get_by_id(sid)
    assert (s.pr_number, s.pr_state, s.autofix) == (1, "open", True)
    assert Event.select().where((Event.session == sid) & (Event.kind == "pull_request")).count() == 1


def test_an_empty_pr_title_is_refused_and_nothing_is_created(world):
    sid = make_session(world)
    r = world["as_"]("alice").post(f"/sessions/{sid}/pr", {"title": "  ", "body": "x"})
    assert r.status_code == 400 and "title" in r.get_data(as_text=True)
    assert world["prs"].requests == [] and Session.get_by_id(sid).pr_url is None


def test_the_session_page_shows_the_pull_requests_state_and_checks(world):
    sid = make_session(world)
    Session.update(pr_url="/repos/acme/api/merge_requests/1", pr_number=1, pr_state="open", pr_checks="failing",
                   autofix=True).where(Session.id == sid).execute()
    PrCheck.create(session=sid, name="tests", state="failing")
    PrReviewComment.create(session=sid, forge_id="1", author_login="eve-gh", path="app.py", line=2,
                           body="<script>x</script>", ignored="outsider")
    page = world["as_"]("alice").get(f"/sessions/{sid}").get_data(as_text=True)
    assert 'id="pr-checks">checks failing' in page and 'id="pr-autofix"' in page and ">open<" in page
    assert "tests: <span class=\"badge\">failing</span>" in page
    assert "<strong>eve-gh</strong> on app.py:2" in page and "(outsider)" in page
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page


def test_appliance_tasks_shows_the_pr_column():
    assert pr_column({"pr_url": None}) == "-"
    assert pr_column({"pr_url": "u", "pr_number": 7, "pr_state": "merged", "pr_checks": "passing",
                      "autofix": True}) == "#7 merged, checks passing, auto-fix"
