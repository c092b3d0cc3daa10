"""The host's copy of a session's agent transcript and where it lives in the guest."""

from __future__ import annotations

import stat

import pytest

from appliance.sandbox.guest import GuestLayout
from appliance.sessions import transcripts

GUEST = GuestLayout("agent")

ROLLOUT = "/home/agent/.codex/sessions/2026/11/26/rollout-2026-11-26T07-10-00-0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b.jsonl"


def test_kept_with_its_guest_path_private_to_the_appliance(tmp_path):
    path = transcripts.store(tmp_path, "ses-0123456789", b'{"type":"session_meta"}\n', guest_path=ROLLOUT)
    assert transcripts.load(tmp_path, "ses-0123456789") == b'{"type":"session_meta"}\n'
    assert transcripts.stored_guest_path(tmp_path, "ses-0123456789", GUEST) == ROLLOUT
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    # a later copy stored without a location keeps the recorded one
    transcripts.store(tmp_path, "ses-0123456789", b"newer\n")
    assert transcripts.stored_guest_path(tmp_path, "ses-0123456789", GUEST) == ROLLOUT


@pytest.mark.parametrize("where", ["/etc/cron.d/x", "/home/agent/../../etc/passwd", "relative/path",
                                   "/home/agentx/file"])
def test_a_location_outside_the_agents_home_is_not_used(tmp_path, where):
    transcripts.store(tmp_path, "ses-0123456789", b"x", guest_path=where)
    assert transcripts.stored_guest_path(tmp_path, "ses-0123456789", GUEST) is None


def test_nothing_kept_is_none(tmp_path):
    assert transcripts.load(tmp_path, "ses-0123456789") is None
    assert transcripts.stored_guest_path(tmp_path, "ses-0123456789", GUEST) is None
    with pytest.raises(ValueError):
        transcripts.stored_path(tmp_path, "../escape")


class LocalGuest:
    """Runs the guest's commands in a local shell (paths in a temporary 'guest' tree)."""

    def exec(self, command, stdin=None):
        import subprocess
        import types

        proc = subprocess.run(["sh", "-c", command], input=stdin, capture_output=True)
        return types.SimpleNamespace(exit_code=proc.returncode, stdout=proc.stdout, stderr=proc.stderr,
                                     text=proc.stdout.decode())

    def download(self, path):
        from pathlib import Path

        return Path(path).read_bytes()

    def download_tail(self, path, max_bytes):
        data = self.download(path)
        return data[-max_bytes:], max(0, len(data) - max_bytes)

    def upload(self, data, path, mode=0o644):
        from pathlib import Path

        Path(path).write_bytes(data)
        Path(path).chmod(mode)


def test_claude_codes_session_folder_is_kept_and_restored(tmp_path):
    """The transcript's `<id>/` folder (extra_dir) travels with it into a fresh guest."""
    from appliance.agents import get as agent

    host = tmp_path / "host"
    old_home, new_home = tmp_path / "guest1", tmp_path / "guest2"
    sid = "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
    ref = agent("claude-code").transcript_ref(str(old_home), str(old_home / "work" / "api"), sid)
    from pathlib import Path

    Path(ref.path).parent.mkdir(parents=True)
    Path(ref.path).write_bytes(b'{"type":"user"}\n')
    (Path(ref.extra_dir) / "tool-results").mkdir(parents=True)
    (Path(ref.extra_dir) / "tool-results" / "r1.txt").write_text("big output\n")
    assert transcripts.keep(LocalGuest(), host, "ses-0123456789", sid, ref, max_mb=64)

    # the fresh guest lives elsewhere here, so its "home" is another tree: move the recorded places
    for suffix in (".where", ".folder-where"):
        f = transcripts.stored_path(host, "ses-0123456789").with_suffix(suffix)
        f.write_text(f.read_text().replace(str(old_home), str(new_home)))

    class TreeLayout(GuestLayout):
        @property
        def home(self):
            return str(new_home)

    assert transcripts.restore(LocalGuest(), host, "ses-0123456789", TreeLayout("agent"))
    new_ref = agent("claude-code").transcript_ref(str(new_home), str(old_home / "work" / "api"), sid)
    assert Path(new_ref.path).read_bytes() == b'{"type":"user"}\n'
    assert (Path(new_ref.extra_dir) / "tool-results" / "r1.txt").read_text() == "big output\n"


def test_no_folder_is_fine(tmp_path):
    from appliance.agents.base import TranscriptRef

    guest_file = tmp_path / "t.jsonl"
    guest_file.write_bytes(b"x\n")
    ref = TranscriptRef(agent="claude-code", path=str(guest_file), extra_dir=str(tmp_path / "absent"))
    assert transcripts.keep(LocalGuest(), tmp_path / "host", "ses-0123456789", "abc", ref, max_mb=64)
    assert not transcripts.stored_path(tmp_path / "host", "ses-0123456789").with_suffix(".folder.tar").exists()
