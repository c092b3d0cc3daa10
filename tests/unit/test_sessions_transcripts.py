"""The host's copy of a session's agent transcript and where it lives in the guest."""

from __future__ import annotations

import stat

import pytest

from appliance.sessions import transcripts

ROLLOUT = "/home/agent/.codex/sessions/2026/11/26/rollout-2026-11-26T07-10-00-0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b.jsonl"


def test_kept_with_its_guest_path_private_to_the_appliance(tmp_path):
    path = transcripts.store(tmp_path, "ses-0123456789", b'{"type":"session_meta"}\n', guest_path=ROLLOUT)
    assert transcripts.load(tmp_path, "ses-0123456789") == b'{"type":"session_meta"}\n'
    assert transcripts.stored_guest_path(tmp_path, "ses-0123456789") == ROLLOUT
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    # a later copy stored without a location keeps the recorded one
    transcripts.store(tmp_path, "ses-0123456789", b"newer\n")
    assert transcripts.stored_guest_path(tmp_path, "ses-0123456789") == ROLLOUT


@pytest.mark.parametrize("where", ["/etc/cron.d/x", "/home/agent/../../etc/passwd", "relative/path",
                                   "/home/agentx/file"])
def test_a_location_outside_the_agents_home_is_not_used(tmp_path, where):
    transcripts.store(tmp_path, "ses-0123456789", b"x", guest_path=where)
    assert transcripts.stored_guest_path(tmp_path, "ses-0123456789") is None


def test_nothing_kept_is_none(tmp_path):
    assert transcripts.load(tmp_path, "ses-0123456789") is None
    assert transcripts.stored_guest_path(tmp_path, "ses-0123456789") is None
    with pytest.raises(ValueError):
        transcripts.stored_path(tmp_path, "../escape")
