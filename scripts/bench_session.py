#!/usr/bin/env python3
"""`scripts/bench session`: what a session costs, as JSON lines (needs root: real guests).

* submit → agent running for a `command` session, split into queue / boot / clone / setup (from
  the turn's recorded timings), against the bare cold boot of a sandbox measured in the same run;
* clone of a repository through the git proxy (host mirror) vs a plain `git clone --reference`
  of the upstream on the host (ratio);
* the end-of-turn diff (`gitproxy.diffs.compute` on the mirror) for a 5,000-line change, against
  `git diff --stat` of the same range as the baseline.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from appliance.accounts.models import User  # noqa: E402
from appliance.gitproxy import diffs, tokens  # noqa: E402
from appliance.models import Sandbox, SandboxState  # noqa: E402
from appliance.repos.models import Repository  # noqa: E402
from appliance.sandbox.hypervisor import Hypervisor  # noqa: E402
from appliance.sandbox.manager import SandboxRequest  # noqa: E402
from appliance.sessions.models import Session, Status, Turn  # noqa: E402
from appliance.sessions.runner import repo_spec  # noqa: E402
from appliance.sessions.service import NewSession  # noqa: E402

from appliance_world import appliance_world, remove, state_dir  # noqa: E402
from gitserver import GitServer, clean_git_env  # noqa: E402


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def timed(argv, **kw) -> float:
    t = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True, **kw)
    return time.monotonic() - t


def main() -> int:
    state = state_dir("bench-session")
    upstream = GitServer(state / "upstream").start()
    files = {f"src/mod{i:04d}.py": "".join(f"value_{i}_{j} = {j}\n" for j in range(100)) for i in range(1500)}
    upstream.create_repo("acme/big", files)
    hv = Hypervisor("qemu:///system")
    try:
        with appliance_world(hv, state, bridge="aplbench1", subnet="10.223.0.0/24", tap_prefix="aplq",
                             egress_table="applbenchs", guest_templates="off") as w:  # the cold path
            run(w, upstream, files)
    finally:
        upstream.close()
        remove(state)
    return 0


def run(w, upstream, files) -> None:
    mgr, engine = w.sandboxes, w.engine
    engine.start()
    user = User.create(username="bench")
    Repository.create(name="acme/big", url=upstream.url("acme/big"), credential_kind="token",
                      credential_secret=upstream.token)
    mode = mgr.accel().mode

    t = time.monotonic()
    sandbox = mgr.create(SandboxRequest())
    cold_boot = time.monotonic() - t
    mgr.destroy(sandbox.id)

    s = engine.service.create(user, NewSession("acme/big", "bench", agent="command", command="true"))
    while Session.get_by_id(s.id).status not in (Status.IDLE, Status.FAILED) or s.id in engine.running_sessions():
        time.sleep(0.5)
    timings = Turn.get(Turn.session == s.id).timings
    to_agent = sum(timings.get(k, 0) for k in ("queue", "fetch", "boot", "clone", "setup"))
    emit(bench="submit_to_agent_running", accel=mode, seconds=round(to_agent, 2),
         split={k: timings.get(k) for k in ("queue", "fetch", "boot", "clone", "setup")},
         baseline="sandbox cold boot (create → SSH)", baseline_s=round(cold_boot, 2),
         ratio=round(to_agent / cold_boot, 2), status=Session.get_by_id(s.id).status)

    # clone through the proxy (from the host, as a guest would) vs straight from upstream
    work = w.cfg.state_dir / "clones"
    work.mkdir()
    env = clean_git_env(w.cfg.state_dir / "home")
    # the host plays the guest: its token is bound to a stand-in sandbox at the proxy's address
    stand_in = Sandbox.create(profile="bench", image_dir="-", vcpus=1, memory_mb=1, disk_gb=1, purpose="ses-bench",
                              address=engine.gitproxy.host, state=SandboxState.RUNNING)
    token = tokens.issue("ses-bench", "acme/big", "appliance/bench", 600, sandbox_id=stand_in.id)
    proxied = engine.gitproxy.remote_url(token, "acme/big")
    engine.mirrors.ensure(repo_spec(Repository.get(Repository.name == "acme/big")))
    via_proxy = timed(["git", "clone", "-q", proxied, str(work / "a")], env=env)
    direct_url = upstream.url("acme/big").replace("http://", f"http://x:{upstream.token}@")
    reference = timed(["git", "clone", "-q", "--reference", str(engine.mirrors.path("acme/big")), direct_url,
                       str(work / "b")], env=env)
    emit(bench="clone", accel=mode, files=len(files), via_git_proxy_s=round(via_proxy, 2),
         baseline="git clone --reference (host, direct)", baseline_s=round(reference, 2),
         ratio=round(via_proxy / reference, 2))

    # a 5,000-line change on a branch, diffed on the mirror
    changed = {f"src/mod{i:04d}.py": "".join(f"value_{i}_{j} = {j + 1}\n" for j in range(100)) for i in range(25)}
    upstream.commit("acme/big", "appliance/bench", changed, base="main")
    mirror = engine.mirrors.refresh(repo_spec(Repository.get(Repository.name == "acme/big")))
    t = time.monotonic()
    d = diffs.compute(engine.mirrors.git, mirror, "refs/heads/main", "refs/heads/appliance/bench")
    took = time.monotonic() - t
    stat = timed(["git", "--git-dir", str(mirror), "diff", "--stat", "refs/heads/main", "refs/heads/appliance/bench"])
    emit(bench="end_of_turn_diff", lines_changed=d.added + d.removed, files=len(d.files),
         seconds=round(took, 3), baseline="git diff --stat", baseline_s=round(stat, 3), ratio=round(took / stat, 1))


if __name__ == "__main__":
    sys.exit(main())
