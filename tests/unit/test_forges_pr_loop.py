"""The forge REST calls of the pull-request loop (checks, review replies, issue comments) against
the local stand-ins of test_forges_remote: exact method, path, headers and JSON body per forge."""

from __future__ import annotations

import pytest
from test_forges_remote import (
    GH_HEADERS,
    GL_HEADERS,
    GT_HEADERS,
    GT_REPO,
    Expect,
    StandIn,
    gh_forge,
    gh_pr,
    gl_forge,
    gt_forge,
)

from appliance.forges import Check
from appliance.forges.base import ReviewNote

GH_REPO = "/api/v3/repos/acme/api"
GL_PROJECT = "/api/v4/projects/acme%2Fapi"


@pytest.fixture
def rest(monkeypatch):
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    s = StandIn()
    yield s
    s.stop()


def test_github_checks_of_the_head_commit(rest):
    pr = gh_pr(7) | {"head": {"ref": "feature/login", "sha": "c0ffee"}}
    rest.expect(Expect("GET", f"{GH_REPO}/pulls/7", (200, pr), headers=GH_HEADERS),
                Expect("GET", f"{GH_REPO}/commits/c0ffee/check-runs", (200, {"total_count": 3, "check_runs": [
                    {"name": "lint", "status": "completed", "conclusion": "success", "output": {}},
                    {"name": "tests", "status": "completed", "conclusion": "failure",
                     "output": {"title": "1 failed", "summary": "test_login", "text": None}},
                    {"name": "deploy", "status": "in_progress", "conclusion": None, "output": {}}]}),
                       headers=GH_HEADERS))
    assert gh_forge(rest).pull_request_checks(7) == [
        Check("lint", "passing", ""), Check("tests", "failing", "1 failed\ntest_login"), Check("deploy", "pending", "")]
    rest.check()


def test_github_replies_in_the_review_thread_and_comments_on_issues(rest):
    rest.expect(Expect("POST", f"{GH_REPO}/pulls/7/comments/101/replies", (201, {"id": 102}), headers=GH_HEADERS,
                       json={"body": "done"}),
                Expect("POST", f"{GH_REPO}/issues/7/comments", (201, {"id": 5}), headers=GH_HEADERS,
                       json={"body": "on the conversation"}),
                Expect("POST", f"{GH_REPO}/issues/31/comments", (201, {"id": 6}), headers=GH_HEADERS,
                       json={"body": "started"}))
    forge = gh_forge(rest)
    forge.reply_to_review(7, "101", "done")
    forge.reply_to_review(7, "", "on the conversation")
    forge.comment_on_issue(31, "started")
    rest.check()


def test_gitlab_pipeline_state_discussion_replies_and_issue_notes(rest):
    rest.expect(Expect("GET", f"{GL_PROJECT}/merge_requests/7/pipelines", (200, [
                    {"id": 9, "status": "failed", "web_url": "https://gl.example/p/9"}, {"id": 8, "status": "success"}]),
                       headers=GL_HEADERS),
                Expect("POST", f"{GL_PROJECT}/merge_requests/7/discussions/6a9c1750b37d/notes", (201, {"id": 1}),
                       headers=GL_HEADERS, json={"body": "done"}),
                Expect("POST", f"{GL_PROJECT}/issues/23/notes", (201, {"id": 2}), headers=GL_HEADERS,
                       json={"body": "started"}))
    forge = gl_forge(rest)
    assert forge.pull_request_checks(7) == [Check("pipeline", "failing", "https://gl.example/p/9")]
    forge.reply_to_review(7, "6a9c1750b37d", "done")
    forge.comment_on_issue(23, "started")
    rest.check()


def test_gitea_commit_statuses_and_comments(rest):
    pr = {"number": 7, "state": "open", "html_url": "https://gt.example/acme/api/pulls/7", "merged": False,
          "head": {"ref": "feature/login", "sha": "beef"}}
    rest.expect(Expect("GET", f"{GT_REPO}/pulls/7", (200, pr), headers=GT_HEADERS),
                Expect("GET", f"{GT_REPO}/commits/beef/status", (200, {"state": "failure", "statuses": [
                    {"context": "ci/build", "status": "success", "description": "ok"},
                    {"context": "ci/tests", "status": "failure", "description": "2 failed"}]}), headers=GT_HEADERS),
                Expect("POST", f"{GT_REPO}/issues/7/comments", (201, {"id": 3}), headers=GT_HEADERS,
                       json={"body": "done"}))
    forge = gt_forge(rest)
    assert forge.pull_request_checks(7) == [Check("ci/build", "passing", "ok"), Check("ci/tests", "failing", "2 failed")]
    forge.reply_to_review(7, "", "done")
    rest.check()


def test_github_review_notes_are_review_and_conversation_comments(rest):
    rest.expect(Expect("GET", f"{GH_REPO}/pulls/7/comments", (200, [
                    {"id": 11, "path": "a.py", "line": 3, "body": "Rename x", "user": {"login": "alice"}},
                    {"id": 12, "in_reply_to_id": 11, "path": "a.py", "line": None, "original_line": 3, "body": "+1",
                     "user": {"login": "bob"}}]), query={"per_page": "100"}, headers=GH_HEADERS),
                Expect("GET", f"{GH_REPO}/issues/7/comments", (200, [{"id": 20, "body": "LGTM", "user": {"login": "c"}}]),
                       query={"per_page": "100"}, headers=GH_HEADERS))
    assert gh_forge(rest).review_notes(7) == [ReviewNote("11", "11", "alice", "Rename x", "a.py", 3),
                                              ReviewNote("12", "11", "bob", "+1", "a.py", 3),
                                              ReviewNote("20", "", "c", "LGTM")]
    rest.check()


def test_gitlab_review_notes_come_from_discussions_without_system_notes(rest):
    rest.expect(Expect("GET", f"{GL_PROJECT}/merge_requests/7/discussions", (200, [
        {"id": "d1", "notes": [{"id": 1, "body": "added 1 commit", "system": True, "author": {"username": "x"}}]},
        {"id": "d2", "notes": [{"id": 2, "body": "Use a constant", "system": False, "author": {"username": "alice"},
                                "position": {"new_path": "b.py", "new_line": 9}}]}]),
        query={"per_page": "100"}, headers=GL_HEADERS))
    assert gl_forge(rest).review_notes(7) == [ReviewNote("2", "d2", "alice", "Use a constant", "b.py", 9)]
    rest.check()
