"""Image profiles: parsing, the shipped profiles, and the profile hash."""

from __future__ import annotations

import shutil

import pytest

from appliance.errors import ApplianceError
from vmimages import profiles

GOOD = """
name = "tiny"
description = "a test profile"
suite = "bookworm"
disk_size = 2
kernel_cmdline = "console=ttyS0   root=/dev/vda rw"
packages = ["systemd", "openssh-server", "pkg=1.2-3", "other/bookworm-backports"]
npm_global = ["yarn", "@anthropic-ai/claude-code", "pnpm@9"]
extra_steps = ["echo hi"]
"""


def test_a_profile_parses_into_typed_fields():
    p = profiles.parse_profile(GOOD)
    assert p.name == "tiny" and p.suite == "bookworm" and p.variant == "minbase"
    assert p.packages[:2] == ("systemd", "openssh-server")
    assert p.npm_global == ("yarn", "@anthropic-ai/claude-code", "pnpm@9")
    assert p.extra_steps == ("echo hi",)
    assert p.disk_bytes == 2 * 1024**3
    assert p.kernel_cmdline == "console=ttyS0 root=/dev/vda rw"  # whitespace normalised
    assert p.guest_user == "agent"


@pytest.mark.parametrize(
    "change, message",
    [
        (("disk_size = 2", "disk_size = true"), "disk_size"),
        (("disk_size = 2", "disk_size = 0"), "disk_size"),
        (('suite = "bookworm"', 'suite = "bookworm"\ncolour = "red"'), "unknown field 'colour'"),
        (('suite = "bookworm"\n', ""), "missing field 'suite'"),
        (('"systemd",', '"Bad Name!",'), "not a Debian package name"),
        (('"yarn",', '"../evil",'), "not an npm package name"),
        (("root=/dev/vda ", ""), "root="),
        (('packages = [', 'packages = ["systemd", '), "twice"),
        (('extra_steps = ["echo hi"]', 'extra_steps = [""]'), "non-empty strings"),
        (('name = "tiny"', 'name = "Tiny"'), "name"),
        (('name = "tiny"', 'name = "tiny"\nvariant = "huge"'), "variant"),
        (('name = "tiny"', 'name = "tiny"\nguest_user = "root"'), "guest_user"),
        (("disk_size = 2", "disk_size = 2\n[oops"), "not valid TOML"),
    ],
)
def test_bad_profiles_are_refused_naming_the_problem(change, message):
    text = GOOD.replace(*change)
    assert text != GOOD
    with pytest.raises(ApplianceError) as e:
        profiles.parse_profile(text, origin="x.toml")
    assert message in e.value.message
    assert e.value.message.startswith("x.toml: ")
    assert e.value.hint


def test_shipped_profiles_are_minimal_and_general():
    assert profiles.known_profiles() == ["general", "minimal"]


def test_minimal_profile_has_what_the_guest_contract_needs():
    p = profiles.load_profile("minimal")
    for pkg in ("systemd", "systemd-sysv", "udev", "kmod", "openssh-server", "git", "python3", "curl",
                "ca-certificates", "sudo", "iproute2", "less", "linux-image-amd64", "initramfs-tools",
                "qemu-guest-agent"):
        assert pkg in p.packages, pkg
    assert p.suite == "bookworm"
    assert p.npm_global == ()
    for word in ("console=ttyS0", "root=/dev/vda", "net.ifnames=0"):
        assert word in p.kernel_cmdline.split()
    assert p.disk_size <= 8


def test_general_profile_has_the_default_toolchains_and_agents():
    p = profiles.load_profile("general")
    assert p.suite == "trixie"  # current toolchains: Python 3.13, Ruby 3.3, PHP 8.4, OpenJDK 21, ...
    for pkg in ("python3-pip", "python3-venv", "python3-poetry", "python3-pytest", "python3-numpy",
                "python3-pandas", "python3-scipy", "ruby-full", "bundler", "rbenv", "php-cli", "composer",
                "openjdk-21-jdk-headless", "maven", "gradle", "golang-go", "rustc", "cargo", "gcc", "g++",
                "clang", "cmake", "make", "postgresql", "redis-server", "docker.io", "docker-compose",
                "shellcheck", "git", "jq", "ripgrep", "tmux", "linux-image-amd64", "openssh-server",
                "qemu-guest-agent"):
        assert pkg in p.packages, pkg
    # Node.js is the LTS line from the npm registry's official binaries, not Debian's older one
    assert p.node and "nodejs" not in p.packages
    for pkg in ("yarn", "pnpm", "bun", "eslint", "prettier"):
        assert pkg in p.npm_global
    assert p.agents == ("claude-code", "codex")
    # services are installed but never started at boot
    assert any("systemctl disable" in s and "postgresql" in s and "redis-server" in s and "docker.service" in s
               for s in p.extra_steps)
    # the default virtualenv that makes `pip install -r requirements.txt` work (PEP 668)
    assert any("venv --system-site-packages /opt/venv" in s for s in p.extra_steps)
    # the real claude binary is checked at build time, not the install stub
    assert any(s.startswith("claude --version") for s in p.extra_steps)
    assert p.disk_size > profiles.load_profile("minimal").disk_size


def test_every_profile_carries_the_coding_agents():
    for name in profiles.known_profiles():
        assert set(profiles.load_profile(name).agents) == {"claude-code", "codex"}, name


@pytest.mark.parametrize("bad,msg", [('node = "lts"', "major version"), ('agents = ["aider"]', "unknown agent")])
def test_node_and_agents_are_checked(bad, msg):
    text = profiles.PROFILE_DIR.joinpath("minimal.toml").read_text() + bad + "\n"
    text = text.replace("agents = [\"claude-code\", \"codex\"]\n", "") if "agents" in bad else text
    with pytest.raises(ApplianceError) as e:
        profiles.parse_profile(text)
    assert msg in e.value.message


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ApplianceError) as e:
        profiles.load_profile("nope")
    assert "nope" in e.value.message
    assert "minimal" in e.value.hint and "general" in e.value.hint
    with pytest.raises(ApplianceError):
        profiles.load_profile("../minimal")


def test_file_name_and_name_field_must_agree(tmp_path):
    (tmp_path / "other.toml").write_text(GOOD)
    with pytest.raises(ApplianceError, match="declares name 'tiny'"):
        profiles.load_profile("other", profile_dir=tmp_path)


# ---------------------------------------------------------------------------------------- hash


@pytest.fixture
def tree(tmp_path):
    """A copy of the shipped profiles, guest files and build code, to change freely."""
    profile_dir = tmp_path / "profiles"
    guest_dir = tmp_path / "guest"
    shutil.copytree(profiles.PROFILE_DIR, profile_dir)
    shutil.copytree(profiles.GUEST_DIR, guest_dir, ignore=shutil.ignore_patterns("__pycache__"))
    code = tmp_path / "build.py"
    code.write_text("# build code\n")

    def hash_of(name="minimal"):
        return profiles.profile_hash(name, profile_dir=profile_dir, guest_dir=guest_dir, build_code=(code,))

    return profile_dir, guest_dir, code, hash_of


def test_hash_is_stable_and_hex(tree):
    _, _, _, hash_of = tree
    h = hash_of()
    assert h == hash_of()
    assert len(h) == 64 and int(h, 16) >= 0
    assert hash_of("general") != h


def test_shipped_hash_matches_the_copy_and_repeats():
    assert profiles.profile_hash("minimal") == profiles.profile_hash("minimal")


def test_hash_changes_when_a_guest_file_changes(tree):
    _, guest_dir, _, hash_of = tree
    before = hash_of()
    script = guest_dir / "rootfs/usr/local/bin/check-tools"
    script.write_text(script.read_text() + "\n# changed\n")
    assert hash_of() != before


def test_hash_changes_when_a_guest_file_is_added_or_renamed(tree):
    _, guest_dir, _, hash_of = tree
    before = hash_of()
    extra = guest_dir / "rootfs/etc/extra.conf"
    extra.write_text("x\n")
    added = hash_of()
    assert added != before
    extra.rename(guest_dir / "rootfs/etc/extra2.conf")
    assert hash_of() not in (before, added)


def test_hash_changes_with_the_profile_and_the_build_code(tree):
    profile_dir, _, code, hash_of = tree
    before = hash_of()
    p = profile_dir / "minimal.toml"
    p.write_text(p.read_text().replace('"less",', '"less", "jq",'))
    after_profile = hash_of()
    assert after_profile != before
    code.write_text("# build code, version 2\n")
    assert hash_of() not in (before, after_profile)


def test_hash_ignores_modes_times_and_caches(tree):
    _, guest_dir, _, hash_of = tree
    before = hash_of()
    script = guest_dir / "rootfs/usr/local/bin/check-tools"
    script.chmod(0o600)
    (guest_dir / "rootfs/usr/local/bin/__pycache__").mkdir()
    (guest_dir / "rootfs/usr/local/bin/__pycache__/x.pyc").write_bytes(b"\0")
    assert hash_of() == before
