"""The image store (fake image directories) and the `appliance image` command."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os

import pytest

from appliance.cli import image_cmd
from appliance.errors import ApplianceError, ImageMissing
from vmimages.store import Image, ImageStore, version_dir_name


def make_image(image_dir, profile="minimal", profile_hash="a" * 64, built_at="2025-05-01T10:00:00+00:00",
               current=False, manifest_extra=None, files=("disk.qcow2", "vmlinuz", "initrd.img")):
    d = image_dir / version_dir_name(profile, profile_hash)
    d.mkdir(parents=True)
    for name in files:
        (d / name).write_bytes(b"x" * 100)
    manifest = {"profile": profile, "profile_hash": profile_hash, "kernel_cmdline": "console=ttyS0 root=/dev/vda rw",
                "built_at": built_at, "kernel_version": "6.1.0-99-amd64", "guest_user": "agent"}
    manifest.update(manifest_extra or {})
    (d / "manifest.json").write_text(json.dumps(manifest))
    if current:
        link = image_dir / profile
        if link.is_symlink():
            link.unlink()
        link.symlink_to(d.name)
    return d


def test_get_returns_the_current_version_with_all_paths(tmp_path):
    make_image(tmp_path, profile_hash="b" * 64, built_at="2025-04-01T10:00:00+00:00")
    d = make_image(tmp_path, current=True)
    img = ImageStore(tmp_path).get("minimal")
    assert isinstance(img, Image)
    assert img.dir == d and img.current
    assert img.disk == d / "disk.qcow2" and img.kernel == d / "vmlinuz" and img.initrd == d / "initrd.img"
    assert img.profile == "minimal" and img.profile_hash == "a" * 64 and img.short_hash == "a" * 12
    assert img.kernel_cmdline == "console=ttyS0 root=/dev/vda rw"
    assert img.built_at == dt.datetime(2025, 5, 1, 10, tzinfo=dt.timezone.utc)
    assert img.size_bytes == 300
    assert img.kernel_version == "6.1.0-99-amd64" and img.guest_user == "agent"
    assert img.manifest["profile"] == "minimal"


def test_missing_image_says_how_to_build_it(tmp_path):
    with pytest.raises(ImageMissing) as e:
        ImageStore(tmp_path / "none").get("minimal")
    assert e.value.hint == "run: appliance image build minimal"
    assert e.value.exit_code == 2


def test_unknown_profile_lists_known_profiles(tmp_path):
    with pytest.raises(ApplianceError) as e:
        ImageStore(tmp_path).get("bogus")
    assert not isinstance(e.value, ImageMissing)
    assert "minimal" in e.value.hint and "general" in e.value.hint


def test_a_broken_current_image_is_missing_and_says_to_rebuild(tmp_path):
    d = make_image(tmp_path, current=True)
    (d / "initrd.img").unlink()
    with pytest.raises(ImageMissing) as e:
        ImageStore(tmp_path).get("minimal")
    assert "--force" in e.value.hint
    (tmp_path / "minimal").unlink()
    (tmp_path / "minimal").symlink_to("minimal-" + "c" * 12)  # dangling
    with pytest.raises(ImageMissing):
        ImageStore(tmp_path).get("minimal")


def test_list_marks_current_and_ignores_builds_in_progress_and_junk(tmp_path):
    old = make_image(tmp_path, profile_hash="b" * 64, built_at="2025-04-01T10:00:00+00:00")
    cur = make_image(tmp_path, current=True)
    gen = make_image(tmp_path, profile="general", profile_hash="c" * 64, current=True)
    # a build in progress holding a complete-looking image, and other leftovers
    tmpbuild = tmp_path / ".build-minimal-x1y2"
    make_image(tmpbuild, profile_hash="d" * 64)
    (tmp_path / ".build-minimal.log").write_text("log")
    (tmp_path / ".lock-minimal").write_text("")
    make_image(tmp_path, profile_hash="e" * 64, files=("disk.qcow2",))  # incomplete
    (tmp_path / "minimal-ffffffffffff").mkdir()  # no manifest
    (tmp_path / "notes").mkdir()

    images = ImageStore(tmp_path).list()
    assert [(i.dir, i.current) for i in images] == [(gen, True), (cur, True), (old, False)]
    assert ImageStore(tmp_path / "absent").list() == []


def test_manifest_must_match_its_directory(tmp_path):
    d = make_image(tmp_path, manifest_extra={"profile": "general"})
    with pytest.raises(ValueError):
        Image.from_dir(d)
    assert ImageStore(tmp_path).list() == []


def test_find_and_up_to_date(tmp_path, monkeypatch):
    store = ImageStore(tmp_path)
    h = store.current_hash("minimal")
    assert store.find("minimal", h) is None
    assert not store.is_up_to_date("minimal")
    make_image(tmp_path, profile_hash=h, current=True)
    assert store.find("minimal", h).current
    assert store.is_up_to_date("minimal")
    make_image(tmp_path, profile_hash="0" * 64, current=True)
    assert not store.is_up_to_date("minimal")


# ---------------------------------------------------------------------------------------- CLI


def parse(argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    image_cmd.register(sub)
    return parser.parse_args(argv)


def test_cli_parses_build_list_and_hash():
    args = parse(["image", "build", "minimal", "--force"])
    assert args.handler is image_cmd.build and args.profile == "minimal" and args.force
    assert parse(["image", "build", "general"]).force is False
    assert parse(["image", "list"]).handler is image_cmd.list_images
    assert parse(["image", "hash", "minimal"]).handler is image_cmd.show_hash


class Ctx:
    def __init__(self, image_dir):
        self.config = argparse.Namespace(image_dir=image_dir)


def test_image_list_prints_a_table(tmp_path, capsys):
    make_image(tmp_path, profile_hash="b" * 64, built_at="2025-04-01T10:00:00+00:00")
    make_image(tmp_path, current=True)
    assert image_cmd.list_images(parse(["image", "list"]), Ctx(tmp_path)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["PROFILE", "HASH", "CURRENT", "BUILT", "AT", "(UTC)", "DISK", "KERNEL"]
    assert lines[1].split() == ["minimal", "a" * 12, "*", "2025-05-01", "10:00", "100", "B", "6.1.0-99-amd64"]
    assert lines[2].split()[:3] == ["minimal", "b" * 12, "2025-04-01"]


def test_image_list_when_empty(tmp_path, capsys):
    image_cmd.list_images(parse(["image", "list"]), Ctx(tmp_path))
    assert "appliance image build minimal" in capsys.readouterr().out


def test_image_hash_prints_the_profile_hash(capsys, tmp_path):
    image_cmd.show_hash(parse(["image", "hash", "minimal"]), Ctx(tmp_path))
    assert capsys.readouterr().out.strip() == ImageStore(tmp_path).current_hash("minimal")


def test_image_build_reports_errors_from_the_build(tmp_path, monkeypatch):
    if os.geteuid() == 0:
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ApplianceError, match="needs root"):
        image_cmd.build(parse(["image", "build", "minimal"]), Ctx(tmp_path))
