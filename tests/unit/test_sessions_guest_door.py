"""What the session layer offers in front of a guest (the web's only door to one): a fresh
transcript for any agent, a shell only for the owner and only in a running guest, pull requests.
The guest's SSH is a stand-in here (real guests: tests/vm)."""

from __future__ import annotations

import uuid

import pytest

from appliance.accounts.models import User
from appliance.errors import Invalid, NotFound
from appliance.models import Sandbox
from appliance.repos.models import Repository
from appliance.sandbox.guest import GuestLayout
from appliance.sessions.models import Event, Session, Turn, TurnStatus
from appliance.sessions.service import SessionService
from appliance.sessions.shell import NoGuest
from appliance.sessions.transcripts import load, stored_guest_path

from helpers import StandInForge


class GuestFiles:
    """A guest's SSH as far as the transcript needs it: `ls` of a pattern and downloads."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.commands: list[str] = []

    def ssh(self, sandbox):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def exec(self, command):
        import fnmatch
        import types

        self.commands.append(command)
        pattern = command.split()[2]
        found = [p for p in self.files if fnmatch.fnmatch(p, pattern)]
        return types.SimpleNamespace(exit_code=0 if found else 2, text="\n".join(found))

    def download(self, path):
        return self.files[path]

    def download_tail(self, path, max_bytes):
        data = self.files[path]
        return data[-max_bytes:], max(0, len(data) - max_bytes)


@pytest.fixture
def world(db, cfg):
    alice, bob = User.create(username="alice"), User.create(username="bob")
    repo = Repository.create(name="acme/api", url="/srv/api.git")
    forge = StandInForge()
    addresses = iter(f"10.213.0.{n}" for n in range(2, 250))

    def make(agent="claude-code", guest=None, **fields):
        s = Session.create(owner=alice, repository=repo, base_branch="main", work_branch=f"w/{uuid.uuid4()}",
                           agent=agent, status="idle", visibility="public", agent_session_id=str(uuid.uuid4()),
                           **fields)
        if guest is not None:
            sb = Sandbox.create(profile="minimal", image_dir="/x", vcpus=1, memory_mb=512, disk_gb=1,
                                state="running", address=next(addresses), purpose="session", session_id=s.id)
            Session.update(sandbox_id=sb.id).where(Session.id == s.id).execute()
        return Session.get_by_id(s.id)

    return dict(alice=alice, bob=bob, make=make, forge=forge, cfg=cfg)


@pytest.mark.parametrize("agent", ["claude-code", "codex"])
def test_transcript_is_refreshed_from_the_live_guest_for_any_agent(world, agent):
    cfg = world["cfg"]
    s = world["make"](agent, guest=True)
    if agent == "claude-code":
        path = (f"/home/agent/.claude/projects/-home-agent-work-api/{s.agent_session_id}.jsonl")
    else:
        path = f"/home/agent/.codex/sessions/2026/11/29/rollout-2026-11-29T10-00-00-{s.agent_session_id}.jsonl"
    guest = GuestFiles({path: b'{"fresh": true}\n'})
    service = SessionService(cfg, sandboxes=guest)
    session, data = service.transcript(world["alice"], s.id)
    assert data == b'{"fresh": true}\n' and load(cfg.state_dir, s.id) == data
    assert stored_guest_path(cfg.state_dir, s.id, GuestLayout.from_config(cfg)) == path  # kept as the runner keeps it


def test_transcript_without_a_guest_is_the_kept_copy_and_owner_only(world):
    s = world["make"]()
    service = SessionService(world["cfg"])
    with pytest.raises(NotFound, match="no agent transcript"):
        service.transcript(world["alice"], s.id)
    with pytest.raises(NotFound, match="no session"):
        service.transcript(world["bob"], s.id)  # public, but not bob's to read


def test_a_shell_needs_a_running_guest_and_the_owner(world):
    s = world["make"]()
    service = SessionService(world["cfg"], sandboxes=GuestFiles({}))
    with pytest.raises(NoGuest, match="no running guest") as e:
        service.open_shell(world["alice"], s.id)
    assert "appliance message" in e.value.hint
    creating = world["make"](guest=True)
    Sandbox.update(state="creating").where(Sandbox.session_id == creating.id).execute()
    with pytest.raises(NoGuest):
        service.open_shell(world["alice"], creating.id)  # not running yet: no shell
    with pytest.raises(NotFound):
        service.open_shell(world["bob"], world["make"](guest=True).id)


def test_pull_request_once_through_the_session_layer(world):
    service = SessionService(world["cfg"], forge_for=world["forge"])
    s = world["make"]()
    with pytest.raises(Invalid, match="nothing has been pushed"):
        service.create_pull_request(world["alice"], s.id)
    Session.update(head_sha="abc").where(Session.id == s.id).execute()
    with pytest.raises(Invalid, match="after its diff was made"):  # no turn has diffed that commit
        service.create_pull_request(world["alice"], s.id)
    Turn.create(session=s, number=1, message="go", status=TurnStatus.COMPLETED, commit_sha="abc")
    assert service.create_pull_request(world["alice"], s.id) == {"url": "http://forge.invalid/pr/1", "number": 1}
    assert service.create_pull_request(world["alice"], s.id)["existing"] is True
    assert len(world["forge"].requests) == 1 and world["forge"].requests[0]["head"] == s.work_branch
    assert Session.get_by_id(s.id).pr_url == "http://forge.invalid/pr/1"
    assert Event.select().where((Event.session == s.id) & (Event.kind == "pull_request")).count() == 1
