"""GitHub, GitLab and Gitea adapters against local stand-ins of their REST APIs.

Each stand-in is a threaded HTTP server on 127.0.0.1 (random port) given the exact exchanges a test
expects, in order: it checks the method, the path and query, the headers and the JSON body of every
request, and answers the way the real API does (including its error shapes). Anything unexpected is
recorded and fails the test.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import logging
import socket
import threading
from urllib.parse import parse_qs, urlsplit

import pytest

from appliance.forges import (
    BranchNotFound,
    ForgeAuthError,
    ForgeError,
    ForgeNotFound,
    ForgeUnreachable,
    NothingToMerge,
    PullRequest,
    forge_for,
)
from appliance.repos.models import Repository

TOKEN = "tok_S3cr3t-value/with+chars"
JSON = "application/json"


# -- the stand-in ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Expect:
    method: str
    path: str  # raw path as sent, without the query
    reply: tuple[int, object]  # status, JSON body
    query: dict[str, str] | None = None  # decoded; None: no query string at all
    headers: dict[str, str] = dataclasses.field(default_factory=dict)  # each must be present, exactly
    absent: tuple[str, ...] = ()  # headers that must not be sent
    json: object = None  # the exact JSON body (None: no body)
    reply_headers: dict[str, str] = dataclasses.field(default_factory=dict)
    hang: bool = False  # never answer (until the stand-in stops): the client must time out


class StandIn:
    def __init__(self):
        self.expected: list[Expect] = []
        self.seen: list[str] = []
        self.problems: list[str] = []
        self.release = threading.Event()
        self.lock = threading.Lock()
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle_one(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, body, extra, hang = stand_in.answer(self.command, self.path, self.headers, raw)
                if hang:
                    stand_in.release.wait(10)
                    return
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = handle_one

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def expect(self, *exchanges: Expect) -> StandIn:
        self.expected.extend(exchanges)
        return self

    def answer(self, method, raw_path, headers, raw):
        parts = urlsplit(raw_path)
        with self.lock:
            self.seen.append(f"{method} {raw_path}")
            if not self.expected:
                self.problems.append(f"unexpected request {method} {raw_path}")
                return 599, {"message": "unexpected"}, {}, False
            exp = self.expected.pop(0)
        where = f"{method} {raw_path}"
        if (method, parts.path) != (exp.method, exp.path):
            self.problems.append(f"{where}: expected {exp.method} {exp.path}")
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()} if parts.query else None
        if query != exp.query:
            self.problems.append(f"{where}: query {query} != {exp.query}")
        for name, value in exp.headers.items():
            if headers.get(name) != value:
                self.problems.append(f"{where}: header {name}={headers.get(name)!r}, expected {value!r}")
        for name in exp.absent:
            if name in headers:
                self.problems.append(f"{where}: header {name} must not be sent")
        allowed = {k.lower() for k in exp.headers}
        for name, value in headers.items():  # the token goes in exactly one header
            if TOKEN in value and name.lower() not in allowed:
                self.problems.append(f"{where}: token sent in header {name}")
        if TOKEN in raw_path:
            self.problems.append(f"{where}: token in the URL")
        if exp.json is None:
            if raw:
                self.problems.append(f"{where}: unexpected body {raw!r}")
        else:
            if headers.get("Content-Type") != JSON:
                self.problems.append(f"{where}: Content-Type {headers.get('Content-Type')!r}")
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw
            if body != exp.json:
                self.problems.append(f"{where}: body {body!r} != {exp.json!r}")
        status, body = exp.reply
        return status, body, exp.reply_headers, exp.hang

    def check(self) -> None:
        assert not self.problems, self.problems
        assert not self.expected, f"never asked: {[f'{e.method} {e.path}' for e in self.expected]}"

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch):
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def api():
    s = StandIn()
    yield s
    s.stop()


@pytest.fixture
def refused_url():
    """An address where nothing listens: a bound socket that never listens refuses connections."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    yield f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()


def repo(forge: str, api_url: str = "", project: str = "acme/api", url: str = "https://forge.example/acme/api.git",
         **kw) -> Repository:
    fields = dict(name="acme/api", url=url, forge=forge, forge_api_url=api_url, forge_project=project,
                  credential_kind="token", credential_secret=TOKEN, default_branch="main")
    fields.update(kw)
    return Repository(**fields)


def assert_no_token(exc: BaseException, caplog=None, *objs) -> None:
    texts = [str(exc), getattr(exc, "message", ""), getattr(exc, "hint", ""), repr(exc)]
    texts += [repr(o) for o in objs]
    if caplog is not None:
        texts.append(caplog.text)
    for t in texts:
        assert TOKEN not in t and "S3cr3t" not in t, t


# -- GitHub ---------------------------------------------------------------------------------------

GH_HEADERS = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/vnd.github+json",
              "X-GitHub-Api-Version": "2022-11-28"}
GH_PULLS = "/api/v3/repos/acme/api/pulls"
GH_CREATE = {"title": "Add login", "head": "feature/login", "base": "main", "body": "Made by a session."}


def gh_pr(number=42, state="open", merged_at=None):
    return {"url": f"https://forge.example/api/v3/repos/acme/api/pulls/{number}", "id": 1000 + number,
            "html_url": f"https://forge.example/acme/api/pull/{number}", "number": number, "state": state,
            "title": "Add login", "merged_at": merged_at, "head": {"ref": "feature/login", "label": "acme:feature/login"},
            "base": {"ref": "main", "label": "acme:main"}}


def gh_create(reply, **kw):
    return Expect("POST", GH_PULLS, reply, headers=GH_HEADERS, json=GH_CREATE, **kw)


def gh_forge(api):
    return forge_for(repo("github", api.url + "/api/v3"))


def open_login_pr(forge):
    return forge.create_pull_request("feature/login", "main", "Add login", "Made by a session.")


def test_github_creates_a_pull_request(api, caplog):
    caplog.set_level(logging.DEBUG)
    api.expect(gh_create((201, gh_pr())))
    forge = gh_forge(api)
    pr = open_login_pr(forge)
    assert pr == PullRequest(url="https://forge.example/acme/api/pull/42", number=42, state="open", created=True)
    api.check()
    assert TOKEN not in caplog.text and TOKEN not in repr(forge)


def test_github_bad_credentials(api, caplog):
    api.expect(gh_create((401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest",
                                "status": "401"})))
    with pytest.raises(ForgeAuthError) as e:
        open_login_pr(gh_forge(api))
    assert "Bad credentials" in str(e.value) and "token" in e.value.hint
    assert_no_token(e.value, caplog)
    api.check()


def test_github_forbidden_token(api):
    api.expect(gh_create((403, {"message": "Resource not accessible by personal access token",
                                "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
                                "status": "403"})))
    with pytest.raises(ForgeAuthError, match="Resource not accessible") as e:
        open_login_pr(gh_forge(api))
    assert "permission" in e.value.hint
    api.check()


def test_github_existing_pull_request_is_returned(api):
    api.expect(
        gh_create((422, {"message": "Validation Failed", "errors": [
            {"resource": "PullRequest", "code": "custom",
             "message": "A pull request already exists for acme:feature/login."}],
            "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request", "status": "422"})),
        Expect("GET", GH_PULLS, (200, [gh_pr(7)]), query={"head": "acme:feature/login", "state": "open"},
               headers=GH_HEADERS),
    )
    pr = open_login_pr(gh_forge(api))
    assert pr == PullRequest(url="https://forge.example/acme/api/pull/7", number=7, state="open", created=False)
    api.check()


def test_github_branch_not_pushed(api):
    api.expect(gh_create((422, {"message": "Validation Failed", "errors": [
        {"resource": "PullRequest", "field": "head", "code": "invalid"}],
        "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request", "status": "422"})))
    with pytest.raises(BranchNotFound, match="feature/login") as e:
        open_login_pr(gh_forge(api))
    assert "push" in e.value.hint
    api.check()


def test_github_nothing_to_propose(api):
    api.expect(gh_create((422, {"message": "Validation Failed", "errors": [
        {"resource": "PullRequest", "code": "custom", "message": "No commits between main and feature/login"}],
        "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request", "status": "422"})))
    with pytest.raises(NothingToMerge):
        open_login_pr(gh_forge(api))
    api.check()


def test_github_unknown_repository(api):
    api.expect(gh_create((404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest",
                                "status": "404"})))
    with pytest.raises(ForgeNotFound, match="acme/api not found"):
        open_login_pr(gh_forge(api))
    api.check()


def test_github_get_pull_request_states(api):
    api.expect(
        Expect("GET", GH_PULLS + "/42", (200, gh_pr(42, "closed", merged_at="2024-05-01T10:00:00Z")),
               headers=GH_HEADERS),
        Expect("GET", GH_PULLS + "/43", (200, gh_pr(43, "closed")), headers=GH_HEADERS),
    )
    forge = gh_forge(api)
    assert forge.get_pull_request(42).state == "merged"
    assert forge.get_pull_request(43).state == "closed"
    api.check()


def test_github_timeout(api):
    api.expect(gh_create((201, gh_pr()), hang=True))
    forge = forge_for(repo("github", api.url + "/api/v3"), timeout=0.3)
    with pytest.raises(ForgeUnreachable, match="timed out") as e:
        open_login_pr(forge)
    assert e.value.hint
    api.check()


def test_a_redirect_is_not_followed_with_the_token(api):
    other = StandIn()  # must see nothing: urllib would replay the Authorization header there
    try:
        api.expect(gh_create((307, {"message": "Moved"}), reply_headers={"Location": other.url + GH_PULLS}))
        with pytest.raises(ForgeError, match="redirected"):
            open_login_pr(gh_forge(api))
        api.check()
        assert other.seen == []
    finally:
        other.stop()


def test_a_forge_echoing_the_token_is_redacted(api, caplog):
    caplog.set_level(logging.DEBUG)
    api.expect(gh_create((500, {"message": f"internal error for token {TOKEN}"})))
    with pytest.raises(ForgeError, match="internal error") as e:
        open_login_pr(gh_forge(api))
    assert "***" in str(e.value)
    assert_no_token(e.value, caplog)


# -- GitLab ---------------------------------------------------------------------------------------

GL_HEADERS = {"PRIVATE-TOKEN": TOKEN}
GL_MRS = "/api/v4/projects/acme%2Fapi/merge_requests"
GL_CREATE = {"source_branch": "feature/login", "target_branch": "main", "title": "Add login",
             "description": "Made by a session."}


def gl_mr(iid=3, state="opened"):
    return {"id": 90000 + iid, "iid": iid, "project_id": 17, "title": "Add login", "state": state,
            "source_branch": "feature/login", "target_branch": "main",
            "web_url": f"https://forge.example/acme/api/-/merge_requests/{iid}"}


def gl_create(reply, path=GL_MRS):
    return Expect("POST", path, reply, headers=GL_HEADERS, absent=("Authorization",), json=GL_CREATE)


def gl_forge(api, **kw):
    return forge_for(repo("gitlab", api.url + "/api/v4", **kw))


def test_gitlab_creates_a_merge_request(api):
    api.expect(gl_create((201, gl_mr())))
    pr = open_login_pr(gl_forge(api))
    assert pr == PullRequest(url="https://forge.example/acme/api/-/merge_requests/3", number=3, state="open")
    api.check()


def test_gitlab_nested_group_project_is_encoded(api):
    api.expect(gl_create((201, gl_mr()), path="/api/v4/projects/acme%2Fplatform%2Fapi/merge_requests"))
    open_login_pr(gl_forge(api, project="acme/platform/api"))
    api.check()


def test_gitlab_unauthorized(api, caplog):
    api.expect(gl_create((401, {"message": "401 Unauthorized"})))
    with pytest.raises(ForgeAuthError, match="401 Unauthorized") as e:
        open_login_pr(gl_forge(api))
    assert_no_token(e.value, caplog)
    api.check()


def test_gitlab_existing_merge_request_is_returned(api):
    api.expect(
        gl_create((409, {"message": ["Another open merge request already exists for this source branch: !5"]})),
        Expect("GET", GL_MRS, (200, [gl_mr(5)]), headers=GL_HEADERS,
               query={"source_branch": "feature/login", "target_branch": "main", "state": "opened"}),
    )
    pr = open_login_pr(gl_forge(api))
    assert (pr.number, pr.state, pr.created) == (5, "open", False)
    api.check()


def test_gitlab_branch_not_pushed(api):
    api.expect(gl_create((400, {"message": {"source_branch": ["does not exist"]}})))
    with pytest.raises(BranchNotFound, match="feature/login"):
        open_login_pr(gl_forge(api))
    api.check()


def test_gitlab_unknown_project(api):
    api.expect(gl_create((404, {"message": "404 Project Not Found"})))
    with pytest.raises(ForgeNotFound, match="project acme/api not found"):
        open_login_pr(gl_forge(api))
    api.check()


def test_gitlab_get_merge_request(api):
    api.expect(Expect("GET", GL_MRS + "/3", (200, gl_mr(3, "merged")), headers=GL_HEADERS))
    assert gl_forge(api).get_pull_request(3).state == "merged"
    api.check()


# -- Gitea ----------------------------------------------------------------------------------------

GT_HEADERS = {"Authorization": f"token {TOKEN}"}
GT_REPO = "/api/v1/repos/acme/api"
GT_CREATE = {"head": "feature/login", "base": "main", "title": "Add login", "body": "Made by a session."}
SWAGGER = "https://forge.example/api/swagger"


def gt_pr(number=9, state="open", merged=False):
    return {"id": 500 + number, "number": number, "state": state, "merged": merged, "title": "Add login",
            "html_url": f"https://forge.example/acme/api/pulls/{number}",
            "head": {"ref": "feature/login"}, "base": {"ref": "main"}}


def gt_create(reply):
    return Expect("POST", GT_REPO + "/pulls", reply, headers=GT_HEADERS, json=GT_CREATE)


def gt_forge(api):
    return forge_for(repo("gitea", api.url + "/api/v1"))


def test_gitea_creates_a_pull_request(api):
    api.expect(gt_create((201, gt_pr())))
    pr = open_login_pr(gt_forge(api))
    assert pr == PullRequest(url="https://forge.example/acme/api/pulls/9", number=9, state="open")
    api.check()


def test_gitea_unauthorized(api, caplog):
    api.expect(gt_create((401, {"message": "token is required", "url": SWAGGER})))
    with pytest.raises(ForgeAuthError) as e:
        open_login_pr(gt_forge(api))
    assert_no_token(e.value, caplog)
    api.check()


def test_gitea_existing_pull_request_is_returned(api):
    api.expect(
        gt_create((409, {"message": "pull request already exists for these targets [id: 31, issue_id: 9, "
                                    "head_repo_id: 4, base_repo_id: 4, head_branch: feature/login, base_branch: main]",
                         "url": SWAGGER})),
        Expect("GET", GT_REPO + "/pulls/9", (200, gt_pr(9)), headers=GT_HEADERS),
    )
    pr = open_login_pr(gt_forge(api))
    assert (pr.number, pr.created) == (9, False)
    api.check()


def test_gitea_branch_not_pushed(api):
    api.expect(
        gt_create((404, {"errors": None, "message": "The target couldn't be found.", "url": SWAGGER})),
        Expect("GET", GT_REPO, (200, {"id": 4, "full_name": "acme/api"}), headers=GT_HEADERS),
        Expect("GET", GT_REPO + "/branches/feature%2Flogin", (404, {"errors": None, "message": "The target couldn't be found.",
                                                                   "url": SWAGGER}), headers=GT_HEADERS),
    )
    with pytest.raises(BranchNotFound, match="feature/login"):
        open_login_pr(gt_forge(api))
    api.check()


def test_gitea_unknown_repository(api):
    api.expect(
        gt_create((404, {"errors": None, "message": "The target couldn't be found.", "url": SWAGGER})),
        Expect("GET", GT_REPO, (404, {"errors": None, "message": "The target couldn't be found.", "url": SWAGGER}),
               headers=GT_HEADERS),
    )
    with pytest.raises(ForgeNotFound, match="acme/api not found"):
        open_login_pr(gt_forge(api))
    api.check()


def test_gitea_nothing_to_propose(api):
    api.expect(gt_create((422, {"message": "Invalid PullRequest: There are no changes between the head and the base",
                                "url": SWAGGER})))
    with pytest.raises(NothingToMerge):
        open_login_pr(gt_forge(api))
    api.check()


def test_gitea_get_pull_request(api):
    api.expect(Expect("GET", GT_REPO + "/pulls/9", (200, gt_pr(9, "closed", merged=True)), headers=GT_HEADERS))
    assert gt_forge(api).get_pull_request(9).state == "merged"
    api.check()


# -- all of them ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind,suffix", [("github", "/api/v3"), ("gitlab", "/api/v4"), ("gitea", "/api/v1")])
def test_forge_unreachable(kind, suffix, refused_url, caplog):
    forge = forge_for(repo(kind, refused_url + suffix))
    with pytest.raises(ForgeUnreachable, match="refused") as e:
        open_login_pr(forge)
    assert e.value.hint
    assert_no_token(e.value, caplog, forge)
