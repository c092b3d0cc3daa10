"""A pull request's proposed title and body, from the session: the agent's final summary (its last
completed turn's result) and the diffstat. People edit both before the request is created."""

from __future__ import annotations

from .models import DiffFile, Event, Session

MAX_TITLE = 120
MAX_FILES_LISTED = 30


def final_summary(session: Session) -> str:
    """The agent's final text of the session's newest successful turn ("" when it gave none)."""
    for event in (Event.select().where((Event.session == session.id) & (Event.kind == "turn_result"))
                  .order_by(Event.id.desc()).limit(20)):
        data = event.data or {}
        if data.get("ok") and str(data.get("summary") or "").strip():
            return str(data["summary"]).strip()
    return ""


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
    summary = final_summary(session)
    if summary:
        parts.append(summary)
    stat = diffstat(session)
    if stat:
        parts.append("```\n" + stat + "\n```")
    parts.append(f"Created by the appliance from session {session.id}.")
    return title, "\n\n".join(parts)
