"""Which model a session's agent asks for: the session's choice, else its environment's, else the
appliance's default for the agent (`claude_code_model`, `codex_model`). People choose only from the
admin's list (`allowed_models` in the configuration, comma-separated); an empty list means no choice:
every session runs the default.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance_base.config import Config

from ..errors import Invalid


@dataclass(frozen=True)
class ModelChoice:
    allowed: tuple[str, ...]
    defaults: dict[str, str]  # agent -> the configured default model ("" = the CLI's own)

    @classmethod
    def from_config(cls, config: Config) -> ModelChoice:
        allowed = tuple(dict.fromkeys(m.strip() for m in config.allowed_models.split(",") if m.strip()))
        return cls(allowed, {"claude-code": config.claude_code_model, "codex": config.codex_model})

    def check(self, model: str | None, what: str = "model") -> str:
        """`model` stripped ('' for none), or Invalid naming what is allowed."""
        model = (model or "").strip()
        if model and model not in self.allowed:
            hint = (f"use one of: {', '.join(self.allowed)}" if self.allowed else
                    "this appliance offers no model choice: leave it empty (an admin sets 'allowed_models')")
            raise Invalid(f"{what} {model!r} is not allowed here", hint=hint)
        return model

    def for_session(self, agent: str, chosen: str) -> str:
        """The model the agent is started with: the session's choice, else the agent's default."""
        return chosen or self.defaults.get(agent, "")
