"""What people do with sessions: start one, follow up, comment, cancel, open a shell, read the
transcript, open a pull request. The runner does the turns; this is the web's and the CLI's door."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from appliance_base.config import Config

from ..accounts.models import User
from ..db import database, utcnow
from ..environments import dotenv
from ..environments.access import usable as usable_environments
from ..environments.model_choice import ModelChoice
from ..environments.models import Environment
from ..errors import ApplianceError, Conflict, Invalid, NotFound
from ..models import Sandbox, SandboxState
from ..repos.models import Repository
from ..sandbox.guest import GuestLayout
from . import anchors, answers, pr_text, transcripts
from .access import may_change, may_use_repository, session_for
from .lifecycle import move_to
from .models import AGENTS, VISIBILITIES, Comment, DiffFile, Session, Status, Turn, TurnStatus
from .shell import GuestShell, NoGuest
from .spend import budgets
from .stream import emit

log = logging.getLogger(__name__)

BRANCH_IN_PROMPT = re.compile(r"\b(?:on|from|against|off|based on) (?:the )?branch [`'\"]?([A-Za-z0-9._/-]+)")
SAFE_BRANCH = re.compile(r"^(?!/)(?!.*//)(?!.*\.\.)(?!.*@\{)[A-Za-z0-9._/-]+(?<![/.])$")


@dataclass(frozen=True)
class NewSession:
    repository: str  # name or id
    prompt: str
    environment: str | int | None = None  # name or id; None: the user's default
    agent: str = "claude-code"
    base_branch: str | None = None
    visibility: str = "private"
    command: str | None = None  # for agent "command": the shell command to run (default: the prompt)
    model: str | None = None  # one of the admin's allowed models; None: the environment's, else the default


def slugify(text: str, words: int = 5, limit: int = 40) -> str:
    slug = "-".join(re.findall(r"[a-z0-9]+", text.lower())[:words])[:limit].strip("-")
    return slug or "task"


def find_repository(user: User, ref: str | int) -> Repository:
    repo = None
    if isinstance(ref, int) or str(ref).isdigit():
        repo = Repository.get_or_none(Repository.id == int(ref))
    if repo is None:
        repo = Repository.get_or_none(Repository.name == str(ref))
    if repo is None or not may_use_repository(user, repo):
        raise NotFound(f"unknown repository {ref!r}",
                       hint="check the name (the console's new-session page lists yours), or ask an admin to add it "
                            "('appliance repo add')")
    return repo


def check_repository_unused(repo: Repository) -> None:
    """Before an admin removes a repository: Conflict naming the sessions that use it, if any.

    Finished sessions count too: they keep their repository for their history and diffs (the
    database refuses the removal as well), so only a repository no session used can go."""
    rows = list(Session.select(Session.id, Session.status).where(Session.repository == repo)
                .order_by(Session.created_at.desc()))
    if not rows:
        return
    unfinished = [s for s in rows if s.status not in Status.FINAL]
    named = (unfinished or rows)[:5]
    listed = ", ".join(f"{s.id} ({s.status})" for s in named) + (", …" if len(unfinished or rows) > len(named) else "")
    raise Conflict(f"repository {repo.name!r} is used by {len(rows)} session(s), {len(unfinished)} unfinished: "
                   f"{listed}; it was not removed",
                   hint="sessions keep their repository for their history, so only a repository no session uses "
                        "can be removed; 'appliance cancel SESSION' stops an unfinished one, and "
                        "'appliance delete SESSION' (its owner, or an admin) deletes a finished one")


def find_environment(user: User, ref: str | int | None) -> Environment | None:
    """The user's environment `ref` (id or name), else one a team of theirs shares; None: their default."""
    if ref is None:
        query = Environment.select().where(Environment.owner == user)
        return query.where(Environment.is_default == True).first() or query.order_by(Environment.id).first()  # noqa: E712
    query = usable_environments(user).order_by(Environment.owner != user, Environment.id)  # their own first
    env = None
    if isinstance(ref, int) or str(ref).isdigit():
        env = query.where(Environment.id == int(ref)).first()
    env = env or query.where(Environment.name == str(ref)).first()
    if env is None:
        raise NotFound(f"unknown environment {ref!r}", hint="see 'appliance env list'")
    return env


def environment_snapshot(env: Environment | None) -> dict:
    """What a session runs with, frozen at start (editing the environment later changes nothing)."""
    if env is None:
        return {"name": "(default)", "network_level": "limited", "domains": [], "include_defaults": False,
                "variables": {}, "setup_script": "", "profile": "", "vcpus": None, "memory_mb": None, "disk_gb": None,
                "model": ""}
    return {"name": env.name, "network_level": env.network_level, "domains": env.domains,
            "include_defaults": env.include_defaults, "variables": dotenv.parse(env.variables),
            "setup_script": env.setup_script, "profile": env.profile, "vcpus": env.vcpus,
            "memory_mb": env.memory_mb, "disk_gb": env.disk_gb, "model": env.model}


class SessionService:
    """What people (web, API, CLI) do with sessions — the only door from them to the guests.

    `sandboxes` (a SandboxManager) is what reaches a live guest (shell, fresh transcript); without
    one those say there is no guest to reach.
    """

    def __init__(self, config: Config, credential_check=None, wake=None, sandboxes=None, forge_for=None,
                 controls=None):
        self.config = config
        # controls: the running turns' steering and interrupts (steering.TurnControls); None: no turn
        # runs in this process, so messages always wait as the next turn
        self.controls = controls
        # credential_check(agent) raises an ApplianceError when the agent's model credential is missing
        self.credential_check = credential_check
        self.wake = wake or (lambda: None)  # tells the scheduler there is work
        self.sandboxes = sandboxes
        # forge_for(repository, state_dir=…) -> Forge; tests give a stand-in for the forges' REST APIs
        self.forge_for = forge_for

    def create(self, user: User, req: NewSession) -> Session:
        prompt = req.prompt.strip()
        if not prompt:
            raise Invalid("the task is empty", hint="say what the agent should do")
        if len(prompt) > self.config.max_prompt_chars:
            raise Invalid(f"the task is {len(prompt)} characters, more than {self.config.max_prompt_chars}",
                          hint="shorten it, or put the details in a file in the repository")
        if req.agent not in AGENTS:
            raise Invalid(f"unknown agent {req.agent!r}", hint=f"use one of: {', '.join(AGENTS)}")
        if req.visibility not in VISIBILITIES:
            raise Invalid(f"unknown visibility {req.visibility!r}", hint=f"use one of: {', '.join(VISIBILITIES)}")
        repo = find_repository(user, req.repository)
        env = find_environment(user, req.environment)
        snapshot = environment_snapshot(env)  # a malformed .env fails here, before anything is saved
        if req.command is not None:
            snapshot["command"] = req.command
        models = ModelChoice.from_config(self.config)
        # the session's own choice, else its environment's (checked again: the admin's list may have shrunk)
        snapshot["model"] = models.check(req.model if req.model is not None else snapshot.get("model"),
                                         "model" if req.model is not None else "the environment's model")
        if self.credential_check is not None:
            self.credential_check(req.agent)  # a missing model credential: before any guest boots
        budgets.check_admission(self.config, user)  # a used-up monthly budget: nothing is created
        base = req.base_branch or self._branch_from_prompt(prompt) or repo.default_branch
        if not SAFE_BRANCH.match(base):
            raise Invalid(f"{base!r} is not a branch name", hint="name an existing branch of the repository")
        with database.atomic():
            session = Session(owner=user, repository=repo, environment=env, environment_snapshot=snapshot,
                              agent=req.agent, title=prompt.splitlines()[0][:120], base_branch=base,
                              visibility=req.visibility, work_branch="")
            session.work_branch = f"{self.config.branch_prefix}/{slugify(prompt)}-{session.id.removeprefix('ses-')[:6]}"
            session.save(force_insert=True)
            turn = Turn.create(session=session, number=1, message=prompt, source="prompt")
            emit(session, "status", {"status": Status.QUEUED}, turn)
        self.wake()
        return session

    @staticmethod
    def _branch_from_prompt(prompt: str) -> str | None:
        found = BRANCH_IN_PROMPT.search(prompt)
        return found.group(1).rstrip(".,;:!?") if found else None

    def message(self, user: User, session_id: str, text: str) -> Turn:
        """A follow-up (idle session: the next turn) or steering: while a turn runs, the message goes
        to the running agent at once when it takes input mid-run (the running turn is returned, with
        status running), else it waits as the next turn (returned queued)."""
        session = session_for(user, session_id, change=True)
        text = text.strip()
        if not text:
            raise Invalid("the message is empty")
        if len(text) > self.config.max_prompt_chars:
            raise Invalid(f"the message is longer than {self.config.max_prompt_chars} characters")
        running = Turn.get_or_none((Turn.session == session) & (Turn.status == TurnStatus.RUNNING))
        if running is not None and self.controls is not None and self.controls.steer(session.id, text):
            emit(session, "user_message", {"turn": running.number, "text": text, "source": "steer"}, running)
            return running
        return self._queue_turn(session, text, "follow_up")

    def interrupt(self, user: User, session_id: str) -> Turn:
        """Stop the running turn; the guest, the branch and the session stay (the turn ends as
        interrupted, what the agent changed is pushed) and the next message starts a new turn."""
        session = session_for(user, session_id, change=True)
        running = Turn.get_or_none((Turn.session == session) & (Turn.status == TurnStatus.RUNNING))
        if running is None or self.controls is None or not self.controls.interrupt(session.id):
            raise Invalid(f"no turn of session {session.id} is running", hint="send a message to start one")
        emit(session, "status", {"status": session.status, "detail": "interrupting the agent"}, running)
        return running

    def queue_turn(self, session: Session, text: str, source: str) -> Turn:
        """A turn the appliance queues on its own (auto-fix): the rules of a follow-up."""
        return self._queue_turn(session, text, source)

    def _queue_turn(self, session: Session, text: str, source: str) -> Turn:
        budgets.check_admission(self.config, session.owner)  # the owner's usage pays for the turn
        with database.atomic():
            session = Session.get_by_id(session.id)  # fresh status, inside the transaction
            if session.status in (Status.COMPLETED, Status.CANCELLED):
                raise Invalid(f"session {session.id} is {session.status}", hint="start a new session")
            number = (Turn.select().where(Turn.session == session).count()) + 1
            turn = Turn.create(session=session, number=number, message=text, source=source)
            if session.status in Status.ACTIVE:
                # steering: the agent runs headless, so the message becomes the next turn, visibly
                emit(session, "message_queued", {"turn": number, "text": text, "source": source}, turn)
            else:
                if not move_to(session, Status.QUEUED, turn=turn, from_status=session.status, error=None):
                    raise Invalid(f"session {session.id} changed while the message was sent", hint="send it again")
                emit(session, "user_message", {"turn": number, "text": text, "source": source}, turn)
        self.wake()
        return turn

    def comment(self, user: User, session_id: str, path: str, line: int, body: str, side: str = "new",
                turn: int | None = None) -> Comment:
        """A comment on a line of the diff of `turn` (default: the newest diff); it keeps that turn
        and the line's text, so later diffs can re-anchor it (anchors.py)."""
        session = session_for(user, session_id, change=True)
        if side not in ("new", "old"):
            raise Invalid("side must be 'new' or 'old'")
        if not body.strip():
            raise Invalid("the comment is empty")
        files = DiffFile.select(DiffFile, Turn.number).join(Turn).where(
            (DiffFile.session == session) & (DiffFile.path == path))
        if turn is not None:
            files = files.where(Turn.number == int(turn))
        diff_file = files.order_by(Turn.number.desc()).first()
        if diff_file is None:
            where = f"the diff of turn {turn}" if turn is not None else "the session's diff"
            raise Invalid(f"{path} is not in {where}", hint="comment on a changed file")
        text = anchors.line_text_at(diff_file.patch, int(line), side)
        if text is None:
            raise Invalid(f"line {line} ({side}) of {path} is not in the diff",
                          hint="comment on a line the diff shows")
        return Comment.create(session=session, author=user, path=path, line=int(line), side=side, body=body.strip(),
                              turn_number=diff_file.turn.number, line_text=text)

    def send_comments(self, user: User, session_id: str) -> Turn:
        session = session_for(user, session_id, change=True)
        pending = list(Comment.select().where((Comment.session == session) & Comment.sent_in.is_null())
                       .order_by(Comment.path, Comment.line, Comment.id))
        if not pending:
            raise Invalid("there are no unsent comments")
        with database.atomic():
            turn = self._queue_turn(session, render_comments(session, pending), "comments")
            Comment.update(sent_in=turn).where(Comment.id.in_([c.id for c in pending])).execute()
        return turn

    def cancel(self, user: User, session_id: str) -> Session:
        session = session_for(user, session_id, change=True)
        if session.status in Status.FINAL:
            raise Invalid(f"session {session.id} is already {session.status}")
        with database.atomic():
            Turn.update(status=TurnStatus.CANCELLED, finished_at=utcnow()).where(
                (Turn.session == session) & (Turn.status == TurnStatus.QUEUED)).execute()
            if not move_to(session, Status.CANCELLED, "cancelled by the owner", from_status=session.status):
                raise Invalid(f"session {session.id} changed while it was cancelled", hint="look at it and try again")
        self.wake()  # the runner stops the agent and destroys the guest
        return Session.get_by_id(session.id)

    def complete(self, user: User, session_id: str) -> Session:
        """The owner is done: the guest goes, the branch, diff and conversation stay."""
        session = session_for(user, session_id, change=True)
        if session.status not in (Status.IDLE, Status.FAILED) or not move_to(
                session, Status.COMPLETED, from_status=session.status):
            raise Invalid(f"session {session.id} is {session.status}",
                          hint="only an idle or failed session can be completed; cancel a running one")
        self.wake()  # the engine releases the guest
        return Session.get_by_id(session.id)

    def set_visibility(self, user: User, session_id: str, visibility: str, hide_owner: bool | None = None) -> Session:
        session = session_for(user, session_id, change=True)
        if visibility not in VISIBILITIES:
            raise Invalid(f"unknown visibility {visibility!r}", hint=f"use one of: {', '.join(VISIBILITIES)}")
        fields = {"visibility": visibility, "updated_at": utcnow()}
        if hide_owner is not None:
            fields["hide_owner"] = bool(hide_owner)
        Session.update(**fields).where(Session.id == session.id).execute()
        return Session.get_by_id(session.id)


    # -- the guest, the transcript, the forge ------------------------------------------------------
    @staticmethod
    def owned(user: User, session_id: str) -> Session:
        """The session when `user` owns it or is an admin; everyone else: 404, as if it did not exist
        (a shell or a transcript shows more than the session page does)."""
        session = session_for(user, session_id)
        if not may_change(user, session):
            raise NotFound(f"no session {session_id}", hint="see 'appliance tasks'")
        return session

    @staticmethod
    def live_sandbox(session: Session) -> Sandbox | None:
        """The session's guest when it is running (not creating, not being destroyed)."""
        if not session.sandbox_id:
            return None
        sandbox = Sandbox.get_or_none(Sandbox.id == session.sandbox_id)
        return sandbox if sandbox is not None and sandbox.state == SandboxState.RUNNING else None

    def shell_guest(self, user: User, session_id: str) -> Sandbox:
        """The guest a shell would open in (owner and admins), or NoGuest saying how to get one."""
        session = self.owned(user, session_id)
        sandbox = self.live_sandbox(session)
        if sandbox is None or self.sandboxes is None:
            raise NoGuest(f"session {session.id} has no running guest",
                          hint="send it a message ('appliance message') to start one")
        return sandbox

    def open_shell(self, user: User, session_id: str, cols: int = 80, rows: int = 24) -> GuestShell:
        """A shell with a pty in the session's live guest (owner and admins)."""
        return GuestShell(self.sandboxes.ssh(self.shell_guest(user, session_id)), cols, rows)

    def transcript(self, user: User, session_id: str) -> tuple[Session, bytes]:
        """The agent's transcript (owner and admins): refreshed from the live guest the way the
        runner keeps it after a turn, else the copy kept on the host."""
        session = self.owned(user, session_id)
        data = None
        if session.agent_session_id:
            self._refresh_transcript(session)
            data = transcripts.load(self.config.state_dir, session.id)
        if data is None:
            raise NotFound(f"session {session.id} has no agent transcript",
                           hint="it appears after the agent's first turn")
        return session, data

    def _refresh_transcript(self, session: Session) -> None:
        sandbox = self.live_sandbox(session)
        if sandbox is None or self.sandboxes is None:
            return
        from .. import agents

        try:
            adapter = agents.get(session.agent)
        except ApplianceError:
            return
        guest_layout = GuestLayout.from_config(self.config)
        ref = adapter.transcript_ref(guest_layout.home, guest_layout.work_dir(session.repository.name),
                                     session.agent_session_id)
        try:
            with self.sandboxes.ssh(sandbox) as guest:
                transcripts.keep(guest, self.config.state_dir, session.id, session.agent_session_id, ref,
                                 self.config.transcript_max_mb)
        except Exception as e:  # the guest may be gone by now: the host's copy is what there is
            log.info("transcript of %s not refreshed from %s: %s", session.id, sandbox.id, e)

    def create_pull_request(self, user: User, session_id: str, *, title: str | None = None, body: str | None = None,
                            autofix: bool | None = None) -> dict:
        """A pull request of the work branch on the repository's forge (once; again: the same one).

        `title`/`body`: as the person edited them (default: pr_text.proposed, from the agent's final
        summary and the diffstat); `autofix` (default: the repository's): failed checks and review
        comments on the request queue turns (appliance.prloop)."""
        from ..forges import forge_for

        forge_for = self.forge_for or forge_for
        session = session_for(user, session_id, change=True)
        if session.pr_url:
            return {"url": session.pr_url, "existing": True}
        blocker = answers.pull_request_blocker(session)  # nothing pushed, answers only, a moved branch
        if blocker is not None:
            raise Conflict(blocker.reason, hint=blocker.hint)
        default_title, default_body = pr_text.proposed(session)
        title = default_title if title is None else title.strip()
        if not title:
            raise Invalid("'title': the pull request needs a title", hint="write one line saying what it changes")
        if len(title) > 255:
            raise Invalid(f"'title' is {len(title)} characters, more than 255", hint="shorten it")
        body = default_body if body is None else body
        if len(body) > self.config.max_prompt_chars:
            raise Invalid(f"'body' is longer than {self.config.max_prompt_chars} characters", hint="shorten it")
        autofix = session.repository.autofix_default if autofix is None else bool(autofix)
        pr = forge_for(session.repository, state_dir=self.config.state_dir).create_pull_request(
            head=session.work_branch, base=session.base_branch, title=title, body=body)
        Session.update(pr_url=pr.url, pr_number=pr.number, pr_state=pr.state, autofix=autofix,
                       updated_at=utcnow()).where(Session.id == session.id).execute()
        emit(session, "pull_request", {"url": pr.url, "number": pr.number, "autofix": autofix})
        return {"url": pr.url, "number": pr.number}

    @staticmethod
    def egress_log(user: User, session_id: str, limit: int = 500) -> tuple[Session, list[dict]]:
        """The egress proxy's and resolver's decisions for the session and its guest, oldest first."""
        from netpolicy import audit

        session = session_for(user, session_id)
        rows = [r.as_dict() for r in audit.query(session.id, limit=limit)]
        if session.sandbox_id:
            seen = {(r["time"], r["host"], r["verdict"]) for r in rows}
            rows += [d for d in (r.as_dict() for r in audit.query(session.sandbox_id, limit=limit))
                     if (d["time"], d["host"], d["verdict"]) not in seen]
            rows.sort(key=lambda r: r["time"] or "")
        return session, rows


def render_comments(session: Session, comments: list[Comment]) -> str:
    """Line comments as one message, each with file:line on the newest diff and the line it is
    about; a comment whose line is no longer there says so (the agent sees what it was about)."""
    files = session.latest_diff_files()
    latest = {f.path: f.patch for f in files}
    newest = files[0].turn.number if files else 0
    parts = ["Please address these review comments on your changes:"]
    for c in comments:
        text = c.line_text if c.turn_number is not None else anchors.line_text_at(latest.get(c.path, ""), c.line,
                                                                                   c.side)
        where = anchors.place(c.turn_number, c.line_text, c.line, c.side, newest, latest.get(c.path))
        if where is None or where.outdated:
            head = f"{c.path} (outdated: was line {c.line}, which no longer reads the same)"
        else:
            head = f"{c.path}:{where.line}"
        parts.append(f"\n{head}" + (f"\n> {text}" if text is not None else "") + f"\n{c.body}")
    return "\n".join(parts)


__all__ = ["ApplianceError", "NewSession", "SessionService", "render_comments", "slugify"]
