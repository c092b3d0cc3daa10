"""Where Claude Code keeps a session's transcript, and how to put one where a new checkout finds it.

Claude Code writes `<config dir>/projects/<dir>/<session id>.jsonl` (plus, at times, a
`<session id>/` folder beside it), where `<config dir>` is `$CLAUDE_CONFIG_DIR` or `~/.claude`
and `<dir>` comes from the real path of the working directory: every character outside
`[a-zA-Z0-9]` becomes `-`; a result over 200 characters is cut to 200 and followed by `-` and a
hash of the path. The hash rule was read from Claude Code 2.1.197 (the function behind
`projects/` names) and is checked against the real CLI by tests/integration/test_agents_cli.py:
a 32-bit Java-style string hash (`h = h*31 + c`, over UTF-16 code units, wrapping) of the
*unreplaced* path, made non-negative with `abs`, written in base 36. When looking a session up,
the CLI also accepts any directory with the same 200-character prefix, so a different hash of a
long path is tolerated on resume (but not relied on here).

`claude --resume <id>` finds a session only under the directory of the *current* checkout path;
moving a session to another path (teleport to a laptop, a fresh guest with a different checkout
path) therefore means installing the transcript under the new path's directory name, which is all
`install()` does: the file's contents are not rewritten.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path, PurePosixPath

MAX_DIR_LEN = 200
_UNSAFE = re.compile(r"[^a-zA-Z0-9]")
_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _java_hash(text: str) -> int:
    h = 0
    data = text.encode("utf-16-le")
    for i in range(0, len(data), 2):
        h = (h * 31 + int.from_bytes(data[i:i + 2], "little")) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def project_dir_name(cwd: str) -> str:
    """The `projects/` directory name Claude Code uses for working directory `cwd` (pass the real
    path: the CLI resolves symlinks first)."""
    # JavaScript replaces per UTF-16 code unit: a character outside the BMP becomes "--".
    name = _UNSAFE.sub(lambda m: "--" if ord(m.group()) > 0xFFFF else "-", cwd)
    if len(name) <= MAX_DIR_LEN:
        return name
    return f"{name[:MAX_DIR_LEN]}-{_base36(abs(_java_hash(cwd)))}"


def check_session_id(session_id: str) -> str:
    """`session_id` if it is safe to use in a path (Claude Code's ids are UUIDs), else ValueError."""
    if not isinstance(session_id, str) or not _SESSION_ID.match(session_id):
        raise ValueError(f"not a session id: {session_id!r}")
    return session_id


def config_dir(home: str, claude_config_dir: str = "") -> PurePosixPath:
    """`$CLAUDE_CONFIG_DIR` when set, else `<home>/.claude`."""
    return PurePosixPath(claude_config_dir) if claude_config_dir else PurePosixPath(home) / ".claude"


def transcript_path(config: str | os.PathLike, cwd: str, session_id: str) -> PurePosixPath:
    """`<config>/projects/<dir of cwd>/<session id>.jsonl` (a guest path: computed, not touched)."""
    return PurePosixPath(config) / "projects" / project_dir_name(cwd) / f"{check_session_id(session_id)}.jsonl"


def session_folder(config: str | os.PathLike, cwd: str, session_id: str) -> PurePosixPath:
    """The `<session id>/` folder that may sit beside the transcript (sub-agents, large results)."""
    return transcript_path(config, cwd, session_id).with_suffix("")


def install(transcript: bytes | str | os.PathLike, config: str | os.PathLike, cwd: str, session_id: str,
            *, folder: str | os.PathLike | None = None, owner: tuple[int, int] | None = None) -> Path:
    """Put a session's transcript where `claude --resume <session_id>` run in `cwd` finds it.

    transcript: the `.jsonl` contents (bytes) or the path of a `.jsonl` file; a path's sibling
      `<session id>/` folder is copied too unless `folder` names another one.
    config: the Claude config dir on this machine (`$CLAUDE_CONFIG_DIR` or `~/.claude`).
    cwd: the real path of the checkout the session continues in.
    owner: (uid, gid) to give the created files and directories (when installing as root for
      another user); None: leave them to the caller.
    Returns the transcript's path. An existing transcript of the same id is replaced.
    """
    dest = Path(transcript_path(config, cwd, session_id))
    created = _makedirs(dest.parent)
    src_folder: Path | None = Path(folder) if folder is not None else None
    if isinstance(transcript, bytes):
        data = transcript
    else:
        src = Path(transcript)
        data = src.read_bytes()
        if src_folder is None and src.with_suffix("").is_dir():
            src_folder = src.with_suffix("")
    tmp = dest.with_name(dest.name + ".part")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, dest)
    paths = [*created, dest]
    if src_folder is not None and src_folder.is_dir():
        target = dest.with_suffix("")
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(src_folder, target)
        paths.append(target)
        paths.extend(target.rglob("*"))
    if owner is not None:
        for p in paths:
            os.chown(p, *owner, follow_symlinks=False)
    return dest


def install_codex(rollout: str | os.PathLike, codex_home: str | os.PathLike, *,
                  owner: tuple[int, int] | None = None) -> Path:
    """Put a Codex rollout (`…/sessions/YYYY/MM/DD/rollout-…-<id>.jsonl`) into another CODEX_HOME
    under the same `sessions/…` path: `codex exec resume <id>` then continues it there (checked
    with codex 0.169 from a fresh CODEX_HOME holding nothing else)."""
    src = Path(rollout)
    parts = src.parts
    if "sessions" not in parts or not src.name.startswith("rollout-") or src.suffix != ".jsonl":
        raise ValueError(f"not a Codex rollout path: {src}")
    rel = Path(*parts[len(parts) - 1 - parts[::-1].index("sessions"):])
    dest = Path(codex_home) / rel
    created = _makedirs(dest.parent)
    tmp = dest.with_name(dest.name + ".part")
    shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o600)
    os.replace(tmp, dest)
    if owner is not None:
        for p in [*created, dest]:
            os.chown(p, *owner, follow_symlinks=False)
    return dest


def _makedirs(path: Path) -> list[Path]:
    """mkdir -p, returning the directories it created (outermost first)."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    return list(reversed(missing))
