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


def fetch(guest, path: str, max_mb: int) -> tuple[bytes, str | None]:
    """The agent's transcript from the guest, bounded: at most its newest `max_mb` MiB, from a line
    boundary (one JSON object a line). Returns the data and, when something was cut, a notice."""
    data, cut = guest.download_tail(path, max_mb * 1024 * 1024)
    if not cut:
        return data, None
    newline = data.find(b"\n")
    cut, data = cut + newline + 1, data[newline + 1:]
    return data, (f"[the agent's transcript is over the {max_mb} MiB limit (transcript_max_mb): "
                  f"its first {cut} bytes were not kept]")

