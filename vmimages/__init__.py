"""Guest images: declarative profiles (`profiles/*.toml`), the files baked into every guest
(`guest/`), the build (`build.build_image`) and the on-disk store of built images
(`store.ImageStore`).

Importing this package is cheap and needs no root; only `build_image` does real work.
"""

from .profiles import Profile, known_profiles, load_profile, profile_hash
from .store import Image, ImageStore, current_profile_hash


def build_image(profile_name, image_dir, progress=print, force=False):
    """See `vmimages.build.build_image`."""
    from .build import build_image as _build_image

    return _build_image(profile_name, image_dir, progress=progress, force=force)


__all__ = [
    "Image",
    "ImageStore",
    "Profile",
    "build_image",
    "current_profile_hash",
    "known_profiles",
    "load_profile",
    "profile_hash",
]
