"""One turn of a session, for real: a guest, the checkout through the git proxy, setup and hooks,
the agent, then commit, push and the diff.

Everything the turn learns is written as events as it happens; the row changes are the few that
must survive a crash (status, sandbox id, the agent's session id, shas, the diff). A turn that
raises is marked failed with its reason; the guest is kept (a follow-up reuses it) unless the
session was cancelled.
"""

from __future__ import annotations

import logging
import posixpath
import shlex
import time
from dataclasses import dataclass

from appliance_base.config import Config

from .. import agents
from ..agents import credentials as agent_credentials
from ..agents.base import ModelSettings, TranscriptRef, TurnSpec
from ..db import database, utcnow
from ..environments import dotenv
from ..environments.model_choice import ModelChoice
from ..errors import ApplianceError, NotReady, SandboxError
from ..gitproxy import diffs, tokens
from ..gitproxy.git import Git
from ..gitproxy.mirror import MirrorStore
from ..gitproxy.repos import RepoSpec
from ..models import Sandbox, SandboxState
from ..redact import redact_text
from ..repos.models import Repository
from ..sandbox.guest import GuestLayout
from ..sandbox.guest_ssh import StdinFeed
from ..sandbox.manager import SandboxManager, SandboxRequest
from . import answers, notify, transcripts
from .envcache import EnvironmentCaches
from .hooks import hook_input, session_start_hooks
from .lifecycle import move_to
from .models import DiffFile, Session, Status, Turn, TurnStatus
from .output import EventBudget, LineSplitter, cut_line_notice
from .spend import budgets
from .steering import Steering, TurnControls
from .stream import emit

log = logging.getLogger(__name__)

class TurnCancelled(Exception):
    pass


def repo_spec(repo: Repository) -> RepoSpec:
    return RepoSpec(key=repo.name, url=repo.url, credential_kind=repo.credential_kind,
                    credential=repo.credential_secret or "", username=repo.credential_username or "x-access-token",
                    default_branch=repo.default_branch)


def resolve_repo(key: str) -> RepoSpec | None:
    """For the git proxy (which opens the request thread's database connection): the repository
    behind a proxy URL key."""
    repo = Repository.get_or_none(Repository.name == key)
    return repo_spec(repo) if repo else None


def clone_script(url: str, credentials_file: str, workdir: str, work_branch: str, start: str, email: str) -> str:
    """The shell commands that check the session branch out in the guest. The remote URL holds no
    token: git reads it from `credentials_file` (git credential-store), so `git remote -v`, git's
    own messages and the agent's tool output never show it."""
    q = shlex.quote
    helper = f"store --file={credentials_file}"
    return " && ".join([
        f"mkdir -p {q(posixpath.dirname(workdir))}",
        f"git -c credential.helper= -c credential.helper={q(helper)} clone --quiet {q(url)} {q(workdir)}",
        f"cd {q(workdir)}",
        *_session_git_config(credentials_file, email),
        f"git checkout --quiet -B {q(work_branch)} {q(start)}",
        "git rev-parse HEAD",
    ])


def refresh_script(url: str, credentials_file: str, workdir: str, work_branch: str, start: str, email: str) -> str:
    """For a guest from an environment cache: the checkout is there (with what setup made); it
    becomes this session's — its remote and credential, the new commits, its branch at `start`.
    Untracked files (build output) stay; tracked ones are reset to `start`."""
    q = shlex.quote
    return " && ".join([
        f"cd {q(workdir)}",
        "{ git config --unset-all credential.helper || true; }",  # the cached session's
        *_session_git_config(credentials_file, email),
        f"git remote set-url origin {q(url)}",
        "git fetch --quiet --prune origin",
        f"git checkout --quiet --force -B {q(work_branch)} {q(start)}",
        f"git reset --quiet --hard {q(start)}",
        "git rev-parse HEAD",
    ])


def _session_git_config(credentials_file: str, email: str) -> list[str]:
    q = shlex.quote
    return ["git config credential.helper ''",  # only the session's credential, whatever the image configured
            f"git config --add credential.helper {q(f'store --file={credentials_file}')}",
            "git config user.name 'Appliance agent'",
            f"git config user.email {q(email)}"]


def signal_agent_script(user: str, signal_name: str) -> str:
    """Signal the user's processes except sshd's own (a session's sshd runs as the user: signalling
    it would drop the runner's connection, and with it the turn's commit and push); run as root."""
    q = shlex.quote
    return (f"for p in $(pgrep -u {q(user)}); do "
            "case \"$(cat /proc/$p/comm 2>/dev/null)\" in sshd|sshd-session) ;; "
            f"*) kill -{signal_name} $p 2>/dev/null ;; esac; done; true")


TRANSPORT_FAILURES = ("unable to access", "RPC failed", "early EOF", "the remote end hung up unexpectedly")


def _transport_failure(stderr: bytes) -> bool:
    """git's stderr says the connection failed (not: a refusal, a missing branch, a full disk)."""
    text = stderr.decode(errors="replace")
    return any(marker in text for marker in TRANSPORT_FAILURES) and "401" not in text and "404" not in text


@dataclass
class Clock:
    started: float = 0.0

    def __post_init__(self):
        self.started = time.monotonic()

    def lap(self) -> float:
        now = time.monotonic()
        took, self.started = now - self.started, now
        return round(took, 2)


class TurnRunner:
    def __init__(self, config: Config, sandboxes: SandboxManager, git_remote, mirrors: MirrorStore, git: Git,
                 model_base_urls: dict[str, str] | None = None):
        """`git_remote(token, repo_key) -> (url, credential-store line)` is the git proxy's URL as the
        guest dials it, and where its token goes (GitProxyService.guest_remote)."""
        self.config = config
        self.sandboxes = sandboxes
        self.git_remote = git_remote
        self.mirrors = mirrors
        self.git = git
        self.model_base_urls = model_base_urls or {}
        self.layout = GuestLayout.from_config(config)  # where things are in the guest
        self.models = ModelChoice.from_config(config)
        self._budgets: dict[int, EventBudget] = {}  # turn id -> its budget for guest-output events
        self.controls = TurnControls(self.signal_agent)  # steering and interrupts of running turns
        self.env_caches = EnvironmentCaches(config, sandboxes)

    # -- the turn ---------------------------------------------------------------------------------
    def run(self, turn_id: int) -> None:
        turn = Turn.get_by_id(turn_id)
        session = turn.session
        clock = Clock()
        timings = {"queue": round((utcnow() - turn.created_at).total_seconds(), 2)}
        Turn.update(status=TurnStatus.RUNNING, started_at=utcnow()).where(Turn.id == turn.id).execute()
        # Events made from guest output go through one budget per turn (output.py).
        budget = self._budgets[turn.id] = EventBudget(lambda kind, data: emit(session, kind, data, turn),
                                                      self.config.max_events_per_turn)
        self.controls.turn_started(session.id)
        try:
            self._run_turn(turn, session, clock, timings, budget)
        finally:
            self._budgets.pop(turn.id, None)
            self.controls.turn_ended(session.id)

    def _run_turn(self, turn: Turn, session: Session, clock, timings: dict, budget: EventBudget) -> None:
        try:
            # a turn queued before its owner's budget ran out does not start now (running ones finish)
            budgets.check_admission(self.config, Session.get_by_id(session.id).owner)
            self._set_status(session, Status.PROVISIONING, "fetching", turn)
            self._check_upstream(session)  # an unreachable remote or a missing branch: before any guest boots
            timings["fetch"] = clock.lap()
            self._set_status(session, Status.PROVISIONING, "booting", turn)
            sandbox, fresh = self._sandbox(session, turn)
            timings["boot"] = clock.lap()
            with self.sandboxes.ssh(sandbox) as guest:
                workdir = self._workdir(session)
                if fresh:
                    cached = sandbox.env_cache_id is not None  # checkout and setup were kept: fetch, no setup script
                    self._set_status(session, Status.PROVISIONING, "cloning", turn)
                    self._clone(guest, session, workdir, turn, refresh=cached)
                    timings["clone"] = clock.lap()
                    self._set_status(session, Status.SETTING_UP, "setup", turn)
                    self._setup(guest, session, workdir, turn, run_script=not cached)
                    self._restore_transcript(guest, session)
                    timings["setup"] = clock.lap()
                    if not cached and self.env_caches.capture(
                            session, sandbox, aside=[self.layout.git_credentials],
                            base_sha=Session.get_by_id(session.id).base_sha) is not None:
                        emit(session, "log", {"stream": "appliance", "text": "kept this guest's disk as the "
                                              "environment's cache: its next session starts from here"}, turn)
                        timings["cache"] = clock.lap()
                self._set_status(session, Status.RUNNING, "agent", turn)
                transcript = self._agent(guest, session, workdir, turn)
                if self.controls.interrupted(session.id):
                    # the agent stopped its tool, but not always what the tool started (a `sleep 600`
                    # under Claude Code's Bash outlived it): those stop too, before the commit
                    self.signal_agent(session.id, "TERM")
                timings["agent"] = clock.lap()
                fresh_row = Session.get_by_id(session.id)
                transcripts.keep(guest, self.config.state_dir, session.id, fresh_row.agent_session_id, transcript,
                                 self.config.transcript_max_mb,
                                 on_cut=lambda notice: emit(session, "log", {"stream": "appliance", "text": notice}))
                self._check_cancel(session)
                commit = self._commit_and_push(guest, session, workdir, turn)
                timings["push"] = clock.lap()
            budget.finish()
            self._diff(session, turn)
            timings["diff"] = clock.lap()
            if self.controls.interrupted(session.id):  # stopped by its owner: what it did is kept and pushed
                Turn.update(status=TurnStatus.INTERRUPTED, finished_at=utcnow(), commit_sha=commit, timings=timings,
                            error="interrupted by the owner").where(Turn.id == turn.id).execute()
                self._set_status(session, Status.IDLE, "interrupted: send a message to continue", turn)
                emit(session, "turn_end", {"turn": turn.number, "ok": False, "interrupted": True, "timings": timings},
                     turn)
                return
            Turn.update(status=TurnStatus.COMPLETED, finished_at=utcnow(), commit_sha=commit, timings=timings).where(
                Turn.id == turn.id).execute()
            self._set_status(session, Status.IDLE, "waiting for input", turn)
            emit(session, "turn_end", {"turn": turn.number, "ok": True, "timings": timings}, turn)
            notify.turn_ended(self.config, session.id, turn.number, ok=True)
        except TurnCancelled:
            budget.finish()
            Turn.update(status=TurnStatus.CANCELLED, finished_at=utcnow(), timings=timings).where(Turn.id == turn.id).execute()
            emit(session, "turn_end", {"turn": turn.number, "ok": False, "cancelled": True}, turn)
            self.release_guest(session.id)
        except Exception as e:  # the turn fails; the session stays usable with a follow-up
            budget.finish()
            if Session.get_by_id(session.id).status == Status.CANCELLED:
                Turn.update(status=TurnStatus.CANCELLED, finished_at=utcnow()).where(Turn.id == turn.id).execute()
                self.release_guest(session.id)
                return
            message = redact_text(e.message if isinstance(e, ApplianceError) else f"{type(e).__name__}: {e}")
            log.warning("session %s turn %d failed: %s", session.id, turn.number, message)
            Turn.update(status=TurnStatus.FAILED, finished_at=utcnow(), error=message, timings=timings).where(
                Turn.id == turn.id).execute()
            emit(session, "error", {"message": message, "hint": getattr(e, "hint", "")}, turn)
            move_to(session, Status.FAILED, message[:200], turn, error=message)
            emit(session, "turn_end", {"turn": turn.number, "ok": False, "error": message}, turn)
            notify.turn_ended(self.config, session.id, turn.number, ok=False)

    # -- steps ------------------------------------------------------------------------------------
    def _set_status(self, session: Session, status: str, detail: str, turn: Turn) -> None:
        current = Session.get_by_id(session.id).status
        if current == Status.CANCELLED or not move_to(session, status, detail, turn, from_status=current):
            # while a turn runs, the only other writer of its session's status is a cancel
            raise TurnCancelled()

    def _check_cancel(self, session: Session) -> None:
        if Session.get_by_id(session.id).status == Status.CANCELLED:
            raise TurnCancelled()

    def _sandbox(self, session: Session, turn: Turn) -> tuple[Sandbox, bool]:
        """The session's live guest, or a new one (fresh=True: it needs a checkout and setup)."""
        current = Session.get_by_id(session.id).sandbox_id
        if current:
            sb = Sandbox.get_or_none(Sandbox.id == current)
            if sb is not None and sb.state == SandboxState.RUNNING and self.sandboxes.hv.is_running(sb.domain_name):
                emit(session, "log", {"stream": "appliance", "text": f"reusing guest {sb.id}"}, turn)
                return sb, False
        from netpolicy.allowlist import Policy

        snap = session.environment_snapshot
        need = agent_credentials.needed(session.agent, self.model_base_urls.get(session.agent, ""))
        policy = Policy.make(snap.get("network_level", "limited"), snap.get("domains") or [],
                             include_defaults=bool(snap.get("include_defaults")),
                             agent_hosts=[need.host] if need else [])
        cache = self.env_caches.find(session)
        request = SandboxRequest(profile=snap.get("profile") or None, vcpus=snap.get("vcpus"),
                                 memory_mb=snap.get("memory_mb"), disk_gb=snap.get("disk_gb"),
                                 purpose="session", session_id=session.id, network=policy,
                                 env_cache=(cache.id, self.env_caches.disk(cache)) if cache else None)
        if cache is not None:
            self.env_caches.used(cache)
            emit(session, "log", {"stream": "appliance", "text": f"starting from the environment cache {cache.id} "
                                  f"(set up {cache.created_at:%Y-%m-%d %H:%M} UTC)"}, turn)
        for attempt in (1, 2):
            sandbox = self.sandboxes.create(request, wait=False)
            Session.update(sandbox_id=sandbox.id).where(Session.id == session.id).execute()
            how = ("from the warm pool" if sandbox.state == SandboxState.RUNNING  # a claimed slot is running already
                   else f"cloned from a template ({sandbox.accel})" if sandbox.template_key
                   else f"booting ({sandbox.accel})")
            emit(session, "log", {"stream": "appliance", "text": f"guest {sandbox.id} {how}"}, turn)
            self._check_cancel(session)
            try:
                self.sandboxes.wait_ready(sandbox)
            except NotReady as e:
                if attempt == 2:
                    raise
                # a guest that never came up (under TCG a boot very rarely panics): one fresh guest more
                emit(session, "log", {"stream": "appliance", "text": f"guest {sandbox.id} did not come up "
                                      f"({e.message.splitlines()[0]}); booting another"}, turn)
                self.sandboxes.destroy(sandbox.id)
                continue
            return self.sandboxes.get(sandbox.id), True
        raise AssertionError("unreachable")

    def _workdir(self, session: Session) -> str:
        return self.layout.work_dir(session.repository.name)

    def _run(self, guest, command: str, turn: Turn, session: Session, stream: str = "setup",
             timeout: float = 600, stdin: bytes | None = None, quiet: bool = False):
        out = self._guest_events(session, turn)
        max_line = self.config.agent_line_max_kb * 1024

        def splitter(name):
            return LineSplitter(lambda line: out("log", {"stream": name, "text": line}), max_line,
                                lambda preview, size: out("log", {"stream": name,
                                                                  "text": cut_line_notice(preview, size, max_line)}))

        if quiet:
            return guest.exec(command, stdin=stdin, timeout=timeout)
        lines_out, lines_err = splitter(stream), splitter(stream)
        try:
            return guest.exec(command, stdin=stdin, on_stdout=lines_out.feed, on_stderr=lines_err.feed, timeout=timeout)
        finally:
            lines_out.close()
            lines_err.close()

    def _guest_events(self, session: Session, turn: Turn):
        """Where events made from guest output go: the turn's budget (or straight out, outside run())."""
        return self._budgets.get(turn.id) or (lambda kind, data: emit(session, kind, data, turn))

    def _check_upstream(self, session: Session) -> None:
        repo = session.repository
        self.mirrors.refresh(repo_spec(repo))  # the guest reads what upstream has now
        on_mirror = self.mirrors.head(repo.name, session.work_branch)
        if on_mirror is not None and Session.get_by_id(session.id).head_sha is None:
            raise ApplianceError(f"branch {session.work_branch!r} already exists in {repo.name}",
                                 hint="start a new session (it gets a new branch name) or delete that branch")
        if on_mirror is None and self.mirrors.head(repo.name, session.base_branch) is None:
            raise ApplianceError(f"branch {session.base_branch!r} does not exist in {repo.name}",
                                 hint="choose an existing base branch")

    def _clone(self, guest, session: Session, workdir: str, turn: Turn, refresh: bool = False) -> None:
        repo = session.repository
        token = tokens.issue(session.id, repo.name, session.work_branch, self.config.git_token_ttl,
                             sandbox_id=Session.get_by_id(session.id).sandbox_id)
        url, credential = self.git_remote(token, repo.name)
        on_mirror = self.mirrors.head(repo.name, session.work_branch)
        start = f"origin/{session.work_branch}" if on_mirror else f"origin/{session.base_branch}"
        guest.exec(f"mkdir -p -m 700 {shlex.quote(self.layout.state_dir)}")
        guest.upload(credential.encode(), self.layout.git_credentials, mode=0o600)
        script = (refresh_script if refresh else clone_script)(url, self.layout.git_credentials, workdir,
                                                               session.work_branch, start,
                                                               email=f"agent@{session.id}.appliance")
        result = self._run(guest, script, turn, session, stream="git", timeout=self.config.git_upstream_timeout,
                           quiet=True)
        if result.exit_code != 0 and _transport_failure(result.stderr) and not refresh:
            # Once more: a connection to the git proxy that broke off (seen once under TCG as a garbled
            # response) must not fail the turn; git removed the half-made clone itself.
            log.warning("session %s: the checkout's connection failed (%s); trying once more", session.id,
                        result.stderr.decode(errors="replace").strip()[-200:])
            guest.exec(f"rm -rf {shlex.quote(workdir)}")
            result = self._run(guest, script, turn, session, stream="git",
                               timeout=self.config.git_upstream_timeout, quiet=True)
        if result.exit_code != 0:
            raise ApplianceError(f"the checkout failed: {result.stderr.decode(errors='replace').strip()[-500:]}",
                                 hint="check that the repository is reachable ('appliance doctor')")
        base_sha = self.mirrors.head(repo.name, session.base_branch)
        Session.update(base_sha=base_sha).where(Session.id == session.id).execute()
        emit(session, "log", {"stream": "git", "text": f"checked out {session.work_branch} from {start}"}, turn)

    def _setup(self, guest, session: Session, workdir: str, turn: Turn, run_script: bool = True) -> None:
        snap = session.environment_snapshot
        env_file, hook_env_file = self.layout.env_file, self.layout.hook_env_file
        guest.upload(dotenv.render(snap.get("variables") or {}).encode(), env_file, mode=0o600)
        guest.upload(b"", hook_env_file, mode=0o600)
        prelude = f"set -a; . {env_file}; . {hook_env_file}; set +a; cd {shlex.quote(workdir)}; "
        if snap.get("setup_script", "").strip() and not run_script:
            emit(session, "log", {"stream": "appliance", "text": "the environment's setup script ran when its "
                                  "cache was made: not again"}, turn)
        elif snap.get("setup_script", "").strip():
            emit(session, "log", {"stream": "appliance", "text": "running the environment's setup script"}, turn)
            result = self._run(guest, prelude + "bash -e", turn, session, stream="setup",
                               stdin=snap["setup_script"].encode(), timeout=self.config.turn_timeout)
            emit(session, "command", {"command": "setup script", "exit_code": result.exit_code}, turn)
            if result.exit_code != 0:
                raise ApplianceError(f"the environment's setup script failed (exit {result.exit_code})",
                                     hint="fix the setup script in the environment settings")
        if session.agent == "claude-code" and not Session.get_by_id(session.id).agent_session_id:
            # Claude Code runs the `startup` hooks itself when it starts a conversation; resuming
            # one (a later turn that got a fresh guest) it runs only `resume` hooks, so the
            # `startup` ones that prepare a fresh checkout are run here
            return
        settings = guest.exec(f"cat {shlex.quote(workdir)}/.claude/settings.json 2>/dev/null")
        for hook in session_start_hooks(settings.text if settings.exit_code == 0 else None):
            env = (f"CLAUDE_PROJECT_DIR={shlex.quote(workdir)} CLAUDE_CODE_REMOTE=true "
                   f"CLAUDE_ENV_FILE={hook_env_file} ")
            emit(session, "log", {"stream": "hook", "text": f"SessionStart hook: {hook.command}"}, turn)
            result = self._run(guest, prelude + env + f"timeout {int(hook.timeout)} bash -c {shlex.quote(hook.command)}",
                               turn, session, stream="hook", stdin=hook_input(session.id, workdir),
                               timeout=hook.timeout + 30)
            emit(session, "command", {"command": hook.command, "exit_code": result.exit_code, "hook": "SessionStart"},
                 turn)
            if result.exit_code != 0:
                message = f"SessionStart hook failed (exit {result.exit_code}): {hook.command}"
                if self.config.hook_failure == "stop":
                    raise ApplianceError(message, hint="fix the hook in .claude/settings.json")
                emit(session, "error", {"message": message, "continued": True}, turn)

    def _agent_env(self, guest, session: Session) -> dict[str, str]:
        """The agent's environment: the environment's variables, what hooks exported, the proxy."""
        exported = guest.exec(f"set -a; . {self.layout.env_file}; . {self.layout.hook_env_file}; set +a; env -0")
        baseline = guest.exec("env -0")
        before = dict(kv.split("=", 1) for kv in baseline.text.split("\0") if "=" in kv)
        after = dict(kv.split("=", 1) for kv in exported.text.split("\0") if "=" in kv)
        env = {k: v for k, v in after.items() if before.get(k) != v and k not in ("SHLVL", "_", "PWD", "OLDPWD")}
        if "PATH" not in env and before.get("PATH"):
            # the image's own PATH (its /etc/environment: e.g. the default virtualenv of `general`)
            home = before.get("HOME", "")
            env["PATH"] = (f"{home}/.local/bin:" if home else "") + before["PATH"]
        proxy = self.sandboxes.egress.guest_settings(Sandbox.get_by_id(session.sandbox_id).address)["proxy"]
        for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
            env.setdefault(name, proxy["http"])
        env.setdefault("no_proxy", proxy["no_proxy"])
        env.setdefault("NO_PROXY", proxy["no_proxy"])
        bundle = "/etc/ssl/certs/ca-certificates.crt"  # holds the appliance CA (guest identity)
        env.setdefault("NODE_EXTRA_CA_CERTS", bundle)
        env.setdefault("SSL_CERT_FILE", bundle)
        env.setdefault("CLAUDE_CODE_REMOTE", "true")
        return env

    def _agent(self, guest, session: Session, workdir: str, turn: Turn) -> TranscriptRef | None:
        """Runs the agent's turn; returns where the agent keeps its transcript."""
        session = Session.get_by_id(session.id)
        adapter = agents.get(session.agent)
        snap = session.environment_snapshot
        spec = TurnSpec(
            prompt=turn.message, workdir=workdir, resume=session.agent_session_id,
            model=ModelSettings(base_url=self.model_base_urls.get(session.agent, ""),
                                model=self.models.for_session(session.agent, snap.get("model") or "")),
            # the command agent: the session's command on its first turn, then each message is the command
            command=(snap.get("command") if turn.number == 1 and snap.get("command") else turn.message)
            if session.agent == "command" else "",
            env=self._agent_env(guest, session), user=self.layout.user, home=self.layout.home,
            timeout=self.config.turn_timeout,
        )
        inv = adapter.invocation(spec)
        parser = adapter.parser(spec)
        if self.controls.interrupted(session.id):  # interrupted before the agent started: it never does
            emit(session, "log", {"stream": "appliance", "text": "interrupted before the agent started"}, turn)
            return None
        if inv.session_id and inv.session_id != session.agent_session_id:
            Session.update(agent_session_id=inv.session_id).where(Session.id == session.id).execute()
        emit(session, "user_message", {"turn": turn.number, "text": turn.message, "source": turn.source}, turn)
        stderr_tail: list[str] = []
        out = self._guest_events(session, turn)
        max_line = self.config.agent_line_max_kb * 1024

        def on_line(line: str):
            for event in parser.parse(line):
                out(event.kind, event.to_dict())
            if parser.turn_over:
                self.controls.agent_said_done(session.id)

        def on_stderr_line(line: str):
            stderr_tail.append(line)
            del stderr_tail[:-50]
            event = agents.stderr_event(line)
            out(event.kind, event.to_dict())

        def on_cut(stream: str):
            return lambda preview, size: out("log", {"stream": stream, "text": cut_line_notice(preview, size, max_line)})

        # The partial line waiting for its newline is bounded: an endless line is cut, not buffered.
        stdout_lines = LineSplitter(on_line, max_line, on_cut("agent"))
        stderr_lines = LineSplitter(on_stderr_line, max_line, on_cut("stderr"))
        feed = StdinFeed() if inv.steerable else None
        if feed is not None:
            feed.write(inv.stdin)
        self.controls.agent_started(session.id, Steering(adapter, feed))
        try:
            result = guest.exec(inv.shell_command(), on_stdout=stdout_lines.feed, on_stderr=stderr_lines.feed,
                                timeout=inv.timeout, feed=feed)
            exit_code = result.exit_code
        except SandboxError as e:
            self._check_cancel(session)
            raise ApplianceError(f"the agent did not finish: {e.message}") from e
        finally:
            self.controls.agent_exited(session.id)
            if feed is not None:
                feed.release()
        stdout_lines.close()
        stderr_lines.close()
        events = parser.finish_events(exit_code, "\n".join(stderr_tail))
        for event in events:
            out(event.kind, event.to_dict())
        if parser.session_id and parser.session_id != session.agent_session_id:
            Session.update(agent_session_id=parser.session_id).where(Session.id == session.id).execute()
        outcome = events[-1] if events else None
        if self.controls.interrupted(session.id):
            emit(session, "log", {"stream": "appliance", "text": "the turn was interrupted by its owner"}, turn)
        elif outcome is not None and getattr(outcome, "ok", True) is False:
            raise ApplianceError(f"the agent reported an error: {getattr(outcome, 'error', '') or 'see the log'}")
        return inv.transcript

    def _restore_transcript(self, guest, session: Session) -> None:
        """A fresh guest continuing a conversation gets the transcript where the CLI resumes from it."""
        if Session.get_by_id(session.id).agent_session_id:
            transcripts.restore(guest, self.config.state_dir, session.id, self.layout)

    def _commit_and_push(self, guest, session: Session, workdir: str, turn: Turn) -> str | None:
        """Commits what the agent left and pushes the branch, unless the turn changed nothing (an
        answer-only turn: no empty branch upstream). Returns the branch head (None: never pushed)."""
        q = shlex.quote
        message = f"{session.title or 'Session changes'} (turn {turn.number})\n\nSession: {session.id}\n"
        script = " && ".join([
            f"cd {q(workdir)}",
            "git add -A",
            "(git diff --cached --quiet || git commit --quiet -F - )",
            "git rev-parse HEAD",
        ])
        result = self._run(guest, script, turn, session, stream="git", stdin=message.encode(),
                           timeout=self.config.git_upstream_timeout, quiet=True)
        if result.exit_code != 0:
            raise ApplianceError(f"the commit failed: {result.stderr.decode(errors='replace').strip()[-500:]}",
                                 hint="see the session log; the changes are still in the guest")
        local = (result.text.strip().splitlines() or [""])[-1]
        session = Session.get_by_id(session.id)
        if not answers.moved(local, session.head_sha, session.base_sha):
            emit(session, "log", {"stream": "git", "text": "no file changes in this turn: nothing pushed"}, turn)
            return session.head_sha
        push = f"cd {q(workdir)} && git push --quiet --porcelain origin HEAD:refs/heads/{q(session.work_branch)}"
        result = self._run(guest, push, turn, session, stream="git", timeout=self.config.git_upstream_timeout,
                           quiet=True)
        if result.exit_code != 0:
            raise ApplianceError(f"the push failed: {result.stderr.decode(errors='replace').strip()[-500:]}",
                                 hint="see the session log; the changes are still in the guest")
        # The head is what the git proxy received (sessions.pushes), never what the guest prints.
        head = Session.get_by_id(session.id).head_sha
        if head is None:
            raise ApplianceError("the push did not reach the appliance's git proxy",
                                 hint="see the session log; the changes are still in the guest")
        if local != head:
            emit(session, "log", {"stream": "appliance", "text": f"the guest reported {local[:12]!r}, but the "
                                  f"branch holds {head[:12]}: the diff shows what the branch holds"}, turn)
        return head

    def _diff(self, session: Session, turn: Turn) -> None:
        session = Session.get_by_id(session.id)
        if session.head_sha is None:  # only answers so far: no branch upstream, nothing to diff
            return
        repo = session.repository
        mirror = self.mirrors.ensure(repo_spec(repo))
        diff = diffs.compute(self.git, mirror, f"refs/heads/{session.base_branch}", session.head_sha)
        with database.atomic():
            DiffFile.delete().where(DiffFile.turn == turn).execute()
            for f in diff.files:
                DiffFile.create(session=session, turn=turn, path=f.path, old_path=f.old_path, change=f.change,
                                added=f.added, removed=f.removed, binary=f.binary, patch=f.patch)
            Session.update(diff_added=diff.added, diff_removed=diff.removed, base_sha=diff.base_sha).where(
                Session.id == session.id).execute()
        emit(session, "diff_stat", {"added": diff.added, "removed": diff.removed, "files": len(diff.files)}, turn)

    # -- guests -----------------------------------------------------------------------------------
    def _exec_in_running_guest(self, session_id: str, command: str) -> None:
        """Run a root command in the session's guest, if it has a running one."""
        session = Session.get_by_id(session_id)
        sandbox = Sandbox.get_or_none(Sandbox.id == session.sandbox_id) if session.sandbox_id else None
        if sandbox is None or sandbox.state != SandboxState.RUNNING:
            return
        with self.sandboxes.ssh(sandbox) as guest:
            guest.exec(f"sudo -n sh -c {shlex.quote(command)}", timeout=20)

    def signal_agent(self, session_id: str, signal_name: str) -> None:
        """Send SIG`signal_name` to the agent user's processes in the session's guest (interrupt)."""
        self._exec_in_running_guest(session_id, signal_agent_script(self.layout.user, signal_name))

    def stop_agent(self, session_id: str) -> None:
        """Kill everything the agent user runs in the session's guest (cancel), sshd's session
        processes included: the turn's SSH channel closes with them, so the worker thread wakes up
        and sees the cancellation."""
        try:
            self._exec_in_running_guest(session_id, f"pkill -KILL -u {shlex.quote(self.layout.user)}")
        except Exception as e:  # the guest may already be gone: destroying it follows anyway
            log.info("stopping the agent of %s: %s", session_id, e)

    def release_guest(self, session_id: str) -> None:
        """Destroy the session's guest (cancel, completion, idle expiry); the session itself stays.
        Its git tokens go first, whatever happens to the guest: a fresh guest gets a new one."""
        tokens.revoke(session_id)
        session = Session.get_by_id(session_id)
        if not session.sandbox_id:
            return
        sandbox = Sandbox.get_or_none(Sandbox.id == session.sandbox_id)
        if sandbox is not None and sandbox.live:
            try:
                self.sandboxes.destroy(sandbox.id)
            except ApplianceError as e:
                log.warning("could not destroy %s: %s", sandbox.id, e.message)
        Session.update(sandbox_id=None).where(Session.id == session_id).execute()
