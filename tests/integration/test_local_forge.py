"""The `local` forge end to end: a real hosted bare repository, branches pushed with plain git, merge
requests created, diffed, merged (fast-forward and a real merge), refused on conflict, closed."""

from __future__ import annotations

import pytest

from appliance.accounts.models import User
from appliance.forges import BranchNotFound, ForgeConfigError, ForgeError, MergeConflict, NothingToMerge, forge_for
from appliance.forges.local import create_hosted_repository, hosted_repository_path
from appliance.forges.models import MergeRequest
from appliance.repos.models import Repository

from gitserver import clean_git_env, run_git


class Hosted:
    """A hosted repository plus a developer's clone of it."""

    def __init__(self, cfg, tmp_path):
        self.path = create_hosted_repository(cfg.state_dir, "acme/app", {
            "README.md": "hello\n", "src/app.py": "print('v1')\n", "docs/old.txt": "one\ntwo\nthree\nfour\n",
            "notes.txt": "a\nb\nc\n"})
        self.repository = Repository.create(name="acme/app", url=str(self.path), forge="local")
        self.forge = forge_for(self.repository, state_dir=cfg.state_dir)
        self.env = clean_git_env(tmp_path / "home")
        self.work = tmp_path / "work"
        run_git(["clone", "-q", str(self.path), str(self.work)], env=self.env)

    def git(self, *args, check=True):
        return run_git(list(args), cwd=self.work, env=self.env, check=check)

    def commit_on(self, branch: str, files: dict[str, str | None], message: str, start: str = "main") -> str:
        """Commit `files` (None deletes) on `branch` (created from origin/`start` if new) and push it."""
        self.git("fetch", "-q", "origin")
        exists = self.git("rev-parse", "--verify", "-q", f"refs/remotes/origin/{branch}", check=False).returncode == 0
        self.git("checkout", "-q", "-B", branch, f"origin/{branch if exists else start}")
        for name, content in files.items():
            p = self.work / name
            if content is None:
                self.git("rm", "-q", name)
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(content)
                self.git("add", name)
        self.git("commit", "-q", "-m", message)
        self.git("push", "-q", "origin", f"HEAD:refs/heads/{branch}")
        return self.head(branch)

    def head(self, branch: str) -> str:
        return run_git(["--git-dir", str(self.path), "rev-parse", f"refs/heads/{branch}"], env=self.env).stdout.strip()

    def show(self, *args: str) -> str:
        return run_git(["--git-dir", str(self.path), "show", *args], env=self.env).stdout


@pytest.fixture
def hosted(cfg, db, tmp_path):
    return Hosted(cfg, tmp_path)


@pytest.fixture
def alice(db):
    return User.create(username="alice", display_name="Alice Example")


def test_hosted_repository_layout(cfg, hosted):
    assert hosted.path == cfg.state_dir / "git" / "hosted" / "acme" / "app.git"
    assert hosted.path == hosted_repository_path(cfg.state_dir, "acme/app")
    assert hosted.show("main:README.md") == "hello\n"
    with pytest.raises(ForgeError, match="already exists"):
        create_hosted_repository(cfg.state_dir, "acme/app")
    with pytest.raises(ForgeConfigError):
        create_hosted_repository(cfg.state_dir, "../escape")
    empty = create_hosted_repository(cfg.state_dir, "empty")
    assert (empty / "HEAD").is_file()


def test_fast_forward_merge(hosted, alice):
    head = hosted.commit_on("feature", {
        "README.md": "hello\nworld\n",            # modified
        "src/new.py": "x = 1\ny = 2\n",            # added
        "notes.txt": None,                         # deleted
        "docs/old.txt": None, "docs/new.txt": "one\ntwo\nthree\nfour\n",  # renamed
    }, "Feature work")
    main_before = hosted.head("main")

    pr = hosted.forge.create_pull_request("feature", "main", "Add the feature", "Body text", author=alice)
    assert (pr.state, pr.created) == ("open", True)
    assert pr.url == f"/repos/acme/app/merge_requests/{pr.number}"
    again = hosted.forge.create_pull_request("feature", "main", "Add the feature", "Body text", author=alice)
    assert (again.number, again.url, again.created) == (pr.number, pr.url, False)
    assert MergeRequest.select().count() == 1

    mr = hosted.forge.get(pr.number)
    assert (mr.author.username, mr.source_branch, mr.target_branch, mr.body) == ("alice", "feature", "main", "Body text")

    diff = hosted.forge.diff(mr)
    assert (diff.base_sha, diff.head_sha) == (main_before, head)
    files = {f.path: f for f in diff.files}
    assert set(files) == {"README.md", "src/new.py", "notes.txt", "docs/new.txt"}
    assert (files["README.md"].change, files["README.md"].added, files["README.md"].removed) == ("modified", 1, 0)
    assert (files["src/new.py"].change, files["src/new.py"].added) == ("added", 2)
    assert (files["notes.txt"].change, files["notes.txt"].removed) == ("deleted", 3)
    assert (files["docs/new.txt"].change, files["docs/new.txt"].old_path) == ("renamed", "docs/old.txt")
    assert "+world" in files["README.md"].patch and files["README.md"].patch.startswith("@@")
    assert "+y = 2" in files["src/new.py"].patch
    assert (diff.added, diff.removed) == (3, 3)

    assert hosted.forge.check_merge(mr).status == "fast_forward"
    merged = hosted.forge.merge(mr, alice)
    assert hosted.head("main") == head  # fast-forwarded: no merge commit
    assert (merged.state, merged.merge_commit_sha, merged.merged_by.username) == ("merged", head, "alice")
    assert merged.merged_at is not None
    assert hosted.forge.get_pull_request(pr.number).state == "merged"
    # the diff of a merged request still shows what it brought
    assert {f.path for f in hosted.forge.diff(merged).files} == set(files)
    with pytest.raises(ForgeError, match="is merged"):
        hosted.forge.merge(merged, alice)
    with pytest.raises(ForgeError, match="is merged"):
        hosted.forge.close(merged)


def test_real_merge_when_the_target_moved(hosted, alice):
    feature = hosted.commit_on("feature", {"src/app.py": "print('v2')\n"}, "Change the app")
    main_moved = hosted.commit_on("main", {"README.md": "hello again\n"}, "Someone else's work")
    pr = hosted.forge.create_pull_request("feature", "main", "App v2", author=alice)
    mr = hosted.forge.get(pr.number)
    assert [f.path for f in hosted.forge.diff(mr).files] == ["src/app.py"]  # only the branch's own changes

    assert hosted.forge.check_merge(mr).status == "merge"
    merged = hosted.forge.merge(mr, alice)
    new_main = hosted.head("main")
    assert merged.merge_commit_sha == new_main
    parents = run_git(["--git-dir", str(hosted.path), "rev-list", "--parents", "-n1", new_main],
                      env=hosted.env).stdout.split()[1:]
    assert parents == [main_moved, feature]
    assert hosted.show("main:src/app.py") == "print('v2')\n"
    assert hosted.show("main:README.md") == "hello again\n"
    message = hosted.show("--no-patch", "--format=%an <%ae>%n%B", new_main)
    assert "Alice Example <alice@appliance.local>" in message and "Merge branch 'feature' into main" in message
    # the reflog of the target branch remembers the move
    log = run_git(["--git-dir", str(hosted.path), "reflog", "show", "refs/heads/main"], env=hosted.env).stdout
    assert f"merge request !{pr.number}" in log


def test_no_fast_forward_makes_a_merge_commit(hosted, alice):
    feature = hosted.commit_on("feature", {"README.md": "hi\n"}, "Reword")
    main_before = hosted.head("main")
    pr = hosted.forge.create_pull_request("feature", "main", "Reword", author=alice)
    merged = hosted.forge.merge(hosted.forge.get(pr.number), alice, fast_forward=False)
    parents = run_git(["--git-dir", str(hosted.path), "rev-list", "--parents", "-n1", merged.merge_commit_sha],
                      env=hosted.env).stdout.split()[1:]
    assert parents == [main_before, feature]
    assert hosted.show("main:README.md") == "hi\n"


def test_conflicting_merge_is_refused_and_target_unchanged(hosted, alice):
    hosted.commit_on("feature", {"notes.txt": "a\nFEATURE\nc\n"}, "Feature edits b")
    main_before = hosted.commit_on("main", {"notes.txt": "a\nMAIN\nc\n"}, "Main edits b")
    pr = hosted.forge.create_pull_request("feature", "main", "Edit notes", author=alice)
    mr = hosted.forge.get(pr.number)
    check = hosted.forge.check_merge(mr)
    assert (check.status, check.conflicts, check.mergeable) == ("conflict", ("notes.txt",), False)
    with pytest.raises(MergeConflict, match="notes.txt") as e:
        hosted.forge.merge(mr, alice)
    assert e.value.conflicts == ["notes.txt"] and "feature" in e.value.hint
    assert hosted.head("main") == main_before
    assert hosted.show("main:notes.txt") == "a\nMAIN\nc\n"
    assert hosted.forge.get(pr.number).state == "open"

    closed = hosted.forge.close(mr)
    assert (closed.state, closed.merge_commit_sha) == ("closed", None) and closed.closed_at is not None
    assert hosted.head("main") == main_before
    with pytest.raises(ForgeError, match="is closed"):
        hosted.forge.merge(closed, alice)
    # once closed, the branch may be proposed again: a new request
    reopened = hosted.forge.create_pull_request("feature", "main", "Edit notes, again", author=alice)
    assert reopened.number != pr.number and reopened.created
    assert [m.state for m in hosted.forge.merge_requests()] == ["open", "closed"]


def test_refusals(hosted, alice):
    with pytest.raises(BranchNotFound, match="never-pushed"):
        hosted.forge.create_pull_request("never-pushed", "main", "Nothing")
    hosted.git("push", "-q", "origin", "main:refs/heads/same-as-main")
    with pytest.raises(NothingToMerge):
        hosted.forge.create_pull_request("same-as-main", "main", "Nothing new")
    hosted.commit_on("feature", {"README.md": "x\n"}, "x")
    with pytest.raises(BranchNotFound, match="release"):
        hosted.forge.create_pull_request("feature", "release", "To a missing base")
    pr = hosted.forge.create_pull_request("feature", "main", "Feature")
    hosted.git("push", "-q", "origin", "main:refs/heads/release")
    with pytest.raises(ForgeError, match=f"!{pr.number} already proposes feature for main"):
        hosted.forge.create_pull_request("feature", "release", "Same branch, other base")
    with pytest.raises(ForgeError, match="title"):
        hosted.forge.create_pull_request("feature", "main", "  ")
    assert MergeRequest.select().count() == 1
