"""Images between hosts, content-addressed: control serves every file of its built images (and each
image's manifest) by SHA-256, to worker hosts that prove themselves with the credential they got
when they joined (appliance/cluster/join.py). A worker pulls the current image of a profile
(`appliance image pull PROFILE`, appliance/cluster/image_pull.py) and checks every byte against the
hash it asked for, so control (or anything between) cannot hand it a different image."""

from __future__ import annotations

import re
from pathlib import Path

from vmimages.build import sha256_file
from vmimages.store import IMAGE_FILES, MANIFEST, ImageStore

SHA256 = re.compile(r"^[0-9a-f]{64}$")


def catalog(store: ImageStore) -> list[dict]:
    """The current image of each profile: what a worker needs to pull it."""
    return [{"profile": img.profile, "profile_hash": img.profile_hash,
             "manifest": sha256_file(img.dir / MANIFEST),
             "files": {name: img.manifest.get("files", {}).get(name, {}) for name in IMAGE_FILES}}
            for img in store.list() if img.current]


def blob(store: ImageStore, sha256: str) -> Path | None:
    """The file of a built image (or an image's manifest) with this SHA-256 as its manifest records
    it; None for anything else. Only hashes are looked up: no name from the caller reaches a path."""
    if not SHA256.match(sha256):
        return None
    for img in store.list():
        for name in IMAGE_FILES:
            if img.manifest.get("files", {}).get(name, {}).get("sha256") == sha256:
                return img.dir / name
        if sha256_file(img.dir / MANIFEST) == sha256:
            return img.dir / MANIFEST
    return None
