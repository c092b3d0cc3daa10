"""The image build's pure parts, its error handling and cleanup, and the guest files it bakes in
(no root, no mmdebstrap: the real build runs in scripts/test and tests/vm)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from appliance.errors import ApplianceError, ResourceExhausted
from vmimages import build, profiles
from vmimages.store import ImageStore, version_dir_name

GUEST = profiles.GUEST_DIR


# ------------------------------------------------------------------------------------ apt sources


def test_host_sources_keep_enabled_debian_entries_only(tmp_path):
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text(
        "Types: deb deb-src\n"
        "# a comment\n"
        "URIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        "\n"
        "Types: deb\n"
        "URIs: http://mirror.example/debian-security\n"
        "Suites: bookworm-security\n"
        "Components: main\n"
        "\n"
        "Types: deb\n"
        "URIs: http://mirror.example/debian\n"
        "Suites: bookworm-backports\n"
        "Components: main\n"
        "Enabled: no\n"
    )
    (d / "vendor.sources").write_text("Types: deb\nURIs: https://vendor.example/apt\nSuites: stable\nComponents: main\n")
    (d / "vendor.list").write_text("deb https://vendor.example/apt stable main\n")
    (d / "old.list.disabled").write_text("deb http://mirror.example/debian bookworm main\n")
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [signed-by=/k.gpg arch=amd64] http://other.example/archive/debian/20250101T000000Z bookworm main contrib\n"
        "deb-src http://other.example/debian bookworm main\n"
    )
    osr = tmp_path / "os-release"
    osr.write_text('VERSION_CODENAME=bookworm\n')
    text = build.host_debian_sources("bookworm", files=(tmp_path / "sources.list", d), os_release=osr)
    stanzas = build._deb822_stanzas(text)
    assert [s["URIs"] for s in stanzas] == [
        "http://other.example/archive/debian/20250101T000000Z",
        "http://mirror.example/debian",
        "http://mirror.example/debian-security",
    ]
    assert all(s["Types"] == "deb" for s in stanzas)
    assert stanzas[0]["Signed-By"] == "/k.gpg" and stanzas[0]["Components"] == "main contrib"
    assert "vendor" not in text and "backports" not in text


def test_host_sources_follow_the_profile_suite(tmp_path):
    (tmp_path / "a.sources").write_text(
        "Types: deb\nURIs: http://m.example/debian\nSuites: trixie trixie-updates\nComponents: main\n")
    osr = tmp_path / "os-release"
    osr.write_text('VERSION_CODENAME="trixie"\n')
    text = build.host_debian_sources("bookworm", files=(tmp_path,), os_release=osr)
    assert "Suites: bookworm bookworm-updates" in text


def test_no_debian_source_is_a_clear_error(tmp_path):
    with pytest.raises(ApplianceError) as e:
        build.host_debian_sources("bookworm", files=(tmp_path / "nothing",), os_release=tmp_path / "x")
    assert "sources" in e.value.hint


# ------------------------------------------------------------------------------------ mmdebstrap


def test_mmdebstrap_command_for_a_profile():
    p = profiles.load_profile("general")
    payloads = build.Payloads(node=(Path("/c/node.tgz"), Path("/c/npm.tgz")),
                              agents={"claude": Path("/c/claude.exe"), "codex": Path("/c/codex")},
                              apt_cache=Path("/c/apt/trixie"))
    cmd = build.mmdebstrap_command(p, Path("/b/rootfs"), Path("/b/debian.sources"), Path("/b/guest.tar"),
                                   ['Acquire::Check-Valid-Until "false"'], "https://registry.example/", Path("/ca.pem"),
                                   payloads)
    assert cmd[:2] == ["mmdebstrap", "--mode=root"]
    assert "--variant=minbase" in cmd and "--format=directory" in cmd
    assert '--aptopt=Acquire::Check-Valid-Until "false"' in cmd
    assert cmd[-3:] == ["trixie", "/b/rootfs", "/b/debian.sources"]
    include = next(c for c in cmd if c.startswith("--include="))
    assert include.split("=", 1)[1].split(",") == list(p.packages)
    assert "--essential-hook=tar-in /b/guest.tar /" in cmd
    # openjdk's maintainer scripts need the man directories the build otherwise leaves out
    assert '--essential-hook=mkdir -p "$1/usr/share/man/man1"' in cmd
    # the apt cache in the image store: synced in before, out after, and emptied from the image
    assert "--setup-hook=sync-in /c/apt/trixie /var/cache/apt/archives/" in cmd
    hooks = [c.split("=", 1)[1] for c in cmd if c.startswith("--customize-hook=")]
    assert hooks[0] == "sync-out /var/cache/apt/archives /c/apt/trixie"
    assert hooks[1] == "tar-in /b/guest.tar /"
    assert str(build.CUSTOMIZE_SCRIPT) in hooks[2]
    assert "-delete" in hooks[-1]
    node = next(h for h in hooks if "install-node" in h)
    assert "/c/node.tgz /c/npm.tgz" in node
    assert 'install -m 0755 /c/claude.exe "$1/usr/local/bin/claude"' in hooks
    assert 'install -m 0755 /c/codex "$1/usr/local/bin/codex"' in hooks
    npm = next(h for h in hooks if " npm install " in h)
    assert hooks.index(node) < hooks.index(npm)
    assert "--registry=https://registry.example/" in npm and "--cafile=/tmp/appliance-build-ca.pem" in npm
    assert npm.endswith("yarn pnpm bun eslint prettier")
    assert any("rm -f" in h and "appliance-build-ca.pem" in h for h in hooks)
    # extra steps run in order, after npm, each quoted for sh, with the host's CA for pip and curl
    steps = [h for h in hooks if "/bin/sh -ec" in h]
    assert len(steps) == len(p.extra_steps)
    assert hooks.index(steps[0]) > hooks.index(npm)
    assert "PIP_CERT=/tmp/appliance-build-ca.pem" in steps[0]
    assert "'systemctl disable postgresql.service redis-server.service" in steps[0]


def test_mmdebstrap_command_without_npm():
    p = profiles.load_profile("minimal")
    cmd = build.mmdebstrap_command(p, Path("/r"), Path("/s"), Path("/g.tar"), [], None, None)
    assert not any("npm" in c for c in cmd)
    assert not any(c.startswith("--aptopt") for c in cmd)


def test_apt_progress_counts_what_apt_and_dpkg_print():
    apt = build.AptProgress()
    for line in ["Get:1 http://deb.debian.org/debian trixie InRelease [140 kB]",
                 "Get:4 http://deb.debian.org/debian trixie/main amd64 Packages [9 MB]",
                 "0 upgraded, 3 newly installed, 0 to remove and 0 not upgraded.",
                 "Get:5 http://deb.debian.org/debian trixie/main amd64 mawk amd64 1.3.4 [141 kB]",
                 "Get:6 http://deb.debian.org/debian trixie/main amd64 jq amd64 1.7 [70 kB]",
                 "Unpacking mawk (1.3.4) ...", "Setting up mawk (1.3.4) ..."]:
        apt.feed(line)
    assert apt.summary() == "packages: 2/3 downloaded, 1 unpacked, 1 set up"
    apt.feed("0 upgraded, 3 newly installed, 0 to remove and 0 not upgraded.")  # the install after downloading
    assert apt.summary() == "packages: 2/3 downloaded, 1 unpacked, 1 set up"
    apt.feed("0 upgraded, 5 newly installed, 0 to remove and 0 not upgraded.")  # the next package set
    assert apt.summary() == "packages: 0/5 downloaded, 0 unpacked, 0 set up"


# ------------------------------------------------------------------------------------ guest files


def test_guest_tarball_has_root_owned_files_with_image_modes(tmp_path):
    tar_path = build.guest_tarball(tmp_path / "g.tar")
    with tarfile.open(tar_path) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert all(m.isfile() and m.uid == 0 and m.gid == 0 for m in members.values())
    assert members["./usr/local/sbin/appliance-guest-identity"].mode == 0o755
    assert members["./usr/local/bin/check-tools"].mode == 0o755
    assert members["./etc/initramfs-tools/hooks/appliance-modules"].mode == 0o755
    assert members["./etc/sudoers.d/appliance"].mode == 0o440
    assert members["./etc/systemd/system/appliance-identity.service"].mode == 0o644
    assert "./customize.sh" not in members and not any("customize" in n for n in members)
    expected = {"./" + f.relative_to(build.GUEST_ROOTFS).as_posix() for f in profiles.guest_files(build.GUEST_ROOTFS)}
    assert set(members) == expected


def test_guest_scripts_are_valid():
    subprocess.run(["sh", "-n", str(GUEST / "customize.sh")], check=True)
    subprocess.run(["sh", "-n", str(GUEST / "rootfs/etc/initramfs-tools/hooks/appliance-modules")], check=True)
    for script in ("usr/local/sbin/appliance-guest-identity", "usr/local/bin/check-tools"):
        source = (GUEST / "rootfs" / script).read_text()
        assert source.startswith("#!/usr/bin/python3")
        compile(source, script, "exec")


def test_identity_unit_runs_before_sshd_and_is_enabled_by_customize():
    unit = (GUEST / "rootfs/etc/systemd/system/appliance-identity.service").read_text()
    assert "Before=ssh.service" in unit.replace(" ssh.socket", "")  # listed first
    assert "ExecStart=/usr/local/sbin/appliance-guest-identity --boot" in unit
    assert "Type=oneshot" in unit and "RemainAfterExit=yes" in unit
    assert "StandardOutput=journal+console" in unit
    assert "WantedBy=multi-user.target" in unit
    assert "modprobe -q qemu_fw_cfg" in unit
    customize = (GUEST / "customize.sh").read_text()
    assert "systemctl enable appliance-identity.service" in customize
    assert 'rm -f "$root"/etc/ssh/ssh_host_*' in customize
    assert "systemd-firstboot.service" in customize and "apt-daily.timer" in customize


def test_sshd_config_only_uses_the_identity_host_key_and_keys():
    conf = (GUEST / "rootfs/etc/ssh/sshd_config.d/appliance.conf").read_text().splitlines()
    assert "HostKey /etc/ssh/ssh_host_ed25519_key" in conf
    assert "PasswordAuthentication no" in conf and "PermitRootLogin no" in conf
    assert sum(line.startswith("HostKey ") for line in conf) == 1


def test_check_tools_runs_and_skips_absent_tools():
    script = GUEST / "rootfs/usr/local/bin/check-tools"
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + ":/usr/bin:/bin")
    out = subprocess.run([sys.executable, str(script), "--json", "--timeout", "10"], capture_output=True,
                         text=True, check=True, env=env)
    data = json.loads(out.stdout)
    assert data["Languages"]["Python"]
    assert all(v is not None for section in data.values() for v in section.values())
    text = subprocess.run([sys.executable, str(script), "--all"], capture_output=True, text=True, check=True, env=env).stdout
    assert text.startswith("Languages\n") and "Claude Code" in text


# ------------------------------------------------------------------------------------ manifest


def test_manifest_records_what_went_in(tmp_path):
    files = {}
    for name, data in (("disk.qcow2", b"disk"), ("vmlinuz", b"kernel"), ("initrd.img", b"initrd")):
        (tmp_path / name).write_bytes(data)
        files[name] = tmp_path / name
    started = dt.datetime(2025, 5, 1, 10, 0, 0, tzinfo=dt.timezone.utc)
    finished = started + dt.timedelta(seconds=95.5)
    p = profiles.load_profile("minimal")
    m = build.build_manifest(p, "f" * 64, "6.1.0-9-amd64", {"bash": "5.2"}, {"yarn": "1.22.22"}, files,
                             123456, started, finished, {"mmdebstrap": 80.0})
    json.dumps(m)  # serialisable
    assert m["profile"] == "minimal" and m["profile_hash"] == "f" * 64 and m["suite"] == "bookworm"
    assert m["kernel_version"] == "6.1.0-9-amd64" and m["kernel_cmdline"] == p.kernel_cmdline
    assert m["packages"] == {"bash": "5.2"} and m["npm_global"] == {"yarn": "1.22.22"}
    assert m["guest_user"] == "agent" and m["guest_uid"] == 1000
    assert m["files"]["vmlinuz"] == {"size": 6, "sha256": hashlib.sha256(b"kernel").hexdigest()}
    assert m["built_at"] == finished.isoformat()
    assert m["build"]["duration_s"] == 95.5 and m["build"]["stages_s"] == {"mmdebstrap": 80.0}
    assert m["build"]["started_at"] == started.isoformat()
    assert m["disk_size_gib"] == p.disk_size and m["rootfs_bytes"] == 123456


def test_npm_globals_reads_versions_including_scoped_packages(tmp_path):
    base = tmp_path / "usr/local/lib/node_modules"
    for name, version in (("yarn", "1.22.22"), ("@anthropic-ai/claude-code", "2.1.3")):
        (base / name).mkdir(parents=True)
        (base / name / "package.json").write_text(json.dumps({"name": name, "version": version}))
    (base / "broken").mkdir()
    assert build.npm_globals(tmp_path) == {"@anthropic-ai/claude-code": "2.1.3", "yarn": "1.22.22"}
    assert build.npm_globals(tmp_path / "none") == {}


def test_kernel_version_picks_the_newest(tmp_path):
    (tmp_path / "boot").mkdir()
    for v in ("6.1.0-9-amd64", "6.1.0-10-amd64"):
        (tmp_path / "boot" / f"vmlinuz-{v}").write_text("")
    assert build._kernel_version(tmp_path) == "6.1.0-10-amd64"
    with pytest.raises(ApplianceError, match="no kernel"):
        build._kernel_version(tmp_path / "empty")


# ------------------------------------------------------------------------------------ build_image


@pytest.fixture
def as_root(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)


def test_unknown_profile(tmp_path):
    with pytest.raises(ApplianceError) as e:
        build.build_image("nope", tmp_path)
    assert "minimal" in e.value.hint


def test_not_root(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ApplianceError) as e:
        build.build_image("minimal", tmp_path)
    assert "root" in e.value.message and "sudo" in e.value.hint


def test_missing_mmdebstrap_names_the_package(tmp_path, monkeypatch, as_root):
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda cmd, path=None: None if cmd == "mmdebstrap" else real_which(cmd, path=path))
    with pytest.raises(ApplianceError) as e:
        build.build_image("minimal", tmp_path)
    assert "mmdebstrap" in e.value.message and e.value.hint == "install it: apt-get install mmdebstrap"


def test_not_enough_disk(tmp_path, monkeypatch, as_root):
    monkeypatch.setattr(shutil, "which", lambda cmd, path=None: "/usr/bin/" + cmd)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(100 * 1024**3, 99 * 1024**3, 1024**3))
    with pytest.raises(ResourceExhausted) as e:
        build.build_image("minimal", tmp_path)
    assert "1.0 GiB free" in e.value.message and "9 GiB needed" in e.value.message


def test_an_up_to_date_image_is_reused_without_building(tmp_path, monkeypatch):
    h = profiles.profile_hash("minimal")
    d = tmp_path / version_dir_name("minimal", h)
    d.mkdir()
    for name in ("disk.qcow2", "vmlinuz", "initrd.img"):
        (d / name).write_bytes(b"x")
    (d / "manifest.json").write_text(json.dumps({"profile": "minimal", "profile_hash": h, "kernel_cmdline": "root=/dev/vda",
                                                 "built_at": "2025-05-01T10:00:00+00:00"}))
    monkeypatch.setattr(build, "_check_host", lambda *a: pytest.fail("must not build"))
    lines = []
    img = build.build_image("minimal", tmp_path, progress=lines.append)
    assert img.dir == d and img.current
    assert os.readlink(tmp_path / "minimal") == d.name
    assert lines and "up to date" in lines[0] and lines[0].startswith("[minimal] ")
    assert ImageStore(tmp_path).get("minimal").dir == d


def _leftovers(image_dir):
    return sorted(p.name for p in image_dir.iterdir() if not p.name.startswith((".build-minimal.log", ".lock-")))


def test_a_failed_step_leaves_nothing_and_shows_the_output_tail(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "_check_host", lambda *a: None)
    seen = {}

    def failing_build(profile, h, tmp, final, log, stages):
        seen["tmp"] = tmp
        (tmp / "rootfs").mkdir()
        raise build._StepFailed("mmdebstrap", 1, ["E: Unable to locate package nosuch"])

    monkeypatch.setattr(build, "_build", failing_build)
    with pytest.raises(ApplianceError) as e:
        build.build_image("minimal", tmp_path, progress=lambda s: None)
    assert "mmdebstrap" in e.value.message and "Unable to locate package nosuch" in e.value.message
    assert ".build-minimal.log" in e.value.hint
    assert not seen["tmp"].exists()
    assert _leftovers(tmp_path) == []
    assert ImageStore(tmp_path).list() == []


@pytest.mark.parametrize("line,cause", [
    ("E: Unable to locate package nosuch", "package nosuch does not exist in the suite"),
    ("dpkg: error processing package openjdk-21-jre-headless:amd64 (--configure):",
     "package openjdk-21-jre-headless:amd64 failed to install"),
    ("E: Failed to fetch http://deb.debian.org/debian/pool/main/j/jq/jq_1.7.deb  Connection refused",
     "could not download http://deb.debian.org/debian/pool/main/j/jq/jq_1.7.deb"),
    ("tar: ./usr/lib/x.so: Cannot write: No space left on device", "the disk is full"),
    ("npm error code ECONNREFUSED", "npm failed (ECONNREFUSED)"),
])
def test_a_failed_build_names_its_cause(line, cause):
    assert build.failure_cause(["I: something", line, "E: mmdebstrap failed to run"]).startswith(cause)


def test_a_failed_build_keeps_the_previous_image_current(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "_check_host", lambda *a: None)
    good = tmp_path / "minimal-000000000000"
    good.mkdir()
    build.set_current(tmp_path, "minimal", good.name)

    def full_disk(profile, h, tmp, final, log, stages):
        raise build._StepFailed("mmdebstrap", 1, ["dpkg: error processing archive x.deb (--unpack):",
                                                  " cannot copy extracted data: No space left on device"])

    monkeypatch.setattr(build, "_build", full_disk)
    with pytest.raises(ResourceExhausted) as e:
        build.build_image("minimal", tmp_path, progress=lambda s: None)
    assert "the disk is full" in e.value.message and "stays current" in e.value.hint
    assert os.readlink(tmp_path / "minimal") == good.name


def test_an_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "_check_host", lambda *a: None)

    def interrupted(profile, h, tmp, final, log, stages):
        (tmp / "image").mkdir()
        (tmp / "image" / "manifest.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "_build", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build.build_image("minimal", tmp_path, progress=lambda s: None)
    assert _leftovers(tmp_path) == []


def test_sigterm_stops_a_running_step_and_its_children(tmp_path):
    stages = build._Stages("minimal", lambda s: None)
    pidfile = tmp_path / "pid"
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGTERM))
    with open(tmp_path / "log", "w") as log, build._sigterm_as_interrupt():
        timer.start()
        with pytest.raises(build.BuildInterrupted):
            build._run_logged(["sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"], log, stages, "step",
                              {"PATH": "/usr/bin:/bin"})
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid):
    """Running (not gone, not a zombie waiting for whoever reaps orphans here)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_run_logged_reports_failure_with_tail(tmp_path):
    stages = build._Stages("minimal", lambda s: None)
    with open(tmp_path / "log", "w") as log, pytest.raises(build._StepFailed) as e:
        build._run_logged(["sh", "-c", "echo first; echo 'I: doing'; echo last >&2; exit 3"], log, stages, "step",
                          {"PATH": "/usr/bin:/bin"})
    assert e.value.code == 3 and e.value.tail == ["first", "I: doing", "last"]
    assert "exit status 3" in (tmp_path / "log").read_text()


def test_remove_tree(tmp_path):
    d = tmp_path / "b"
    (d / "x/y").mkdir(parents=True)
    (d / "x/y/f").write_text("")
    os.chmod(d / "x/y", 0o555)
    if os.geteuid() != 0:
        os.chmod(d / "x/y", 0o755)
    build.remove_tree(d)
    assert not d.exists()
    build.remove_tree(d)  # absent: fine
