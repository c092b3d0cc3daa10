"""`appliance forge webhook|login` through the CLI's entry point, on a real SQLite database."""

from __future__ import annotations

from test_cli_repo import appliance_env, cli  # noqa: F401  (the fixture)

from appliance.accounts.models import User
from appliance.prloop.models import ForgeLogin
from appliance.repos.models import Repository


def test_webhook_shows_the_url_and_secret_and_rotates(appliance_env, capsys, monkeypatch):  # noqa: F811
    repo = Repository.create(name="acme/api", url="https://github.com/acme/api.git", forge="github")
    rc, out, _ = cli(capsys, monkeypatch, "forge", "webhook", "acme/api")
    secret = Repository.get_by_id(repo.id).webhook_secret
    assert rc == 0 and f"/hooks/forge/github/{repo.id}" in out and f"secret  {secret}" in out
    rc, out, _ = cli(capsys, monkeypatch, "forge", "webhook", "acme/api", "--rotate")
    assert rc == 0 and Repository.get_by_id(repo.id).webhook_secret not in ("", secret)


def test_a_repository_without_a_remote_forge_has_no_webhook(appliance_env, capsys, monkeypatch):  # noqa: F811
    Repository.create(name="acme/local", url="/srv/x.git", forge="local")
    rc, _, err = cli(capsys, monkeypatch, "forge", "webhook", "acme/local")
    assert rc != 0 and "sends no webhooks" in err


def test_forge_logins_are_added_listed_and_removed(appliance_env, capsys, monkeypatch):  # noqa: F811
    User.create(username="alice")
    rc, out, _ = cli(capsys, monkeypatch, "forge", "login", "add", "github", "octocat", "alice")
    assert rc == 0 and "octocat is alice" in out
    rc, _, err = cli(capsys, monkeypatch, "forge", "login", "add", "github", "octo cat", "alice")
    assert rc != 0 and "not a forge login" in err
    rc, _, err = cli(capsys, monkeypatch, "forge", "login", "add", "github", "other", "nobody")
    assert rc != 0 and "no appliance user" in err
    rc, out, _ = cli(capsys, monkeypatch, "forge", "login", "list")
    mapping = ForgeLogin.get(ForgeLogin.login == "octocat")
    assert out.strip() == f"{mapping.id}  github  octocat  alice"
    rc, _, _ = cli(capsys, monkeypatch, "forge", "login", "remove", str(mapping.id))
    assert rc == 0 and ForgeLogin.select().count() == 0
