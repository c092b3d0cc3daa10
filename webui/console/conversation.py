"""The conversation as people read it: the agent's text as Markdown, tool calls folded with their
input and (shortened) output, and what each turn cost.

Markdown is rendered on the server with markdown-it-py with raw HTML off (the agent's `<script>` is
shown as text), then cleaned with nh3 (Ammonia) against a short allowlist of tags, attributes and
URL schemes — so no HTML the agent wrote reaches the page, and a `javascript:` link is no link.
"""

from __future__ import annotations

import json

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

from appliance.agents.events import shorten

# what the agent's Markdown may become; anything else is dropped by nh3
TAGS = {"p", "br", "hr", "em", "strong", "del", "code", "pre", "blockquote", "ul", "ol", "li", "a",
        "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td"}
ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"style"}, "td": {"style"}}
URL_SCHEMES = {"http", "https", "mailto"}
TOOL_INPUT_LIMIT = 4000  # characters of a tool call's input shown when unfolded

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table").enable("strikethrough")


def render_markdown(text: str) -> Markup:
    """The agent's Markdown as safe HTML."""
    html = _markdown.render(text or "")
    return Markup(nh3.clean(html, tags=TAGS, attributes=ATTRIBUTES, url_schemes=URL_SCHEMES,
                            link_rel="noopener noreferrer nofollow",
                            filter_style_properties={"text-align"}))


def tool_input_text(data: dict) -> str:
    """A tool call's input as people read it (pretty JSON, shortened), or its one-line summary."""
    value = data.get("input")
    if not value:
        return data.get("summary", "")
    return shorten(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True), TOOL_INPUT_LIMIT)


def tokens_of(usage: dict | None) -> dict[str, int]:
    """Input and output tokens from the usage an agent reported (Claude Code and Codex name them
    alike; cached input counts as input)."""
    usage = usage if isinstance(usage, dict) else {}

    def count(*names: str) -> int:
        return sum(int(usage.get(n) or 0) for n in names if isinstance(usage.get(n) or 0, (int, float)))

    return {"input": count("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"),
            "output": count("output_tokens")}


def usage_of_turns(results: list[tuple[int, dict]]) -> tuple[dict[int, dict], dict]:
    """Per turn and for the whole session: cost in USD (None when no agent reported one) and tokens,
    from the turns' `turn_result` events given as (turn number, event data)."""
    per_turn: dict[int, dict] = {}
    total = {"cost_usd": None, "input": 0, "output": 0}
    for number, data in results:
        tokens = tokens_of(data.get("usage"))
        cost = data.get("cost_usd")
        row = per_turn.setdefault(number, {"cost_usd": None, "input": 0, "output": 0})
        for into in (row, total):
            into["input"] += tokens["input"]
            into["output"] += tokens["output"]
            if isinstance(cost, (int, float)):
                into["cost_usd"] = (into["cost_usd"] or 0.0) + float(cost)
    return per_turn, total


def usage_line(result: dict) -> str:
    """'$0.0123 · 1,234 in / 56 out tokens' for a turn's result, or '' when nothing was reported."""
    tokens = tokens_of(result.get("usage"))
    cost = result.get("cost_usd")
    parts = [format_cost(cost)] if isinstance(cost, (int, float)) else []
    if tokens["input"] or tokens["output"]:
        parts.append(f"{tokens['input']:,} in / {tokens['output']:,} out tokens")
    return " · ".join(parts)


def format_cost(cost: float | None) -> str:
    return "" if cost is None else f"${cost:.4f}"
