"""Where a line comment sits on a diff other than the one it was written on.

A comment keeps its file, its side, its line number and the text of that line as the diff of its
turn showed it. On a newer turn's diff the lines may have moved: the comment follows its text to
the nearest line that reads the same, or, when no line does (the line was changed or removed, or
the file left the diff), it is "outdated" — shown apart, with the line it was about, as forges do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HUNK = re.compile(r"@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@")

CURRENT, MOVED, OUTDATED = "current", "moved", "outdated"


def side_lines(patch: str, side: str) -> dict[int, str]:
    """Line number → text of every line a unified diff shows on one side: `new` (context and added
    lines, new numbering) or `old` (context and removed lines, old numbering)."""
    lines: dict[int, str] = {}
    old = new = 0
    for row in patch.splitlines():
        if row.startswith("@@"):
            m = HUNK.match(row)
            if m:
                old, new = int(m.group(1)), int(m.group(2))
            continue
        if row.startswith(("+++", "---", "diff ", "index ", "\\")):
            continue
        kind, text = row[:1], row[1:]
        if kind == "+":
            if side == "new":
                lines[new] = text
            new += 1
        elif kind == "-":
            if side == "old":
                lines[old] = text
            old += 1
        else:
            lines[old if side == "old" else new] = text
            old += 1
            new += 1
    return lines


def line_text_at(patch: str, line: int, side: str) -> str | None:
    """The text of line `line` (numbered on `side`) as the diff shows it, or None when it does not."""
    return side_lines(patch, side).get(line)


@dataclass(frozen=True)
class Anchor:
    """Where a comment shows on one turn's diff: `line` on its side (None when outdated) and how
    it got there: where it was written (current), followed by its text (moved), or lost (outdated)."""

    line: int | None
    state: str

    @property
    def outdated(self) -> bool:
        return self.state == OUTDATED


def reanchor(patch: str | None, line: int, side: str, text: str) -> Anchor:
    """The comment written on line `line` reading `text`, placed on another diff of its file
    (`patch`; None when the file is not in that diff): the same line if it still reads the same,
    else the nearest line that does (the earlier one on a tie), else outdated. A blank line has
    no content to follow, so it stays only where it was."""
    if patch is None:
        return Anchor(None, OUTDATED)
    lines = side_lines(patch, side)
    if _same(lines.get(line), text):
        return Anchor(line, CURRENT)
    if not text.strip():
        return Anchor(None, OUTDATED)
    matches = [n for n, t in lines.items() if _same(t, text)]
    if not matches:
        return Anchor(None, OUTDATED)
    return Anchor(min(matches, key=lambda n: (abs(n - line), n)), MOVED)


def place(comment_turn: int | None, comment_text: str, line: int, side: str, shown_turn: int,
          patch: str | None) -> Anchor | None:
    """Where a comment shows on the diff of `shown_turn` (`patch`: its file's patch there, None
    when the file is not in it); None when it does not show at all: on a turn older than the one
    it was written on. A comment from before comments kept their text stays at its line number."""
    if comment_turn is None or (comment_turn == shown_turn and patch is not None):
        return Anchor(line, CURRENT)
    if shown_turn < comment_turn:
        return None
    return reanchor(patch, line, side, comment_text)


def place_comments(comments, shown_turn: int, patches: dict[str, str]) -> tuple[dict, list]:
    """Comments (with turn_number, line_text, path, line, side) on the diff of `shown_turn` whose
    files' patches are `patches`: {(path, side, line): [(comment, Anchor)]} where they anchor, and
    the outdated ones apart; those written on a later turn are left out."""
    by_line: dict = {}
    outdated = []
    for c in comments:
        where = place(c.turn_number, c.line_text, c.line, c.side, shown_turn, patches.get(c.path))
        if where is None:
            continue
        if where.outdated:
            outdated.append(c)
        else:
            by_line.setdefault((c.path, c.side, where.line), []).append((c, where))
    return by_line, outdated


def _same(a: str | None, b: str) -> bool:
    return a is not None and a.rstrip() == b.rstrip()
