"""The doctor's service checks, against services this test runs on loopback (and their absence)."""

from __future__ import annotations

import socket
import threading

import dns.message
from werkzeug.serving import make_server

from appliance import doctor
from appliance.services import Services
from webui import create_app

from helpers import make_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_daemon_check(db, tmp_path):
    server = make_server("127.0.0.1", 0, create_app(Services.build(make_config(tmp_path / "app"))), threaded=True)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        cfg = make_config(tmp_path / "s", listen_port=server.server_port)
        assert doctor.check_daemon(cfg).status == doctor.OK
    finally:
        server.shutdown()
        t.join(5)
    down = doctor.check_daemon(make_config(tmp_path / "s", listen_port=free_port()))
    assert down.status == doctor.FAIL and "systemctl start appliance" in down.hint


def test_proxy_and_git_proxy_checks(tmp_path):
    listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(3)]
    ports = [s.getsockname()[1] for s in listeners]
    try:
        cfg = make_config(tmp_path / "s", proxy_port=ports[0], transparent_proxy_port=ports[1], git_proxy_port=ports[2])
        assert doctor.check_proxy(cfg, host="127.0.0.1").status == doctor.OK
        assert doctor.check_git_proxy(cfg, host="127.0.0.1").status == doctor.OK
    finally:
        for s in listeners:
            s.close()
    cfg = make_config(tmp_path / "s", proxy_port=free_port(), git_proxy_port=free_port())
    assert doctor.check_proxy(cfg, host="127.0.0.1").status == doctor.FAIL
    assert doctor.check_git_proxy(cfg, host="127.0.0.1").status == doctor.FAIL


def test_resolver_check(tmp_path):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]

    def answer():
        data, peer = sock.recvfrom(4096)
        reply = dns.message.make_response(dns.message.from_wire(data))
        reply.set_rcode(dns.rcode.REFUSED)
        sock.sendto(reply.to_wire(), peer)

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    try:
        got = doctor.check_resolver(make_config(tmp_path / "s", dns_port=port), host="127.0.0.1")
        assert got.status == doctor.OK and "REFUSED" in got.detail
    finally:
        t.join(5)
        sock.close()


def test_clock_and_database_checks(db, cfg):
    assert doctor.check_clock().status in (doctor.OK, doctor.WARN)
    assert doctor.check_database_clock(cfg).status == doctor.OK


def test_run_services_never_raises(tmp_path):
    # a loopback "bridge" subnet: the checks' probes stay on this host
    cfg = make_config(tmp_path / "s", listen_port=free_port(), subnet="127.77.0.0/24", dns_port=free_port())
    names = [c.name for c in doctor.run_services(cfg)]
    assert names == ["tls", "forwarding", "daemon", "egress proxy", "resolver", "git proxy", "nft table", "clock",
                     "clock vs database"]


def test_doctor_says_whether_the_host_forwards_level_full(tmp_path):
    from appliance.doctor import OK, WARN, check_forwarding

    proc = tmp_path / "ip_forward"
    proc.write_text("0\n")
    off = check_forwarding(proc)
    assert off.status == WARN and "only over HTTP(S)" in off.detail and "ip_forward=1" in off.hint
    proc.write_text("1\n")
    assert check_forwarding(proc).status == OK


def test_the_templates_check_says_where_the_ram_files_go(tmp_path):
    from appliance.doctor import FAIL, OK, WARN, check_templates

    from helpers import make_config

    assert check_templates(make_config(tmp_path)).status == OK  # off: nothing to check
    on = make_config(tmp_path, guest_templates="on", template_dir=str(tmp_path / "tmpl"), memory_mb=512)
    mounts = tmp_path / "mounts"
    mounts.write_text(f"rootfs / ext4 rw 0 0\ntmpfs {tmp_path} tmpfs rw 0 0\n")
    assert check_templates(on, mounts).status == OK
    mounts.write_text("rootfs / ext4 rw 0 0\n")
    disk = check_templates(on, mounts)
    assert disk.status == WARN and "not tmpfs" in disk.detail
    huge = make_config(tmp_path, guest_templates="on", template_dir=str(tmp_path / "tmpl"), memory_mb=10**7,
                       max_memory_mb=10**7)
    assert check_templates(huge, mounts).status == FAIL
