"""`appliance backup` / `appliance restore`: the database and the appliance-hosted repositories.

Consistent while the daemon runs:
- the database is copied with SQLite's online backup API (a transaction-consistent snapshot, WAL
  included, while others keep writing);
- each hosted repository (`<state_dir>/git/hosted/**.git`) is copied refs first, objects last:
  objects are only ever added, so every ref in the copy names objects the copy has. The database is
  copied before the repositories, so every branch a session row names is in the copy (the
  repositories may be newer than the database, never older).

A backup is a directory, or a `.tar.gz` / `.tgz` file of the same directory:
  manifest.json  appliance.db  git/hosted/<name>.git/...
Restore writes into the configured state dir; it refuses to overwrite a database that holds
sessions unless forced. Stop the daemon before restoring (the command says so).
Sandboxes are not backed up: guests are disposable, sessions continue in fresh ones.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
import tarfile
import tempfile
from pathlib import Path

import appliance
from appliance_base.config import Config

from .errors import ApplianceError, Invalid, NotFound
from .gitproxy.git import Git

FORMAT = 1
SKIP = ("*.lock", "tmp_obj_*", "tmp_pack_*", "incoming-*", "tmp_objdir-*")  # writes in progress


def sqlite_path(cfg: Config) -> Path:
    if not cfg.database_url.startswith("sqlite:///"):
        raise ApplianceError(f"backup covers SQLite databases; this appliance uses {cfg.database_url.split(':')[0]}",
                             hint="back that database up with its own tools (pg_dump), then back up the hosted "
                                  "repositories' directory")
    return Path(cfg.database_url[len("sqlite:///"):])


def hosted_root(state_dir: Path) -> Path:
    return Path(state_dir) / "git" / "hosted"


def hosted_repositories(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*.git") if (p / "HEAD").is_file() and (p / "objects").is_dir())


def copy_database(src: Path, dest: Path) -> None:
    """SQLite online backup: consistent while other connections write."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=30)
    target = sqlite3.connect(dest, timeout=30)
    try:
        with target:
            source.backup(target, pages=1024)
    finally:
        target.close()
        source.close()


def _copy_file(src, dst):
    try:
        return shutil.copy2(src, dst)
    except FileNotFoundError:  # a temporary file git removed meanwhile
        return dst


def _copy_tree(src: Path, dest: Path) -> None:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(*SKIP), symlinks=True, copy_function=_copy_file,
                    dirs_exist_ok=True)


def copy_repository(src: Path, dest: Path, git: Git, attempts: int = 3) -> None:
    """Everything but the objects (refs, packed-refs, config, reflogs, hooks) first, objects last;
    checked with `git fsck --connectivity-only` and taken again if a concurrent repack raced it."""
    for _attempt in range(attempts):
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for entry in sorted(src.iterdir()):
            if entry.name == "objects" or any(entry.match(p) for p in SKIP):
                continue
            if entry.is_dir():
                _copy_tree(entry, dest / entry.name)
            else:
                _copy_file(entry, dest / entry.name)
        _copy_tree(src / "objects", dest / "objects")
        check = git.run([f"--git-dir={dest}", "fsck", "--connectivity-only", "--no-progress"])
        if check.ok:
            return
    raise ApplianceError(f"could not take a consistent copy of {src}: {check.stderr.strip()[:200]}",
                         hint="run the backup again (is something repacking it all the time?)")


def refs(repo: Path, git: Git) -> dict[str, str]:
    out = git.run([f"--git-dir={repo}", "for-each-ref", "--format=%(refname) %(objectname)"], check=True).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if line)


def backup(cfg: Config, dest: Path | str) -> dict:
    """Write a backup to `dest` (a new directory, or a .tar.gz file); returns its manifest."""
    dest = Path(dest)
    db = sqlite_path(cfg)
    if not db.exists():
        raise NotFound(f"no database at {db}", hint="is APPLIANCE_STATE_DIR / the config pointing at the appliance?")
    as_tar = dest.name.endswith((".tar.gz", ".tgz"))
    if dest.exists() and (as_tar or any(dest.iterdir())):
        raise Invalid(f"{dest} already exists", hint="name a new file or an empty directory")
    with tempfile.TemporaryDirectory(prefix="appliance-backup-", dir=dest.parent if dest.parent.exists() else None) as tmp:
        work = Path(tmp) / "backup"
        work.mkdir()
        copy_database(db, work / "appliance.db")
        root = hosted_root(cfg.state_dir)
        git = Git(cfg.state_dir / "git")  # local work only: no credential is ever involved
        repos = {}
        for repo in hosted_repositories(root):
            rel = repo.relative_to(root)
            copy_repository(repo, work / "git" / "hosted" / rel, git)
            repos[str(rel)] = refs(work / "git" / "hosted" / rel, git)
        manifest = {"format": FORMAT, "appliance": appliance.__version__,
                    "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "database": "appliance.db", "repositories": repos}
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if as_tar:
            part = dest.with_name(dest.name + ".part")
            with tarfile.open(part, "w:gz") as tar:
                tar.add(work, arcname="appliance-backup")
            part.replace(dest)
        else:
            dest.mkdir(parents=True, exist_ok=True)
            for entry in work.iterdir():
                shutil.move(str(entry), dest / entry.name)
    return manifest


def _open(src: Path, tmp: Path) -> Path:
    if src.is_dir():
        return src
    if not src.is_file():
        raise NotFound(f"no backup at {src}")
    with tarfile.open(src, "r:*") as tar:
        tar.extractall(tmp, filter="data")
    return tmp / "appliance-backup"


def restore(cfg: Config, src: Path | str, force: bool = False) -> dict:
    """Put a backup's database and hosted repositories into the configured state dir."""
    db = sqlite_path(cfg)
    with tempfile.TemporaryDirectory(prefix="appliance-restore-") as tmp:
        folder = _open(Path(src), Path(tmp))
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
        except (OSError, ValueError) as e:
            raise Invalid(f"{src} is not an appliance backup ({e})") from None
        if manifest.get("format") != FORMAT:
            raise Invalid(f"{src}: backup format {manifest.get('format')!r} is not {FORMAT}")
        if db.exists() and not force and _has_sessions(db):
            raise Invalid(f"{db} already holds sessions", hint="restore into a fresh state dir, or pass --force "
                                                               "(with the daemon stopped) to replace them")
        db.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        copy_database(folder / manifest["database"], db)
        root = hosted_root(cfg.state_dir)
        for rel in manifest["repositories"]:
            target = root / rel
            if target.exists():
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(folder / "git" / "hosted" / rel, target, symlinks=True)
    return manifest


def _has_sessions(db: Path) -> bool:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT COUNT(*) FROM session").fetchone()[0] > 0
    except sqlite3.Error:
        return False
    finally:
        con.close()
