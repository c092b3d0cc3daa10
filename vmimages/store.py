"""Built images on disk.

Layout under the image directory (`Config.image_dir`):

    <profile>-<hash12>/       one built version, read-only: disk.qcow2, vmlinuz, initrd.img,
                              manifest.json (written last: a directory without a readable
                              manifest is not an image)
    <profile> -> <profile>-<hash12>   the current version (a relative symlink)
    .build-<profile>-XXXX/    a build in progress (ignored)
    .build-<profile>.log      the output of the last build of that profile (ignored)

Older versions stay until removed by hand: a sandbox's overlay names its base image by path.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
from pathlib import Path

from appliance_base.errors import ApplianceError, ImageMissing

from . import profiles

MANIFEST = "manifest.json"
DISK = "disk.qcow2"
KERNEL = "vmlinuz"
INITRD = "initrd.img"
IMAGE_FILES = (DISK, KERNEL, INITRD)
VERSION_DIR_RE = re.compile(r"^(?P<profile>[a-z][a-z0-9_]{0,31})-(?P<hash12>[0-9a-f]{12})$")


def version_dir_name(profile: str, profile_hash: str) -> str:
    return f"{profile}-{profile_hash[:12]}"


@dataclasses.dataclass(frozen=True)
class Image:
    """One built image version. Paths are absolute; `manifest` is the parsed manifest.json."""

    profile: str
    profile_hash: str
    dir: Path
    disk: Path
    kernel: Path
    initrd: Path
    kernel_cmdline: str
    manifest: dict
    built_at: dt.datetime
    size_bytes: int
    current: bool = False

    @property
    def kernel_version(self) -> str:
        return str(self.manifest.get("kernel_version", ""))

    @property
    def guest_user(self) -> str:
        return str(self.manifest.get("guest_user", profiles.DEFAULT_GUEST_USER))

    @property
    def short_hash(self) -> str:
        return self.profile_hash[:12]

    @classmethod
    def from_dir(cls, path: Path, current: bool = False) -> Image:
        """Read a version directory. Raises ValueError if it is not a complete image."""
        path = Path(path).absolute()
        try:
            manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: no readable {MANIFEST}: {e}") from e
        try:
            profile = manifest["profile"]
            profile_hash = manifest["profile_hash"]
            cmdline = manifest["kernel_cmdline"]
            built_at = dt.datetime.fromisoformat(manifest["built_at"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: incomplete {MANIFEST}: {e}") from e
        m = VERSION_DIR_RE.match(path.name)
        if not m or m["profile"] != profile or not str(profile_hash).startswith(m["hash12"]):
            raise ValueError(f"{path}: directory name does not match its manifest ({profile}, {profile_hash})")
        size = 0
        for name in IMAGE_FILES:
            f = path / name
            if not f.is_file():
                raise ValueError(f"{path}: {name} is missing")
            size += f.stat().st_size
        return cls(
            profile=profile,
            profile_hash=profile_hash,
            dir=path,
            disk=path / DISK,
            kernel=path / KERNEL,
            initrd=path / INITRD,
            kernel_cmdline=cmdline,
            manifest=manifest,
            built_at=built_at,
            size_bytes=size,
            current=current,
        )


class ImageStore:
    """Finds built images in `image_dir`. Only reads; `vmimages.build.build_image` writes."""

    def __init__(self, image_dir: Path | str, profile_dir: Path = profiles.PROFILE_DIR):
        self.image_dir = Path(image_dir).absolute()
        self.profile_dir = profile_dir

    def _current_target(self, profile: str) -> Path | None:
        link = self.image_dir / profile
        if not link.is_symlink():
            return None
        target = Path(os.readlink(link))
        return (self.image_dir / target) if not target.is_absolute() else target

    def get(self, profile: str) -> Image:
        """The current image of `profile`. Raises ImageMissing (hint: how to build it), or
        ApplianceError listing the known profiles when the name is unknown."""
        target = self._current_target(profile)
        if target is None:
            if profile not in profiles.known_profiles(self.profile_dir):
                raise profiles.unknown_profile_error(profile, self.profile_dir)
            raise ImageMissing(
                f"no image built for profile {profile!r} in {self.image_dir}",
                hint=f"run: appliance image build {profile}",
            )
        try:
            return Image.from_dir(target, current=True)
        except ValueError as e:
            raise ImageMissing(
                f"the current image of profile {profile!r} is unusable: {e}",
                hint=f"run: appliance image build {profile} --force",
            ) from e

    def list(self) -> list[Image]:
        """Every complete image version (current and older), by profile then newest first."""
        if not self.image_dir.is_dir():
            return []
        currents = {}
        for entry in self.image_dir.iterdir():
            if entry.is_symlink() and not entry.name.startswith("."):
                target = self._current_target(entry.name)
                if target is not None:
                    currents[entry.name] = target.name
        images = []
        for entry in self.image_dir.iterdir():
            if entry.name.startswith(".") or entry.is_symlink() or not entry.is_dir():
                continue
            m = VERSION_DIR_RE.match(entry.name)
            if not m:
                continue
            try:
                img = Image.from_dir(entry, current=currents.get(m["profile"]) == entry.name)
            except ValueError:
                continue
            images.append(img)
        images.sort(key=lambda i: (i.profile, not i.current, -i.built_at.timestamp()))
        return images

    def find(self, profile: str, profile_hash: str) -> Image | None:
        """The image built from exactly this profile hash, if there is one."""
        path = self.image_dir / version_dir_name(profile, profile_hash)
        try:
            img = Image.from_dir(path, current=self._current_target(profile) == path)
        except ValueError:
            return None
        return img if img.profile_hash == profile_hash else None

    def current_hash(self, profile: str) -> str:
        """The hash the profile would be built with now (no build, no root)."""
        return profiles.profile_hash(profile, self.profile_dir)

    def is_up_to_date(self, profile: str) -> bool:
        """Whether the current image of `profile` was built from the profile as it is now."""
        try:
            return self.get(profile).profile_hash == self.current_hash(profile)
        except ApplianceError:
            return False


def current_profile_hash(profile: str) -> str:
    """The hash `build_image(profile, ...)` would produce now; equal to a built image's
    `profile_hash` exactly when that image can be reused."""
    return profiles.profile_hash(profile)
