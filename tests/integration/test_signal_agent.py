"""The interrupt's signal reaches the agent user's processes but not sshd's own (which run as the
user too and carry the runner's connection). Real processes of an unprivileged user of this host."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from appliance.sessions.runner import signal_agent_script

from helpers import need_root

pytestmark = pytest.mark.root
USER = "nobody"


def as_user(*argv: str) -> subprocess.Popen:
    return subprocess.Popen(["setpriv", "--reuid", USER, "--regid", "nogroup", "--clear-groups", *argv])


def test_the_agent_gets_the_signal_and_an_sshd_named_process_does_not(tmp_path):
    need_root()
    fake_sshd = tmp_path / "sshd"
    fake_sshd.symlink_to(shutil.which("sleep"))  # comm "sshd": stands for a session's sshd process
    os.chmod(tmp_path, 0o755)
    agent = as_user("sleep", "120")
    sshd = as_user(str(fake_sshd), "120")
    try:
        time.sleep(0.3)
        subprocess.run(["sh", "-c", signal_agent_script(USER, "INT")], check=True, timeout=20)  # as root
        assert agent.wait(10) != 0, "the agent's process got SIGINT"
        time.sleep(0.3)
        assert sshd.poll() is None, "sshd's own process is left alone"
    finally:
        for p in (agent, sshd):
            p.kill()
            p.wait()
