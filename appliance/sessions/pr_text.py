"""A pull request's proposed title and body, from the session: the agent's final summary (its last
turn's result) and the diffstat. People edit both before the request is created."""

from __future__ import annotations

from .answers import latest_answer
from .models import DiffFile, Session

MAX_TITLE = 120
MAX_FILES_LISTED = 30


def diffstat(session: Session) -> str:
    files: list[DiffFile] = session.latest_diff_files()
    if not files:
        return ""
    rows = [f"{f.path} | +{f.added} −{f.removed}" + (" (binary)" if f.binary else "") for f in files[:MAX_FILES_LISTED]]
    if len(files) > MAX_FILES_LISTED:
        rows.append(f"… and {len(files) - MAX_FILES_LISTED} more files")
    rows.append(f"{len(files)} files changed, +{session.diff_added} −{session.diff_removed}")
    return "\n".join(rows)


def proposed(session: Session) -> tuple[str, str]:
    """(title, body) the console's form starts from and the API uses when none is given."""
    title = (session.title or session.work_branch).strip()[:MAX_TITLE]
    parts = []
    summary = latest_answer(session).strip()
    if summary:
        parts.append(summary)
    stat = diffstat(session)
    if stat:
        parts.append("```\n" + stat + "\n```")
    parts.append(f"Created by the appliance from session {session.id}.")
    return title, "\n\n".join(parts)
