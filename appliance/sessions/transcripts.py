"""The agent's own transcript of a session, kept on the host after every turn: a follow-up in a
fresh guest resumes from it, and teleport hands it to a terminal."""

from __future__ import annotations

import posixpath
from pathlib import Path

from ..agents import transcript as agent_transcript

GUEST_HOME = "/home/agent"


def stored_path(state_dir: str | Path, session_id: str) -> Path:
    """`<state_dir>/transcripts/<session id>.jsonl`."""
    return Path(state_dir) / "transcripts" / f"{agent_transcript.check_session_id(session_id)}.jsonl"


def store(state_dir: str | Path, session_id: str, data: bytes) -> Path:
    path = stored_path(state_dir, session_id)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.chmod(0o600)
    tmp.replace(path)
    return path


def load(state_dir: str | Path, session_id: str) -> bytes | None:
    try:
        return stored_path(state_dir, session_id).read_bytes()
    except FileNotFoundError:
        return None


def guest_path(workdir: str, agent_session_id: str) -> str:
    """Where Claude Code keeps the conversation for `workdir` in the guest."""
    return str(agent_transcript.transcript_path(agent_transcript.config_dir(GUEST_HOME), workdir, agent_session_id))


def workdir_for(repository_name: str) -> str:
    return posixpath.join(GUEST_HOME, "work", repository_name.rsplit("/", 1)[-1])
