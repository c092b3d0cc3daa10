"""What every agent adapter provides, and what the session engine hands it.

For one turn the engine builds a `TurnSpec`, asks the adapter for an `AgentInvocation` (what to run
in the guest, as which user, where, with which environment) and a fresh `TurnParser`, runs the
invocation, feeds each stdout line to `parser.parse(line)` (each stderr line to
`stderr_event(line)`), and finally calls `parser.finish(exit_code, stderr_tail)` for the
`TurnResult`. Adapters never talk to the guest themselves: they only build commands and read lines.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import shlex
from typing import ClassVar, Mapping

from appliance_base.config import DEFAULT_GUEST_USER

from ..errors import ApplianceError
from .events import Event, Log, TurnResult, one_line

# What the guest gets instead of a model API key: the egress proxy replaces it with the real one.
# (Same value as netpolicy.service.CREDENTIAL_PLACEHOLDER; kept here so agents need no netpolicy.)
PLACEHOLDER_KEY = "appliance-injected-by-proxy"

# Prompts travel in argv, whose strings Linux limits to 128 KiB each.
MAX_PROMPT_BYTES = 100_000



@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """How the agent reaches its model API.

    base_url: the API's base URL as the guest should use it; empty: the agent's default public API
      (reached through the egress proxy, which injects the key).
    api_key_env: the variable the agent reads its key from; empty: the adapter's usual one.
    api_key: the value the guest holds — the placeholder the proxy replaces, never the real key.
    model: the model name; empty: the agent's default.
    """

    base_url: str = ""
    api_key_env: str = ""
    api_key: str = PLACEHOLDER_KEY
    model: str = ""


@dataclasses.dataclass(frozen=True)
class TurnSpec:
    """One turn of a session, as the adapter needs to know it.

    prompt: the person's message (for `command`: exported as APPLIANCE_PROMPT).
    workdir: the checkout in the guest (absolute, the real path: Claude Code keys its transcripts
      by it).
    resume: the agent's session id from the previous turn, or None for the first turn.
    session_id: for a first turn, the id to give the new session when the agent lets us choose it
      (Claude Code); None: the adapter picks one (Claude Code) or the agent does (Codex).
    command: the shell command of the `command` agent.
    env: more environment for the agent (proxy variables, CA bundle paths, retry settings).
    timeout: seconds the whole turn may take; the engine enforces it.
    """

    prompt: str
    workdir: str
    resume: str | None = None
    session_id: str | None = None
    model: ModelSettings = ModelSettings()
    command: str = ""
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    user: str = DEFAULT_GUEST_USER
    home: str = ""  # empty: /home/<user>
    timeout: float = 3600.0

    @property
    def home_dir(self) -> str:
        return self.home or f"/home/{self.user}"


@dataclasses.dataclass(frozen=True)
class TranscriptRef:
    """Where the agent keeps the session's transcript in the guest, so the engine can copy it out
    after the turn (for teleport, and for resuming in a fresh guest).

    path: the file, when it is known before the run (Claude Code); else empty.
    pattern: a glob to find it after the run when the name holds a value only the agent knows
      (Codex: `…/sessions/**/rollout-*-<thread id>.jsonl`, with `{session_id}` to fill in).
    extra_dir: a folder that belongs with the file when present (Claude Code's `<id>/`).
    """

    agent: str
    path: str = ""
    pattern: str = ""
    extra_dir: str = ""


@dataclasses.dataclass(frozen=True)
class AgentInvocation:
    """What to run in the guest: `argv` in `cwd` as `user`, with exactly `env`, stdin from /dev/null.

    session_id: the agent session id this turn will have, when known in advance.
    """

    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str
    user: str = DEFAULT_GUEST_USER
    session_id: str | None = None
    transcript: TranscriptRef | None = None
    timeout: float = 3600.0
    # A steerable agent reads its messages on stdin (the first one is `stdin`), so a message sent
    # while it works reaches it at once; stdin must close when its turn is over (parser.turn_over).
    steerable: bool = False
    stdin: bytes = b""

    def shell_command(self, become: bool = False) -> str:
        """One `sh -c`-able line that runs the invocation: change to `cwd`, clear the environment,
        set `env`, read stdin from /dev/null (a steerable agent: from the caller). With `become`
        (when the SSH session is root), switch to `user` with runuser first; without it the caller
        must already be `user`."""
        assigns = [f"{k}={v}" for k, v in self.env.items()]
        runner = ["runuser", "-u", self.user, "--"] if become else []
        line = shlex.join([*runner, "env", "-i", *assigns, *self.argv])
        return f"cd {shlex.quote(self.cwd)} && exec {line}" + ("" if self.steerable else " </dev/null")


class TurnParser(abc.ABC):
    """Reads one turn's stdout, line by line. Never raises on what it reads."""

    def __init__(self, spec: TurnSpec):
        self.spec = spec
        self.session_id: str | None = spec.resume or spec.session_id
        self.turn_over = False  # a steerable agent said its turn is done: close its stdin

    def parse(self, line: str) -> list[Event]:
        """The events one stdout line stands for. Unknown or broken lines become `Log` events."""
        line = line.rstrip("\r\n")
        if not line.strip():
            return []
        try:
            return self._parse(line)
        except Exception as e:  # a parser bug must not end the turn: show the line instead
            return [Log(text=line, stream="stdout", level="warning"),
                    Log(text=f"(could not read that line: {type(e).__name__}: {e})", stream="appliance", level="debug")]

    @abc.abstractmethod
    def _parse(self, line: str) -> list[Event]:
        ...

    @abc.abstractmethod
    def finish(self, exit_code: int | None, stderr_tail: str = "") -> TurnResult:
        """How the turn ended, given the process's exit code (None: killed, e.g. on timeout) and
        the last lines of its stderr."""

    def finish_events(self, exit_code: int | None, stderr_tail: str = "") -> list[Event]:
        """The turn's last events, ending with `finish()`'s TurnResult (the `command` agent puts a
        Command event with the exit code before it)."""
        return [*self._closing_events(exit_code, stderr_tail), self.finish(exit_code, stderr_tail)]

    def _closing_events(self, exit_code: int | None, stderr_tail: str) -> list[Event]:
        return []


class Agent(abc.ABC):
    """An adapter: builds a turn's invocation and reads its output."""

    name: ClassVar[str]
    # The model API hosts the egress proxy must hold a credential for (see credentials.py).
    default_api_host: ClassVar[str] = ""

    @abc.abstractmethod
    def invocation(self, spec: TurnSpec) -> AgentInvocation:
        ...

    @abc.abstractmethod
    def parser(self, spec: TurnSpec) -> TurnParser:
        ...

    def steer_line(self, text: str) -> bytes | None:
        """What to write on a steerable agent's stdin for a message sent while it works (None: the
        agent takes no input mid-run; the message waits for the next turn)."""
        return None

    def interrupt_line(self) -> bytes | None:
        """What asks a steerable agent to stop its turn (None: signals only)."""
        return None

    def transcript_ref(self, home_dir: str, workdir: str, session_id: str) -> TranscriptRef | None:
        """Where this agent keeps the transcript of `session_id` for a checkout at `workdir` (None:
        it keeps none). The runner copies it out after each turn; the transcript route refreshes it."""
        return None

    def base_env(self, spec: TurnSpec) -> dict[str, str]:
        """The environment every agent starts from (the invocation clears the rest, so nothing of
        the SSH login leaks in): HOME, USER, LOGNAME, PATH and a UTF-8 locale for the guest user."""
        return {
            "HOME": spec.home_dir,
            "USER": spec.user,
            "LOGNAME": spec.user,
            "PATH": f"{spec.home_dir}/.local/bin:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
        }


def check_prompt(prompt: str) -> None:
    """An ApplianceError for a message an agent cannot take: empty, or too long for argv."""
    if not prompt.strip():
        raise ApplianceError("the message to the agent is empty", hint="type what the agent should do")
    size = len(prompt.encode())
    if size > MAX_PROMPT_BYTES:
        raise ApplianceError(f"the message to the agent is too long ({size} bytes)",
                             hint=f"keep a message under {MAX_PROMPT_BYTES // 1000} kB; put long material in a file in the repository")


def stderr_event(line: str) -> Log:
    """A line of the agent's stderr, as an event."""
    return Log(text=line.rstrip("\r\n"), stream="stderr")


def loads_object(line: str) -> dict | None:
    """The JSON object on `line`, or None when the line is not one."""
    s = line.strip()
    if not s.startswith("{"):
        return None
    try:
        value = json.loads(s)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def failure_text(exit_code: int | None, stderr_tail: str, what: str) -> str:
    """Why a process failed, for a TurnResult: the last stderr line that says something."""
    lines = [ln.strip() for ln in (stderr_tail or "").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    detail = one_line((errors or lines or [""])[-1], 300)
    if exit_code is None:
        head = f"{what} was stopped before it finished"
    else:
        head = f"{what} exited with status {exit_code}"
    return f"{head}: {detail}" if detail else head
