"""`command`: runs a given shell command in the checkout — the offline default for the demo and
for scripted changes. No model, no credential, no session to resume.

    bash -c COMMAND   (in the checkout, as the guest user; the turn's message in $APPLIANCE_PROMPT)

Every stdout line is a log event; the turn succeeds when the command exits 0.
"""

from __future__ import annotations

from ..errors import ApplianceError
from .base import MAX_PROMPT_BYTES, Agent, AgentInvocation, TurnParser, TurnSpec, failure_text
from .events import Command as CommandEvent
from .events import Event, Log, TurnResult


class Command(Agent):
    name = "command"
    default_api_host = ""

    def __init__(self, shell: str = "bash"):
        self.shell = shell

    def invocation(self, spec: TurnSpec) -> AgentInvocation:
        if not spec.command.strip():
            raise ApplianceError("the command agent was given no command",
                                 hint="set the session's command (the shell command to run in the checkout)")
        if len(spec.prompt.encode()) > MAX_PROMPT_BYTES or len(spec.command.encode()) > MAX_PROMPT_BYTES:
            raise ApplianceError("the command or its message is too long",
                                 hint=f"keep each under {MAX_PROMPT_BYTES // 1000} kB; put a long script in the repository")
        env = self.base_env(spec)
        env["APPLIANCE_PROMPT"] = spec.prompt
        env.update(spec.env)
        return AgentInvocation(argv=(self.shell, "-c", spec.command), env=env, cwd=spec.workdir, user=spec.user,
                               timeout=spec.timeout)

    def parser(self, spec: TurnSpec) -> "CommandParser":
        return CommandParser(spec)


class CommandParser(TurnParser):
    def __init__(self, spec: TurnSpec):
        super().__init__(spec)
        self.session_id = None
        self.last_line = ""

    def parse(self, line: str) -> list[Event]:
        line = line.rstrip("\r\n")
        if line.strip():
            self.last_line = line
        return [Log(text=line)] if line else []

    def _parse(self, line: str) -> list[Event]:  # parse() above handles every line
        return [Log(text=line)]

    def _closing_events(self, exit_code: int | None, stderr_tail: str) -> list[Event]:
        return [CommandEvent(command=self.spec.command, exit_code=exit_code)]

    def finish(self, exit_code: int | None, stderr_tail: str = "") -> TurnResult:
        ok = exit_code == 0
        return TurnResult(ok=ok, session_id=None, summary=self.last_line, exit_code=exit_code,
                          error="" if ok else failure_text(exit_code, stderr_tail, "the command"))
