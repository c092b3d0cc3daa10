"""The console's merge request pages (local forge) through Flask's test client, on a real bare
repository: who may see and decide first (anonymous, outsider, team reader, CSRF), then what the
pages show and what merge and close really do to the branches."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from werkzeug.security import generate_password_hash

from appliance.accounts.models import Team, TeamMember, User
from appliance.forges.local import create_hosted_repository
from appliance.forges.models import MergeRequest
from appliance.repos.models import Repository
from appliance.services import Services
from appliance.sessions.service import NewSession, SessionService
from webui import create_app

PASSWORD = "correct horse battery"
GIT_ENV = {"GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "T",
           "GIT_COMMITTER_EMAIL": "t@example.org", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git(cwd, *args) -> str:
    res = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


class Browser:
    """A test client signed in as one user, carrying the CSRF token like the pages do."""

    def __init__(self, app, who: str | None):
        self.client = app.test_client()
        self.csrf = None
        if who:
            page = self.client.get("/login").get_data(as_text=True)
            token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
            r = self.client.post("/login", data={"username": who, "password": PASSWORD, "csrf_token": token})
            assert r.status_code == 302, r.get_data(as_text=True)
            page = self.client.get("/environments").get_data(as_text=True)
            self.csrf = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)

    def get(self, path, **kw):
        return self.client.get(path, **kw)

    def post(self, path, data=None, csrf=True, **kw):
        data = dict(data or {})
        if csrf and self.csrf:
            data["csrf_token"] = self.csrf
        return self.client.post(path, data=data, **kw)


class Hosted:
    """The hosted bare repository and a clone to push branches from."""

    def __init__(self, bare: Path, work: Path):
        self.bare, self.work = bare, work
        git(work.parent, "clone", "--quiet", str(bare), str(work))

    def push_branch(self, branch: str, files: dict[str, str], start: str = "origin/main", message: str = "change"):
        git(self.work, "fetch", "--quiet", "origin")
        git(self.work, "checkout", "--quiet", "-B", branch, start)
        for name, text in files.items():
            (self.work / name).write_text(text)
        git(self.work, "add", "-A")
        git(self.work, "commit", "--quiet", "-m", message)
        git(self.work, "push", "--quiet", "origin", f"HEAD:refs/heads/{branch}")
        return git(self.work, "rev-parse", "HEAD")

    def sha(self, branch: str) -> str:
        return git(self.bare, "rev-parse", f"refs/heads/{branch}")

    def parents(self, branch: str) -> list[str]:
        return git(self.bare, "rev-list", "--parents", "-n", "1", f"refs/heads/{branch}").split()[1:]


ORIGINAL = "def add(a, b):\n    return a - b\n"


@pytest.fixture
def world(db, cfg, tmp_path):
    users = {n: User.create(username=n, is_admin=(n == "admin"), password_hash=generate_password_hash(PASSWORD))
             for n in ("alice", "bob", "eve", "admin")}
    team = Team.create(name="core")
    for n in ("alice", "bob"):
        TeamMember.create(team=team, user=users[n])
    bare = create_hosted_repository(cfg.state_dir, "acme/api", {"app.py": ORIGINAL, "README": "api\n"})
    repo = Repository.create(name="acme/api", url=str(bare), forge="local", team=team)
    service = SessionService(cfg)
    session = service.create(users["alice"], NewSession("acme/api", "Fix the bug in add()", agent="command"))
    hosted = Hosted(bare, tmp_path / "work")
    hosted.push_branch(session.work_branch, {"app.py": "def add(a, b):\n    return a + b\n"}, message="fix add")
    app = create_app(Services.build(cfg, sessions=service), test_config={"TESTING": True})
    return dict(app=app, users=users, repo=repo, session=session, hosted=hosted,
                as_=lambda who: Browser(app, who))


def open_mr(world, author="alice", branch=None, title="Fix add()", body="It subtracted.") -> MergeRequest:
    return MergeRequest.create(repository=world["repo"], source_branch=branch or world["session"].work_branch,
                               target_branch="main", title=title, body=body,
                               author=world["users"][author] if author else None)


def mr_path(mr, suffix="") -> str:
    return f"/repos/acme/api/merge_requests/{mr.id}{suffix}"


def unchanged(world, mr, main_before):
    assert world["hosted"].sha("main") == main_before
    assert MergeRequest.get_by_id(mr.id).state == "open"


# --- attacks first ---------------------------------------------------------------------------------

def test_anonymous_is_sent_to_sign_in_and_cannot_merge(world):
    mr, main = open_mr(world), world["hosted"].sha("main")
    anon = world["as_"](None)
    for path in ("/repos/acme/api/merge_requests", mr_path(mr)):
        r = anon.get(path)
        assert r.status_code == 302 and "/login" in r.headers["Location"], path
    # a POST without a signed-in session fails the CSRF check before anything else (like the rest)
    for suffix in ("/merge", "/close"):
        assert anon.post(mr_path(mr, suffix)).status_code == 400
        assert anon.post(mr_path(mr, suffix), {"csrf_token": "forged"}, csrf=False).status_code == 400
    unchanged(world, mr, main)


def test_outside_the_repository_team_everything_is_404(world):
    mr, main = open_mr(world), world["hosted"].sha("main")
    eve = world["as_"]("eve")
    for path in ("/repos/acme/api/merge_requests", mr_path(mr), "/repos/acme/api/merge_requests/999"):
        r = eve.get(path)
        assert r.status_code == 404, path
        assert "Fix add()" not in r.get_data(as_text=True) and "return a + b" not in r.get_data(as_text=True)
    for suffix in ("/merge", "/close"):
        assert eve.post(mr_path(mr, suffix)).status_code == 404
    unchanged(world, mr, main)


def test_a_team_reader_sees_but_may_not_merge_or_close(world):
    mr, main = open_mr(world), world["hosted"].sha("main")
    bob = world["as_"]("bob")
    page = bob.get(mr_path(mr)).get_data(as_text=True)
    assert "Fix add()" in page and "return a + b" in page
    assert 'id="read-only"' in page and 'id="merge"' not in page and 'id="close"' not in page
    assert bob.post(mr_path(mr, "/merge")).status_code == 403
    assert bob.post(mr_path(mr, "/close")).status_code == 403
    unchanged(world, mr, main)


def test_merge_and_close_need_the_csrf_token_even_for_the_author(world):
    mr, main = open_mr(world), world["hosted"].sha("main")
    alice = world["as_"]("alice")
    for suffix in ("/merge", "/close"):
        r = alice.post(mr_path(mr, suffix), csrf=False)
        assert r.status_code == 400 and "CSRF" in r.get_data(as_text=True)
        assert alice.post(mr_path(mr, suffix), {"csrf_token": "forged"}, csrf=False).status_code == 400
    unchanged(world, mr, main)


def test_a_request_of_another_repository_or_forge_is_404(world, cfg):
    other_bare = create_hosted_repository(cfg.state_dir, "acme/web", {"x": "1\n"})
    other = Repository.create(name="acme/web", url=str(other_bare), forge="local")
    foreign = MergeRequest.create(repository=other, source_branch="b", target_branch="main", title="Web thing")
    Repository.create(name="acme/gh", url="https://github.com/acme/gh.git", forge="github")
    alice = world["as_"]("alice")
    assert alice.get(f"/repos/acme/api/merge_requests/{foreign.id}").status_code == 404
    assert alice.post(f"/repos/acme/api/merge_requests/{foreign.id}/merge").status_code == 404
    assert alice.get("/repos/acme/gh/merge_requests").status_code == 404
    assert alice.get("/repos/acme/nope/merge_requests").status_code == 404
    assert MergeRequest.get_by_id(foreign.id).state == "open"


def test_without_an_author_only_the_source_sessions_owner_or_an_admin_decides(world):
    mr, main = open_mr(world, author=None), world["hosted"].sha("main")
    assert world["as_"]("bob").post(mr_path(mr, "/merge")).status_code == 403
    unchanged(world, mr, main)
    assert 'id="merge"' in world["as_"]("alice").get(mr_path(mr)).get_data(as_text=True)
    assert world["as_"]("alice").post(mr_path(mr, "/close")).status_code == 302
    assert MergeRequest.get_by_id(mr.id).state == "closed"


def test_another_author_is_refused_even_when_owning_the_session(world):
    mr, main = open_mr(world, author="bob"), world["hosted"].sha("main")
    assert world["as_"]("alice").post(mr_path(mr, "/merge")).status_code == 403
    unchanged(world, mr, main)
    assert world["as_"]("bob").post(mr_path(mr, "/merge")).status_code == 302
    assert MergeRequest.get_by_id(mr.id).state == "merged"


# --- what the pages show and do --------------------------------------------------------------------

def test_the_page_shows_the_request_its_session_diff_and_a_fast_forward(world):
    mr = open_mr(world)
    page = world["as_"]("alice").get(mr_path(mr)).get_data(as_text=True)
    s = world["session"]
    assert "Fix add()" in page and "It subtracted." in page
    assert s.work_branch in page and 'id="target-branch">main<' in page and 'id="author">alice<' in page
    assert f'href="/sessions/{s.id}"' in page and 'id="source-session"' in page
    assert 'data-check="fast_forward"' in page and 'id="merge"' in page
    assert "app.py" in page and "return a + b" in page and "return a - b" in page
    assert '<span class="add">+1</span> <span class="del">−1</span>' in page


def test_the_session_link_is_hidden_from_those_who_may_not_see_the_session(world):
    mr = open_mr(world)
    page = world["as_"]("bob").get(mr_path(mr)).get_data(as_text=True)  # alice's session is private
    assert 'id="source-session"' not in page and f"/sessions/{world['session'].id}" not in page


def test_merge_fast_forwards_and_redirects_back_with_the_result(world):
    mr, hosted = open_mr(world), world["hosted"]
    source = hosted.sha(world["session"].work_branch)
    alice = world["as_"]("alice")
    r = alice.post(mr_path(mr, "/merge"))
    assert r.status_code == 302 and r.headers["Location"].endswith(mr_path(mr))
    assert hosted.sha("main") == source
    got = MergeRequest.get_by_id(mr.id)
    assert got.state == "merged" and got.merged_by_id == world["users"]["alice"].id
    page = alice.get(mr_path(mr)).get_data(as_text=True)
    assert 'data-result="ok"' in page and "Merged !" in page and 'id="merged-info"' in page
    assert "return a + b" in page  # the merged diff stays showable
    assert 'id="merge"' not in page
    # merging again changes nothing and says why
    alice.post(mr_path(mr, "/merge"))
    assert hosted.sha("main") == source
    assert 'data-result="error"' in alice.get(mr_path(mr)).get_data(as_text=True)


def test_merge_makes_a_merge_commit_when_the_target_moved(world):
    mr, hosted = open_mr(world), world["hosted"]
    hosted.push_branch("main", {"README": "api, documented\n"}, message="docs")
    main_before, source = hosted.sha("main"), hosted.sha(world["session"].work_branch)
    admin = world["as_"]("admin")
    assert 'data-check="merge"' in admin.get(mr_path(mr)).get_data(as_text=True)
    assert admin.post(mr_path(mr, "/merge")).status_code == 302
    assert sorted(hosted.parents("main")) == sorted([main_before, source])
    assert MergeRequest.get_by_id(mr.id).merged_by_id == world["users"]["admin"].id


def test_a_conflict_is_shown_and_merging_leaves_everything_as_it_was(world):
    mr, hosted = open_mr(world), world["hosted"]
    hosted.push_branch("main", {"app.py": "def add(a, b):\n    return b + a  # main\n"}, message="main's fix")
    main_before = hosted.sha("main")
    alice = world["as_"]("alice")
    page = alice.get(mr_path(mr)).get_data(as_text=True)
    assert 'data-check="conflict"' in page and 'id="conflicts"' in page and "<code>app.py</code>" in page
    r = alice.post(mr_path(mr, "/merge"))
    assert r.status_code == 302
    unchanged(world, mr, main_before)
    page = alice.get(mr_path(mr)).get_data(as_text=True)
    assert 'data-result="error"' in page and "conflicts with main in app.py" in page


def test_close_by_the_author_keeps_the_branch(world):
    mr, hosted = open_mr(world), world["hosted"]
    branch_sha, main = hosted.sha(world["session"].work_branch), hosted.sha("main")
    alice = world["as_"]("alice")
    assert alice.post(mr_path(mr, "/close")).status_code == 302
    assert MergeRequest.get_by_id(mr.id).state == "closed"
    assert hosted.sha(world["session"].work_branch) == branch_sha and hosted.sha("main") == main
    page = alice.get(mr_path(mr)).get_data(as_text=True)
    assert 'id="closed-info"' in page and 'id="merge"' not in page
    assert alice.post(mr_path(mr, "/merge")).status_code == 302  # refused, with the reason
    assert hosted.sha("main") == main and MergeRequest.get_by_id(mr.id).state == "closed"


def test_the_list_shows_open_requests_first(world):
    hosted = world["hosted"]
    hosted.push_branch("feature/a", {"a.txt": "a\n"})
    hosted.push_branch("feature/b", {"b.txt": "b\n"})
    first = open_mr(world, branch="feature/a", title="Closed one")
    MergeRequest.update(state="closed").where(MergeRequest.id == first.id).execute()
    second = open_mr(world, title="Open one")
    third = open_mr(world, branch="feature/b", title="Merged one")
    MergeRequest.update(state="merged").where(MergeRequest.id == third.id).execute()
    page = world["as_"]("bob").get("/repos/acme/api/merge_requests").get_data(as_text=True)
    ids = [int(x) for x in re.findall(r'<tr data-id="(\d+)"', page)]
    assert ids[0] == second.id and set(ids) == {first.id, second.id, third.id}
    assert f'href="{mr_path(second)}"' in page
    empty = world["as_"]("admin")
    MergeRequest.delete().execute()
    assert 'id="no-merge-requests"' in empty.get("/repos/acme/api/merge_requests").get_data(as_text=True)
