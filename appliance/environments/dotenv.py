"""Environment variables in `.env` format, parsed strictly.

Accepted, one per line: `KEY=value`, `export KEY=value`, blank lines and `# comments`. Values may be
unquoted (trailing ` # comment` dropped, surrounding blanks trimmed), single-quoted (literal) or
double-quoted (`\\n`, `\\t`, `\\"`, `\\\\` escapes). Anything else is an error naming its line; the
whole text is rejected, so a half-parsed environment is never saved.
"""

from __future__ import annotations

import re

from ..errors import ApplianceError

KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


class DotenvError(ApplianceError):
    def __init__(self, problems: list[tuple[int, str]]):
        self.problems = problems
        text = "; ".join(f"line {n}: {why}" for n, why in problems)
        super().__init__(f"invalid .env: {text}", hint="fix those lines (format: KEY=value, one per line)")


def parse(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    problems: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, sep, rest = line.partition("=")
        key = key.strip()
        if not sep:
            problems.append((number, f"expected KEY=value, got {_show(raw)}"))
            continue
        if not KEY.match(key):
            problems.append((number, f"{key!r} is not a valid variable name"))
            continue
        try:
            value = _value(rest.strip())
        except ValueError as e:
            problems.append((number, f"{key}: {e}"))
            continue
        if key in values:
            problems.append((number, f"{key} is set twice"))
            continue
        values[key] = value
    if problems:
        raise DotenvError(problems)
    return values


def _value(text: str) -> str:
    if not text:
        return ""
    quote = text[0]
    if quote == "'":
        end = text.find("'", 1)
        if end < 0:
            raise ValueError("unterminated single quote")
        _only_comment_after(text[end + 1:])
        return text[1:end]
    if quote == '"':
        out, i = [], 1
        while i < len(text):
            ch = text[i]
            if ch == "\\" and i + 1 < len(text):
                nxt = text[i + 1]
                if nxt not in ESCAPES:
                    raise ValueError(f"unknown escape \\{nxt}")
                out.append(ESCAPES[nxt])
                i += 2
                continue
            if ch == '"':
                _only_comment_after(text[i + 1:])
                return "".join(out)
            out.append(ch)
            i += 1
        raise ValueError("unterminated double quote")
    value = re.split(r"\s+#", text, maxsplit=1)[0].rstrip()
    if any(q in value for q in "\"'"):
        raise ValueError("quotes inside an unquoted value: quote the whole value")
    return value


def _only_comment_after(rest: str) -> None:
    rest = rest.strip()
    if rest and not rest.startswith("#"):
        raise ValueError(f"unexpected text after the closing quote: {_show(rest)}")


def _show(text: str, limit: int = 40) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "…")


def render(values: dict[str, str]) -> str:
    """The inverse of parse, for writing into a guest (`export` lines, safely single-quoted)."""
    lines = []
    for key, value in values.items():
        if not KEY.match(key):
            raise ValueError(f"invalid variable name {key!r}")
        lines.append(f"export {key}='" + value.replace("'", "'\\''") + "'")
    return "\n".join(lines) + ("\n" if lines else "")
