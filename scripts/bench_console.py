#!/usr/bin/env python3
"""`scripts/bench console`: server time of the console's heaviest pages, as JSON lines.

* the session list (first page, newest first) with 10,000 sessions in the database, for the
  console page and the REST list, against /healthz as the baseline (the app's fixed cost);
* the diff view of a 5,000-line diff, same baseline.
Each figure is the median of --repeat requests through Flask's test client (no network): the
server's own time.
* the load figure (scripts/bench_console_load.py): 200 event followers and 50 terminal websockets
  at once against 127.0.0.1, on the appliance's server (gunicorn gthread, TLS) and on Werkzeug's
  development server as the baseline, errors counted (--no-load skips it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from appliance.accounts.models import ApiToken, User  # noqa: E402
from appliance.db import database, open_database, utcnow  # noqa: E402
from appliance.repos.models import Repository  # noqa: E402
from appliance.services import Services  # noqa: E402
from appliance.sessions.models import DiffFile, Session, Turn  # noqa: E402
from appliance.sessions.service import SessionService  # noqa: E402
from webui import create_app  # noqa: E402
from webui.console import password_stamp  # noqa: E402

from helpers import make_config  # noqa: E402


def timed(client, path, repeat, **kw) -> float:
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        r = client.get(path, **kw)
        samples.append(time.perf_counter() - t)
        assert r.status_code == 200, (path, r.status_code)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--diff-lines", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--followers", type=int, default=200)
    parser.add_argument("--terminals", type=int, default=50)
    parser.add_argument("--events", type=int, default=20, help="events each follower must receive")
    parser.add_argument("--lines", type=int, default=20, help="lines each terminal types and waits to see echoed")
    parser.add_argument("--threads", type=int, default=512, help="web_threads of the appliance's server")
    parser.add_argument("--no-load", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = make_config(Path(tmp) / "state")
        open_database(cfg.database_url)
        from werkzeug.security import generate_password_hash

        user = User.create(username="bench", password_hash=generate_password_hash("pw"))
        token = ApiToken.issue(user)
        repo = Repository.create(name="acme/app", url="/srv/app.git")
        now = utcnow()
        rows = [{"id": f"ses-{i:010x}", "owner": user.id, "repository": repo.id, "agent": "command",
                 "title": f"task {i}", "base_branch": "main", "work_branch": f"appliance/t-{i}",
                 "environment_snapshot": {}, "status": "idle", "created_at": now, "updated_at": now}
                for i in range(args.sessions)]
        with database.atomic():
            for i in range(0, len(rows), 500):
                Session.insert_many(rows[i:i + 500]).execute()
        big = Session.get_by_id("ses-0000000000")
        turn = Turn.create(session=big, number=1, message="x")
        patch = "@@ -1,{0} +1,{0} @@\n".format(args.diff_lines // 2) + "".join(
            f"-old line {i}\n+new line {i}\n" for i in range(args.diff_lines // 2))
        DiffFile.create(session=big, turn=turn, path="big.txt", change="modified", added=args.diff_lines // 2,
                        removed=args.diff_lines // 2, patch=patch)
        Session.update(diff_added=args.diff_lines // 2, diff_removed=args.diff_lines // 2).where(
            Session.id == big.id).execute()

        app = create_app(Services.build(cfg, sessions=SessionService(cfg)))
        client = app.test_client()
        with client.session_transaction() as s:
            s["uid"] = user.id
            s["pw"] = password_stamp(user)
        base = timed(client, "/healthz", args.repeat)
        auth = {"headers": {"Authorization": f"Bearer {token}"}}
        for name, path, kw in (("session_list_page", "/", {}), ("session_list_api", "/api/v1/sessions", auth),
                               ("diff_view_page", f"/sessions/{big.id}/diff", {}),
                               ("diff_api", f"/api/v1/sessions/{big.id}/diff", auth)):
            t = timed(client, path, args.repeat, **kw)
            print(json.dumps({"bench": name, "sessions": args.sessions,
                              "diff_lines": args.diff_lines if "diff" in name else None,
                              "server_ms": round(t * 1000, 2), "baseline": "/healthz",
                              "baseline_ms": round(base * 1000, 3), "ratio": round(t / base, 1)}), flush=True)
        if not args.no_load:
            from bench_console_load import main_load

            from appliance.models import Sandbox

            sb = Sandbox.create(profile="minimal", image_dir="/x", vcpus=1, memory_mb=512, disk_gb=1,
                                state="running", address="10.213.0.9", purpose=big.id)
            Session.update(sandbox_id=sb.id).where(Session.id == big.id).execute()
            database.close()  # the server processes open their own connections
            main_load(cfg, user, token, big, args.followers, args.terminals, args.events, args.lines, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
