"""The agent's own transcript of a session, kept on the host after every turn: a follow-up in a
fresh guest resumes from it, and teleport hands it to a terminal."""

from __future__ import annotations

import logging
import posixpath
from pathlib import Path

from ..agents import transcript as agent_transcript
from ..agents.base import TranscriptRef
from ..errors import SandboxError

log = logging.getLogger(__name__)

GUEST_HOME = "/home/agent"


def stored_path(state_dir: str | Path, session_id: str) -> Path:
    """`<state_dir>/transcripts/<session id>.jsonl`."""
    return Path(state_dir) / "transcripts" / f"{agent_transcript.check_session_id(session_id)}.jsonl"


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.chmod(0o600)
    tmp.replace(path)


def store(state_dir: str | Path, session_id: str, data: bytes, guest_path: str = "") -> Path:
    """Keeps the transcript and, when given, the guest path it came from (where a fresh guest needs
    it again: Codex's rollout name holds a timestamp nothing else knows)."""
    path = stored_path(state_dir, session_id)
    _write(path, data)
    if guest_path:
        _write(path.with_suffix(".where"), guest_path.encode())
    return path


def stored_guest_path(state_dir: str | Path, session_id: str) -> str | None:
    try:
        where = stored_path(state_dir, session_id).with_suffix(".where").read_text().strip()
    except FileNotFoundError:
        return None
    # only ever a file under the agent's home: the guest wrote the name
    if not where.startswith(GUEST_HOME + "/") or "/../" in where or "\n" in where:
        return None
    return where


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


def keep(guest, state_dir: str | Path, session_id: str, agent_session_id: str | None,
         ref: TranscriptRef | None) -> bool:
    """Copy the agent's transcript out of the live guest onto the host, with where it lives in the
    guest (for a fresh guest's follow-up, and for teleport). Any agent: `ref` says where it keeps
    it. False when there is nothing (yet) to copy."""
    if ref is None or not agent_session_id:
        return False
    path = ref.path
    if not path and ref.pattern:  # the name holds what only the agent knew (Codex: a timestamp)
        agent_session_id = agent_transcript.check_session_id(agent_session_id)
        found = guest.exec(f"ls -1 {ref.pattern.format(session_id=agent_session_id)} 2>/dev/null")
        path = found.text.split()[0] if found.exit_code == 0 and found.text.split() else ""
    if not path:
        log.warning("no transcript for %s: nothing matches %s", session_id, ref.pattern)
        return False
    try:
        data = guest.download(path)
    except SandboxError as e:
        log.warning("no transcript for %s: %s", session_id, e.message)
        return False
    store(state_dir, session_id, data, guest_path=path)
    return True
