"""A running turn's line to its agent: messages sent while it works, and the interrupt.

A steerable agent (Claude Code with stream-json input) reads messages on stdin: one written while
it works reaches the model at its next request, inside the same turn. An interrupt asks the agent
to stop (its own control request), then signals the agent user's processes if it has not ended
after `grace` seconds: SIGINT, then SIGTERM. Agents that take no input mid-run (codex, command)
get the signals at once, and their messages wait as the next turn.
"""

from __future__ import annotations

import logging
import threading

from ..sandbox.guest_ssh import StdinFeed

log = logging.getLogger(__name__)


class Steering:
    """One agent process: its stdin (None: it reads none) and whether it has exited."""

    def __init__(self, adapter, feed: StdinFeed | None):
        self.adapter, self.feed = adapter, feed
        self.exited = threading.Event()

    def send(self, text: str) -> bool:
        """Hand `text` to the running agent; False: it takes no input now (queue it instead)."""
        line = self.adapter.steer_line(text) if self.feed is not None else None
        return line is not None and self.feed.write(line)

    def ask_to_stop(self) -> bool:
        """The agent's own interrupt; False when it has none (or no longer reads)."""
        line = self.adapter.interrupt_line() if self.feed is not None else None
        return line is not None and self.feed.write(line)

    def end(self) -> None:
        if self.feed is not None:
            self.feed.close()


class TurnControls:
    """The runner's running turns, by session: steering lines and interrupt requests."""

    def __init__(self, signal_agent, grace: float = 8.0):
        # signal_agent(session_id, signal_name): sends the signal to the agent user's processes
        self.signal_agent, self.grace = signal_agent, grace
        self._lock = threading.Lock()
        self._steering: dict[str, Steering] = {}
        self._interrupted: set[str] = set()
        self._running: set[str] = set()

    # -- the runner's side
    def turn_started(self, session_id: str) -> None:
        with self._lock:
            self._running.add(session_id)
            self._interrupted.discard(session_id)

    def turn_ended(self, session_id: str) -> None:
        with self._lock:
            self._running.discard(session_id)
            self._interrupted.discard(session_id)
            steering = self._steering.pop(session_id, None)
        if steering is not None:
            steering.end()

    def agent_started(self, session_id: str, steering: Steering) -> None:
        with self._lock:
            self._steering[session_id] = steering

    def agent_said_done(self, session_id: str) -> None:
        """The agent said its turn is over: its stdin closes, later messages are the next turn's."""
        with self._lock:
            steering = self._steering.get(session_id)
        if steering is not None:
            steering.end()

    def agent_exited(self, session_id: str) -> None:
        with self._lock:
            steering = self._steering.pop(session_id, None)
        if steering is not None:
            steering.end()
            steering.exited.set()

    def interrupted(self, session_id: str) -> bool:
        return session_id in self._interrupted

    # -- people's side
    def steer(self, session_id: str, text: str) -> bool:
        with self._lock:
            steering = self._steering.get(session_id)
        return steering is not None and steering.send(text)

    def interrupt(self, session_id: str) -> bool:
        """Stop the session's running turn (False: none runs here). The guest, the branch and the
        session stay; the runner ends the turn as interrupted and pushes what the agent left."""
        with self._lock:
            if session_id not in self._running:
                return False
            self._interrupted.add(session_id)
            steering = self._steering.get(session_id)
        if steering is not None:
            threading.Thread(target=self._stop_agent, args=(session_id, steering),
                             name=f"interrupt-{session_id}", daemon=True).start()
        # no agent yet (booting, cloning, setting up): the runner sees the flag before it starts one
        return True

    def _stop_agent(self, session_id: str, steering: Steering) -> None:
        """Ask, then SIGINT, then SIGTERM, each after `grace` seconds without the agent exiting."""
        if steering.ask_to_stop() and steering.exited.wait(self.grace):
            return
        try:
            for signal_name in ("INT", "TERM"):
                log.info("session %s: stopping the agent with SIG%s", session_id, signal_name)
                self.signal_agent(session_id, signal_name)
                if steering.exited.wait(self.grace):
                    return
        except Exception as e:  # the guest may be gone already
            log.info("interrupting %s: %s", session_id, e)
