"""`appliance archive|delete ID` and `appliance tasks --archived` against the real app on loopback
(the world of test_cli_e2e): the owner archives and deletes; another user and a running turn are
refused with a clear message, and nothing is lost then."""

from __future__ import annotations

from test_cli_e2e import cli, login, world  # noqa: F401 - world is the fixture

from appliance.sessions.models import Event, Session, Status, Turn, TurnStatus


def test_archive_tasks_and_delete(world, monkeypatch):  # noqa: F811
    from appliance.accounts.models import User
    from appliance.sessions.service import NewSession, SessionService

    login(world, monkeypatch)
    service = SessionService(world["cfg"])
    sid = service.create(User.get(User.username == "alice"), NewSession("acme/api", "Fix the bug")).id
    Session.update(status=Status.IDLE).where(Session.id == sid).execute()
    Turn.update(status=TurnStatus.COMPLETED).where(Turn.session == sid).execute()  # as the runner leaves it

    rc, out, err = cli("archive", sid)
    assert rc == 0 and f"{sid} archived" in out, err
    assert sid not in cli("tasks")[1]
    assert sid in cli("tasks", "--archived")[1]
    assert cli("archive", sid, "--undo")[0] == 0 and sid in cli("tasks")[1]

    Session.update(status=Status.RUNNING).where(Session.id == sid).execute()
    rc, _, err = cli("delete", sid)
    assert rc != 0 and "a turn is running or waiting, so it was not deleted" in err and f"appliance cancel {sid}" in err
    assert Event.select().where(Event.session == sid).exists()

    login(world, monkeypatch, "bob")
    rc, _, err = cli("delete", sid)
    assert rc != 0 and f"no session {sid}" in err
    rc, _, err = cli("archive", sid)
    assert rc != 0 and f"no session {sid}" in err

    login(world, monkeypatch, "alice")
    Session.update(status=Status.IDLE).where(Session.id == sid).execute()
    rc, out, err = cli("delete", sid)
    assert rc == 0 and f"deleted {sid}" in out, err
    assert not Session.select().where(Session.id == sid).exists()
    assert not Event.select().where(Event.session == sid).exists()
    rc, _, err = cli("delete", sid)
    assert rc != 0 and f"no session {sid}" in err


def test_env_list_names_who_shares_an_environment(world, monkeypatch):  # noqa: F811
    from appliance.accounts.models import Team, TeamMember, User
    from appliance.environments.models import Environment

    team = Team.create(name="core")
    alice, bob = User.get(User.username == "alice"), User.get(User.username == "bob")
    for u in (alice, bob):
        TeamMember.create(team=team, user=u)
    Environment.create(owner=alice, name="py", is_default=True, team=team)
    login(world, monkeypatch, "bob")
    rc, out, _ = cli("env", "list")
    assert rc == 0 and "py (shared by alice)" in out and not out.splitlines()[1].startswith("*")
    rc, _, err = cli("env", "default", "py")  # only one's own environment can be one's default
    assert rc != 0 and "you have no environment named 'py'" in err
