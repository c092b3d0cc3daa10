"""The agent's own transcript of a session, kept on the host after every turn: a follow-up in a
fresh guest resumes from it, and teleport hands it to a terminal."""

from __future__ import annotations

import logging
import posixpath
import shlex
from pathlib import Path

from ..agents import transcript as agent_transcript
from ..agents.base import TranscriptRef
from ..errors import SandboxError
from ..sandbox.guest import GuestLayout

log = logging.getLogger(__name__)


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


def stored_guest_path(state_dir: str | Path, session_id: str, guest: GuestLayout) -> str | None:
    try:
        where = stored_path(state_dir, session_id).with_suffix(".where").read_text().strip()
    except FileNotFoundError:
        return None
    # only ever a file under the guest user's home: the guest wrote the name
    return where if guest.owns(where) else None


def load(state_dir: str | Path, session_id: str) -> bytes | None:
    try:
        return stored_path(state_dir, session_id).read_bytes()
    except FileNotFoundError:
        return None


def keep(guest, state_dir: str | Path, session_id: str, agent_session_id: str | None,
         ref: TranscriptRef | None, max_mb: int, on_cut=None) -> bool:
    """Copy the agent's transcript out of the live guest onto the host, with where it lives in the
    guest (for a fresh guest's follow-up, and for teleport). Any agent: `ref` says where it keeps
    it. At most its newest `max_mb` MiB are kept; `on_cut(notice)` hears when more was there.
    False when there is nothing (yet) to copy."""
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
        data, notice = fetch(guest, path, max_mb)
    except SandboxError as e:
        log.warning("no transcript for %s: %s", session_id, e.message)
        return False
    if notice:
        log.warning("session %s: %s", session_id, notice)
        if on_cut is not None:
            on_cut(notice)
    store(state_dir, session_id, data, guest_path=path)
    if ref.extra_dir:
        _keep_folder(guest, state_dir, session_id, ref.extra_dir)
    return True


def _folder_paths(state_dir: str | Path, session_id: str) -> tuple[Path, Path]:
    base = stored_path(state_dir, session_id)
    return base.with_suffix(".folder.tar"), base.with_suffix(".folder-where")


def _keep_folder(guest, state_dir: str | Path, session_id: str, folder: str) -> None:
    """The folder that belongs with the transcript (Claude Code's `<id>/`: tool results, subagent
    logs), as a tar, when the agent made one."""
    q = shlex.quote
    parent, name = posixpath.split(folder.rstrip("/"))
    packed = guest.exec(f"test -d {q(folder)} && tar -C {q(parent)} -cf - {q(name)}")
    if packed.exit_code != 0 or not packed.stdout:
        return
    tar_path, where_path = _folder_paths(state_dir, session_id)
    _write(tar_path, packed.stdout)
    _write(where_path, folder.encode())


def restore(guest, state_dir: str | Path, session_id: str, layout: GuestLayout) -> bool:
    """Put the kept transcript (and its folder) back where the agent resumes from it, in a fresh
    guest. False when nothing was kept or its recorded place is not under the guest user's home."""
    q = shlex.quote
    data = load(state_dir, session_id)
    path = stored_guest_path(state_dir, session_id, layout)  # stored with every copy
    if data is None or path is None:
        return False
    guest.exec(f"mkdir -p {q(posixpath.dirname(path))}")
    guest.upload(data, path, mode=0o600)
    tar_path, where_path = _folder_paths(state_dir, session_id)
    try:
        folder = where_path.read_text().strip()
        packed = tar_path.read_bytes()
    except FileNotFoundError:
        return True
    if layout.owns(folder):
        parent = posixpath.dirname(folder.rstrip("/"))
        guest.exec(f"mkdir -p {q(parent)} && tar -C {q(parent)} -xf -", stdin=packed)
    return True


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

