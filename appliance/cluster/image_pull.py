"""A worker host pulls an image from control (`appliance image pull PROFILE`): the catalog names the
current version's manifest by hash; the manifest names each file by hash; every download is
checked against the hash it was asked for before anything is kept, and the version only appears in
the image store (renamed into place, then made current) once all of it matched. Control's side:
appliance/cluster/images.py."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from appliance_base.config import Config
from vmimages.build import set_current
from vmimages.store import IMAGE_FILES, MANIFEST, Image, ImageStore, version_dir_name

from ..client import trust
from ..errors import ApplianceError, ImageMissing

CHUNK = 1 << 20


class ImageTampered(ApplianceError):
    """What control sent does not hash to what was asked for: nothing was kept."""


class ControlImages:
    """Control's image endpoints, as this worker host reaches them (pinned like its join)."""

    def __init__(self, config: Config):
        if not (config.control_url and config.host_credential):
            raise ApplianceError("this host has no way to reach control's images (control_url and host_credential "
                                 "are empty)", hint="join control first: appliance worker --join URL --token T")
        self.server = config.control_url.rstrip("/")
        self.credential = config.host_credential
        self.opener = trust.opener(self.server, config.control_fingerprint, config.control_ca)

    def _open(self, path: str):
        req = urllib.request.Request(f"{self.server}/api/v1/cluster/images{path}",
                                     headers={"Authorization": f"Bearer {self.credential}"})
        try:
            return self.opener.open(req, timeout=60)
        except urllib.error.HTTPError as e:
            try:
                message = json.loads(e.read() or b"{}").get("error") or f"HTTP {e.code}"
            except ValueError:
                message = f"HTTP {e.code}"
            raise ApplianceError(f"control refused the image request: {message}",
                                 hint="is this host still joined? (appliance host list on control)") from None
        except (urllib.error.URLError, socket.timeout, OSError) as e:
            if isinstance(getattr(e, "reason", None), ApplianceError):
                raise e.reason from None  # control's certificate changed
            raise ApplianceError(f"cannot reach control at {self.server}: {getattr(e, 'reason', e)}") from None

    def catalog(self) -> list[dict]:
        with self._open("") as resp:
            return json.loads(resp.read())["images"]

    def download(self, sha256: str, dest: Path) -> None:
        """The blob with this hash into `dest`, checked while it streams; ImageTampered if it differs."""
        h = hashlib.sha256()
        with self._open(f"/{sha256}") as resp, open(dest, "wb") as out:
            for chunk in iter(lambda: resp.read(CHUNK), b""):
                h.update(chunk)
                out.write(chunk)
        if h.hexdigest() != sha256:
            dest.unlink(missing_ok=True)
            raise ImageTampered(f"control sent {dest.name} with SHA-256 {h.hexdigest()}, not {sha256}; nothing was kept",
                                hint="control's image is damaged, or something altered it on the way: rebuild it "
                                     "there (appliance image build PROFILE --force) and pull again")


def pull(config: Config, profile: str) -> tuple[Image, bool]:
    """Control's current image of `profile` into this host's image store (made current); (the image,
    whether anything was downloaded)."""
    control = ControlImages(config)
    wanted = next((i for i in control.catalog() if i["profile"] == profile), None)
    if wanted is None:
        raise ImageMissing(f"control has no image of profile {profile!r}",
                           hint=f"build it on control: appliance image build {profile}")
    store = ImageStore(config.image_dir)
    image_dir = Path(config.image_dir)
    name = version_dir_name(profile, wanted["profile_hash"])
    have = store.find(profile, wanted["profile_hash"])
    if have is not None:
        set_current(image_dir, profile, name)
        return store.find(profile, wanted["profile_hash"]), False
    image_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".pull-{profile}-", dir=image_dir))
    try:
        control.download(wanted["manifest"], work / MANIFEST)
        manifest = json.loads((work / MANIFEST).read_text())
        if manifest.get("profile") != profile or manifest.get("profile_hash") != wanted["profile_hash"]:
            raise ImageTampered(f"control's manifest for {profile} names another image; nothing was kept")
        for file in IMAGE_FILES:
            control.download(manifest["files"][file]["sha256"], work / file)
        for path in work.iterdir():
            os.chmod(path, 0o444)
        os.chmod(work, 0o555)
        os.rename(work, image_dir / name)
    except BaseException:
        if work.exists():
            os.chmod(work, 0o755)
            shutil.rmtree(work, ignore_errors=True)
        raise
    set_current(image_dir, profile, name)
    return store.find(profile, wanted["profile_hash"]), True
