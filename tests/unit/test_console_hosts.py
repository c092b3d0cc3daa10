"""Admins see the worker hosts (capacity, running turns, heartbeat, version) and drain one."""

import datetime as dt

import pytest

from appliance.accounts.models import User
from appliance.cluster.models import Host, TurnAttempt
from appliance.db import utcnow
from appliance.repos.models import Repository
from appliance.services import Services
from appliance.sessions.models import Session, Turn
from appliance.sessions.service import SessionService
from webui import create_app

from helpers import console_login, people


@pytest.fixture
def app(db, cfg):
    people()
    return create_app(Services.build(cfg, sessions=SessionService(cfg)), test_config={"TESTING": True})


def test_admins_see_the_hosts_and_drain_one(app):
    Host.create(id="worker-a", address="10.0.0.5", capacity=2, version="1.2")
    Host.create(id="worker-b", capacity=4, heartbeat=utcnow() - dt.timedelta(hours=1))
    session = Session.create(owner=User.get(User.username == "alice"),
                             repository=Repository.create(name="acme/api", url="/srv/api.git"),
                             base_branch="main", work_branch="w/1")
    TurnAttempt.create(turn=Turn.create(session=session, number=1, message="go"), host="worker-a")
    admin, csrf = console_login(app, "admin")
    page = admin.get("/admin/hosts").get_data(as_text=True)
    assert 'data-host="worker-a"' in page and "10.0.0.5" in page and "1.2" in page
    assert "1 / 2" in page, "its running turn counts against its capacity"
    assert "silent for more than" in page, "a host without a recent heartbeat says so"
    assert "one server" in page, "this appliance is not in cluster mode and says what that means"

    r = admin.post("/admin/hosts/worker-a/drain", data={"csrf_token": csrf, "draining": "1"})
    assert r.status_code == 302 and Host.get_by_id("worker-a").draining
    assert "draining" in admin.get("/admin/hosts").get_data(as_text=True)
    admin.post("/admin/hosts/worker-a/drain", data={"csrf_token": csrf, "draining": "0"})
    assert not Host.get_by_id("worker-a").draining
    assert admin.post("/admin/hosts/nobody/drain", data={"csrf_token": csrf}).status_code == 404


def test_the_hosts_page_is_for_admins_only(app):
    Host.create(id="worker-a", capacity=2)
    alice, csrf = console_login(app, "alice")
    assert alice.get("/admin/hosts").status_code == 404
    assert alice.post("/admin/hosts/worker-a/drain", data={"csrf_token": csrf}).status_code == 404
    assert not Host.get_by_id("worker-a").draining
    anonymous = app.test_client()
    assert anonymous.get("/admin/hosts").status_code == 302  # to the sign-in page
    assert anonymous.post("/admin/hosts/worker-a/drain").status_code in (302, 400)
    assert not Host.get_by_id("worker-a").draining
