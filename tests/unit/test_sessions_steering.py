"""Steering and interrupts of a running turn, without a guest: the controls' rules."""

import threading

from appliance import agents
from appliance.sandbox.guest_ssh import StdinFeed
from appliance.sessions.steering import Steering, TurnControls


def test_the_feed_hands_over_what_was_written_then_ends():
    feed = StdinFeed()
    assert feed.write(b"one\n") and feed.write(b"two\n")
    assert feed.take() == ([b"one\n", b"two\n"], False)
    feed.close()
    assert not feed.write(b"late\n"), "nothing is written once stdin is closed"
    assert feed.take() == ([], True)
    feed.release()


def test_a_message_reaches_a_steerable_agent_until_it_says_its_turn_is_done():
    controls = TurnControls(lambda sid, sig: None)
    feed = StdinFeed()
    controls.turn_started("ses-1")
    assert not controls.steer("ses-1", "early"), "no agent yet: the message waits as a turn"
    controls.agent_started("ses-1", Steering(agents.get("claude-code"), feed))
    assert controls.steer("ses-1", "also the docs")
    assert b"also the docs" in b"".join(feed.take()[0])
    controls.agent_said_done("ses-1")
    assert not controls.steer("ses-1", "too late"), "after its result the message is the next turn's"
    assert not controls.steer("ses-2", "x"), "another session's turn is not running here"


def test_agents_that_take_no_input_mid_run_get_signals_when_interrupted():
    sent, done = [], threading.Event()

    def signal_agent(sid, sig):
        sent.append((sid, sig))
        done.set()

    controls = TurnControls(signal_agent, grace=0.1)
    controls.turn_started("ses-1")
    steering = Steering(agents.get("command"), None)
    controls.agent_started("ses-1", steering)
    assert not controls.steer("ses-1", "x"), "the command agent queues messages"
    assert controls.interrupt("ses-1") and controls.interrupted("ses-1")
    assert done.wait(5)
    controls.agent_exited("ses-1")
    assert sent[0] == ("ses-1", "INT")


def test_claude_code_is_asked_first_and_signalled_only_if_it_does_not_stop():
    sent = []
    controls = TurnControls(lambda sid, sig: sent.append(sig), grace=0.2)
    feed = StdinFeed()
    controls.turn_started("ses-1")
    steering = Steering(agents.get("claude-code"), feed)
    controls.agent_started("ses-1", steering)
    assert controls.interrupt("ses-1")
    for _ in range(50):
        pending, _ = feed.take()
        if pending:
            break
        threading.Event().wait(0.01)
    assert b'"interrupt"' in b"".join(pending)
    controls.agent_exited("ses-1")  # it stopped when asked
    threading.Event().wait(0.5)
    assert sent == [], "no signal for an agent that stopped when asked"


def test_interrupt_needs_a_running_turn_and_is_forgotten_at_its_end():
    controls = TurnControls(lambda sid, sig: None)
    assert not controls.interrupt("ses-1")
    controls.turn_started("ses-1")
    assert controls.interrupt("ses-1") and controls.interrupted("ses-1"), "before the agent starts: a flag"
    controls.turn_ended("ses-1")
    assert not controls.interrupted("ses-1")
