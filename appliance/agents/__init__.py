"""Coding agents: one adapter per agent, chosen per session by name.

    agent = agents.get("claude-code")
    inv = agent.invocation(spec)          # what to run in the guest (argv, env, cwd, user)
    parser = agent.parser(spec)           # then parser.parse(line) per stdout line,
    result = parser.finish(code, stderr)  # and the TurnResult at the end

See base.py for the interface, events.py for what comes out.
"""

from __future__ import annotations

from ..errors import NotFound
from .base import Agent, AgentInvocation, ModelSettings, TranscriptRef, TurnParser, TurnSpec, stderr_event
from .claude_code import ClaudeCode
from .codex import Codex
from .command import Command

ADAPTERS: dict[str, type[Agent]] = {cls.name: cls for cls in (ClaudeCode, Codex, Command)}
DEFAULT = ClaudeCode.name


class UnknownAgent(NotFound):
    """A session asked for an agent the appliance has no adapter for."""


def names() -> list[str]:
    return list(ADAPTERS)


def get(name: str | None = None, **options) -> Agent:
    """The adapter called `name` (default: claude-code); `options` go to its constructor
    (e.g. `executable="/opt/claude/bin/claude"`)."""
    cls = ADAPTERS.get(name or DEFAULT)
    if cls is None:
        raise UnknownAgent(f"no agent called {name!r}", hint=f"choose one of: {', '.join(ADAPTERS)}")
    return cls(**options)


__all__ = ["ADAPTERS", "DEFAULT", "Agent", "AgentInvocation", "ModelSettings", "TranscriptRef", "TurnParser",
           "TurnSpec", "UnknownAgent", "get", "names", "stderr_event"]
