"""Issue 11, hole 6: a guest printing without end costs the host bounded memory and rows.

No guest is booted here: the SSH channel and the guest are fakes that produce what a runaway
guest would (the real exec loop, splitter, budget and runner code run against them).
"""


import pytest

from appliance.accounts.models import User
from appliance.models import Sandbox
from appliance.repos.models import Repository
from appliance.sandbox.guest_ssh import ExecResult, GuestSSH
from appliance.sandbox.identity import generate_keypair
from appliance.sessions.models import Event, Session, Turn
from appliance.sessions.output import EventBudget, LineSplitter
from appliance.sessions.runner import TurnRunner

MiB = 1024 * 1024


class FloodChannel:
    """An exec channel whose command prints `total` bytes of stdout (and a little stderr), then exits."""

    def __init__(self, total: int, chunk: int = 65536):
        self.left, self.chunk = total, chunk
        self.stderr = b"warning\n"
        self.eof_received = self.closed = False

    def exec_command(self, command):
        self.command = command

    def sendall(self, data):
        pass

    def shutdown_write(self):
        pass

    def recv_ready(self):
        return self.left > 0

    def recv(self, n):
        n = min(n, self.left, self.chunk)
        self.left -= n
        if not self.left:
            self.eof_received = True
        return b"x" * (n - 1) + b"\n"

    def recv_stderr_ready(self):
        return bool(self.stderr)

    def recv_stderr(self, n):
        data, self.stderr = self.stderr, b""
        return data

    def exit_status_ready(self):
        return self.eof_received

    def recv_exit_status(self):
        return 0

    def fileno(self):  # select() is only reached when nothing progressed
        raise AssertionError("the flood never stalls")

    def close(self):
        self.closed = True


class FakeClient:
    def __init__(self, chan):
        self.chan = chan

    def get_transport(self):
        return self

    def open_session(self):
        return self.chan

    def close(self):
        pass


def guest_with(chan, **kw) -> GuestSSH:
    client, host = generate_keypair("c"), generate_keypair("h")
    g = GuestSSH("192.0.2.1", "agent", client.private_openssh, host.public_openssh, **kw)
    g._client = FakeClient(chan)
    return g


def test_hole6_exec_keeps_only_the_tail_of_a_flood_and_says_how_much_it_cut():
    seen = []
    g = guest_with(FloodChannel(40 * MiB), max_output=1 * MiB)
    result = g.exec("yes", on_stdout=lambda d: seen.append(len(d)))
    assert len(result.stdout) == 1 * MiB and result.stdout_cut == 39 * MiB
    assert sum(seen) == 40 * MiB  # the sinks still saw everything, as it came
    assert result.stderr == b"warning\n" and result.stderr_cut == 0


def test_hole6_a_download_over_the_limit_is_refused_not_truncated_silently():
    g = guest_with(FloodChannel(3 * MiB), max_output=1 * MiB)
    with pytest.raises(Exception, match="over the limit"):
        g.download("/big")
    data, cut = guest_with(FloodChannel(3 * MiB)).download_tail("/big", 1 * MiB)
    assert len(data) == 1 * MiB and cut == 2 * MiB


def test_hole6_an_endless_line_is_cut_not_buffered():
    lines, cuts = [], []
    splitter = LineSplitter(lines.append, 1024, lambda preview, size: cuts.append((preview[:5], size)))
    splitter.feed(b"ok\nhead")
    for _ in range(1000):  # 64 MB without a newline
        splitter.feed(b"y" * 65536)
        assert len(splitter._pending) <= 1024
    splitter.feed(b"tail\nnext")
    splitter.close()
    assert lines == ["ok", "next"]
    assert cuts == [("heady", 4 + 1000 * 65536 + 4)]


def test_hole6_events_per_turn_are_capped_keeping_the_tail_and_a_notice():
    stored = []
    budget = EventBudget(lambda kind, data: stored.append((kind, data)), limit=100, tail=10)
    for i in range(10000):
        budget("log", {"text": f"line {i}"})
    assert len(stored) == 100
    budget.finish()
    assert len(stored) == 100 + 1 + 10
    assert "9890 events of guest output were not stored" in stored[100][1]["text"]
    assert [d["text"] for _, d in stored[-10:]] == [f"line {i}" for i in range(9990, 10000)]


# --- the runner, with a fake guest ------------------------------------------------------------


class RunawayGuest:
    """The agent prints one 30 MB line without a newline, then a normal line."""

    def exec(self, command, stdin=None, on_stdout=None, on_stderr=None, timeout=None, env=None, max_output=None, feed=None):
        if "bash -c" not in command:
            return ExecResult(0, b"", b"")
        on_stdout(b"start ")
        for _ in range(480):
            on_stdout(b"z" * 65536)
        on_stdout(b"\nall done\n")
        return ExecResult(0, b"", b"")


class Egress:
    def guest_settings(self, address):
        return {"proxy": {"http": "http://10.213.0.1:3128", "no_proxy": "10.213.0.1"}}


class Sandboxes:
    egress = Egress()


def test_hole6_the_agents_endless_line_becomes_a_notice_not_a_30_mb_row(db, cfg):
    alice = User.create(username="alice")
    repo = Repository.create(name="acme/api", url="/srv/api.git")
    sb = Sandbox.create(profile="minimal", image_dir="/img", vcpus=1, memory_mb=512, disk_gb=1, address="10.213.0.10")
    session = Session.create(owner=alice, repository=repo, base_branch="main", work_branch="w", agent="command",
                             environment_snapshot={"command": "spam"}, sandbox_id=sb.id)
    turn = Turn.create(session=session, number=1, message="go")
    runner = TurnRunner(cfg, Sandboxes(), lambda token, repo: "", None, None)
    runner._agent(RunawayGuest(), session, "/work", turn)
    texts = [e.data.get("text", "") for e in Event.select().where(Event.session == session.id)]
    assert "all done" in texts
    assert max(len(t) for t in texts) < 10000
    assert any("was cut" in t and "start zz" in t for t in texts)


class TranscriptGuest:
    """A guest whose transcript file is `lines` JSON lines of 1 KiB each."""

    def __init__(self, lines: int):
        self.body = b"".join(b'{"n": %6d, "pad": "%s"}\n' % (i, b"p" * 1000) for i in range(lines))

    def download_tail(self, path, max_bytes):
        return self.body[-max_bytes:], max(0, len(self.body) - max_bytes)


def test_hole6_a_huge_transcript_is_kept_as_its_newest_whole_lines():
    from appliance.sessions import transcripts

    data, notice = transcripts.fetch(TranscriptGuest(3000), "/t.jsonl", max_mb=1)
    assert len(data) <= MiB and data.startswith(b'{"n": ') and data.endswith(b"}\n")
    assert b'"n":   2999' in data and b'"n":      0,' not in data
    assert "over the 1 MiB limit" in notice and "not kept" in notice
    small, none = transcripts.fetch(TranscriptGuest(10), "/t.jsonl", max_mb=1)
    assert none is None and small.count(b"\n") == 10
