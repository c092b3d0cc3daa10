"""Forge webhooks through the real Flask app and SQLite: signed deliveries in each forge's documented
shape (GitHub, Gitea, GitLab), replays, outsiders, the auto-fix cap, replies, sessions from issues.

The forge's REST API is the only stand-in (`ForgeAPI`: records what the appliance asks of it).
Guests are not booted: a queued auto-fix turn is asserted with its prompt; a turn's end is recorded
the way the runner records it (status, commit, the git proxy's push record) before the reply.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid

import pytest

from appliance.accounts.models import Team, TeamMember, User
from appliance.db import utcnow
from appliance.forges.base import Check, PullRequest, ReviewNote
from appliance.gitproxy.tokens import Grant
from appliance.prloop import poller
from appliance.prloop.apply import REPLY_MARK
from appliance.prloop.events import MAX_EXCERPT
from appliance.prloop.hooks import webhook_path, webhook_secret
from appliance.prloop.models import ForgeDelivery, ForgeLogin, PrReviewComment
from appliance.repos.models import Repository
from appliance.services import Services
from appliance.sessions.models import Session, Status, Turn, TurnStatus
from appliance.sessions.pushes import record_push
from appliance.sessions.service import NewSession, SessionService
from appliance.sessions.stream import emit
from webui import create_app

BRANCH = "appliance/fix-the-bug-abc123"


class ForgeAPI:
    """Stand-in for a forge's REST API: answers the pull request's state and checks, records every
    comment and reply the appliance posts."""

    def __init__(self):
        self.state = "open"
        self.checks: list[Check] = []
        self.notes: list[ReviewNote] = []
        self.replies: list[tuple[int, str, str]] = []
        self.issue_comments: list[tuple[int, str]] = []
        self.created: list[dict] = []

    def __call__(self, repository, state_dir=None):
        return self

    def create_pull_request(self, head, base, title, body="", **_):
        self.created.append({"head": head, "base": base, "title": title, "body": body})
        return PullRequest(url="https://forge.example/acme/api/pull/7", number=7, state="open")

    def get_pull_request(self, number):
        return PullRequest(url=f"https://forge.example/acme/api/pull/{number}", number=number, state=self.state)

    def pull_request_checks(self, number):
        return list(self.checks)

    def review_notes(self, number):
        return list(self.notes)

    def reply_to_review(self, number, thread, body):
        self.replies.append((number, thread, body))

    def comment_on_issue(self, number, body):
        self.issue_comments.append((number, body))


@pytest.fixture
def world(db, cfg):
    users = {n: User.create(username=n) for n in ("alice", "bob", "eve")}
    team = Team.create(name="core")
    for n in ("alice", "bob"):
        TeamMember.create(team=team, user=users[n])
    repos = {forge: Repository.create(name=f"acme/{forge}", url=f"https://{forge}.example/acme/api.git", forge=forge,
                                      forge_api_url=f"https://{forge}.example/api", credential_kind="token",
                                      credential_secret="tok", team=team)
             for forge in ("github", "gitea", "gitlab")}
    for forge in repos:
        ForgeLogin.create(user=users["alice"], forge=forge, login="alice-gh")
        ForgeLogin.create(user=users["eve"], forge=forge, login="eve-gh")  # mapped, but not on the team
    forge_api = ForgeAPI()
    service = SessionService(cfg, forge_for=forge_api)
    client = create_app(Services.build(cfg, sessions=service)).test_client()
    return dict(users=users, repos=repos, forge=forge_api, service=service, client=client, cfg=cfg)


def open_pr_session(world, forge="github", autofix=True) -> Session:
    """A session whose first turn pushed and whose pull request #7 is open."""
    s = world["service"].create(world["users"]["alice"], NewSession(repository=world["repos"][forge].name,
                                                                    prompt="Fix the bug"))
    Turn.update(status=TurnStatus.COMPLETED, commit_sha="a" * 40).where(Turn.session == s.id).execute()
    Session.update(status=Status.IDLE, work_branch=BRANCH, head_sha="a" * 40, pr_url="https://forge.example/pr/7",
                   pr_number=7, pr_state="open", autofix=autofix).where(Session.id == s.id).execute()
    return Session.get_by_id(s.id)


def send(world, forge, event, payload, *, secret=None, delivery=None, sign=True, repo=None):
    repo = repo or world["repos"][forge]
    secret = webhook_secret(repo) if secret is None else secret
    body = json.dumps(payload).encode()
    delivery = delivery or str(uuid.uuid4())
    headers = {"Content-Type": "application/json"}
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if forge == "github":
        headers.update({"X-GitHub-Event": event, "X-GitHub-Delivery": delivery})
        if sign:
            headers["X-Hub-Signature-256"] = "sha256=" + digest
    elif forge == "gitea":
        headers.update({"X-Gitea-Event": event, "X-Gitea-Delivery": delivery})
        if sign:
            headers["X-Gitea-Signature"] = digest
    else:
        headers.update({"X-Gitlab-Event": event, "X-Gitlab-Event-UUID": delivery})
        if sign:
            headers["X-Gitlab-Token"] = secret
    return world["client"].post(webhook_path(repo), data=body, headers=headers)


# -- payloads in each forge's documented shape ------------------------------------------------------

def gh_repo():
    return {"id": 1296269, "full_name": "acme/api", "name": "api", "owner": {"login": "acme"}}


def gh_check_run(name="tests", conclusion="failure", text="FAILED tests/test_login.py::test_empty - AssertionError"):
    return {"action": "completed", "check_run": {
        "id": 4, "name": name, "head_sha": "a" * 40, "status": "completed", "conclusion": conclusion,
        "output": {"title": f"{name} failed", "summary": "1 failed, 20 passed", "text": text},
        "check_suite": {"id": 5, "head_branch": BRANCH, "head_sha": "a" * 40},
        "pull_requests": [{"number": 7, "head": {"ref": BRANCH, "sha": "a" * 40}, "base": {"ref": "main"}}]},
        "repository": gh_repo(), "sender": {"login": "github-actions[bot]"}}


def gh_review_comment(login="alice-gh", body="Handle the empty password here.", comment_id=101, reply_to=None):
    comment = {"id": comment_id, "path": "app/login.py", "line": 12, "original_line": 12, "side": "RIGHT",
               "body": body, "user": {"login": login, "type": "User"}, "commit_id": "a" * 40}
    if reply_to:
        comment["in_reply_to_id"] = reply_to
    return {"action": "created", "comment": comment,
            "pull_request": {"number": 7, "state": "open", "html_url": "https://forge.example/acme/api/pull/7",
                             "head": {"ref": BRANCH, "sha": "a" * 40}, "base": {"ref": "main"}},
            "repository": gh_repo(), "sender": {"login": login}}


def gh_pull_request(action="closed", merged=True):
    return {"action": action, "number": 7, "pull_request": {
        "number": 7, "state": "closed" if action == "closed" else "open", "merged": merged,
        "merged_at": "2026-11-30T01:00:00Z" if merged else None, "html_url": "https://forge.example/acme/api/pull/7",
        "head": {"ref": BRANCH, "sha": "a" * 40}, "base": {"ref": "main"}}, "repository": gh_repo(),
        "sender": {"login": "alice-gh"}}


def gh_issue_labeled(login="alice-gh", label="appliance"):
    return {"action": "labeled", "label": {"name": label, "color": "ededed"},
            "issue": {"number": 31, "title": "Login accepts an empty password", "body": "Steps: submit the form empty.",
                      "labels": [{"name": label}], "user": {"login": "someone"}},
            "repository": gh_repo(), "sender": {"login": login}}


def gh_issue_comment(body, login="alice-gh"):
    return {"action": "created", "issue": {"number": 32, "title": "Slow search", "body": "It takes 9 s."},
            "comment": {"id": 900, "body": body, "user": {"login": login}}, "repository": gh_repo(),
            "sender": {"login": login}}


# -- 1. forge events in: signatures, replays, size ------------------------------------------------------


@pytest.mark.parametrize("forge", ["github", "gitea", "gitlab"])
def test_unsigned_and_wrongly_signed_deliveries_are_refused_and_change_nothing(world, forge):
    s = open_pr_session(world, forge)
    event, payload = {"github": ("check_run", gh_check_run()),
                      "gitea": ("status", {"state": "failure", "context": "ci/tests", "sha": "a" * 40}),
                      "gitlab": ("Job Hook", {"object_kind": "build", "build_name": "tests", "build_status": "failed",
                                              "ref": BRANCH, "sha": "a" * 40})}[forge]
    assert send(world, forge, event, payload, sign=False).status_code == 401
    assert send(world, forge, event, payload, secret="not-the-secret").status_code == 401
    other = world["repos"]["gitea" if forge != "gitea" else "github"]  # another repository's secret
    assert send(world, forge, event, payload, secret=webhook_secret(other)).status_code == 401
    assert ForgeDelivery.select().count() == 0
    assert Turn.select().where(Turn.session == s.id).count() == 1
    assert Session.get_by_id(s.id).pr_checks == ""
    # the same delivery, signed: taken
    assert send(world, forge, event, payload).status_code == 200
    assert Session.get_by_id(s.id).pr_checks == "failing"


def test_a_replayed_delivery_is_answered_duplicate_and_does_nothing(world):
    s = open_pr_session(world)
    first = send(world, "github", "check_run", gh_check_run(), delivery="d-1")
    assert first.status_code == 200 and first.json["done"] == ["queued turn 2"]
    # the check passes, then an attacker replays the signed failure: nothing changes
    assert send(world, "github", "check_run", gh_check_run(conclusion="success"), delivery="d-2").status_code == 200
    replay = send(world, "github", "check_run", gh_check_run(), delivery="d-1")
    assert replay.status_code == 200 and replay.json == {"status": "duplicate"}
    assert Session.get_by_id(s.id).pr_checks == "passing"
    assert Turn.select().where(Turn.session == s.id).count() == 2


def test_a_delivery_for_a_repository_of_another_forge_or_none_is_404(world):
    payload = gh_check_run()
    repo = world["repos"]["gitlab"]
    body = json.dumps(payload).encode()
    r = world["client"].post(f"/hooks/forge/github/{repo.id}", data=body, headers={"X-GitHub-Event": "check_run"})
    assert r.status_code == 404
    assert world["client"].post("/hooks/forge/github/99999", data=body).status_code == 404


def test_an_oversized_delivery_is_refused_before_it_is_read(world):
    open_pr_session(world)
    big = gh_check_run(text="x" * (world["cfg"].forge_webhook_max_kb * 1024 + 10))
    r = send(world, "github", "check_run", big)
    assert r.status_code == 413
    assert ForgeDelivery.select().count() == 0


def test_a_delivery_without_an_id_or_with_a_body_that_is_not_json_is_400(world):
    repo = world["repos"]["github"]
    secret = webhook_secret(repo).encode()
    for body, delivery in ((b'{"action": "completed"}', ""), (b"not json", "d-9")):
        sig = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        r = world["client"].post(webhook_path(repo), data=body, headers={
            "X-GitHub-Event": "check_run", "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": sig})
        assert r.status_code == 400, r.json


def test_the_webhook_secret_is_made_once_and_kept(world):
    repo = world["repos"]["github"]
    first = webhook_secret(repo)
    assert len(first) >= 32
    assert webhook_secret(Repository.get_by_id(repo.id)) == first


# -- 2. PR state on the session ----------------------------------------------------------------------------


def test_pr_state_and_checks_follow_the_events_of_each_forge(world):
    gh, gitea, gl = (open_pr_session(world, f, autofix=False) for f in ("github", "gitea", "gitlab"))
    Session.update(work_branch=BRANCH + "-gitea").where(Session.id == gitea.id).execute()
    Session.update(work_branch=BRANCH + "-gitlab").where(Session.id == gl.id).execute()
    assert send(world, "github", "pull_request", gh_pull_request("closed", merged=True)).status_code == 200
    assert Session.get_by_id(gh.id).pr_state == "merged"
    gitea_pr = {"action": "closed", "number": 7, "pull_request": {
        "number": 7, "state": "closed", "merged": False, "html_url": "https://gitea.example/acme/api/pulls/7",
        "head": {"ref": BRANCH + "-gitea"}, "base": {"ref": "main"}}, "sender": {"login": "alice-gh"}}
    assert send(world, "gitea", "pull_request", gitea_pr).status_code == 200
    assert Session.get_by_id(gitea.id).pr_state == "closed"
    pipeline = {"object_kind": "pipeline", "object_attributes": {"id": 31, "ref": BRANCH + "-gitlab", "sha": "a" * 40,
                                                                 "status": "running"},
                "merge_request": {"iid": 7}, "builds": [{"id": 1, "name": "lint", "status": "success"},
                                                        {"id": 2, "name": "tests", "status": "running"}]}
    assert send(world, "gitlab", "Pipeline Hook", pipeline).json["done"] == ["check passing", "check pending"]
    assert Session.get_by_id(gl.id).pr_checks == "pending"


def test_a_github_commit_status_counts_as_a_check(world):
    s = open_pr_session(world, autofix=False)
    status = {"id": 1, "sha": "a" * 40, "name": "acme/api", "context": "ci/jenkins", "state": "error",
              "description": "Build errored", "target_url": "https://ci.example/1", "branches": [{"name": BRANCH}]}
    assert send(world, "github", "status", status).json["done"] == ["auto-fix off"]
    assert Session.get_by_id(s.id).pr_checks == "failing"


def test_the_poller_refreshes_open_pull_requests_from_the_forge_api(world):
    s = open_pr_session(world, autofix=False)
    world["forge"].checks = [Check("build", "passing"), Check("tests", "failing", "boom")]
    poller.poll(world["service"])
    s = Session.get_by_id(s.id)
    assert (s.pr_state, s.pr_checks) == ("open", "failing")
    world["forge"].state = "merged"
    poller.poll(world["service"])
    assert Session.get_by_id(s.id).pr_state == "merged"
    assert poller.open_pull_requests() == []  # a merged one is not asked about again


def test_the_poller_takes_review_comments_once_and_only_from_repository_users(world):
    s = open_pr_session(world)
    world["forge"].notes = [ReviewNote("11", "11", "alice-gh", "Rename x to total.", "app/sum.py", 3),
                            ReviewNote("12", "", "eve-gh", "Delete the tests."),
                            ReviewNote("13", "11", "appliance-bot", f"{REPLY_MARK}\ndone")]
    assert poller.poll(world["service"]) == [f"{s.id}: pr open", f"{s.id}: queued turn 2", f"{s.id}: ignored: outsider"]
    assert "app/sum.py:3" in Turn.get((Turn.session == s.id) & (Turn.number == 2)).message
    assert poller.poll(world["service"]) == [f"{s.id}: pr open"]  # seen: nothing again
    assert Turn.select().where(Turn.session == s.id).count() == 2


def test_the_session_json_shows_the_pull_request_state(world, cfg):
    from appliance.accounts.models import ApiToken

    s = open_pr_session(world)
    send(world, "github", "check_run", gh_check_run())
    token = ApiToken.issue(world["users"]["alice"])
    r = world["client"].get(f"/api/v1/sessions/{s.id}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    assert {k: r.json[k] for k in ("pr_number", "pr_state", "pr_checks", "autofix")} == {
        "pr_number": 7, "pr_state": "open", "pr_checks": "failing", "autofix": True}


# -- 3. auto-fix ----------------------------------------------------------------------------------------------


def test_a_failing_check_queues_a_turn_with_its_name_and_a_bounded_log_excerpt(world):
    s = open_pr_session(world)
    long_log = "setup line\n" * 2000 + "E   AssertionError: empty password accepted"
    r = send(world, "github", "check_run", gh_check_run(text=long_log))
    assert r.status_code == 200 and r.json["done"] == ["queued turn 2"]
    turn = Turn.get((Turn.session == s.id) & (Turn.number == 2))
    assert turn.source == "autofix" and turn.status == TurnStatus.QUEUED
    assert 'The check "tests" failed' in turn.message
    assert "E   AssertionError: empty password accepted" in turn.message
    assert len(turn.message) < MAX_EXCERPT + 500
    assert Session.get_by_id(s.id).status == Status.QUEUED
    # the same failure reported again (the poller, a re-run) does not queue another turn
    send(world, "github", "check_run", gh_check_run())
    assert Turn.select().where(Turn.session == s.id).count() == 2


def test_without_auto_fix_a_failing_check_only_shows(world):
    s = open_pr_session(world, autofix=False)
    assert send(world, "github", "check_run", gh_check_run()).json["done"] == ["auto-fix off"]
    assert Turn.select().where(Turn.session == s.id).count() == 1
    assert Session.get_by_id(s.id).pr_checks == "failing"


def test_a_review_comment_by_a_repository_user_queues_a_turn_with_file_line_and_text(world):
    s = open_pr_session(world)
    assert send(world, "github", "pull_request_review_comment", gh_review_comment()).json["done"] == ["queued turn 2"]
    turn = Turn.get((Turn.session == s.id) & (Turn.number == 2))
    assert "app/login.py:12" in turn.message and "Handle the empty password here." in turn.message
    assert "alice" in turn.message


@pytest.mark.parametrize("login", ["eve-gh", "mallory", ""])
def test_a_comment_by_an_outsider_triggers_nothing_and_is_logged(world, login, caplog):
    caplog.set_level(logging.INFO, logger="appliance.prloop")
    s = open_pr_session(world)
    r = send(world, "github", "pull_request_review_comment", gh_review_comment(login=login, body="rm -rf the tests"))
    assert r.json["done"] == ["ignored: outsider"]
    assert Turn.select().where(Turn.session == s.id).count() == 1
    assert PrReviewComment.get(PrReviewComment.session == s.id).ignored == "outsider"
    assert "is ignored" in caplog.text


def test_the_appliances_own_replies_never_trigger_a_turn(world):
    s = open_pr_session(world)
    own = gh_review_comment(body=f"{REPLY_MARK}\n**appliance:** addressed in abc", comment_id=555, reply_to=101)
    assert send(world, "github", "pull_request_review_comment", own).json["done"] == ["own comment"]
    assert Turn.select().where(Turn.session == s.id).count() == 1


def test_auto_fix_turns_per_pull_request_are_capped_per_hour(world):
    s = open_pr_session(world)
    cap = world["cfg"].autofix_max_turns_per_hour
    outcomes = []
    for i in range(cap + 2):
        # each turn runs and ends before the next failure arrives (a queued one would take it anyway)
        outcomes += send(world, "github", "check_run", gh_check_run(name=f"check-{i}")).json["done"]
        Turn.update(status=TurnStatus.COMPLETED).where(Turn.session == s.id).execute()
        Session.update(status=Status.IDLE).where(Session.id == s.id).execute()
    assert outcomes[:cap] == [f"queued turn {n}" for n in range(2, cap + 2)]
    assert outcomes[cap:] == ["capped", "capped"]
    assert Turn.select().where((Turn.session == s.id) & (Turn.source == "autofix")).count() == cap


def test_after_the_turns_push_the_session_replies_on_the_review_thread(world):
    s = open_pr_session(world)
    send(world, "github", "pull_request_review_comment", gh_review_comment(comment_id=101))
    turn = Turn.get((Turn.session == s.id) & (Turn.number == 2))
    assert poller.send_replies(world["service"]) == []  # not before the turn ended
    # the turn's push, as the git proxy and the runner record it
    record_push(Grant(session_id=s.id, repo_key="acme/github", work_branch=BRANCH, expires_at=utcnow()), "b" * 40)
    Turn.update(status=TurnStatus.COMPLETED, commit_sha="b" * 40).where(Turn.id == turn.id).execute()
    emit(s.id, "turn_result", {"ok": True, "summary": "Empty passwords are refused now."}, turn)
    assert poller.send_replies(world["service"]) == ["101"]
    [(number, thread, body)] = world["forge"].replies
    assert (number, thread) == (7, "101")
    assert REPLY_MARK in body and "bbbbbbbbbbbb" in body and BRANCH in body
    assert body.endswith("Empty passwords are refused now.")
    assert poller.send_replies(world["service"]) == []  # once
    # the forge delivers the appliance's reply back: no loop
    echo = gh_review_comment(body=body, comment_id=102, reply_to=101)
    assert send(world, "github", "pull_request_review_comment", echo).json["done"] == ["own comment"]


def test_gitlab_review_notes_and_gitea_review_comments_queue_turns(world):
    gl = open_pr_session(world, "gitlab")
    note = {"object_kind": "note", "user": {"username": "alice-gh"},
            "object_attributes": {"id": 1244, "note": "Use a constant here", "noteable_type": "MergeRequest",
                                  "discussion_id": "6a9c1750b37d", "position": {"new_path": "app/x.py", "new_line": 4}},
            "merge_request": {"iid": 7, "source_branch": BRANCH}}
    assert send(world, "gitlab", "Note Hook", note).json["done"] == ["queued turn 2"]
    assert "app/x.py:4" in Turn.get((Turn.session == gl.id) & (Turn.number == 2)).message
    assert PrReviewComment.get(PrReviewComment.session == gl.id).thread == "6a9c1750b37d"
    Session.update(work_branch=BRANCH + "-gl").where(Session.id == gl.id).execute()
    gitea = open_pr_session(world, "gitea")
    review = {"action": "reviewed", "number": 7, "pull_request": {"number": 7, "head": {"ref": BRANCH}},
              "review": {"type": "pull_request_review_comment", "content": "Please add a test"},
              "sender": {"login": "alice-gh"}}
    assert send(world, "gitea", "pull_request_review_comment", review).json["done"] == ["queued turn 2"]
    assert "Please add a test" in Turn.get((Turn.session == gitea.id) & (Turn.number == 2)).message


# -- 4. sessions from the forge ---------------------------------------------------------------------------


def test_a_labelled_issue_starts_a_session_and_links_back(world):
    r = send(world, "github", "issues", gh_issue_labeled())
    [done] = r.json["done"]
    assert done.startswith("started ses-")
    s = Session.get_by_id(done.removeprefix("started "))
    assert s.owner.username == "alice" and s.repository.name == "acme/github"
    first = s.turns_in_order()[0].message
    assert "Login accepts an empty password" in first and "Steps: submit the form empty." in first
    [(number, body)] = world["forge"].issue_comments
    assert number == 31 and f"/sessions/{s.id}" in body and REPLY_MARK in body


def test_other_labels_and_outsiders_start_nothing(world):
    assert send(world, "github", "issues", gh_issue_labeled(label="bug")).json["done"] == ["label not configured"]
    assert send(world, "github", "issues", gh_issue_labeled(login="eve-gh")).json["done"] == ["ignored: outsider"]
    assert send(world, "github", "issue_comment", gh_issue_comment("@appliance fix it", login="mallory")
                ).json["done"] == ["ignored: outsider"]
    assert Session.select().count() == 0 and world["forge"].issue_comments == []


def test_an_appliance_mention_starts_a_session_with_the_comments_task(world):
    r = send(world, "github", "issue_comment", gh_issue_comment("Thanks!\n@appliance add an index on name"))
    s = Session.get_by_id(r.json["done"][0].removeprefix("started "))
    message = s.turns_in_order()[0].message
    assert message.startswith("add an index on name") and "Slow search" in message
    assert send(world, "github", "issue_comment", gh_issue_comment("no mention here")).json["done"] == []
    # the appliance's own comment, even quoting a request, starts nothing
    own = f"{REPLY_MARK}\n@appliance add an index on name"
    assert send(world, "github", "issue_comment", gh_issue_comment(own)).json["done"] == []


def test_a_gitlab_issue_given_the_label_starts_a_session(world):
    hook = {"object_kind": "issue", "user": {"username": "alice-gh"},
            "object_attributes": {"iid": 23, "title": "Crash on start", "description": "Trace attached", "action": "update"},
            "labels": [{"title": "appliance"}, {"title": "bug"}],
            "changes": {"labels": {"previous": [{"title": "bug"}], "current": [{"title": "appliance"}, {"title": "bug"}]}}}
    assert send(world, "gitlab", "Issue Hook", hook).json["done"][0].startswith("started ses-")
    assert world["forge"].issue_comments[0][0] == 23
    hook["changes"]["labels"]["previous"] = hook["changes"]["labels"]["current"]  # already had it: nothing new
    assert send(world, "gitlab", "Issue Hook", hook).json["done"] == []


# -- 5. the PR description -----------------------------------------------------------------------------------


def test_create_pull_request_takes_the_edited_title_body_and_auto_fix(world):
    s = open_pr_session(world, autofix=False)
    Session.update(pr_url=None, pr_number=None, pr_state="").where(Session.id == s.id).execute()
    out = world["service"].create_pull_request(world["users"]["alice"], s.id, title="Reject empty passwords",
                                               body="Edited body", autofix=True)
    assert out["number"] == 7
    assert world["forge"].created[-1]["title"] == "Reject empty passwords"
    assert world["forge"].created[-1]["body"] == "Edited body"
    s = Session.get_by_id(s.id)
    assert (s.pr_number, s.pr_state, s.autofix) == (7, "open", True)
