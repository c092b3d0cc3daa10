"""forge_for(): which adapter a repository gets, where its API is, and the clear refusals."""

from __future__ import annotations

import pytest

from appliance.forges import ForgeConfigError, ForgeError, NothingToMerge, forge_for
from appliance.forges.gitea import GiteaForge
from appliance.forges.github import GitHubForge
from appliance.forges.gitlab import GitLabForge
from appliance.forges.local import LocalForge, create_hosted_repository
from appliance.repos.models import Repository

TOKEN = "glpat-registry-secret-123"


def repo(forge, url="https://github.com/acme/api.git", **kw) -> Repository:
    fields = dict(name="acme/api", url=url, forge=forge, credential_kind="token", credential_secret=TOKEN)
    fields.update(kw)
    return Repository(**fields)


def test_unknown_and_missing_forge_kinds():
    with pytest.raises(ForgeConfigError, match="unknown forge 'bitbucket'") as e:
        forge_for(repo("bitbucket"))
    assert "github" in e.value.hint and "local" in e.value.hint
    with pytest.raises(ForgeConfigError, match="no forge"):
        forge_for(repo("none"))


@pytest.mark.parametrize("kind,secret", [("none", None), ("token", ""), ("ssh_key", "-----BEGIN OPENSSH PRIVATE KEY-----")])
def test_remote_forges_need_a_token(kind, secret):
    for forge in ("github", "gitlab", "gitea"):
        with pytest.raises(ForgeConfigError, match="no token") as e:
            forge_for(repo(forge, credential_kind=kind, credential_secret=secret, forge_api_url="https://g.example/api/v1"))
        assert "token" in e.value.hint


def test_a_token_with_a_line_break_is_refused_without_showing_it():
    with pytest.raises(ForgeConfigError) as e:
        forge_for(repo("github", credential_secret=TOKEN + "\nX-Injected: 1"))
    assert TOKEN not in str(e.value)


@pytest.mark.parametrize("url,api_url,expected", [
    ("https://github.com/acme/api.git", "", "https://api.github.com"),
    ("git@github.com:acme/api.git", "", "https://api.github.com"),
    ("https://ghe.example.com/acme/api.git", "", "https://ghe.example.com/api/v3"),
    ("https://github.com/acme/api.git", "https://ghe.internal/api/v3/", "https://ghe.internal/api/v3"),
])
def test_github_api_url(url, api_url, expected):
    forge = forge_for(repo("github", url=url, forge_api_url=api_url))
    assert isinstance(forge, GitHubForge)
    assert (forge.client.api_url, forge.owner, forge.repo) == (expected, "acme", "api")
    assert TOKEN not in repr(forge) and TOKEN not in repr(forge.client)


@pytest.mark.parametrize("url,project,expected_api,expected_project", [
    ("https://gitlab.com/acme/platform/api.git", "", "https://gitlab.com/api/v4", "acme/platform/api"),
    ("ssh://git@gitlab.example:2222/acme/api.git", "", "https://gitlab.example/api/v4", "acme/api"),
    ("https://gitlab.com/x/y.git", "acme/api", "https://gitlab.com/api/v4", "acme/api"),
])
def test_gitlab_api_url_and_project(url, project, expected_api, expected_project):
    forge = forge_for(repo("gitlab", url=url, forge_project=project))
    assert isinstance(forge, GitLabForge)
    assert (forge.client.api_url, forge.project) == (expected_api, expected_project)


def test_gitea_needs_its_api_url():
    with pytest.raises(ForgeConfigError, match="API URL") as e:
        forge_for(repo("gitea", url="https://gitea.example/acme/api.git"))
    assert "api/v1" in e.value.hint
    forge = forge_for(repo("gitea", url="https://gitea.example/acme/api.git", forge_api_url="https://gitea.example/api/v1"))
    assert isinstance(forge, GiteaForge) and (forge.owner, forge.repo) == ("acme", "api")


@pytest.mark.parametrize("api_url", ["ftp://g.example/api", "https://user:pw@g.example/api/v1", "not a url"])
def test_unusable_api_urls(api_url):
    with pytest.raises(ForgeConfigError):
        forge_for(repo("gitea", forge_api_url=api_url))


@pytest.mark.parametrize("project", ["acme", "acme/api/extra", "acme/../api"])
def test_github_project_must_be_owner_and_name(project):
    with pytest.raises(ForgeConfigError, match="project"):
        forge_for(repo("github", forge_project=project))


def test_requests_no_forge_would_accept_are_refused_before_asking():
    forge = forge_for(repo("github", forge_api_url="http://127.0.0.1:9/api/v3"))  # never contacted
    with pytest.raises(NothingToMerge):
        forge.create_pull_request("main", "main", "Same")
    with pytest.raises(ForgeError, match="branch name"):
        forge.create_pull_request("-x", "main", "Bad")
    with pytest.raises(ForgeError, match="title"):
        forge.create_pull_request("feature", "main", "")


def test_local_forge_needs_a_hosted_bare_repository(tmp_path):
    with pytest.raises(ForgeConfigError, match="not a bare repository"):
        forge_for(repo("local", url=str(tmp_path / "nowhere.git")))
    with pytest.raises(ForgeConfigError, match="not a bare repository"):
        forge_for(repo("local", url="https://github.com/acme/api.git"))
    path = create_hosted_repository(tmp_path / "state", "acme/api")
    # the state dir is found from the hosted layout, or given
    assert isinstance(forge_for(repo("local", url=str(path))), LocalForge)
    assert isinstance(forge_for(repo("local", url=f"file://{path}"), state_dir=tmp_path / "state"), LocalForge)
