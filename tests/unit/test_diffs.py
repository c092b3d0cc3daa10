import subprocess

from appliance.gitproxy.diffs import compute
from appliance.gitproxy.git import Git


def git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_diff_counts_renames_binaries_and_patches(tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    git(work, "config", "user.email", "t@t")
    git(work, "config", "user.name", "t")
    (work / "keep.py").write_text("a\nb\nc\n")
    (work / "old_name.txt").write_text("\n".join(f"line {i}" for i in range(20)) + "\n")
    (work / "gone.txt").write_text("bye\n")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "base")
    git(work, "checkout", "-qb", "appliance/x")
    (work / "keep.py").write_text("a\nB\nc\nd\n")
    git(work, "mv", "old_name.txt", "new_name.txt")
    (work / "gone.txt").unlink()
    (work / "blob.bin").write_bytes(bytes(range(256)))
    (work / "new.md").write_text("hello\n")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "work")
    bare = tmp_path / "mirror.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)

    d = compute(Git(tmp_path / "gitstate"), bare, "main", "appliance/x")
    by = {f.path: f for f in d.files}
    assert by["keep.py"].change == "modified" and (by["keep.py"].added, by["keep.py"].removed) == (2, 1)
    assert by["keep.py"].patch.startswith("@@") and "+B" in by["keep.py"].patch and "-b" in by["keep.py"].patch
    assert by["new_name.txt"].change == "renamed" and by["new_name.txt"].old_path == "old_name.txt"
    assert by["gone.txt"].change == "deleted" and by["gone.txt"].removed == 1
    assert by["blob.bin"].binary and by["blob.bin"].patch == ""
    assert by["new.md"].change == "added" and by["new.md"].added == 1
    assert (d.added, d.removed) == (3, 2)
    assert d.base_sha == git(work, "rev-parse", "main")
