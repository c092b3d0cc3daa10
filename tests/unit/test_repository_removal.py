"""Admins remove repositories in the console and the API, with the same rule as `appliance repo
remove`: refused (409, the sessions named) while sessions use it. Everyone else: 403 in the API
(they may see the repository), 404 for the admin pages, 401 or the sign-in page when anonymous."""

from __future__ import annotations

import re

from test_console_pages import make_session, world  # noqa: F401 - the console's world fixture

from appliance.repos.models import Repository
from appliance.sessions.models import Session, Status

from helpers import api_caller


def api(world, who):  # noqa: F811
    return api_caller(world["app"], world["users"][who] if who else None)


def test_admin_removes_an_unused_repository(world):  # noqa: F811
    tools = Repository.create(name="acme/tools", url="/srv/tools.git")
    other = Repository.create(name="acme/other", url="/srv/other.git")
    admin = world["as_"]("admin")
    assert f'id="remove-repo-{tools.id}"' in admin.get("/admin/repositories").get_data(as_text=True)
    assert admin.post(f"/admin/repositories/{tools.id}/remove").status_code == 302
    r = api(world, "admin")("delete", f"/repositories/{other.id}")
    assert r.status_code == 200 and r.json == {"deleted": "acme/other"}
    assert not Repository.select().where(Repository.name.in_(["acme/tools", "acme/other"])).exists()
    assert api(world, "admin")("delete", f"/repositories/{other.id}").status_code == 404


def test_removal_is_refused_while_sessions_use_it(world):  # noqa: F811
    sid = make_session(world)
    Session.update(status=Status.RUNNING).where(Session.id == sid).execute()
    repo = world["repo"]
    r = api(world, "admin")("delete", f"/repositories/{repo.id}")
    assert r.status_code == 409
    assert "'acme/api' is used by 1 session(s), 1 unfinished" in r.json["error"] and f"{sid} (running)" in r.json["error"]
    assert "appliance cancel SESSION" in r.json["hint"] and "appliance delete SESSION" in r.json["hint"]
    page = world["as_"]("admin").post(f"/admin/repositories/{repo.id}/remove")
    assert page.status_code == 409 and sid in page.get_data(as_text=True)
    assert Repository.get_or_none(Repository.id == repo.id) is not None
    # once its session is deleted, the repository can go
    Session.update(status=Status.COMPLETED).where(Session.id == sid).execute()
    assert api(world, "alice")("delete", f"/sessions/{sid}").status_code == 200
    assert api(world, "admin")("delete", f"/repositories/{repo.id}").status_code == 200


def test_only_admins_remove_repositories(world):  # noqa: F811
    repo = Repository.create(name="acme/tools", url="/srv/tools.git")
    r = api(world, "alice")("delete", f"/repositories/{repo.id}")
    assert r.status_code == 403 and "only admins" in r.json["error"]
    assert api(world, None)("delete", f"/repositories/{repo.id}").status_code == 401
    assert world["as_"]("alice").post(f"/admin/repositories/{repo.id}/remove").status_code == 404
    assert world["app"].test_client().post(f"/admin/repositories/{repo.id}/remove").status_code == 400  # CSRF
    anon = world["app"].test_client()  # signed out, but with a valid CSRF token from the sign-in page
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', anon.get("/login").get_data(as_text=True)).group(1)
    r = anon.post(f"/admin/repositories/{repo.id}/remove", data={"csrf_token": csrf})
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    assert Repository.get_or_none(Repository.id == repo.id) is not None
