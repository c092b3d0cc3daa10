"""`appliance image ...`: build guest images from profiles, list the built ones, and (a worker host)
pull one from control."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser("image", help="build and list guest images")
    sub = parser.add_subparsers(dest="image_command", metavar="ACTION", required=True)

    p = sub.add_parser("build", help="build the image of a profile (reused when the profile is unchanged)")
    p.add_argument("profile", help="profile name, e.g. minimal or general")
    p.add_argument("--force", action="store_true", help="rebuild even if an image of this exact profile exists")
    p.set_defaults(handler=build)

    p = sub.add_parser("list", help="list built images (current and older versions)")
    p.set_defaults(handler=list_images)

    p = sub.add_parser("hash", help="print the hash a profile would be built with now (no build)")
    p.add_argument("profile")
    p.set_defaults(handler=show_hash)

    p = sub.add_parser("pull", help="a joined worker host: fetch control's current image of a profile, every "
                                    "file checked against its SHA-256")
    p.add_argument("profile")
    p.set_defaults(handler=pull)


def pull(args: argparse.Namespace, ctx) -> int:
    from ..cluster.image_pull import pull as pull_image

    image, fetched = pull_image(ctx.config, args.profile)
    print(f"image: {image.dir}" + (" (pulled from control, every file's SHA-256 checked)" if fetched
                                   else " (already here; made current)"))
    return 0


def build(args: argparse.Namespace, ctx) -> int:
    from vmimages.build import build_image

    image = build_image(args.profile, ctx.config.image_dir, progress=lambda line: print(line, flush=True), force=args.force)
    print(f"image: {image.dir}")
    return 0


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def format_table(images) -> str:
    """The `image list` table (pure; tested)."""
    rows = [("PROFILE", "HASH", "CURRENT", "BUILT AT (UTC)", "DISK", "KERNEL")]
    for img in images:
        rows.append((
            img.profile,
            img.short_hash,
            "*" if img.current else "",
            img.built_at.strftime("%Y-%m-%d %H:%M"),
            _size(img.disk.stat().st_size),
            img.kernel_version,
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in rows)


def list_images(args: argparse.Namespace, ctx) -> int:
    from vmimages.store import ImageStore

    images = ImageStore(ctx.config.image_dir).list()
    if not images:
        print(f"no images in {ctx.config.image_dir} (build one: appliance image build minimal)")
        return 0
    print(format_table(images))
    return 0


def show_hash(args: argparse.Namespace, ctx) -> int:
    from vmimages.profiles import profile_hash

    print(profile_hash(args.profile))
    return 0
