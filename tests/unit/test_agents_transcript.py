"""Claude Code's transcript locations (golden names recorded from the real CLI 2.1.197) and
installing a transcript (or a Codex rollout) for another checkout path."""

from __future__ import annotations

import os

import pytest

from appliance.agents import transcript

# cwd -> the projects/ directory the real `claude` created for it (see the module docstring).
GOLDEN = {
    "/tmp/golden-cc/short.dir/my_repo": "-tmp-golden-cc-short-dir-my-repo",
    "/tmp/golden-cc/" + "/".join(["segment-" + "y" * 50] * 4) + "/repo":
        "-tmp-golden-cc-" + "-".join(["segment-" + "y" * 50] * 3) + "-segment--nnwlk4",
    "/tmp/golden-cc/caf\u00e9-\U0001F600/" + "/".join(["d" * 60] * 3) + "/r\u00e9po":
        "-tmp-golden-cc-caf-----" + "-".join(["d" * 60] * 2) + "-" + "d" * 55 + "-i3bzpv",
    "/home/agent/repo": "-home-agent-repo",
}


@pytest.mark.parametrize("cwd", GOLDEN)
def test_project_dir_name_matches_the_cli(cwd):
    assert transcript.project_dir_name(cwd) == GOLDEN[cwd]


def test_long_names_are_cut_to_200_plus_hash():
    name = transcript.project_dir_name("/" + "a" * 300)
    head, _, tail = name.rpartition("-")
    assert len(head) == 200 and tail.isalnum() and tail == tail.lower()
    # the hash is of the path itself: paths that differ only after the cut get different names
    assert transcript.project_dir_name("/" + "a" * 299 + "b") != name


def test_paths_in_the_guest():
    config = transcript.config_dir("/home/agent")
    assert str(config) == "/home/agent/.claude"
    assert str(transcript.config_dir("/home/agent", "/srv/claude")) == "/srv/claude"
    sid = "0b6e7c3a-1f5e-4c1e-9d55-3d2f2a7f9a10"
    assert str(transcript.transcript_path(config, "/home/agent/repo", sid)) == \
        f"/home/agent/.claude/projects/-home-agent-repo/{sid}.jsonl"
    assert str(transcript.session_folder(config, "/home/agent/repo", sid)) == \
        f"/home/agent/.claude/projects/-home-agent-repo/{sid}"


@pytest.mark.parametrize("bad", ["", "../etc/passwd", "a/b", ".hidden", "x" * 200])
def test_session_ids_must_be_path_safe(bad):
    with pytest.raises(ValueError):
        transcript.transcript_path("/c", "/w", bad)


def test_install_from_bytes_and_from_a_file_with_its_folder(tmp_path):
    sid = "11111111-2222-4333-8444-555555555555"
    dest = transcript.install(b'{"type":"user"}\n', tmp_path / "cfg", "/home/me/src/repo", sid)
    assert dest == tmp_path / "cfg" / "projects" / "-home-me-src-repo" / f"{sid}.jsonl"
    assert dest.read_bytes() == b'{"type":"user"}\n' and (dest.stat().st_mode & 0o777) == 0o600

    src = tmp_path / "guest" / f"{sid}.jsonl"
    (src.parent / sid / "subagents").mkdir(parents=True)
    (src.parent / sid / "subagents" / "a.jsonl").write_text("{}\n")
    src.write_text('{"type":"assistant"}\n')
    again = transcript.install(src, tmp_path / "cfg", "/home/me/src/repo", sid)
    assert again == dest and dest.read_text() == '{"type":"assistant"}\n'
    assert (dest.parent / sid / "subagents" / "a.jsonl").read_text() == "{}\n"
    assert not list(dest.parent.glob("*.part"))


def test_install_gives_files_to_an_owner(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    sid = "11111111-2222-4333-8444-555555555555"
    dest = transcript.install(b"{}\n", tmp_path / "cfg", "/w", sid, owner=(65534, 65534))
    for p in (dest, dest.parent, dest.parent.parent, tmp_path / "cfg"):
        assert (p.stat().st_uid, p.stat().st_gid) == (65534, 65534)


def test_install_codex_rollout_keeps_the_sessions_path(tmp_path):
    src = tmp_path / "a" / ".codex" / "sessions" / "2026" / "11" / "26" / "rollout-2026-11-26T04-18-56-abc.jsonl"
    src.parent.mkdir(parents=True)
    src.write_text("{}\n")
    dest = transcript.install_codex(src, tmp_path / "b" / ".codex")
    assert dest == tmp_path / "b" / ".codex" / "sessions" / "2026" / "11" / "26" / src.name
    assert dest.read_text() == "{}\n"
    with pytest.raises(ValueError):
        transcript.install_codex(tmp_path / "x.jsonl", tmp_path / "c")
