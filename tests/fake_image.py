"""A built guest image as vmimages.build leaves one (a version dir with its manifest and the
profile's link), with small made-up files: for tests of moving images between hosts, which never
boot it."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os

PROFILE_HASH = hashlib.sha256(b"h16b test profile").hexdigest()
FILES = {"disk.qcow2": os.urandom(300_000), "vmlinuz": b"kernel " * 100, "initrd.img": b"initrd " * 100}


def fake_image(image_dir):
    version = image_dir / f"minimal-{PROFILE_HASH[:12]}"
    version.mkdir(parents=True)
    for name, data in FILES.items():
        (version / name).write_bytes(data)
    manifest = {"format": 1, "profile": "minimal", "profile_hash": PROFILE_HASH, "kernel_cmdline": "console=ttyS0",
                "built_at": dt.datetime(2026, 11, 30).isoformat(),
                "files": {n: {"size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for n, d in FILES.items()}}
    (version / "manifest.json").write_text(json.dumps(manifest))
    (image_dir / "minimal").symlink_to(version.name)
    return version
